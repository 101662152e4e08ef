"""Runs ``mlx-schedules audit``; code in ``trainers/cli/audit.py``.
``python scripts/audit_run.py --help`` shows its flags and examples."""

import sys

from trainers.cli import main

if __name__ == "__main__":
    sys.exit(main(["audit", *sys.argv[1:]]))
