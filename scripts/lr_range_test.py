"""Runs ``mlx-schedules range-test``; code in ``trainers/cli/range_test.py``.
``python scripts/lr_range_test.py --help`` shows its flags and examples."""

import sys

from trainers.cli import main

if __name__ == "__main__":
    sys.exit(main(["range-test", *sys.argv[1:]]))
