"""The source article's schedules on a byte-level language model: the protocol of
``scripts/compare_lm.py``.

A small mlx-lm model (llama) is trained with AdamW on the embedded corpus (the standard
library's own source, :func:`trainers.lm.stdlib_corpus`) under six schedule families, each a
function of (peak rate, run length):

- ``constant``: the rate held at the peak (the baseline, tuned like the others);
- ``warmup_cosine``: linear warm-up over 5% of the run, then cosine decay to peak/10;
- ``wsd``: warmup-stable-decay: 5% warm-up, the peak held, linear decay to 0 over the last 20%;
- ``exponential``: the source article's ``peak * exp(-k t)``, ending at ``peak / 100``;
- ``cyclic_exponential``: the source article's CED, the same envelope with 3.5 cosine cycles;
- ``one_cycle``: PyTorch ``OneCycleLR`` (30% warm-up, cosine) with ``beta1`` cycled
  0.95 -> 0.85 -> 0.95 (:func:`mlx_schedules.schedule_hyperparameters`).

The shapes are :func:`trainers.experiments.lm_schedules.schedule_configs` (what
``mlx-schedules train-lm --schedule`` uses;
the last three are the digits comparison's :func:`trainers.experiments.families.family_configs`).
Every family but 1-cycle keeps ``beta1 = 0.9``.

Protocol: the validation files are split in two halves, *tuning* and *test*. At every budget,
each family's peak is chosen from a grid by the tuning half's bits per byte after one run
(seed 0), the grid extended past a winning edge (:func:`trainers.experiments.peaks.tune_peak`);
then seeds 1, 2, ... run at the tuned peak, and every seed (seed 0's tuning run included) is
scored on the test half. With ``peaks_from="range-test"`` each family runs at the peak a range
test on the same model suggests for it (:func:`lm_range_test`), no grid; with ``"both"`` it is
measured at both and the difference reported. :func:`compare_lm` runs it and returns every number;
:func:`markdown_report_lm` writes ``comparison.md``; :func:`plot_comparison_lm` the figure.
"""

from __future__ import annotations

import math
import multiprocessing
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten

from mlx_schedules import from_config, schedule_hyperparameters
from trainers import NonFiniteError, Trainer, causal_lm_loss, lr_range_test, tokens_in

from ..lm import (
    build_model,
    corpus_batches,
    model_config,
    stdlib_corpus,
    unigram_entropy,
    validation_batches,
    validation_metrics,
)
from ..schedule_free import ScheduleFreeAdamW
from .comparison import source_table_markdown
from .lm_schedules import schedule_configs
from .peaks import PEAK_SOURCES, peak_ratio, tune_peak

__all__ = ["LM_FAMILIES", "LM_LABELS", "LMSettings", "compare_lm", "lm_family_configs",
           "lm_range_test", "markdown_report_lm", "parameter_count", "plot_comparison_lm",
           "split_validation", "train_lm_run", "training_batches", "tune_and_measure"]

LM_FAMILIES = ("constant", "warmup_cosine", "wsd", "exponential", "cyclic_exponential",
               "one_cycle")
LM_LABELS = {
    "constant": "constant",
    "linear": "linear decay to zero",
    "wsd_sqrt": "WSD, 1-sqrt cooldown",
    "power": "power scheduler",
    "schedule_free": "schedule-free AdamW",
    "warmup_cosine": "cosine with warmup",
    "wsd": "warmup-stable-decay",
    "exponential": "exponential decay",
    "cyclic_exponential": "cyclic exponential decay",
    "one_cycle": "1-cycle + cycled beta1",
}
BETA1 = 0.9  # the fixed beta1 of every family but 1-cycle


def lm_family_configs(family: str, peak_lr: float, steps: int, *, batch_size: int | None = None,
                      tokens_per_step: int | None = None) -> dict[str, Any]:
    """``{"learning_rate": schedule config, "beta1": config or number}`` for one family:
    :func:`trainers.experiments.lm_schedules.schedule_configs` (the shapes
    ``mlx-schedules train-lm --schedule`` uses), with
    the fixed ``beta1`` written out.

    Example:
        >>> lm_family_configs("wsd", 0.01, 100)["learning_rate"]["decay_steps"]
        20
        >>> lm_family_configs("one_cycle", 0.01, 100)["beta1"]["name"]
        'one_cycle_momentum'
    """
    if family not in LM_LABELS:
        raise ValueError(f"unknown schedule family {family!r}; valid families are "
                         f"{list(LM_LABELS)}")
    if not (isinstance(steps, int) and steps >= 8):
        raise ValueError(f"steps must be an int >= 8 for a schedule family, got {steps!r}")
    if not (isinstance(peak_lr, int | float) and math.isfinite(peak_lr) and peak_lr > 0):
        raise ValueError(f"peak_lr must be a positive number, got {peak_lr!r}")
    if family == "schedule_free":  # no schedule: ScheduleFreeAdamW at the peak, 5% warmup
        return {"learning_rate": float(peak_lr), "beta1": BETA1, "optimizer": "ScheduleFreeAdamW",
                "warmup_steps": max(1, steps // 20)}
    chosen = schedule_configs(family, float(peak_lr), steps, batch_size=batch_size,
                              tokens_per_step=tokens_per_step)
    beta1 = chosen["beta1"] if chosen["beta1"] is not None else BETA1
    return {"learning_rate": chosen["learning_rate"], "beta1": beta1}


@dataclass
class LMSettings:
    """What every run of one comparison shares: the model, the data layout, the optimizer."""

    preset: str = "tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    seq_len: int = 32
    batch_size: int = 16
    weight_decay: float = 0.1
    beta2: float = 0.99
    clip_norm: float = 1.0
    tune_windows: int = 256
    test_windows: int = 512
    eval_batch_size: int = 64
    valid_fraction: float = 0.1

    def model_config(self) -> dict[str, Any]:
        return model_config("llama", self.preset, **self.model_overrides)


def parameter_count(config: Mapping[str, Any]) -> int:
    """The number of weights of the model ``config`` describes (built once to count them).

    Example:
        >>> parameter_count(model_config("llama", "tiny"))
        123200
    """
    flat = cast(list[tuple[str, mx.array]], tree_flatten(build_model(config).parameters()))
    return sum(int(v.size) for _, v in flat)


def split_validation(documents: Sequence[np.ndarray]) -> tuple[list, list]:
    """The validation files in two halves, alternately: (tuning, test).

    Example:
        >>> split_validation([np.arange(2), np.arange(3), np.arange(4)])[1][0].size
        3
    """
    if len(documents) < 2:
        raise ValueError(f"need at least 2 validation files to split, got {len(documents)}")
    return list(documents[0::2]), list(documents[1::2])


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


class _Rows:
    """A trainer callback keeping the training rows in memory."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def __call__(self, event: dict) -> None:
        if event.get("event") == "train":
            self.rows.append(event)


def training_batches(settings: LMSettings, train_docs: Sequence[np.ndarray],
                     seed: int) -> Any:
    """The training windows of one seed (their order is a pure function of the seed and the
    epoch, so one object serves every run of that seed)."""
    return corpus_batches(train_docs, settings.seq_len, settings.batch_size, seed=seed,
                          drop_last=True)


def train_lm_run(settings: LMSettings, data: Any, family: str, peak: float, steps: int,
                 seed: int) -> dict[str, Any]:
    """Train one model on ``data`` (:func:`training_batches`); return ``{"model", "diverged",
    "curves", "wall_time_s"}``.

    ``curves`` holds every step's ``learning_rate``, ``beta1`` (``None`` where it is a fixed
    number: the trainer logs the scheduled ones only) and ``loss`` as the trainer logged them
    (the optimizer's own state, not recomputed).
    """
    mx.random.seed(seed)
    model = build_model(settings.model_config())
    configs = lm_family_configs(family, peak, steps, batch_size=settings.batch_size,
                                tokens_per_step=settings.batch_size * settings.seq_len)
    optimizer: optim.Optimizer
    if configs.get("optimizer") == "ScheduleFreeAdamW":
        optimizer = ScheduleFreeAdamW(learning_rate=configs["learning_rate"],
                                      betas=(BETA1, settings.beta2),
                                      weight_decay=settings.weight_decay,
                                      warmup_steps=configs["warmup_steps"])
    else:
        optimizer = optim.AdamW(learning_rate=from_config(configs["learning_rate"]),
                                betas=[BETA1, settings.beta2],
                                weight_decay=settings.weight_decay)
        beta1 = configs["beta1"]
        schedule_hyperparameters(optimizer,
                                 beta1=from_config(beta1) if isinstance(beta1, dict) else beta1)
    rows = _Rows()
    trainer = Trainer(model, causal_lm_loss, optimizer, data, run_dir=None, log=False,
                      checkpoint_every=0, max_steps=steps, log_every=steps, report_every=0,
                      seed=seed, clip_norm=settings.clip_norm, tokens=tokens_in,
                      callbacks=[rows], progress=False)
    start = time.perf_counter()
    try:
        trainer.fit()
    except NonFiniteError as e:
        return {"model": None, "diverged": True, "error": str(e), "curves": None,
                "wall_time_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    averaged = getattr(optimizer, "averaged_parameters", None)
    if callable(averaged):  # schedule-free: its answer is the averaged weights x
        model.update(averaged(model.trainable_parameters()))
    curves = {key: [r.get(key) for r in rows.rows]
              for key in ("step", "learning_rate", "beta1", "loss")}
    return {"model": model, "diverged": False, "curves": curves, "wall_time_s": wall}


def _bpb(model: nn.Module | None, batches: Any) -> float | None:
    if model is None:
        return None
    bpb = validation_metrics(model, batches, byte_level=True)["val_bits_per_byte"]
    return bpb if math.isfinite(bpb) else None


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    finite = [v for v in values if v is not None]
    if not finite:
        return None, None
    return float(np.mean(finite)), float(np.std(finite))


_SHARED: dict[str, Any] = {}


def _shared_data(settings: LMSettings) -> tuple[Any, list, list, Any, Any]:
    """(corpus, tuning files, test files, tuning windows, test windows), loaded once per
    process and layout."""
    key = (settings.valid_fraction, settings.seq_len, settings.eval_batch_size,
           settings.tune_windows, settings.test_windows)
    if _SHARED.get("key") != key:
        corpus = stdlib_corpus(settings.valid_fraction)
        tune_docs, test_docs = split_validation(corpus.valid)
        options = {"backend": "numpy"}
        tune_set = validation_batches(tune_docs, settings.seq_len, settings.eval_batch_size,
                                      windows=settings.tune_windows, **options)
        test_set = validation_batches(test_docs, settings.seq_len, settings.eval_batch_size,
                                      windows=settings.test_windows, **options)
        _SHARED.clear()
        _SHARED.update(key=key, value=(corpus, tune_docs, test_docs, tune_set, test_set),
                       batches={})
    return _SHARED["value"]


def _batches_of(settings: LMSettings, seed: int) -> Any:
    corpus = _shared_data(settings)[0]
    cache = _SHARED["batches"]
    key = (settings.seq_len, settings.batch_size, seed)
    if key not in cache:
        cache[key] = training_batches(settings, corpus.train, seed)
    return cache[key]


def lm_range_test(settings: LMSettings, *, steps: int = 200, min_lr: float = 1e-5,
                  max_lr: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """A learning-rate range test on the comparison's model, data and AdamW settings
    (:func:`trainers.lr_range_test`, no gradient clipping); returns ``{"min_loss_lr",
    "suggestions" (valley, steepest, minimum/10), "suggestions_by_schedule", "diverged_at",
    "learning_rates", "smoothed_losses", "sweep"}``.
    """
    mx.random.seed(seed)
    model = build_model(settings.model_config())
    optimizer = optim.AdamW(learning_rate=min_lr, betas=[BETA1, settings.beta2],
                            weight_decay=settings.weight_decay)
    result = lr_range_test(model, causal_lm_loss, optimizer, _batches_of(settings, seed),
                           min_lr=min_lr, max_lr=max_lr, steps=steps, seed=seed)
    return {"min_loss_lr": result.min_loss_lr, "suggestions": result.suggestions,
            "suggestions_by_schedule": result.suggestions_by_schedule,
            "diverged_at": result.diverged_at, "learning_rates": result.learning_rates,
            "smoothed_losses": result.smoothed_losses,
            "sweep": {"min_lr": min_lr, "max_lr": max_lr, "steps": steps, "seed": seed}}


def _measure(settings: LMSettings, family: str, steps: int, peak: float,
             first: dict[str, Any] | None, seeds: int) -> dict[str, Any]:
    """Seeds 0.. at one peak (``first``: seed 0's run when the tuning already made it), each
    scored on the test files."""
    test_set = _shared_data(settings)[4]
    seed_runs = [first] if first is not None else []
    for seed in range(len(seed_runs), seeds):
        seed_runs.append(train_lm_run(settings, _batches_of(settings, seed), family, peak,
                                      steps, seed))
    per_seed = [{"seed": seed, "diverged": run["diverged"],
                 "test_bpb": _bpb(run["model"], test_set),
                 "final_train_loss": None if run["diverged"] else run["curves"]["loss"][-1],
                 "wall_time_s": run["wall_time_s"]} for seed, run in enumerate(seed_runs)]
    mean, std = _mean_std([r["test_bpb"] for r in per_seed])
    return {"test_bpb": mean, "test_bpb_std": std, "seeds": len(per_seed),
            "diverged": sum(r["diverged"] for r in per_seed), "runs": per_seed,
            "wall_time_s": _mean_std([r["wall_time_s"] for r in per_seed])[0],
            "curves": seed_runs[0]["curves"]}


def tune_and_measure(settings: LMSettings, family: str, steps: int, peaks: Sequence[float],
                     seeds: int, *, suggested: float | None = None, peaks_from: str = "grid",
                     max_extra: int = 3) -> dict[str, Any]:
    """One family at one budget: the peak grid on seed 0 (scored on the tuning files, the
    grid extended past a winning edge), then seeds 1.. at the tuned peak; every seed scored
    on the test files. ``peaks_from="range-test"`` runs at ``suggested`` instead of tuning;
    ``"both"`` tunes and also measures ``suggested`` (``versus``).

    Returns ``{"peak", "status", "tuning", "measured", "curves", "runs", "versus"}``
    (``curves``: the logged rates and losses of seed 0 at the peak).
    """
    tune_set = _shared_data(settings)[3]
    if peaks_from == "range-test":
        if suggested is None:
            raise ValueError("peaks_from='range-test' needs the suggested peak")
        measured = _measure(settings, family, steps, suggested, None, seeds)
        return {"peak": suggested, "status": "range test", "tuning": {},
                "curves": measured.pop("curves"), "measured": measured, "runs": seeds,
                "versus": None}

    def trial(peak: float) -> dict[str, Any]:
        run = train_lm_run(settings, _batches_of(settings, 0), family, peak, steps, 0)
        run["tune_bpb"] = _bpb(run["model"], tune_set)
        return run

    found = tune_peak(trial, peaks, lambda r: -r["tune_bpb"] if r["tune_bpb"] is not None
                      else -math.inf, max_extra=max_extra)
    best = found["peak"]
    first = found["trials"].get(best)
    measured = _measure(settings, family, steps, best, first, seeds)
    runs = len(found["trials"]) + seeds - (first is not None)
    versus = None
    if peaks_from == "both" and suggested is not None:
        at = _measure(settings, family, steps, suggested, None, seeds)
        at.pop("curves")
        runs += seeds
        versus = {"suggested_peak": suggested, "tuned_peak": best,
                  "ratio": peak_ratio(suggested, best), "suggested_bpb": at["test_bpb"],
                  "suggested_bpb_std": at["test_bpb_std"], "tuned_bpb": measured["test_bpb"],
                  "bpb_loss": None if at["test_bpb"] is None or measured["test_bpb"] is None
                  else at["test_bpb"] - measured["test_bpb"], "runs": at["runs"]}
    return {
        "peak": best, "status": found["status"],
        "tuning": {f"{p:g}": r["tune_bpb"] for p, r in sorted(found["trials"].items())},
        "curves": measured.pop("curves"), "measured": measured, "runs": runs, "versus": versus,
    }


def compare_lm(settings: LMSettings, *, families: Sequence[str], budgets: Sequence[int],
               peaks: Sequence[float], seeds: int, jobs: int = 1, peaks_from: str = "grid",
               max_extra: int = 3, range_test_steps: int = 200,
               report: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run the whole protocol; return every number (``results.json`` less the command and
    the machine, which the caller adds).

    Args:
        settings: the model, data layout and optimizer settings shared by every run.
        families: keys of :data:`LM_LABELS` (:data:`LM_FAMILIES`, the source article's
            comparison, and the LM study's schedules).
        budgets: run lengths (updates).
        peaks: the peak-rate grid (one value: no tuning).
        seeds: measured seeds per family and budget (seed 0 is the tuning run).
        jobs: worker processes, each training one family at one budget at a time (MLX's CPU
            backend keeps about one core busy per process); the numbers do not depend on it.
        peaks_from: ``"grid"`` (tune), ``"range-test"`` (each family at its range-test peak,
            :func:`lm_range_test`) or ``"both"`` (tune, and measure the range-test peak too).
        max_extra: grid points added past a winning edge, per side.
        range_test_steps: the range test's sweep length (reported; 0: none with the grid).
        report: called with a line of progress.
    """
    budgets = sorted(set(budgets))
    families = list(families)
    peaks = sorted(set(peaks))
    if not (isinstance(jobs, int) and jobs >= 1):
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    if peaks_from not in PEAK_SOURCES:
        raise ValueError(f"peaks_from must be one of {list(PEAK_SOURCES)}, got {peaks_from!r}")
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    corpus, tune_docs, test_docs, _, _ = _shared_data(settings)
    report(f"corpus: {len(corpus.train)} training files "
           f"({sum(d.size for d in corpus.train):,} bytes), validation {len(tune_docs)} "
           f"tuning + {len(test_docs)} test files; {jobs} worker process(es)")
    rt: dict[str, Any] | None = None
    suggested: dict[str, float | None] = dict.fromkeys(families)
    if range_test_steps or peaks_from != "grid":
        rt = lm_range_test(settings, steps=range_test_steps or 200)
        suggested = {f: rt["suggestions_by_schedule"][f] for f in families}
        report(f"range test: loss minimum at {rt['min_loss_lr']:.3g}; peaks "
               + ", ".join(f"{f} {v:.3g}" for f, v in suggested.items()))
    options: dict[str, Any] = {"peaks_from": peaks_from, "max_extra": max_extra}

    main_budget = max(budgets)
    # The longest units first, so that parallel workers finish together.
    units = [(family, steps) for steps in reversed(budgets) for family in families]
    done: dict[tuple[str, int], dict[str, Any]] = {}

    def finished(key: tuple[str, int], unit: dict[str, Any]) -> None:
        done[key] = unit
        trial_bpb = ", ".join(f"{p}: {_fmt(v)}" for p, v in unit["tuning"].items())
        report(f"  {key[1]:>5} steps  {LM_LABELS[key[0]]:<26} peak {unit['peak']:<8g} "
               f"test {_fmt(unit['measured']['test_bpb'], unit['measured']['test_bpb_std'])}"
               f" bits/byte  (tuning: {trial_bpb})")

    if jobs == 1:
        for family, steps in units:
            finished((family, steps), tune_and_measure(settings, family, steps, peaks, seeds,
                                                       suggested=suggested[family], **options))
    else:
        # spawn: a fresh interpreter per worker (forking a process that holds MLX state is
        # unsafe); every run seeds itself, so the numbers do not depend on the worker count.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(tune_and_measure, settings, family, steps, peaks, seeds,
                                   suggested=suggested[family], **options): (family, steps)
                       for family, steps in units}
            for future in as_completed(futures):
                finished(futures[future], future.result())

    tuned = {f: {str(b): done[f, b]["peak"] for b in budgets} for f in families}
    status = {f: {str(b): done[f, b]["status"] for b in budgets} for f in families}
    versus = ({f: {str(b): done[f, b]["versus"] for b in budgets} for f in families}
              if peaks_from == "both" else None)
    tuning = {f: {str(b): done[f, b]["tuning"] for b in budgets} for f in families}
    measured = {f: {str(b): done[f, b]["measured"] for b in budgets} for f in families}
    curves = {f: done[f, main_budget]["curves"] for f in families
              if done[f, main_budget]["curves"] is not None}
    runs = sum(unit["runs"] for unit in done.values())
    return {
        "dataset": "stdlib corpus (bytes)", "families": families, "budgets": budgets,
        "main_budget": main_budget, "peaks": peaks, "seeds": seeds, "runs": runs,
        "settings": asdict(settings), "model_config": settings.model_config(),
        "model_parameters": parameter_count(settings.model_config()),
        "tokens_per_step": settings.seq_len * settings.batch_size,
        "corpus": {"train_files": len(corpus.train), "tune_files": len(tune_docs),
                   "test_files": len(test_docs),
                   "train_bytes": int(sum(d.size for d in corpus.train)),
                   "test_unigram_entropy": unigram_entropy(test_docs)},
        "schedules": {f: {str(b): lm_family_configs(
            f, tuned[f][str(b)], b, batch_size=settings.batch_size,
            tokens_per_step=settings.seq_len * settings.batch_size) for b in budgets}
            for f in families},
        "peaks_from": peaks_from, "max_extra": max_extra,
        "range_test": None if rt is None else {
            k: rt[k] for k in ("min_loss_lr", "suggestions", "suggestions_by_schedule",
                               "diverged_at", "sweep")},
        "tuned_peaks": tuned, "tuning_status": status, "versus_range_test": versus,
        "tuning_bpb": tuning, "measured": measured, "curves": curves,
        "wall_time_s": time.perf_counter() - start, "cpu_time_s": _cpu_seconds() - cpu_start,
    }


# ------------------------------------------------------------------------------ the report
def _fmt(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "diverged"
    return f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def _cell(results: Mapping[str, Any], family: str, budget: int) -> tuple[float | None, float]:
    cell = results["measured"][family][str(budget)]
    return cell["test_bpb"], cell["test_bpb_std"] or 0.0


def _verdict(diff: float, noise: float, better: str, worse: str) -> str:
    """Words for a difference in bits per byte (negative: the first schedule is better)."""
    if abs(diff) <= noise:
        return "within the noise between seeds"
    return better if diff < 0 else worse


def _versus(results: Mapping[str, Any], a: str, b: str) -> tuple[list[str], list[float], float]:
    """Per budget, ``a`` minus ``b`` in mean test bits per byte, and the noise bound (twice
    the larger seed std of the two cells, the widest at any budget)."""
    cells, diffs, noise = [], [], 0.0
    for budget in results["budgets"]:
        (ma, sa), (mb, sb) = _cell(results, a, budget), _cell(results, b, budget)
        if ma is None or mb is None:
            cells.append(f"{budget}: diverged")
            continue
        diffs.append(ma - mb)
        noise = max(noise, 2 * max(sa, sb))
        cells.append(f"{budget}: {ma - mb:+.3f}")
    return cells, diffs, noise


def _ranks(results: Mapping[str, Any], budget: int) -> list[str]:
    scored = [(m, f) for f in results["families"]
              if (m := _cell(results, f, budget)[0]) is not None]
    return [f for _, f in sorted(scored)]


def claims_table(results: Mapping[str, Any]) -> list[str]:
    """The "what the source article claims / what we measured" rows, written from the numbers."""
    families, budgets = results["families"], results["budgets"]
    rows = ["| the source article claims | what we measured (test bits/byte, a - b per budget; "
            "negative: a is better) | verdict |", "|---|---|---|"]

    def pair(claim: str, a: str, b: str, better: str, worse: str) -> None:
        if a not in families or b not in families:
            return
        cells, diffs, noise = _versus(results, a, b)
        if not diffs:
            rows.append(f"| {claim} | {LM_LABELS[a]} - {LM_LABELS[b]}: all diverged | - |")
            return
        words = sorted({_verdict(d, noise, better, worse) for d in diffs})
        verdict = (words[0] if len(words) == 1 else
                   "mixed: " + "; ".join(f"{b}: {_verdict(d, noise, better, worse)}"
                                         for b, d in zip(budgets, diffs)))
        rows.append(f"| {claim} | {LM_LABELS[a]} - {LM_LABELS[b]}: {', '.join(cells)} "
                    f"(noise: ±{noise:.3f}) | {verdict} |")

    def rank_row(claim: str, family: str) -> None:
        if family not in families:
            return
        places = []
        for budget in budgets:
            order = _ranks(results, budget)
            place = order.index(family) + 1 if family in order else None
            places.append(f"{budget}: {place}/{len(families)}" if place else f"{budget}: diverged")
        best = [_ranks(results, b)[0] if _ranks(results, b) else None for b in budgets]
        wins = sum(b == family for b in best)
        rows.append(f"| {claim} | rank of {LM_LABELS[family]} among {len(families)} "
                    f"schedules: {', '.join(places)} | best at {wins} of {len(budgets)} "
                    f"budgets |")

    pair("CED: for non-convex, rugged loss surfaces and larger models prone to poor minima "
         "(its swells escape poor minima)", "cyclic_exponential", "exponential",
         "holds: CED beats its own envelope", "does not hold: CED is worse than its envelope")
    rank_row("CED (as above): a schedule to choose for such models", "cyclic_exponential")
    pair("1-cycle: for large datasets and complex models when training time is limited",
         "one_cycle", "warmup_cosine", "holds: 1-cycle beats cosine with warmup",
         "does not hold: 1-cycle is worse than cosine with warmup")
    rank_row("1-cycle (as above): a schedule to choose under a time limit", "one_cycle")
    pair("Exponential decay: a smooth cool-down settles into a minimum (better than no decay)",
         "exponential", "constant", "holds: decaying beats the tuned constant",
         "does not hold: the tuned constant is better")
    return rows


def _edge(results: Mapping[str, Any], family: str, budget: int) -> str:
    """The mark of a tuned peak still at an edge of the (extended) grid."""
    status = results.get("tuning_status")
    if status is None:  # results written before the grid extension: any edge of the grid
        peak, grid = results["tuned_peaks"][family][str(budget)], results["peaks"]
        return (", grid edge (not extended)" if len(grid) > 1 and peak in (grid[0], grid[-1])
                else "")
    return ", grid edge (limit)" if status[family][str(budget)] == "grid edge (limit)" else ""


def versus_table_lm(results: Mapping[str, Any]) -> list[str]:
    """The range-test peak against the tuned one, per schedule and budget (``peaks_from=
    "both"``): the peaks, their ratio, the test bits per byte at each and the difference."""
    versus = results.get("versus_range_test")
    if not versus:
        return []
    rows = ["## Range-test peak against the grid-tuned peak", "",
            "Each schedule measured at both peaks (same seeds, test files). Ratio: the larger "
            "peak over the smaller; loss: range-test minus tuned bits per byte (positive: the "
            "range-test peak is worse).", "",
            "| schedule | budget | range-test peak | tuned peak | ratio | bits/byte at "
            "range-test peak | at tuned peak | loss (bits/byte) |",
            "|---|---|---|---|---|---|---|---|"]
    for family in results["families"]:
        for b in results["budgets"]:
            v = versus[family][str(b)]
            loss = f"{v['bpb_loss']:+.3f}" if v["bpb_loss"] is not None else "-"
            rows.append(f"| {LM_LABELS[family]} | {b} | {v['suggested_peak']:.3g} | "
                        f"{v['tuned_peak']:g} | {v['ratio']:.2f} | "
                        f"{_fmt(v['suggested_bpb'], v['suggested_bpb_std'])} | "
                        f"{_fmt(v['tuned_bpb'])} | {loss} |")
    return rows + [""]


def markdown_report_lm(results: Mapping[str, Any]) -> str:
    """comparison.md: the measured tables, the claims table, the source article's table, the
    protocol."""
    budgets, families, main = results["budgets"], results["families"], results["main_budget"]
    s, mc = results["settings"], results["model_config"]
    lines = ["# The source article's schedules on a byte-level language model "
             "(mlx-lm llama, AdamW, standard-library corpus)", ""]
    lines += [f"Command: `{results['command']}`", "",
              f"Machine: {results['machine']}. Wall time {results['wall_time_s']:.0f} s with "
              f"{results.get('jobs', 1)} worker process(es), CPU time "
              f"{results['cpu_time_s']:.0f} s ({results['runs']} training runs).", ""]
    n_params = results.get("model_parameters") or parameter_count(mc)
    lines += [f"Model: llama ({n_params:,} weights), {mc['num_hidden_layers']} layers, "
              f"width {mc['hidden_size']}, "
              f"MLP {mc['intermediate_size']}, {mc['num_attention_heads']} heads, byte "
              f"vocabulary (256); batch {s['batch_size']} x {s['seq_len']} bytes "
              f"({results['tokens_per_step']} tokens per update); AdamW (weight decay "
              f"{s['weight_decay']}, beta2 {s['beta2']}), gradients clipped to norm "
              f"{s['clip_norm']}. Corpus: {results['corpus']['train_files']} training files "
              f"({results['corpus']['train_bytes']:,} bytes); scores on "
              f"{s['test_windows']} windows of the {results['corpus']['test_files']} test "
              f"files (unigram entropy {results['corpus']['test_unigram_entropy']:.2f} "
              f"bits/byte; an untrained model scores about 8).", ""]
    lines += [f"## Measured at {main} steps (tuned peak, {results['seeds']} seeds, test bits "
              "per byte, lower is better)", "",
              "| schedule | tuned peak | test bits/byte (mean ± std) | per seed | "
              "wall time / run |", "|---|---|---|---|---|"]
    for family in families:
        a = results["measured"][family][str(main)]
        peak = results["tuned_peaks"][family][str(main)]
        per_seed = ", ".join(_fmt(r["test_bpb"]) for r in a["runs"])
        edge = _edge(results, family, main)
        wall = f"{a['wall_time_s']:.1f} s" if a["wall_time_s"] is not None else "-"
        lines.append(f"| {LM_LABELS[family]} | {peak:g}{edge} | "
                     f"{_fmt(a['test_bpb'], a['test_bpb_std'])} | {per_seed} | {wall} |")
    lines += ["", "## Budget sweep: test bits per byte (mean ± std over seeds) and the "
              "tuned peak", "",
              "| schedule | " + " | ".join(f"{b} steps" for b in budgets) + " |",
              "|---|" + "---|" * len(budgets)]
    for family in families:
        cells = []
        for b in budgets:
            mean, std = _cell(results, family, b)
            cells.append(f"{_fmt(mean, std)} (peak {results['tuned_peaks'][family][str(b)]:g}"
                         f"{_edge(results, family, b)})")
        lines.append(f"| {LM_LABELS[family]} | " + " | ".join(cells) + " |")
    lines.append("| *best* | " + " | ".join(
        LM_LABELS[_ranks(results, b)[0]] if _ranks(results, b) else "-" for b in budgets)
        + " |")
    stds = [c["test_bpb_std"] for f in families for c in results["measured"][f].values()
            if c["test_bpb_std"] is not None]
    spreads = [max(c["test_bpb"] for f in families
                   if (c := results["measured"][f][str(b)])["test_bpb"] is not None)
               - min(c["test_bpb"] for f in families
                     if (c := results["measured"][f][str(b)])["test_bpb"] is not None)
               for b in budgets if _ranks(results, b)]
    if stds:
        lines += ["", f"Seed noise: the std over {results['seeds']} seeds is "
                  f"{np.median(stds):.3f} bits/byte (median over the cells), at most "
                  f"{max(stds):.3f}. The spread between the best and the worst schedule is "
                  + ", ".join(f"{s:.3f}" for s in spreads)
                  + f" at {', '.join(map(str, budgets))} steps."]
    rt = results.get("range_test")
    if rt:
        lines += ["", "## Range test", "",
                  f"A {rt['sweep']['steps']}-update sweep from {rt['sweep']['min_lr']:g} to "
                  f"{rt['sweep']['max_lr']:g} (AdamW, no clipping): smoothed loss lowest at "
                  f"{rt['min_loss_lr']:.3g}; peak per schedule (trainers.lr_finder."
                  "schedule_suggestions): " + ", ".join(
                      f"{LM_LABELS[f]} {rt['suggestions_by_schedule'][f]:.3g}"
                      for f in families) + ". Peaks from: "
                  + results.get("peaks_from", "grid") + "."]
    lines += [""] + versus_table_lm(results)
    lines += ["## What the source article claims / what we measured", "",
              "A difference counts when it exceeds the noise: twice the larger seed std "
              "(population std over the seeds) of the two cells compared, the widest over "
              "the budgets.", ""]
    lines += claims_table(results)
    lines += ["", f"Scope: one small model ({n_params:,} weights) trained for at most "
              f"{main} updates of {results['tokens_per_step']} bytes. The source article's "
              "conditions, "
              "\"larger models\" and \"large datasets and complex models\", are not reached "
              "here: a verdict above says what the schedules do at this scale, not at "
              "theirs."]
    tried = sorted({float(p) for f in families for b in budgets
                    for p in results["tuning_bpb"][f][str(b)]})
    lines += ["", "## Tuning: bits per byte on the tuning files after one run (seed 0) at "
              "each peak (the grid and its extensions; - where a peak was not tried)", "",
              "| schedule | budget | " + " | ".join(f"{p:g}" for p in tried) + " |",
              "|---|---|" + "---|" * len(tried)]
    for family in families:
        for b in budgets:
            row = results["tuning_bpb"][family][str(b)]
            lines.append(f"| {LM_LABELS[family]} | {b} | "
                         + " | ".join(_fmt(row[f"{p:g}"]) if f"{p:g}" in row else "-"
                                      for p in tried) + " |")
    lines += ["", "## The source article's table (restated)", "", source_table_markdown(), ""]
    lines += ["## Protocol", "",
              "The validation files (10% of the standard library's top-level modules, chosen "
              "by a hash of the file name) are split alternately into tuning and test files. "
              "At every budget, each schedule's peak rate is chosen from the grid by the "
              "tuning files' bits per byte after one run (seed 0). Seeds 1, 2, ... then run "
              "at the tuned peak, and every seed, the tuning run included, is scored on the "
              "test files. A seed sets the initial weights and the data order. Shapes: "
              "cosine with warmup and warmup-stable-decay warm up linearly over 5% of the "
              "run; the cosine ends at peak/10, WSD decays linearly to 0 over the last 20% "
              "(trainers.experiments.lm_schedules.schedule_configs, as train-lm); "
              "exponential decay "
              "ends at peak/100; CED has the same envelope and 3.5 cosine cycles (the run "
              "ends in a trough); 1-cycle is PyTorch's OneCycleLR (30% warm-up, cosine, "
              "from peak/25 to peak/25e4) with beta1 0.95 -> 0.85 -> 0.95; the others keep "
              "beta1 0.9. The rates and beta1 in the figure and in results.json are the "
              "trainer's logged values (the optimizer's state).", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the figure
def plot_comparison_lm(results: Mapping[str, Any], path: str) -> None:
    """Four panels: rates (and 1-cycle's beta1), training loss, the budget sweep, tuning."""
    from .plotting import pyplot, save_figure, smooth

    plt = pyplot()
    families, budgets, main = results["families"], results["budgets"], results["main_budget"]
    colors = {f: plt.get_cmap("tab10")(i) for i, f in enumerate(LM_LABELS)}
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    (rate_ax, loss_ax), (sweep_ax, tune_ax) = axes
    beta_ax = None
    for family in families:
        c = results["curves"].get(family)
        if not c:
            continue
        rate_ax.plot(c["step"], c["learning_rate"], color=colors[family], lw=1.4,
                     label=LM_LABELS[family])
        bits = np.array(c["loss"], dtype=np.float64) / math.log(2)
        loss_ax.plot(c["step"], smooth(bits, max(1, main // 40)), color=colors[family], lw=1.2,
                     label=LM_LABELS[family])
        if family == "one_cycle":
            beta_ax = rate_ax.twinx()
            beta_ax.plot(c["step"], c["beta1"], color=colors[family], lw=1.0, ls=":")
            beta_ax.set_ylabel("beta1 of 1-cycle (dotted)", fontsize=8)
    rate_ax.set(title=f"rates at the tuned peaks, {main} steps (logged)", xlabel="step",
                ylabel="learning rate")
    rate_ax.legend(fontsize=7, loc="upper right")
    loss_ax.set(title=f"training loss, {main} steps, seed 0 (smoothed)", xlabel="step",
                ylabel="bits per byte")
    finals = [b for f in families if (c := results["curves"].get(f)) for b in c["loss"][-20:]]
    if finals:
        loss_ax.set_ylim(min(finals) / math.log(2) - 0.3, min(finals) / math.log(2) + 2.5)
    for family in families:
        xs, ys, es = [], [], []
        for b in budgets:
            mean, std = _cell(results, family, b)
            if mean is not None:
                xs.append(b)
                ys.append(mean)
                es.append(std)
        sweep_ax.errorbar(xs, ys, yerr=es, color=colors[family], marker="o", ms=4, capsize=3,
                          lw=1.2, label=LM_LABELS[family])
        row = results["tuning_bpb"][family][str(main)]
        points = [(p, row[f"{p:g}"]) for p in results["peaks"] if row[f"{p:g}"] is not None]
        if points:
            tune_ax.plot(*zip(*points), color=colors[family], marker="o", ms=4, lw=1.2,
                         label=LM_LABELS[family])
    sweep_ax.set_xscale("log")
    sweep_ax.set_xticks(budgets, [str(b) for b in budgets])
    sweep_ax.minorticks_off()
    sweep_ax.set(title=f"test bits/byte at each budget (mean ± std, {results['seeds']} seeds)",
                 xlabel="budget (updates)", ylabel="bits per byte")
    sweep_ax.legend(fontsize=7)
    tune_ax.set_xscale("log")
    tune_ax.set(title=f"tuning at {main} steps: tuning-file bits/byte by peak (seed 0)",
                xlabel="peak learning rate", ylabel="bits per byte")
    tune_ax.legend(fontsize=7)
    fig.suptitle("The source article's schedules on a byte-level llama (mlx-lm), AdamW, "
                 "standard-library corpus", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)
