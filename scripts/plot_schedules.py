"""Runs ``mlx-schedules plot``; code in ``trainers/cli/plot.py``.
``python scripts/plot_schedules.py --help`` shows its flags and examples."""

import sys

from trainers.cli import main

if __name__ == "__main__":
    sys.exit(main(["plot", *sys.argv[1:]]))
