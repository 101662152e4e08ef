"""Exceptions raised by the trainer."""

from __future__ import annotations


class NonFiniteError(FloatingPointError):
    """The loss or the gradient norm of a training step was NaN or infinite.

    Attributes:
        step: the first optimizer step (0-based, the schedule's argument) whose loss or
            gradient norm was not finite.
        loss: the loss of that step, as a Python float.
        grad_norm: the global gradient norm of that step, as a Python float.
    """

    def __init__(self, step: int, loss: float, grad_norm: float, checkpoint: str | None,
                 detail: str | None = None):
        self.step = step
        self.loss = loss
        self.grad_norm = grad_norm
        self.checkpoint = checkpoint
        where = f"; last good checkpoint: {checkpoint}" if checkpoint else "; no checkpoint saved"
        what = detail or f"loss={loss}, grad_norm={grad_norm}"
        super().__init__(f"non-finite value at step {step}: {what}{where}")


class CheckpointError(ValueError):
    """A checkpoint is corrupt, incomplete, or does not match the model, optimizer or run."""
