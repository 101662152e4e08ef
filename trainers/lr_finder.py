"""The learning-rate range test (Smith 2017): sweep the rate up, watch the loss, pick a max rate.

The sweep is a :class:`trainers.Trainer` run (same compiled step, same data handling, same
``compile=`` option) with the optimizer's learning-rate schedule temporarily replaced by
:func:`mlx_schedules.range_sweep` and a callback that stops on divergence. The rates recorded
are the trainer's logged rates, read from ``optimizer.state["learning_rate"]``: the rates the
updates actually used.

Suggested rates, each reported (:func:`suggest_lrs`), all read off the smoothed curve:

- ``valley`` (fastai's default rule, and ours): the longest strictly decreasing run of the
  curve, as the longest decreasing subsequence ending at each point; with ``L`` its length and
  ``e`` its (first) end, ``s = e - L`` and the rate at index ``s + floor((e - s)/3) +
  floor((e - s)/6)``, about halfway down the valley. As fastai does, the first tenth of the
  planned sweep and its last 5 points are left out first.
- ``steepest``: where the curve falls fastest per unit of log-rate (the classic choice; on
  short, noisy sweeps its location jumps between runs, a derivative of a noisy curve).
- ``minimum/10``: the rate at the curve's minimum divided by 10.

A peak per schedule family (:func:`schedule_suggestions`), because the right peak depends on
the schedule the rate is for. Each reads the *extremum* ``x`` of the smoothed curve, the rate
at its minimum: the largest rate before the loss stops falling and starts to rise (the
smoothed loss is a running average of recent updates, so its minimum is where the loss at the
current rate climbs back above that average).

- ``cyclical`` (``one_cycle``, ``triangular``): ``x / 3``. Smith 2018 ("A disciplined
  approach to neural network hyper-parameters: part 1", section 4.1): the rate at the
  extremum of the range test "is the largest value that can be used as the learning rate for
  the maximum bound with cyclical learning rates". Read off our smoothed curve (EMA 0.98, a
  200-update sweep) that extremum sits late, about 3 times above the best 1-cycle peak of the
  image comparisons; the factor 3 is our calibration.
- ``constant`` (``constant``, ``power``): ``x / 10``, the ``minimum/10`` rule (fastai's
  ``lr_min``: an order of magnitude below the minimum). Smith (same section): "a smaller value
  will be necessary when choosing a constant learning rate or the network will not begin to
  converge".
- ``decaying`` (``cosine``, ``warmup_cosine``, ``wsd``, ``wsd_sqrt``, ``linear``,
  ``exponential``, ``cyclic_exponential``): the *same mean rate* as the constant rule. A
  decaying schedule spends the run below its peak, on average at the fraction ``m`` of it
  (:data:`MEAN_FRACTIONS`: 0.5 for a cosine or a linear decay to 0, 0.215 for an exponential
  decay to peak/100, 0.875 for WSD with a 20% cooldown...), so its peak is
  ``(x / 10) / m``: ``x / 5`` for a cosine, ``x / 2.15`` for the exponential decay. It is
  capped at ``x / 2`` (:data:`DECAYING_CAP`): the first updates run at the peak, and ``x`` is
  where the loss already rises (the cyclic exponential decay, ``m = 0.113``, takes the cap).
  Matching the mean rate is our rule (for SGD the distance travelled is about the sum of the
  rates); it gives the cosine the ``x / 5`` our first calibration found.
- ``schedule_free``: ``3 x``, above the extremum: schedule-free training takes a large rate
  (Defazio et al. 2024 report its best rates at or above those of a scheduled run; its answer
  is an average of the iterates, which tolerates a rate the raw iterate does not). The factor
  is ours: on the image comparisons its tuned peak sat 3 to 3.6 times above ``x``.

With an adaptive optimizer (Adam, AdamW, ...: ``adaptive=True``) the extremum is no guide: on
the byte-level language model with AdamW the smoothed loss kept falling to a rate about 100
times the tuned peaks (a short sweep's loss falls with training progress, and AdamW's
normalised steps do not blow up where SGD's do). There the base is the ``valley`` rate
(fastai's rule, made for Adam), scaled per kind (:data:`ADAPTIVE_SCALES`): the cyclical
families take the valley itself (their warm-up carries them to it), constant and decaying
schedules half of it (Smith: "a smaller value will be necessary when choosing a constant
learning rate"; the factor 2 is ours, from the byte-level language model, where the valley was
1.8 times the tuned peak of both), and schedule-free ``3 x valley``.

The calibration (ratios to the grid-tuned peaks, accuracy lost, where the rules miss) is in
``docs/GUIDE.md`` ("Choosing a schedule").

Single curves are fragile on noisy data: ``seeds=`` repeats the sweep (same initial weights,
another data order and random key per seed) and reports each rule's median and spread.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten

import mlx_schedules
from mlx_schedules._mlx_compat import remove_schedule, schedules_of, set_schedule
from mlx_schedules.checks import check_choice, check_int, check_real

from .callbacks import STOP
from .checkpoint import _set_leaf
from .data import ArrayBatches
from .errors import NonFiniteError
from .trainer import Trainer

__all__ = ["ADAPTIVE_SCALES", "DECAYING_CAP", "KIND_SCALES", "MEAN_FRACTIONS", "SCHEDULE_KINDS",
           "SUGGESTIONS", "RangeTestResult", "lr_range_test", "is_adaptive",
           "schedule_suggestions", "smooth_losses", "suggest_lrs"]

SUGGESTIONS = ("valley", "steepest", "minimum/10")
#: the peak each kind of schedule takes with SGD: the curve's extremum times ``a / b``
#: (the decaying kind: the constant one's over the family's :data:`MEAN_FRACTIONS`)
KIND_SCALES = {"cyclical": (1, 3), "constant": (1, 10), "schedule_free": (3, 1)}
#: a decaying family's mean rate over a run as a fraction of its peak, at the shapes of
#: :mod:`trainers.experiments` (warm-up 5% of the run; cosine with warm-up down to 10%; WSD and
#: its 1-sqrt form cooling down over the last 20%; exponential decays to peak / 100; CED with
#: 3.5 cycles), computed as the mean of the schedule over 400 updates
MEAN_FRACTIONS = {"cosine": 0.5, "linear": 0.5, "warmup_cosine": 0.547, "wsd": 0.875,
                  "wsd_sqrt": 0.842, "exponential": 0.215, "cyclic_exponential": 0.113}
#: a decaying schedule's peak (SGD) is at most the extremum over this
DECAYING_CAP = 2
#: the peak each kind takes with an adaptive optimizer: the valley rate times this
ADAPTIVE_SCALES = {"cyclical": 1.0, "constant": 0.5, "decaying": 0.5, "schedule_free": 3.0}
#: the schedule families a range test suggests a peak for, and the kind of rule each uses
SCHEDULE_KINDS = {
    "one_cycle": "cyclical", "triangular": "cyclical", "schedule_free": "schedule_free",
    "constant": "constant", "power": "constant",
    "cosine": "decaying", "warmup_cosine": "decaying", "wsd": "decaying", "wsd_sqrt": "decaying",
    "linear": "decaying", "exponential": "decaying", "cyclic_exponential": "decaying",
}


@dataclass
class RangeTestResult:
    """The curve of a range test and the rates read off it.

    Attributes:
        learning_rates: the rate each update used (the first seed's sweep with ``seeds=``).
        losses: the raw training loss of each update.
        smoothed_losses: bias-corrected exponential moving average of ``losses``.
        suggested_lr: the chosen rule's rate (``valley`` by default; the median over the
            seeds with ``seeds=``).
        min_loss_lr: the rate at the smallest smoothed loss.
        steepest_lr: the rate where the smoothed loss falls fastest per unit of log-rate.
        diverged_at: index of the update where the sweep stopped on divergence, or ``None``.
        valley_lr: fastai's valley rule (module docs).
        suggestions: every rule's rate by name (:data:`SUGGESTIONS`): the median over the
            seeds with ``seeds=``.
        spread: with ``seeds=``, per rule ``{"values": one per seed, "median", "low",
            "high", "log10_range"}`` (``low``/``high`` the extremes: the band); else empty.
        runs: with ``seeds=``, each seed's own result.
        suggestions_by_schedule: a peak per schedule family (:func:`schedule_suggestions`;
            the median over the seeds with ``seeds=``).
    """

    learning_rates: list[float]
    losses: list[float]
    smoothed_losses: list[float]
    suggested_lr: float
    min_loss_lr: float
    steepest_lr: float
    diverged_at: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    valley_lr: float = math.nan
    suggestions: dict[str, float] = field(default_factory=dict)
    spread: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[RangeTestResult] = field(default_factory=list)
    suggestions_by_schedule: dict[str, float] = field(default_factory=dict)


def smooth_losses(losses: list[float], beta: float) -> list[float]:
    """Bias-corrected EMA: ``avg_i = beta avg_{i-1} + (1-beta) loss_i``, ``avg_i / (1-beta^(i+1))``.

    Example:
        >>> smooth_losses([1.0, 3.0], 0.5)
        [1.0, 2.3333333333333335]
    """
    avg, out = 0.0, []
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def suggest_lrs(learning_rates: Sequence[float], smoothed_losses: Sequence[float], *,
                skip_start: int | None = None, skip_end: int = 5) -> dict[str, float]:
    """Every rule's suggested rate for one curve (module docs): ``{"valley", "steepest",
    "minimum/10"}``.

    Args:
        learning_rates, smoothed_losses: the curve (non-finite points are left out).
        skip_start, skip_end: points left out at each end before the valley rule (fastai's
            trimming: a tenth of the sweep, default ``len // 10``, and the last 5). When fewer
            than 2 points remain, the whole curve is used.

    Example:
        >>> rates = [10.0 ** (k / 4) for k in range(-16, 1)]    # 1e-4 .. 1
        >>> curve = [3, 3, 2.9, 2.7, 2.4, 2, 1.5, 1.1, 0.8, 0.6, 0.5, 0.45, 0.5, 0.8, 1.5, 3, 6]
        >>> {k: round(v, 6) for k, v in suggest_lrs(rates, curve, skip_start=0,
        ...                                         skip_end=0).items()}
        {'valley': 0.001, 'steepest': 0.001778, 'minimum/10': 0.005623}
    """
    finite = [(r, v) for r, v in zip(learning_rates, smoothed_losses, strict=True)
              if math.isfinite(v)]
    if not finite:
        raise FloatingPointError("the smoothed loss has no finite point")
    rates = np.array([r for r, _ in finite], np.float64)
    curve = np.array([v for _, v in finite], np.float64)
    minimum = float(rates[int(np.argmin(curve))])
    if len(curve) >= 2:
        log_rates = np.log(rates)
        slopes = np.gradient(curve, log_rates) if np.all(np.diff(log_rates) > 0) \
            else np.diff(curve)
        steepest = float(rates[int(np.argmin(slopes))])
    else:
        steepest = minimum
    start = len(curve) // 10 if skip_start is None else skip_start
    stop = len(curve) - skip_end
    if stop - start < 2:
        start, stop = 0, len(curve)
    return {"valley": float(rates[start + _valley_index(curve[start:stop])]),
            "steepest": steepest, "minimum/10": minimum / 10}


def schedule_suggestions(learning_rates: Sequence[float], smoothed_losses: Sequence[float], *,
                         adaptive: bool = False,
                         skip_start: int | None = None) -> dict[str, float]:
    """A peak rate per schedule family (:data:`SCHEDULE_KINDS`), read off one smoothed curve:
    its extremum ``x`` (the rate at the smallest finite smoothed loss) scaled by the family's
    rule (module docs: cyclical ``x / 3``, constant ``x / 10``, decaying the constant rate over
    the family's mean fraction :data:`MEAN_FRACTIONS` and at most ``x / 2``, schedule-free
    ``3 x``). With ``adaptive=True`` (an Adam-family optimizer) the base is the ``valley`` rate
    instead (:func:`suggest_lrs`, ``skip_start`` passed on), times :data:`ADAPTIVE_SCALES`
    (cyclical 1, constant and decaying 1/2, schedule-free 3).

    Example:
        >>> rates = [0.03, 0.3, 3.0, 30.0]
        >>> found = schedule_suggestions(rates, [2.0, 1.0, 0.5, float("nan")])
        >>> found["one_cycle"], found["cosine"], found["constant"], found["schedule_free"]
        (1.0, 0.6, 0.3, 9.0)
        >>> round(found["exponential"], 3), found["cyclic_exponential"]  # mean rate; the cap
        (1.395, 1.5)
    """
    finite = [(v, r) for r, v in zip(learning_rates, smoothed_losses, strict=True)
              if math.isfinite(v)]
    if not finite:
        raise FloatingPointError("the smoothed loss has no finite point")
    if adaptive:
        valley = suggest_lrs(learning_rates, smoothed_losses, skip_start=skip_start)["valley"]
        return {family: valley * ADAPTIVE_SCALES[kind] for family, kind in SCHEDULE_KINDS.items()}
    extremum = float(min(finite)[1])
    return {family: _sgd_peak(extremum, family, kind) for family, kind in SCHEDULE_KINDS.items()}


def _sgd_peak(extremum: float, family: str, kind: str) -> float:
    if kind == "decaying":  # the constant rule's rate over the mean fraction, capped
        a, b = KIND_SCALES["constant"]
        return min(extremum / DECAYING_CAP, extremum * a / (b * MEAN_FRACTIONS[family]))
    a, b = KIND_SCALES[kind]
    return extremum * a / b


def is_adaptive(optimizer: Any) -> bool:
    """Whether an optimizer (or its class name) is of the Adam family (per-weight normalised
    steps: it has ``betas``), which takes :func:`schedule_suggestions`'s ``adaptive`` rules.

    Example:
        >>> import mlx.optimizers as optim
        >>> is_adaptive(optim.AdamW(1e-3)), is_adaptive(optim.SGD(0.1)), is_adaptive("Adamax")
        (True, False, True)
    """
    if isinstance(optimizer, str):
        name = optimizer.lower()
        return "adam" in name or name in ("lion", "adafactor", "adagrad", "rmsprop",
                                          "adadelta")
    return hasattr(optimizer, "betas") or is_adaptive(type(optimizer).__name__)


def _valley_index(curve: np.ndarray) -> int:
    """fastai's valley rule on a curve (module docs): an index into ``curve``."""
    n = len(curve)
    longest = [1] * n  # longest strictly decreasing subsequence ending at i
    for i in range(1, n):
        longer = [longest[j] + 1 for j in range(i) if curve[i] < curve[j]]
        longest[i] = max(longer, default=1)
    end = int(np.argmax(longest))  # the first index of the longest
    begin = end - longest[end]
    third = (end - begin) / 3
    return min(max(begin + int(third) + int(third / 2), 0), n - 1)


def lr_range_test(
    model: nn.Module,
    loss_fn: Callable[..., mx.array],
    optimizer: optim.Optimizer,
    data: Any,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    mode: str = "exponential",
    smoothing: float = 0.98,
    diverge_factor: float = 4.0,
    check_every: int = 10,
    restore: bool = False,
    seed: int = 0,
    compile: bool = True,
    suggestion: str = "valley",
    seeds: Sequence[int] | None = None,
) -> RangeTestResult:
    """Sweep the learning rate from ``min_lr`` to ``max_lr`` over ``steps`` updates.

    The sweep stops early when the smoothed loss exceeds ``diverge_factor`` times its best
    value, or the loss is not finite. Losses are fetched from the device every
    ``check_every`` updates, so up to ``check_every - 1`` updates may run past the point of
    divergence; the curve is cut at that point.

    The model and optimizer are trained by the sweep and left so (``restore=False``, the
    default, as in most tools: a range test is usually run on a throwaway copy). With
    ``restore=True`` the parameters and optimizer state are put back afterwards. The
    optimizer's own learning-rate schedule is always put back.

    Args:
        model, loss_fn, optimizer, data: as for :class:`trainers.Trainer`.
        mode: ``"exponential"`` (geometric steps, the usual choice) or ``"linear"``.
        smoothing: the EMA factor of :func:`smooth_losses`.
        check_every: updates per block of losses fetched from the device (the trainer's
            ``log_every``).
        compile: compile the training step (the trainer's ``compile=``); ``False`` for very
            short sweeps on the Linux CPU backend, where compiling costs seconds.
        suggestion: the rule giving ``suggested_lr``: ``"valley"`` (default),
            ``"steepest"`` or ``"minimum/10"``.
        seeds: repeat the sweep once per seed, each from the same initial weights and
            optimizer state, with the trainer's random key seeded from it and, when ``data``
            is a :class:`trainers.data.ArrayBatches`, its shuffle seed offset by it; the
            suggestions are the medians over the seeds and ``spread`` their band.

    Example:
        >>> import mlx.core as mx, mlx.nn as nn, mlx.optimizers as optim
        >>> x = mx.random.normal((64, 4), key=mx.random.key(0))
        >>> data = [(x, x @ mx.ones((4, 1)))]
        >>> mse = lambda m, x, y: nn.losses.mse_loss(m(x), y)
        >>> result = lr_range_test(nn.Linear(4, 1), mse, optim.SGD(learning_rate=0.0), data,
        ...                        min_lr=1e-4, max_lr=10.0, steps=50)
        >>> result.diverged_at is not None and result.suggested_lr < 1.0
        True
        >>> sorted(result.suggestions)
        ['minimum/10', 'steepest', 'valley']
    """
    sweep = mlx_schedules.range_sweep(min_lr, max_lr, steps, mode=mode)  # checks all four
    check_real("smoothing", smoothing, low=0.0, high=1.0, high_open=True)
    check_real("diverge_factor", diverge_factor, low=1.0, low_open=True)
    check_int("check_every", check_every, minimum=1)
    check_choice("suggestion", suggestion, SUGGESTIONS)
    if seeds is not None:
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
            raise TypeError(f"seeds must be a non-empty list of ints, got {seeds!r}")
        seeds = [check_int(f"seeds[{i}]", v, minimum=0) for i, v in enumerate(seeds)]

    optimizer.init(model.trainable_parameters())
    saved_schedule = schedules_of(optimizer).get("learning_rate")
    saved_rate = optimizer.state["learning_rate"]
    saved_params = model.parameters()  # arrays are immutable: keeping references is a snapshot
    saved_state = dict(tree_flatten(optimizer.state))

    def put_back() -> None:
        model.update(saved_params)
        for key, value in saved_state.items():
            _set_leaf(optimizer.state, key, value)

    def one(run_seed: int, run_data: Any) -> RangeTestResult:
        start = int(optimizer.state["step"].item())  # a Python int: no closed-over array
        set_schedule(optimizer, "learning_rate", lambda t: sweep(t - start))
        watcher = _DivergenceWatch(smoothing, diverge_factor)
        trainer = Trainer(model, loss_fn, optimizer, run_data, run_dir=None, max_steps=steps,
                          log=False, checkpoint_every=0, report_every=0,
                          log_every=check_every, seed=run_seed, compile=compile,
                          callbacks=[watcher])
        try:
            trainer.fit()
        except NonFiniteError:
            pass  # the watcher saw the non-finite row and marked the divergence
        finally:
            if saved_schedule is None:
                remove_schedule(optimizer, "learning_rate")
            else:
                set_schedule(optimizer, "learning_rate", saved_schedule)
            optimizer.state["learning_rate"] = saved_rate
        return _result(watcher, suggestion,
                       {"mode": mode, "min_lr": min_lr, "max_lr": max_lr, "steps": steps,
                        "seed": run_seed, "adaptive": is_adaptive(optimizer)})

    try:
        if seeds is None:
            result = one(seed, data)
        else:
            runs = []
            for i, run_seed in enumerate(seeds):
                if i:
                    put_back()  # every sweep starts from the same weights and state
                runs.append(one(run_seed, _reseeded(data, run_seed)))
            result = _combine(runs, suggestion)
    finally:
        if restore:
            put_back()
    return result


def _reseeded(data: Any, seed: int) -> Any:
    """``ArrayBatches`` with its shuffle seed offset by ``seed``; other data as given."""
    if isinstance(data, ArrayBatches):
        data = copy.copy(data)
        data.seed = data.seed + seed
    return data


def _result(watcher: _DivergenceWatch, suggestion: str, extra: dict) -> RangeTestResult:
    found = suggest_lrs(watcher.rates, watcher.smoothed,
                        skip_start=extra["steps"] // 10) if watcher.smoothed else None
    if found is None or not any(math.isfinite(v) for v in watcher.smoothed):
        raise FloatingPointError("the loss was not finite at the first update of the range test")
    return RangeTestResult(
        learning_rates=watcher.rates,
        losses=watcher.losses,
        smoothed_losses=watcher.smoothed,
        suggested_lr=found[suggestion],
        min_loss_lr=min((v, r) for v, r in zip(watcher.smoothed, watcher.rates, strict=True)
                        if math.isfinite(v))[1],
        steepest_lr=found["steepest"],
        diverged_at=watcher.diverged_at,
        extra=extra,
        valley_lr=found["valley"],
        suggestions=found,
        suggestions_by_schedule=schedule_suggestions(
            watcher.rates, watcher.smoothed, adaptive=extra["adaptive"],
            skip_start=extra["steps"] // 10),
    )


def _combine(runs: list[RangeTestResult], suggestion: str) -> RangeTestResult:
    """One result from several seeds' sweeps: medians, and each rule's band."""
    spread: dict[str, dict[str, Any]] = {}
    medians: dict[str, float] = {}
    for rule in SUGGESTIONS:
        values = [r.suggestions[rule] for r in runs]
        medians[rule] = float(np.median(values))
        spread[rule] = {"values": values, "median": medians[rule],
                        "low": min(values), "high": max(values),
                        "log10_range": math.log10(max(values) / min(values))}
    by_schedule = {family: float(np.median([r.suggestions_by_schedule[family] for r in runs]))
                   for family in SCHEDULE_KINDS}
    first = runs[0]
    return dataclasses.replace(
        first, suggested_lr=medians[suggestion], suggestions_by_schedule=by_schedule,
        min_loss_lr=float(np.median([r.min_loss_lr for r in runs])),
        steepest_lr=medians["steepest"], valley_lr=medians["valley"], suggestions=medians,
        spread=spread, runs=runs,
        extra={**first.extra, "seeds": [r.extra["seed"] for r in runs]})


class _DivergenceWatch:
    """A trainer callback recording the sweep's curve and stopping when it diverges: the
    smoothed loss above ``factor`` times its best, or a non-finite loss."""

    def __init__(self, smoothing: float, factor: float):
        self.smoothing, self.factor = smoothing, factor
        self.rates: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.diverged_at: int | None = None
        self._average = 0.0
        self._best = math.inf

    def __call__(self, event: dict) -> str | None:
        if event.get("event") != "train" or self.diverged_at is not None:
            return None  # rows of the block after the divergence are not part of the curve
        loss = event["loss"]
        self.rates.append(event["learning_rate"])
        self.losses.append(loss)
        self._average = self.smoothing * self._average + (1 - self.smoothing) * loss
        value = self._average / (1 - self.smoothing ** len(self.losses))
        self.smoothed.append(value)
        self._best = min(self._best, value)
        if not math.isfinite(value) or value > self.factor * self._best:
            self.diverged_at = len(self.losses) - 1
            return STOP
        return None
