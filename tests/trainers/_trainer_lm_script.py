"""A tiny language-model run with every trainer feature on, for test_resume_features.py.

    python tests/trainers/_trainer_lm_script.py RUN_DIR [--kill-at-batch N] [--resume]

bf16 compute, EMA weights, parameter groups (no decay on biases, norms and embeddings),
gradient checkpointing, the best checkpoint, bucketed token batches with padding masks, and
reduce-on-plateau. ``--kill-at-batch N`` SIGKILLs the process when it takes its N-th batch.
At the end it writes the final weights to ``RUN_DIR.weights.safetensors``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--kill-at-batch", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import mlx.core as mx
    import mlx.optimizers as optim
    from helpers_trainer import TinyLM, token_sequences
    from mlx.utils import tree_flatten

    from mlx_schedules import cosine_decay, schedule_hyperparameters, warmup
    from trainers import (
        ReduceLROnPlateau,
        SequenceBatches,
        Trainer,
        causal_lm_loss,
        tokens_in,
        weight_decay_groups,
    )

    class Killing(SequenceBatches):
        taken = 0

        def epoch(self, e, start=0):
            for batch in super().epoch(e, start):
                Killing.taken += 1
                if Killing.taken == args.kill_at_batch:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield batch

    steps = 12
    mx.random.seed(0)
    model = TinyLM()
    decayed = optim.AdamW(learning_rate=warmup(cosine_decay(3e-2, steps - 3), 3),
                          weight_decay=0.1)
    schedule_hyperparameters(decayed, beta1=cosine_decay(0.9, steps, 0.8))
    plain = optim.AdamW(learning_rate=cosine_decay(1e-2, steps), weight_decay=0.0)
    opt = weight_decay_groups(model, decayed, plain)
    train = Killing(token_sequences(48), 8, buckets=16, max_length=40, seed=3,
                    backend="numpy")
    valid = SequenceBatches(token_sequences(16, seed=9), 8, buckets=16, max_length=40,
                            shuffle=False, backend="numpy")
    trainer = Trainer(model, causal_lm_loss, opt, train, run_dir=args.run_dir, max_steps=steps,
                      eval_data=valid, eval_every=4, checkpoint_every=4, log_every=3,
                      report_every=0, precision="bfloat16", ema=0.9, grad_checkpoint=True,
                      keep_best=("ema_eval_loss", "min"), tokens=tokens_in, seed=5,
                      callbacks=[ReduceLROnPlateau(opt, patience=0, factor=0.5)])
    trainer.fit(resume=args.resume)
    mx.save_safetensors(args.run_dir + ".weights.safetensors",
                        dict(tree_flatten(model.parameters())))


if __name__ == "__main__":
    main()
