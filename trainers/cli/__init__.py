"""The ``mlx-schedules`` command: one subcommand per task, each a module of this package with
a ``main(argv)`` (the scripts in a checkout's ``scripts/`` call the same functions).

Example:
    >>> main(["--help"])  # doctest: +ELLIPSIS
    usage: mlx-schedules SUBCOMMAND [ARGS...]
    ...
    0
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["SUBCOMMANDS", "main"]

#: subcommand -> (module of trainers.cli, one line for the overview)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "compare": ("compare", "compare schedules on image data (the main job)"),
    "train": ("train", "train a model on image data with any schedule"),
    "train-lm": ("train_lm", "train or fine-tune a language model (mlx-lm architectures)"),
    "lora": ("lora", "fine-tune from an mlx_lm.lora command line or YAML config"),
    "compare-lm": ("compare_lm", "compare schedules on a byte-level language model"),
    "range-test": ("range_test", "learning-rate range test: sweep the rate, suggest a peak"),
    "audit": ("audit", "check that every logged rate equals its schedule"),
    "plot": ("plot", "plot schedules (PNG, or text in the terminal)"),
    "download": ("download", "download MNIST, Fashion-MNIST or CIFAR-10 once"),
    "tiny-model": ("tiny_model", "write a tiny mlx-lm model directory (nothing downloaded)"),
    "example-data": ("example_data", "write example fine-tuning data in mlx-lm's jsonl format"),
}


def _overview() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    return ("usage: mlx-schedules SUBCOMMAND [ARGS...]\n\n"
            "Learning-rate schedules and a training loop for MLX.\n\nsubcommands:\n"
            + "\n".join(lines)
            + "\n\n'mlx-schedules SUBCOMMAND --help' shows a subcommand's flags and examples.")


def main(argv: list[str] | None = None) -> int:
    """Run ``mlx-schedules SUBCOMMAND ARGS...``; returns the exit status (2 for a wrong
    subcommand, as for a wrong flag)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(_overview())
        return 0 if args else 2
    if args[0] == "--version":
        from .. import __version__

        print(f"mlx-schedules {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"mlx-schedules: unknown subcommand {name!r}; choose one of "
              f"{', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"{__name__}.{SUBCOMMANDS[name][0]}")
        return int(module.main(rest) or 0)
    except KeyboardInterrupt:  # Ctrl-C outside a run (a run reports its own, with --resume)
        print(f"\nmlx-schedules {name}: interrupted", file=sys.stderr)
        return 130
