"""Runs ``mlx-schedules train-lm``; code in ``trainers/cli/train_lm.py``.
``python scripts/train_lm.py --help`` shows its flags and examples."""

import sys

from trainers.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-lm", *sys.argv[1:]]))
