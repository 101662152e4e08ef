"""Data-parallel training under ``mlx.launch``, for tests/trainers/test_distributed.py.

    mlx.launch -n 2 --backend ring -p PORT tests/trainers/_trainer_dist_script.py OUT_DIR

Every rank trains with the same settings; the trainer shards each global batch by rank. Each
rank then writes its final weights to ``OUT_DIR/rank<r>.safetensors``; rank 0 alone writes
the run directory ``OUT_DIR/run``.
"""

from __future__ import annotations

import os
import sys


def build(run_dir, group=None):
    """The run shared by the launched ranks and the single-process reference."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import mlx.core as mx
    import mlx.optimizers as optim
    from helpers_trainer import MLP, classification_data, xent

    from trainers import ArrayBatches, Trainer

    mx.random.seed(0)
    model = MLP(hidden=16)
    x, y = classification_data(64)
    opt = optim.SGD(learning_rate=optim.cosine_decay(0.2, 8), momentum=0.9)
    # five evaluation batches of unequal sizes: rank 0 takes three, rank 1 two
    cuts = [0, 16, 24, 40, 60, 64]
    eval_data = [(x[a:b], y[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
    trainer = Trainer(model, xent, opt, ArrayBatches((x, y), 16, seed=2), run_dir=run_dir,
                      max_steps=8, clip_norm=1.0, eval_data=eval_data, eval_every=4,
                      checkpoint_every=4, log_every=3, report_every=0, group=group)
    return trainer, model


def main() -> None:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    out_dir = sys.argv[1]
    group = mx.distributed.init()
    if group.size() < 2:
        raise SystemExit(f"expected several ranks, got {group.size()}")
    trainer, model = build(os.path.join(out_dir, "run"), group)
    trainer.fit()
    mx.save_safetensors(os.path.join(out_dir, f"rank{group.rank()}.safetensors"),
                        dict(tree_flatten(model.parameters())))


if __name__ == "__main__":
    main()
