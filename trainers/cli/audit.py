#!/usr/bin/env python
"""Check that every logged rate of a run equals the schedule its saved config describes.

    mlx-schedules audit runs/train            # exit 0: every row matches
    mlx-schedules audit runs/train --json     # the report as JSON

Rebuilds each schedule from the run directory's ``config.json`` (and ``experiment.json`` for a
``train.py`` run), evaluates it at every logged step and compares it with the logged column
(``trainers.audit.audit_run``). Prints one line per column. Exit status 0 when every audited
rate equals its schedule (a rate scaled by reduce-on-plateau is reported as such and passes),
1 at the first mismatch (its step, column, expected and logged value are printed), 2 when the
directory cannot be read as a run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from trainers.audit import audit_run
from trainers.cli.args import script_parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = script_parser(__doc__, "mlx-schedules audit")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a trainer run directory")
    p.add_argument("--ulps", type=float, default=0.0,
                   help="how many float32 steps a logged rate may be from its schedule "
                        "(default 0: bit for bit)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.ulps >= 0:
        print(f"error: --ulps must be >= 0, got {args.ulps}", file=sys.stderr)
        return 2
    try:
        report = audit_run(args.run_dir, ulps=args.ulps)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        data = dataclasses.asdict(report)
        first = report.first_mismatch
        data.update(ok=report.ok, first_mismatch=None if first is None
                    else dataclasses.asdict(first))
        print(json.dumps(data, indent=1))
    else:
        print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
