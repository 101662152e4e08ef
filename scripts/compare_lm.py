"""Runs ``mlx-schedules compare-lm``; code in ``trainers/cli/compare_lm.py``.
``python scripts/compare_lm.py --help`` shows its flags and examples."""

import sys

from trainers.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare-lm", *sys.argv[1:]]))
