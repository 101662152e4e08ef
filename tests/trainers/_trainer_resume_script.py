"""A small training run that can SIGKILL itself, for the checkpoint tests.

    python tests/trainers/_trainer_resume_script.py RUN_DIR [RUN_DIR...]
        [--kill-at-batch N] [--kill-at-checkpoint S] [--resume]
        [--count-ops S] [--kill-at-op K --ops-of S] [--overwrite]

``--kill-at-batch N`` kills the process when it fetches its N-th training batch (counted in
this process, from 1), i.e. in the middle of an update; ``--kill-at-checkpoint S`` kills it
right after the checkpoint of step S is written.

File operations (tests/trainers/test_checkpoint_faults.py): every call of ``os.open``,
``os.write``, ``os.fsync``, ``os.close``, ``os.replace``, ``os.rename``, ``os.mkdir``,
``os.rmdir``, ``os.unlink``, ``os.remove``, ``os.ftruncate`` and ``os.truncate`` made while the
checkpoint of step S is being saved (from the last training row before it until the
``checkpoint`` event: log sync, save, pruning) is counted. ``--count-ops S`` prints the count
and the operations' names as one JSON line at the end; ``--kill-at-op K --ops-of S`` kills
the process inside the K-th of them (from 1): a write is cut in the middle (half its bytes
written), any other operation is killed just before it runs.

``--ops-of -1`` (``--count-ops -1``) counts instead the operations of ``fit(overwrite=True)``
replacing an old run in RUN_DIR, up to the new run's ``start`` event.

With several run directories (only with ``--resume`` or ``--overwrite`` and no kill option)
each is run in turn in this one process, which saves the interpreter's start-up per
directory.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

# --ops-of -1 / --count-ops -1: the operations of fit(overwrite=True) replacing an old run
# (and starting the new one), up to the trainer's start event.
OVERWRITE = -1
_OPS = ("open", "write", "fsync", "close", "replace", "rename", "mkdir", "rmdir", "unlink",
        "remove", "ftruncate", "truncate")


class FileOps:
    """Counts (and optionally kills inside) the os-level file operations while ``active``."""

    def __init__(self, kill_at: int = 0):
        self.kill_at = kill_at
        self.active = False
        self.names: list[str] = []
        self._kill = os.kill
        for name in _OPS:
            setattr(os, name, self._wrap(name, getattr(os, name)))

    def _wrap(self, name, fn):
        def wrapper(*args, **kwargs):
            if self.active:
                self.names.append(name)
                if len(self.names) == self.kill_at:
                    if name == "write":  # a kill in the middle of the write
                        data = memoryview(args[1]).cast("B")
                        fn(args[0], data[: len(data) // 2])
                    self._kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)

        return wrapper


def train(run_dir, args, ops):
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

    def watch_ops(info):
        if ops is None:
            return
        if args.ops_of == OVERWRITE:  # counted from fit's start until the run is under way
            if info["event"] == "start":
                ops.active = False
            return
        if info["event"] == "train" and info["step"] == args.ops_of - 1:
            ops.active = True
        elif info["event"] == "checkpoint" and info["step"] == args.ops_of:
            ops.active = False

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
        model, xent, opt, KillingData(), run_dir=run_dir, max_steps=total, grad_accum=2,
        eval_data=ArrayBatches((x, y), 48, shuffle=False), metrics={"accuracy": accuracy},
        eval_every=4, checkpoint_every=5, keep_checkpoints=2, log_every=3, report_every=0,
        seed=11, callbacks=[plateau, kill_on_checkpoint, watch_ops],
    )
    if ops is not None and args.ops_of == OVERWRITE:
        ops.active = True
    trainer.fit(resume=args.resume, overwrite=args.overwrite)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", nargs="+")
    parser.add_argument("--kill-at-batch", type=int, default=0)
    parser.add_argument("--kill-at-checkpoint", type=int, default=-1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--count-ops", type=int, default=0, metavar="S")
    parser.add_argument("--kill-at-op", type=int, default=0, metavar="K")
    parser.add_argument("--ops-of", type=int, default=0, metavar="S")
    args = parser.parse_args()
    if args.count_ops:
        args.ops_of = args.count_ops
    if args.ops_of == OVERWRITE:
        args.overwrite = True
    if args.kill_at_op and not args.ops_of:
        parser.error("--kill-at-op needs --ops-of S")
    kills = args.kill_at_batch or args.kill_at_checkpoint >= 0 or args.kill_at_op
    if len(args.run_dir) > 1 and (kills or not (args.resume or args.overwrite) or args.ops_of):
        parser.error("several run directories only with --resume or --overwrite and no kill "
                     "or count option")

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    ops = FileOps(args.kill_at_op) if args.ops_of else None
    for run_dir in args.run_dir:
        train(run_dir, args, ops)
    if args.count_ops:
        print(json.dumps({"count": len(ops.names), "ops": ops.names}))


if __name__ == "__main__":
    main()
