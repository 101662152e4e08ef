"""Write a tiny mlx-lm model directory made here: random weights and a tokenizer trained locally.

    mlx-schedules tiny-model model                      # llama 'tiny', 512 tokens
    mlx-schedules tiny-model model --arch qwen2 --preset small --vocab-size 1024

For trying the fine-tuning path with nothing downloaded: the model knows nothing (its weights
are random), but it is a real mlx-lm model directory (config.json, model.safetensors and the
tokenizer's files, with a chat template), so `mlx_lm.load("model")`, `mlx_lm.generate`,
`mlx_lm.lora` and `mlx-schedules lora --model model` take it. The tokenizer is a byte-level
BPE trained on the text of `mlx-schedules example-data` (the running Python's docstrings,
Python Software Foundation License). DIR must not exist yet, or be an empty folder.
"""

from __future__ import annotations

import argparse
import os
import sys

from trainers.cli.args import script_parser

PROG = "mlx-schedules tiny-model"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from trainers.lm.models import ARCHITECTURES, PRESETS

    p = script_parser(__doc__, PROG)
    p.add_argument("directory", metavar="DIR", help="the model directory to write (new)")
    p.add_argument("--arch", dest="architecture", choices=list(ARCHITECTURES), default="llama",
                   help="mlx-lm model type (default llama)")
    p.add_argument("--preset", choices=list(PRESETS), default="tiny",
                   help="size: " + "; ".join(
                       f"{name} {s['hidden_size']} wide, {s['num_hidden_layers']} blocks"
                       for name, s in PRESETS.items()) + " (default tiny)")
    p.add_argument("--vocab-size", type=int, default=512,
                   help="tokens of the trained tokenizer (default 512; at least 260)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the weights (default 0)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from trainers.lm.local_model import write_tiny_model
        from trainers.lm.models import mlx_lm_module

        mlx_lm_module()  # a clear message when the lm extra is missing, before any work
        path = write_tiny_model(args.directory, architecture=args.architecture,
                               preset=args.preset, vocab_size=args.vocab_size, seed=args.seed)
    except (ImportError, FileExistsError, ValueError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    import json

    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    size = os.path.getsize(os.path.join(path, "model.safetensors"))
    shown = args.directory
    print(f"wrote {shown}/: an mlx-lm {args.architecture} model, preset {args.preset} "
          f"({config['hidden_size']} wide, {config['num_hidden_layers']} blocks, random "
          f"weights, {size / 1e6:.2f} MB), a tokenizer of {config['vocab_size']} tokens "
          "trained on local text, a chat template")
    for name in sorted(os.listdir(path)):
        print(f"  {shown}/{name}")
    print("use it:\n"
          f"  mlx-schedules example-data data\n"
          f"  mlx-schedules lora --model {shown} --train --data data --iters 30 "
          "--num-layers -1 "
          "--adapter-path adapters\n"
          f"  python -c \"import mlx_lm; m, t = mlx_lm.load('{shown}', "
          "adapter_path='adapters'); print(mlx_lm.generate(m, t, prompt='What'))\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
