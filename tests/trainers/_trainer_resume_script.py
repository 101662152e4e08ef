"""A small training run that can SIGKILL itself, for tests/trainers/test_checkpoint.py.

    python tests/trainers/_trainer_resume_script.py RUN_DIR
        [--kill-at-batch N] [--kill-at-checkpoint S] [--resume]

``--kill-at-batch N`` kills the process when it fetches its N-th training batch (counted in
this process, from 1), i.e. in the middle of an update; ``--kill-at-checkpoint S`` kills it
right after the checkpoint of step S is written.
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
    parser.add_argument("--kill-at-checkpoint", type=int, default=-1)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import mlx.core as mx
    import mlx.optimizers as optim
    from helpers_trainer import MLP, classification_data, xent

    from trainers import ArrayBatches, ReduceLROnPlateau, Trainer, accuracy

    total = 16
    x, y = classification_data(96)
    data = ArrayBatches((x, y), 8, seed=5)
    fetched = [0]

    class KillingData:
        """The same batches; SIGKILL when the N-th one is fetched."""

        def __len__(self):
            return len(data)

        def epoch(self, e):
            for batch in data.epoch(e):
                fetched[0] += 1
                if fetched[0] == args.kill_at_batch:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield batch

    def kill_on_checkpoint(info):
        if info["event"] == "checkpoint" and info["step"] == args.kill_at_checkpoint:
            os.kill(os.getpid(), signal.SIGKILL)

    mx.random.seed(0)
    model = MLP(dropout=0.2)
    try:
        from mlx_schedules import one_cycle, one_cycle_momentum, schedule_hyperparameters

        opt = optim.SGD(learning_rate=one_cycle(0.3, total), momentum=0.9)
        schedule_hyperparameters(opt, momentum=one_cycle_momentum(total))
    except ImportError:
        opt = optim.SGD(learning_rate=optim.cosine_decay(0.3, total), momentum=0.9)
    plateau = ReduceLROnPlateau(opt, "eval_accuracy", mode="max", patience=0, factor=0.5)
    trainer = Trainer(
        model, xent, opt, KillingData(), run_dir=args.run_dir, max_steps=total, grad_accum=2,
        eval_data=ArrayBatches((x, y), 48, shuffle=False), metrics={"accuracy": accuracy},
        eval_every=4, checkpoint_every=5, keep_checkpoints=2, log_every=3, report_every=0,
        seed=11, callbacks=[plateau, kill_on_checkpoint],
    )
    trainer.fit(resume=args.resume)


if __name__ == "__main__":
    main()
