"""Write example fine-tuning data: train.jsonl, valid.jsonl and test.jsonl in mlx-lm's format.

    mlx-schedules example-data data                         # chat rows (default)
    mlx-schedules example-data data --format completions    # {"prompt", "completion"} rows
    mlx-schedules example-data data --format text           # {"text"} rows

Where the text comes from: the running Python interpreter's own docstrings, nothing
downloaded. Each row asks what a public function or class of a fixed list of standard-library
modules does ("What does `json.dumps` do?") and answers with the first paragraph of its
docstring. That text is Python's documentation, distributed with the interpreter under the
Python Software Foundation License (PSF License Agreement). The same Python build gives the
same files byte for byte; about 10% of the examples go to valid.jsonl and 10% to test.jsonl,
chosen by a hash of the name asked about.

Rows in each form:
    chat         {"messages": [{"role": "user", "content": "What does ..."},
                               {"role": "assistant", "content": "Serialize ..."}]}
    completions  {"prompt": "What does ...", "completion": "Serialize ..."}
    text         {"text": "What does ...\nSerialize ..."}

DIR is created if needed and must not hold any of the three files yet.
"""

from __future__ import annotations

import argparse
import os
import sys

from trainers.cli.args import script_parser
from trainers.lm.example_data import EXAMPLE_FORMS, MODULES, SPLITS, write_example_data

PROG = "mlx-schedules example-data"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = script_parser(__doc__, PROG)
    p.add_argument("directory", metavar="DIR", help="the folder to write the three files into")
    p.add_argument("--format", choices=EXAMPLE_FORMS, default="chat",
                   help="the rows' form (default chat)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        counts = write_example_data(args.directory, args.format)
    except (FileExistsError, NotADirectoryError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.format} rows from the docstrings of {len(MODULES)} standard-library "
          f"modules (Python Software Foundation License):")
    for split in SPLITS:
        path = os.path.join(args.directory, f"{split}.jsonl")
        print(f"  {path}: {counts[split]} rows")
    print(f"use it: mlx-schedules lora --model MODEL --train --data {args.directory} --iters 30")
    return 0


if __name__ == "__main__":
    sys.exit(main())
