"""Runs ``mlx-schedules compare``; code in ``trainers/cli/compare.py``.
``python scripts/compare_schedules.py --help`` shows its flags and examples."""

import sys

from trainers.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
