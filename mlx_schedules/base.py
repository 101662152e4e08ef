"""The ``Schedule`` type: a compiled function of the optimizer's step counter.

A schedule's body is written once, as ``mlx.core`` operations on an ``int64`` array of
steps that is already clamped to ``>= 0``. ``Schedule`` adds what every schedule needs:
the step conversions of the contract, one ``mx.compile`` of the body, vectorised
evaluation into NumPy, and a plain-data description (see :mod:`mlx_schedules.config`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import mlx.core as mx
import numpy as np

from .checks import MAX_STEP, MAX_STEP_TEXT

StepFunction = Callable[[mx.array], mx.array]

# How deeply schedules may nest in a config (to_config and from_config): real
# compositions are a few levels deep; the limit keeps a hostile or generated config from
# exhausting Python's stack.
MAX_CONFIG_DEPTH = 64

_MAX_STEP_U64 = mx.array(MAX_STEP, dtype=mx.uint64)
_MAX_STEP_I64 = mx.array(MAX_STEP, dtype=mx.int64)

# Evaluating many steps at once: below this many, eager ops (no compile to pay for);
# from it on, a compiled pass in fixed-size chunks, so that a billion-step run does not
# allocate gigabytes on the device.
_COMPILE_FROM = 1 << 17
_EVAL_CHUNK = 1 << 20


def as_steps(step: Any) -> mx.array:
    """Convert what an optimizer (or a user) passes as a step into an ``int64`` array.

    Accepts a Python int, an integer ``mx.array`` of any dtype (the optimizer passes a
    0-d ``uint64``), or a sequence / NumPy array of integers. Signed arithmetic is used
    downstream so that ``t - boundary`` never wraps around the way ``uint64`` does.

    Steps range over ``0 .. 2**62`` (``MAX_STEP``), which leaves every integer the
    schedules form from a step inside int64:

    - an ``mx.array`` step is *saturated*: negative steps count as 0 and steps beyond
      ``2**62`` (a ``uint64`` up to ``2**64 - 1`` included) count as ``2**62``, where a
      schedule that is not periodic holds its final value. Nothing can be raised from
      inside a compiled step, and this costs one ``minimum`` on the optimizer's counter;
    - a Python int, a NumPy integer or a host sequence of them is checked instead:
      a negative Python int or one beyond ``2**62`` raises ``ValueError`` (negative
      entries of a host array are clamped to 0, as for arrays).

    Example:
        >>> import mlx.core as mx
        >>> as_steps(mx.array(3, dtype=mx.uint64))
        array(3, dtype=int64)
        >>> as_steps([0, 5])
        array([0, 5], dtype=int64)
        >>> as_steps(mx.array(0, dtype=mx.uint64) - 1)   # 2**64 - 1 saturates
        array(4611686018427387904, dtype=int64)
    """
    if isinstance(step, mx.array):
        if not mx.issubdtype(step.dtype, mx.integer):
            raise TypeError(f"step must be an integer array, got dtype {step.dtype}")
        if step.dtype == mx.uint64:   # the optimizer's counter: already >= 0
            return mx.minimum(step, _MAX_STEP_U64).astype(mx.int64)
        if step.dtype == mx.int64:
            return mx.minimum(mx.maximum(step, 0), _MAX_STEP_I64)
        # Narrower integer types cannot exceed MAX_STEP: only negatives need clamping.
        if mx.issubdtype(step.dtype, mx.unsignedinteger):
            return step.astype(mx.int64)
        return mx.maximum(step.astype(mx.int64), 0)
    if isinstance(step, bool):
        raise TypeError(f"step must be an integer, got {step!r}")
    if isinstance(step, (int, np.integer)):
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if step > MAX_STEP:
            raise ValueError(f"step must be <= {MAX_STEP_TEXT} (the step range schedules "
                             f"support), got {step}")
        return mx.array(int(step), dtype=mx.int64)
    return mx.array(host_steps(step, "step"))


def host_steps(steps: Any, name: str) -> np.ndarray:
    """Host integers as an int64 NumPy array, negatives clamped to 0; raises beyond
    ``MAX_STEP`` (``2**62``) rather than wrapping or saturating silently."""
    array = np.asarray(steps)
    if array.dtype == object or (array.dtype.kind not in "iu"
                                 and not isinstance(steps, np.ndarray)):
        # Python ints beyond int64 make NumPy pick float64 or object: check them one by one.
        flat = np.asarray(steps, dtype=object).reshape(-1).tolist()
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                   for v in flat):
            raise TypeError(f"{name} must be an integer or an array of integers, "
                            f"got {steps!r}")
        largest = max((int(v) for v in flat), default=0)
        if largest > MAX_STEP:
            raise ValueError(f"{name} must be <= {MAX_STEP_TEXT} (the step range schedules "
                             f"support), got {largest}")
        # (negatives count as 0, however large)
        array = np.array([max(int(v), -1) for v in flat], dtype=np.int64).reshape(array.shape)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer or an array of integers, got {steps!r}")
    if array.size and array.max() > MAX_STEP:
        raise ValueError(f"{name} must be <= {MAX_STEP_TEXT} (the step range schedules "
                         f"support), got {array.max()}")
    return np.maximum(array.astype(np.int64), 0)


class Schedule:
    """A hyperparameter schedule: ``schedule(step) -> mx.array`` (float32).

    Instances are built by the factory functions of this package (``one_cycle``,
    ``cosine_decay``, ...), not directly. They can be passed as ``learning_rate=`` to any
    ``mlx.optimizers`` optimizer, called eagerly or inside ``mx.compile``, evaluated over
    many steps with :meth:`values`, and described as plain data with :meth:`to_config`.

    Calling a schedule records a handful of ``mlx.core`` operations on the step, with no
    host round trip. Inside a compiled training step they are compiled and fused with the
    step. Outside one they run as ordinary lazy MLX operations, as MLX's own schedules do:
    a stand-alone compile of a 0-d function saves little, and on Linux's CPU backend each
    new compile runs a C++ compiler for seconds. :attr:`compiled` is the stand-alone
    ``mx.compile`` of the same function, for those who want it.

    ``name`` is the factory's name and ``depth`` how many schedules deep the composition
    is (1 for a plain schedule; a config holds at most ``MAX_CONFIG_DEPTH``, 64).
    ``max_magnitude`` is an upper bound on ``|schedule(t)|`` over every step ``0 .. 2**62``,
    worked out from the parameters when the schedule was built (``None`` where no bound is
    known: a schedule holding a user's function, or a product with a foreign callable).
    :func:`~mlx_schedules.multiply` and :func:`~mlx_schedules.with_noise` use it to refuse,
    when they are built, values beyond float32's range.

    Example:
        >>> from mlx_schedules import linear_schedule
        >>> lr = linear_schedule(1.0, 0.0, steps=4)
        >>> lr(2)
        array(0.5, dtype=float32)
        >>> lr.values(6).tolist()
        [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """

    def __init__(self, body: StepFunction, name: str, config: dict[str, Any] | None):
        # The registry (mlx_schedules.config.register) builds every schedule: ``body`` is
        # what the factory returned, ``name`` and ``config`` its name and bound arguments
        # (``None`` for a schedule that cannot be described as data).
        self._body = body
        self.name = name
        self._config = config
        # How many schedules deep this composition is: configs hold MAX_CONFIG_DEPTH.
        self.depth: int = 1 + max((inner.depth for inner in _schedules_in(config)), default=0)
        self.max_magnitude: float | None = getattr(body, "max_magnitude", None)
        self._compiled: StepFunction | None = None

    def raw(self, steps: mx.array) -> mx.array:
        """The uncompiled body on ``int64`` steps ``>= 0`` (see :func:`as_steps`).

        Compositions call this, so that the whole composition records one graph.
        """
        value = self._body(steps)
        # An eager call costs per recorded op, so skip the cast when it would be a no-op.
        return value if value.dtype == mx.float32 else value.astype(mx.float32)

    def __call__(self, step: Any) -> mx.array:
        return self.raw(as_steps(step))

    @property
    def compiled(self) -> Callable[[Any], mx.array]:
        """The schedule compiled on its own with ``mx.compile`` (built on first use).

        Example:
            >>> from mlx_schedules import cosine_decay
            >>> lr = cosine_decay(1.0, 4)
            >>> lr.compiled(2)
            array(0.5, dtype=float32)
        """
        compiled = self._compiled_raw()
        return lambda step: compiled(as_steps(step))

    def _compiled_raw(self) -> StepFunction:
        if self._compiled is None:
            self._compiled = mx.compile(self.raw)
        return self._compiled

    def values(self, steps: int | Iterable[int] | np.ndarray) -> np.ndarray:
        """Evaluate the schedule at many steps at once, returning float32 NumPy.

        ``steps`` is a count ``n`` (meaning steps ``0 .. n-1``), a ``range`` or an array
        of step numbers.

        Example:
            >>> from mlx_schedules import step_decay
            >>> step_decay(1.0, 0.5, step_size=2).values(range(0, 8, 2)).tolist()
            [1.0, 0.5, 0.25, 0.125]
        """
        if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
            steps = np.arange(int(steps), dtype=np.int64)
        elif isinstance(steps, range):
            steps = np.arange(steps.start, steps.stop, steps.step, dtype=np.int64)
        steps = host_steps(steps, "steps")
        flat = steps.reshape(-1)
        out = np.empty(flat.shape, dtype=np.float32)
        if flat.size < _COMPILE_FROM:
            out[:] = np.asarray(self.raw(mx.array(flat)))
            return out.reshape(steps.shape)
        # Many steps: the compiled function fuses the whole body into one pass over memory.
        # Every chunk is padded to one shape, so it compiles once.
        compiled = self._compiled_raw()
        for start in range(0, flat.size, _EVAL_CHUNK):
            chunk = flat[start:start + _EVAL_CHUNK]
            padded = np.zeros(_EVAL_CHUNK, dtype=np.int64)
            padded[:chunk.size] = chunk
            out[start:start + chunk.size] = np.asarray(compiled(mx.array(padded)))[:chunk.size]
        return out.reshape(steps.shape)

    def to_config(self) -> dict[str, Any]:
        """A JSON-safe dict from which :func:`mlx_schedules.from_config` rebuilds this."""
        if self._config is None:
            raise ValueError(f"schedule {self.name!r} was not built from registered parts "
                             "and cannot be described as data")
        if self.depth > MAX_CONFIG_DEPTH:
            raise ValueError(f"schedule {self.name!r} nests {self.depth} schedules deep; a "
                             f"config holds at most {MAX_CONFIG_DEPTH} levels")
        for key, value in self._config.items():
            if callable(value) and not isinstance(value, Schedule) and key not in (
                    "schedule", "schedules"):
                raise ValueError(f"{self.name}: {key}={value!r} is a function, not a schedule "
                                 "of this package, and cannot be described as data")
        return _jsonable({"name": self.name, **self._config})

    def __repr__(self) -> str:
        if self._config is None:
            return f"Schedule({self.name})"
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return f"{self.name}({args})"


def _schedules_in(config: dict[str, Any] | None) -> Iterable[Schedule]:
    """The schedules among a config's arguments (directly or in a list)."""
    for value in (config or {}).values():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, Schedule):
                yield item


def _jsonable(value: Any) -> Any:
    if isinstance(value, Schedule):
        return value.to_config()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if callable(value):
        # A foreign callable (an MLX schedule, a lambda) has no description as data;
        # say so here rather than let json.dumps fail later on the config.
        raise ValueError(f"{value!r} is not a schedule of this package and cannot be "
                         "described as data; build the composition from mlx_schedules "
                         "schedules to save it")
    return value


def bounded(body: StepFunction, magnitude: float | None) -> StepFunction:
    """Record on a factory's ``body`` an upper bound on ``|value|`` over every step
    ``0 .. 2**62`` (``None``: unknown); :class:`Schedule` exposes it as ``max_magnitude``.

    Example:
        >>> import mlx.core as mx
        >>> body = bounded(lambda t: mx.full(t.shape, -2.0), 2.0)
        >>> body.max_magnitude
        2.0
    """
    # A function's attributes live in its __dict__ (typeshed declares none on Callable).
    body.__dict__["max_magnitude"] = None if magnitude is None else float(magnitude)
    return body


def magnitude_of(schedule: Any) -> float | None:
    """``schedule.max_magnitude`` for a schedule of this package, ``None`` for any other
    callable (an MLX schedule, a lambda: nothing is known of its values)."""
    return schedule.max_magnitude if isinstance(schedule, Schedule) else None


def body_of(schedule: Any) -> StepFunction:
    """The function of ``int64`` steps behind a schedule or any step callable.

    Our schedules contribute their uncompiled body, so that a composition compiles as one
    graph. Other callables (MLX's own schedules, a lambda) are called as they are.
    """
    if isinstance(schedule, Schedule):
        return schedule.raw
    if callable(schedule):
        return lambda steps: mx.array(schedule(steps)).astype(mx.float32)
    raise TypeError(f"expected a schedule (a callable of the step), got {schedule!r}")
