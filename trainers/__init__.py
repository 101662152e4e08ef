"""A training loop for MLX: one compiled step, per-step logs, exact resume, data parallel.

The public surface:

- :class:`Trainer` — the loop (``Trainer(model, loss_fn, optimizer, data, ...).fit()``);
- :class:`ArrayBatches`, :func:`load_arrays` — seeded, resumable batches from arrays or
  mlx-data buffers;
- :func:`accuracy` — an eval metric; :func:`check_labels` — a one-time check of class labels;
- :class:`EarlyStopping`, :class:`ReduceLROnPlateau`, :data:`STOP` — callbacks;
- :func:`lr_range_test`, :class:`RangeTestResult` — the learning-rate range test;
- :class:`NonFiniteError`, :class:`CheckpointError` — errors;
- :func:`list_checkpoints`, :func:`load_checkpoint` — checkpoint access;
- :func:`find_openblas` — the fast BLAS path (``mlx-fastblas`` console script).
"""

from .blas import find_openblas
from .callbacks import STOP, EarlyStopping, ReduceLROnPlateau
from .checkpoint import list_checkpoints, load_checkpoint
from .data import ArrayBatches, load_arrays
from .errors import CheckpointError, NonFiniteError
from .lr_finder import RangeTestResult, lr_range_test
from .metrics import accuracy, check_labels
from .optimizers import scheduled_hyperparameters, weight_decay_groups
from .trainer import Trainer

__all__ = [
    "STOP",
    "ArrayBatches",
    "CheckpointError",
    "EarlyStopping",
    "NonFiniteError",
    "RangeTestResult",
    "ReduceLROnPlateau",
    "Trainer",
    "accuracy",
    "check_labels",
    "find_openblas",
    "list_checkpoints",
    "load_arrays",
    "load_checkpoint",
    "lr_range_test",
    "scheduled_hyperparameters",
    "weight_decay_groups",
]
