"""Exceptions raised by the trainer."""

from __future__ import annotations


class NonFiniteError(FloatingPointError):
    """The loss or the gradient norm of a training step was NaN or infinite.

    Attributes:
        step: the first optimizer step (0-based, the schedule's argument) whose loss or
            gradient norm was not finite.
        loss: the loss of that step, as a Python float.
        grad_norm: the global gradient norm of that step, as a Python float.
        checkpoint: the newest checkpoint whose weights are known to be finite (a resume
            point), or ``None``.

    A checkpoint is named as "the last good checkpoint" only when its weights are known to be
    finite: pass ``checkpoint_finite=False`` for one saved without a check of its weights; the
    message then says so and :attr:`checkpoint` is ``None``.

    Example:
        >>> str(NonFiniteError(7, float("nan"), 1.0, "ckpt/step_5"))
        'non-finite value at step 7: loss=nan, grad_norm=1.0; last good checkpoint: ckpt/step_5'
        >>> NonFiniteError(7, float("nan"), 1.0, "ck", checkpoint_finite=False).checkpoint is None
        True
    """

    def __init__(self, step: int, loss: float, grad_norm: float, checkpoint: str | None,
                 detail: str | None = None, *, checkpoint_finite: bool = True):
        self.step = step
        self.loss = loss
        self.grad_norm = grad_norm
        self.checkpoint = checkpoint if checkpoint_finite else None
        if checkpoint and checkpoint_finite:
            where = f"; last good checkpoint: {checkpoint}"
        elif checkpoint:
            where = (f"; no checkpoint is known to hold finite weights (the newest, {checkpoint}, "
                     "was saved without checking them)")
        else:
            where = "; no checkpoint saved"
        what = detail or f"loss={loss}, grad_norm={grad_norm}"
        super().__init__(f"non-finite value at step {step}: {what}{where}")


class CheckpointError(ValueError):
    """A checkpoint is corrupt, incomplete, or does not match the model, optimizer or run."""


class CheckpointFileMissing(CheckpointError, FileNotFoundError):
    """A file a checkpoint needs (or the manifest naming its files) is missing.

    Both a :class:`CheckpointError` and a ``FileNotFoundError``, so either ``except`` works.
    """


class StorageError(OSError):
    """A file operation in a run directory failed; the message names the path and the cause.

    ``errno`` is the operating system's error number (``None`` when the cause is inferred,
    e.g. from MLX's "Unable to write" errors), ``filename`` the path.
    """

    def __init__(self, errno: int | None, message: str, path: str | None = None):
        super().__init__(errno, message, path)

    def __str__(self) -> str:
        return str(self.strerror)


class UnsafePathError(StorageError):
    """A path inside a run directory is a symbolic link (or not the kind of file expected).

    Files inside a run directory are never written through a symbolic link: the link could
    point anywhere, and a write would overwrite a file outside the run.
    """


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :meth:`trainers.Trainer.fit` cleanly at a step boundary.

    The rows of every finished update are in the log and, unless the run saves no
    checkpoints, a checkpoint holds the step it stopped at: ``fit(resume=True)`` continues
    the run exactly. A ``KeyboardInterrupt``, so a script that does not catch it stops as
    Ctrl-C always stops Python.

    Attributes:
        step: the updates done when the run stopped.
        checkpoint: the newest checkpoint (the resume point), or ``None`` when none was saved.
        checkpoint_step: that checkpoint's step, or ``None``.

    Example:
        >>> str(TrainingInterrupted(7, "run/checkpoints/step_00000007", 7))
        'training interrupted after 7 updates; checkpoint run/checkpoints/step_00000007 \
holds step 7'
    """

    def __init__(self, step: int, checkpoint: str | None, checkpoint_step: int | None):
        self.step, self.checkpoint, self.checkpoint_step = step, checkpoint, checkpoint_step
        where = (f"checkpoint {checkpoint} holds step {checkpoint_step}" if checkpoint
                 else "no checkpoint was saved")
        super().__init__(f"training interrupted after {step} updates; {where}")
