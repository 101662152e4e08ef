"""A short run that holds its run directory a while, for tests/trainers/test_run_dir.py.

    python tests/trainers/_trainer_hold_script.py RUN_DIR STEPS SLEEP [--resume] [--hold]

It writes ``RUN_DIR.started`` (beside the run directory) once the trainer owns the directory,
then sleeps ``SLEEP`` seconds in every training row's callback; with ``--hold`` it also waits
at its first training row until ``RUN_DIR.release`` exists, so that a second process can try
the directory while this one certainly still trains. Exit status 3: the directory was busy.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    run_dir, steps, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    resume = "--resume" in sys.argv
    hold = "--hold" in sys.argv
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import mlx.core as mx
    import mlx.optimizers as optim
    from helpers_trainer import MLP, classification_data, xent

    from trainers import ArrayBatches, Trainer
    from trainers.run_dir import RunDirectoryBusy

    def slow(event: dict) -> None:
        if event["event"] == "start":
            with open(run_dir + ".started", "w") as f:
                f.write(str(os.getpid()))
        elif event["event"] == "train":
            while hold and not os.path.exists(run_dir + ".release"):
                time.sleep(0.02)
            time.sleep(pause)

    mx.random.seed(0)
    x, y = classification_data(64)
    trainer = Trainer(MLP(hidden=8), xent, optim.SGD(learning_rate=0.1),
                      ArrayBatches((x, y), 16, seed=1), run_dir=run_dir, max_steps=steps,
                      checkpoint_every=5, log_every=1, report_every=0, compile=False,
                      callbacks=[slow])
    try:
        trainer.fit(resume=resume)
    except RunDirectoryBusy as e:
        print(e, file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
