"""Runs ``mlx-schedules download``; code in ``trainers/cli/download.py``.
``python scripts/download_data.py --help`` shows its flags and examples."""

import sys

from trainers.cli import main

if __name__ == "__main__":
    sys.exit(main(["download", *sys.argv[1:]]))
