"""Runs ``mlx-schedules train``; code in ``trainers/cli/train.py``.
``python scripts/train.py --help`` shows its flags and examples."""

import sys

from trainers.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
