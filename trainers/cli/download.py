#!/usr/bin/env python
"""Fetch MNIST, Fashion-MNIST or CIFAR-10 in their original formats into the cache directory.

    mlx-schedules download mnist                       # -> ~/.cache/mlx_schedules/mnist/
    mlx-schedules download mnist fashion_mnist cifar10 --cache-dir /data/cache

Downloads the archives the dataset hosts publish (MNIST and Fashion-MNIST: four IDX ``.gz``
files each; CIFAR-10: ``cifar-10-binary.tar.gz``), checks each against its published MD5 and
only then moves it into ``<cache-dir>/<name>/``. Files already there and intact are kept.
Training runs (``train.py`` and the others) never download: run this once, or copy a cache
directory filled on a machine with network access. The archives are read with NumPy; nothing
is ever unpickled.
"""

from __future__ import annotations

import sys

from trainers.cli.args import script_parser
from trainers.experiments.datasets import ARCHIVES, DataError, DatasetUnavailable, download


def main(argv: list[str] | None = None) -> int:
    p = script_parser(__doc__, "mlx-schedules download")
    p.add_argument("names", nargs="+", choices=list(ARCHIVES), metavar="NAME",
                   help=f"datasets to fetch: {', '.join(ARCHIVES)}")
    p.add_argument("--cache-dir", help="cache root (default ~/.cache/mlx_schedules)")
    args = p.parse_args(argv)
    for name in args.names:
        try:
            root = download(name, args.cache_dir)
        except (DataError, DatasetUnavailable, OSError) as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            return 1
        print(f"{name}: ready in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
