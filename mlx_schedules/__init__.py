"""mlx_schedules: learning-rate and hyperparameter schedules as compiled MLX functions.

Every schedule is a callable of the optimizer's step counter returning a float32
``mx.array``. Pass one as ``learning_rate=`` to any ``mlx.optimizers`` optimizer:

    >>> import mlx.optimizers as optim
    >>> from mlx_schedules import one_cycle
    >>> opt = optim.SGD(learning_rate=one_cycle(0.1, total_steps=1000))
    >>> opt.learning_rate
    array(0.004, dtype=float32)

Ranges. Real parameters, and the values a schedule reaches, are float32 numbers (at most
about 3.4e38 in magnitude); integer parameters and steps run from 0 to ``2**62``, which
keeps every integer formed from them inside int64. Factories reject what falls outside,
naming the parameter. A step beyond ``2**62`` given as an ``mx.array`` (a ``uint64`` up
to ``2**64 - 1`` included) saturates to ``2**62``, where a schedule that is not periodic
holds its final value; given as a Python int or host array it raises ``ValueError``.
"""

from .base import Schedule, as_steps
from .compose import join_schedules, multiply, warmup, warmup_stable_decay
from .config import from_config, schedule_names, to_config
from .cyclic import cosine_restarts, cyclic_exponential_decay, cyclic_lr, cyclic_momentum
from .decay import (
    constant,
    cosine_decay,
    exponential_decay,
    inverse_sqrt,
    inverse_time_decay,
    linear_schedule,
    multistep_decay,
    piecewise_constant,
    piecewise_interpolate,
    polynomial_decay,
    step_decay,
    tanh_decay,
)
from .hyperparams import schedule_hyperparameters, supported_hyperparameters
from .noise import with_noise
from .one_cycle import one_cycle, one_cycle_momentum
from .power import power_schedule
from .sweep import lr_range_test, range_sweep

__version__ = "0.1.0"

__all__ = [
    "Schedule",
    "as_steps",
    # MLX drop-ins
    "exponential_decay",
    "step_decay",
    "cosine_decay",
    "linear_schedule",
    "join_schedules",
    # cyclic exponential decay and the 1-cycle policy
    "cyclic_exponential_decay",
    "one_cycle",
    "one_cycle_momentum",
    # cyclical and restarts
    "cyclic_lr",
    "cyclic_momentum",
    "cosine_restarts",
    # other families
    "constant",
    "multistep_decay",
    "polynomial_decay",
    "inverse_time_decay",
    "piecewise_constant",
    "warmup",
    "warmup_stable_decay",
    "power_schedule",
    # more shapes
    "inverse_sqrt",
    "tanh_decay",
    "piecewise_interpolate",
    "multiply",
    "with_noise",
    "range_sweep",
    "lr_range_test",
    # beyond the learning rate
    "schedule_hyperparameters",
    "supported_hyperparameters",
    # schedules as data
    "to_config",
    "from_config",
    "schedule_names",
]

# Renamed module, still importable (with a DeprecationWarning): mlx_schedules.range_test.
from . import sweep as _sweep  # noqa: E402
from ._aliases import register_alias as _register_alias  # noqa: E402

_register_alias(__name__ + ".range_test", _sweep, ("lr_range_test", "range_sweep", "SWEEP_MODES"))
