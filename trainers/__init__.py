"""A training loop for MLX: one compiled step, per-step logs, exact resume, data parallel.

The public surface:

- :class:`Trainer` — the loop (``Trainer(model, loss_fn, optimizer, data, ...).fit()``);
- :class:`ArrayBatches`, :func:`load_arrays` — seeded, resumable batches from arrays or
  mlx-data buffers; :class:`SequenceBatches`, :func:`read_byte_documents` — token sequences
  in length buckets, with padding the losses ignore;
- :func:`accuracy` — an eval metric; :func:`check_labels` — a one-time check of class labels;
  :func:`causal_lm_loss`, :func:`masked_cross_entropy`, :func:`bits_per_byte`,
  :func:`tokens_in`, :func:`evaluate_lm` — language-model losses and metrics;
- :class:`EarlyStopping`, :class:`ReduceLROnPlateau`, :data:`STOP`, :data:`PAUSE` — callbacks;
  :class:`TensorBoard`, :class:`MLflow`, :class:`WandB` — trackers (callbacks writing every column);
- :func:`weight_decay_groups`, :func:`scheduled_hyperparameters` — parameter groups;
- :func:`lr_range_test`, :class:`RangeTestResult`, :func:`suggest_lrs` — the learning-rate
  range test; :func:`audit_run`, :class:`AuditReport` — check a run's logged rates against its
  schedules; :class:`ScheduleFreeSGD`, :class:`ScheduleFreeAdamW` — schedule-free baselines;
- :class:`NonFiniteError`, :class:`CheckpointError`, :class:`StorageError`,
  :class:`UnsafePathError`, :class:`RunDirectoryBusy` — errors; :class:`TrainingInterrupted`
  — Ctrl-C stopped ``fit`` cleanly (a checkpoint to resume from);
- :func:`list_checkpoints`, :func:`load_checkpoint`, :func:`verify_checkpoint`,
  :func:`find_resumable`, :func:`read_checkpoint_arrays` — checkpoint access;
- :func:`find_openblas` — the fast BLAS path (``mlx-fastblas`` console script).
"""

from mlx_schedules import __version__ as __version__  # one distribution, one version

from .audit import AuditReport, audit_run
from .blas import find_openblas
from .callbacks import PAUSE, STOP, EarlyStopping, MLflow, ReduceLROnPlateau, TensorBoard, WandB
from .checkpoint import (
    find_resumable,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint_arrays,
    verify_checkpoint,
)
from .data import ArrayBatches, load_arrays
from .errors import (
    CheckpointError,
    NonFiniteError,
    StorageError,
    TrainingInterrupted,
    UnsafePathError,
)
from .losses import bits_per_byte, causal_lm_loss, evaluate_lm, masked_cross_entropy, tokens_in
from .lr_finder import RangeTestResult, lr_range_test, suggest_lrs
from .metrics import accuracy, check_labels
from .optimizers import scheduled_hyperparameters, weight_decay_groups
from .run_dir import RunDirectoryBusy
from .schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD
from .sequences import SequenceBatches, read_byte_documents
from .trainer import Trainer

__all__ = [
    "PAUSE",
    "STOP",
    "AuditReport",
    "ArrayBatches",
    "CheckpointError",
    "EarlyStopping",
    "MLflow",
    "NonFiniteError",
    "RangeTestResult",
    "ReduceLROnPlateau",
    "RunDirectoryBusy",
    "ScheduleFreeAdamW",
    "ScheduleFreeSGD",
    "SequenceBatches",
    "StorageError",
    "TensorBoard",
    "Trainer",
    "TrainingInterrupted",
    "UnsafePathError",
    "WandB",
    "accuracy",
    "audit_run",
    "bits_per_byte",
    "causal_lm_loss",
    "check_labels",
    "evaluate_lm",
    "find_openblas",
    "find_resumable",
    "list_checkpoints",
    "load_arrays",
    "load_checkpoint",
    "lr_range_test",
    "masked_cross_entropy",
    "read_byte_documents",
    "read_checkpoint_arrays",
    "scheduled_hyperparameters",
    "suggest_lrs",
    "tokens_in",
    "verify_checkpoint",
    "weight_decay_groups",
]

# Renamed modules, still importable (with a DeprecationWarning): trainers.logging shadowed the
# standard library's logging, trainers.range_test looked like a test module to test tools.
from mlx_schedules._aliases import register_alias as _register_alias  # noqa: E402

from . import lr_finder as _lr_finder  # noqa: E402
from . import runlog as _runlog  # noqa: E402

_register_alias("trainers.logging", _runlog,
                ("ConsoleReport", "ProgressBar", "RunLog", "format_value"))
_register_alias("trainers.range_test", _lr_finder,
                ("RangeTestResult", "lr_range_test", "smooth_losses"))
