"""The comparison protocol of ``scripts/compare_schedules.py`` (the super-convergence budget
sweep), as plain functions of a validated base config and the loaded data.

1. A learning-rate range test on the training data: reported, and with
   ``peaks_from="range-test"`` each schedule's peak (its family's suggestion,
   :func:`trainers.lr_finder.schedule_suggestions`) instead of the grid.
2. Tuning: at every budget (run length), each schedule's peak rate is chosen from a grid by the
   final accuracy on a validation split held out of the training set (seed 0); a best peak at
   an edge of the grid extends it (:func:`trainers.experiments.peaks.tune_peak`).
3. Measurement: each schedule at its tuned peak, at every budget, over several seeds, trained
   on the whole training set and evaluated on the test set.

:func:`compare` runs it and returns every number; :func:`markdown_report` writes the tables.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainers import NonFiniteError

from .families import FAMILY_LABELS, family_configs
from .peaks import PEAK_SOURCES, peak_ratio, tune_peak
from .run import range_test, run_training

__all__ = ["VALIDATION_FRACTION", "aggregate", "compare", "markdown_report", "run_config",
           "source_table_markdown", "train_one"]

VALIDATION_FRACTION = 0.2
SOURCE_TABLE = Path(__file__).with_name("source_table.md")


def source_table_markdown() -> str:
    """The source article's comparison table, restated in our words (``source_table.md``).

    Example:
        >>> source_table_markdown().splitlines()[0]
        '| method | purpose | strengths | when to use, per the source article |'
    """
    lines = SOURCE_TABLE.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if line.startswith("|"))


def _split_validation(data: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Training data split into fit/validation; the test set is left untouched."""
    n = len(data["x_train"])
    order = np.random.default_rng((seed, 1)).permutation(n)
    n_val = int(round(VALIDATION_FRACTION * n))
    val, fit = order[:n_val], order[n_val:]
    return {"x_train": data["x_train"][fit], "y_train": data["y_train"][fit],
            "x_test": data["x_train"][val], "y_test": data["y_train"][val]}


#: a range-test peak losing more than this (points of accuracy) is re-measured with
#: ``recheck_seeds`` seeds by :func:`compare`
RECHECK_POINTS = 0.5


def run_config(base: dict[str, Any], family: str, peak: float, steps: int,
               seed: int) -> dict[str, Any]:
    """The full run config of one schedule family at one peak, run length and seed."""
    config = copy.deepcopy(base)
    config["optimizer"] = {"name": "SGD", **family_configs(family, peak, steps)}
    config["training"].update(steps=steps, seed=seed, eval_every=max(5, steps // 20),
                              checkpoint_every=0, log_every=steps)
    return config


def train_one(config: dict[str, Any], data: dict[str, np.ndarray],
              log_dir: str | None = None) -> dict[str, Any]:
    """One run: its summary plus its curves (rates from the optimizer state via the log)."""
    try:  # without log_dir nothing touches the disk: rows stay in memory (run_dir=None)
        summary, rows = run_training(config, data=data, run_dir=log_dir,
                                     log_files=log_dir is not None, overwrite=True)
    except NonFiniteError as e:
        return {"diverged": True, "error": str(e), "final_accuracy": None,
                "best_accuracy": None, "steps_to_target": None, "wall_time_s": None,
                "final_eval_loss": None}
    summary["diverged"] = False
    summary["curves"] = {
        "steps": [r["step"] for r in rows.train],
        "learning_rate": [r["learning_rate"] for r in rows.train],
        "momentum": [r.get("momentum") for r in rows.train],
        "loss": [r["loss"] for r in rows.train],
        "eval_steps": [r["step"] for r in rows.eval],
        "eval_accuracy": [r["eval_accuracy"] for r in rows.eval],
    }
    return summary


def _score(run: dict[str, Any]) -> tuple[float, float]:
    if run["diverged"] or run["final_accuracy"] is None:
        return (-1.0, 0.0)
    return (run["final_accuracy"], -run["final_eval_loss"])


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None, None
    return float(np.mean(finite)), float(np.std(finite))


def _pct(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "diverged"
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds of one schedule at one budget."""
    final = _mean_std([r["final_accuracy"] for r in runs])
    best = _mean_std([r["best_accuracy"] for r in runs])
    reached = [r["steps_to_target"] for r in runs if r["steps_to_target"] is not None]
    return {
        "final_accuracy": final[0], "final_accuracy_std": final[1],
        "best_accuracy": best[0], "best_accuracy_std": best[1],
        "steps_to_target": float(np.mean(reached)) if reached else None,
        "reached_target": len(reached), "seeds": len(runs),
        "diverged": sum(r["diverged"] for r in runs),
        "wall_time_s": _mean_std([r["wall_time_s"] for r in runs])[0],
    }


def _edge(results: dict[str, Any], family: str, budget: int) -> str:
    status = results.get("tuning_status", {}).get(family, {}).get(str(budget))
    return ", grid edge (limit)" if status == "grid edge (limit)" else ""


def markdown_report(results: dict[str, Any]) -> str:
    """comparison.md: the measured tables, the source article's table, the protocol and the
    command."""
    budgets = results["budgets"]
    main = results["main_budget"]
    target = results["target"]
    families = results["families"]
    lines = [f"# Schedule comparison on {results['dataset']} ({results['model']}, SGD)", ""]
    lines += [f"Command: `{results['command']}`", "",
              f"Machine: {results['machine']}; total wall time {results['wall_time_s']:.0f} s "
              f"({results['runs']} training runs).", ""]
    lines += [f"## Measured at {main} steps (tuned peak, {results['seeds']} seeds, test set)", ""]
    lines += [f"| schedule | tuned peak | final test acc. % | best test acc. % | "
              f"steps to {100 * target:.0f}% | wall time / run |",
              "|---|---|---|---|---|---|"]
    for family in families:
        a = results["measured"][family][str(main)]
        peak = results["tuned_peaks"][family][str(main)]
        steps = (f"{a['steps_to_target']:.0f} ({a['reached_target']}/{a['seeds']} seeds)"
                 if a["steps_to_target"] is not None else f"not reached (0/{a['seeds']})")
        wall = f"{a['wall_time_s']:.2f} s" if a["wall_time_s"] is not None else "-"
        lines.append(f"| {FAMILY_LABELS[family]} | {peak:g}{_edge(results, family, main)} | "
                     f"{_pct(a['final_accuracy'], a['final_accuracy_std'])} | "
                     f"{_pct(a['best_accuracy'], a['best_accuracy_std'])} | {steps} | {wall} |")
    lines += ["", "## Budget sweep: final test accuracy % (mean ± std) at each run length", "",
              "| schedule | " + " | ".join(f"{b} steps" for b in budgets)
              + f" | smallest budget reaching {100 * target:.0f}% |",
              "|---|" + "---|" * (len(budgets) + 1)]
    for family in families:
        cells = []
        for b in budgets:
            a = results["measured"][family][str(b)]
            peak = results["tuned_peaks"][family][str(b)]
            cells.append(f"{_pct(a['final_accuracy'], a['final_accuracy_std'])} "
                         f"(peak {peak:g}{_edge(results, family, b)})")
        smallest = results["smallest_budget"][family]
        lines.append(f"| {FAMILY_LABELS[family]} | " + " | ".join(cells) + " | "
                     + (f"{smallest}" if smallest else "none") + " |")
    rt = results["range_test"]
    source = results.get("peaks_from", "grid")
    lines += ["", "## Range test", "",
              f"Smoothed loss lowest at rate {rt['min_loss_lr']:.3g} (the extremum); valley "
              f"rule {rt['suggested_lr']:.3g}; steepest descent at {rt['steepest_lr']:.3g}. "
              "Peak per schedule (trainers.lr_finder.schedule_suggestions): "
              + ", ".join(f"{FAMILY_LABELS[f]} {rt['suggestions_by_schedule'][f]:.3g}"
                          for f in families) + ". "
              + (f"Starting peak grid: {results['peaks']}; a best peak at an edge extends it "
                 f"by one point on that side, up to {results.get('max_extra', 0)} points."
                 if source != "range-test" else "Peaks taken from the range test (no grid).")
              + " Peaks marked *grid edge (limit)* are still at an edge after the extension.",
              ""]
    if results.get("versus_range_test"):
        lines += ["## Range-test peak against the grid-tuned peak", "",
                  "Each schedule measured at both peaks (same seeds, test set). Ratio: the "
                  "larger peak over the smaller; loss: tuned minus range-test final accuracy "
                  "(points; positive means the range-test peak loses).", "",
                  "| schedule | budget | range-test peak | tuned peak | ratio | final acc. % at "
                  "range-test peak | at tuned peak | loss (points) |",
                  "|---|---|---|---|---|---|---|---|"]
        for family in families:
            for b in budgets:
                v = results["versus_range_test"][family][str(b)]
                loss = (f"{v['accuracy_loss_points']:+.1f}"
                        if v["accuracy_loss_points"] is not None else "-")
                lines.append(f"| {FAMILY_LABELS[family]} | {b} | {v['suggested_peak']:.3g} | "
                             f"{v['tuned_peak']:g} | {v['ratio']:.2f} | "
                             f"{_pct(v['suggested_accuracy'], v['suggested_accuracy_std'])} | "
                             f"{_pct(v['tuned_accuracy'], v['tuned_accuracy_std'])} | "
                             f"{loss} |")
        lines.append("")
        rechecked = [(f, b, results["versus_range_test"][f][str(b)]["recheck"])
                     for f in families for b in budgets
                     if "recheck" in results["versus_range_test"][f][str(b)]]
        if rechecked:
            lines += [f"Every loss above {RECHECK_POINTS} points measured again with "
                      f"{rechecked[0][2]['seeds']} seeds at both peaks (seeds 0 to "
                      f"{rechecked[0][2]['seeds'] - 1}; the first {results['seeds']} are the "
                      "runs above):", "",
                      "| schedule | budget | final acc. % at range-test peak | at tuned peak | "
                      "loss (points) |", "|---|---|---|---|---|"]
            for family, b, r in rechecked:
                loss = (f"{r['accuracy_loss_points']:+.1f}"
                        if r["accuracy_loss_points"] is not None else "-")
                lines.append(
                    f"| {FAMILY_LABELS[family]} | {b} | "
                    f"{_pct(r['suggested_accuracy'], r['suggested_accuracy_std'])} | "
                    f"{_pct(r['tuned_accuracy'], r['tuned_accuracy_std'])} | {loss} |")
            lines.append("")
    lines += ["## The source article's table (restated)", "", source_table_markdown(), ""]
    lines += ["## Protocol", "",
              "Each schedule's peak rate is tuned at every budget over the grid by the final "
              "accuracy on a validation split (20% of the training set, seed 0); then it is run "
              f"with {results['seeds']} seeds (weights, data order) on the whole training set "
              "and evaluated on the test set. Steps to target: the first evaluation (every "
              "budget/20 steps) at or above the target, averaged over the seeds that reach it. "
              "A budget 'reaches' the target when the mean final accuracy does. Shapes: "
              "exponential decays to peak/100; CED has the same envelope and 3.5 cosine cycles; "
              "1-cycle is PyTorch's OneCycleLR (30% warm-up, momentum 0.95-0.85-0.95); "
              "triangular CLR runs two cycles between peak/25 and peak with momentum cycled "
              "inversely; others use momentum 0.9.", ""]
    return "\n".join(lines)


def compare(base: dict[str, Any], data: dict[str, np.ndarray], *, families: Sequence[str],
            budgets: Sequence[int], peaks: Sequence[float], seeds: int, target: float,
            range_test_steps: int, peak_from_range_test: bool = False,
            peaks_from: str | None = None, max_extra: int = 3,
            recheck_seeds: int = 0, log_root: str | None = None,
            report: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run the whole protocol; return every number (``results.json`` less the command,
    machine and timing, which the caller adds).

    Args:
        base: a validated run config (model, dataset, training settings).
        data: its arrays, from :func:`trainers.experiments.run.prepare_data`.
        families, budgets, peaks, seeds, target: what to compare, at which run lengths, over
            which peak grid, how many seeds per measurement, the target test accuracy.
        range_test_steps: the length of the range test's sweep.
        peak_from_range_test: the older spelling of ``peaks_from="range-test"``.
        peaks_from: ``"grid"`` (default): tune each peak over ``peaks``; ``"range-test"``:
            each schedule at its family's range-test peak, no grid; ``"both"``: tune, and
            also measure every schedule at its range-test peak (``versus_range_test``: the
            ratio of the peaks and the accuracy lost at the range-test one).
        max_extra: grid points added past an edge that wins, per side
            (:func:`trainers.experiments.peaks.tune_peak`).
        recheck_seeds: with ``peaks_from="both"``, every schedule and budget whose range-test
            peak loses more than :data:`RECHECK_POINTS` is measured again at both peaks with
            this many seeds (0: not; must exceed ``seeds``), under ``"recheck"`` in its
            ``versus_range_test`` entry: is the loss the rule's or the seeds'?
        log_root: write each measured run's trainer log under ``log_root/<family>_<steps>_
            seed<seed>/`` (by default measured runs write nothing).
        report: called with a line of progress.
    """
    budgets = sorted(set(budgets))
    families = list(families)
    if peaks_from is None:
        peaks_from = "range-test" if peak_from_range_test else "grid"
    if peaks_from not in PEAK_SOURCES:
        raise ValueError(f"peaks_from must be one of {list(PEAK_SOURCES)}, got {peaks_from!r}")
    tuning_data = _split_validation(data, base["dataset"]["split_seed"])
    runs = 0

    report(f"range test ({range_test_steps} updates) ...")
    rt_config = run_config(base, "constant", 0.1, max(budgets), 0)
    rt = range_test(rt_config, min_lr=1e-4, max_lr=10.0, steps=range_test_steps,
                    data=data)
    suggested = {f: rt["suggestions_by_schedule"][f] for f in families}
    report(f"  loss minimum at {rt['min_loss_lr']:.3g}; peaks: "
           + ", ".join(f"{f} {suggested[f]:.3g}" for f in families))

    tuned: dict[str, dict[str, float]] = {f: {} for f in families}
    tuning: dict[str, dict[str, dict[str, Any]]] = {f: {} for f in families}
    status: dict[str, dict[str, str]] = {f: {} for f in families}
    for steps in budgets:
        for family in families:
            if peaks_from == "range-test":
                tuned[family][str(steps)] = suggested[family]
                status[family][str(steps)] = "range test"
                continue

            def trial(peak: float, family: str = family, steps: int = steps) -> dict:
                return train_one(run_config(base, family, peak, steps, 0), tuning_data)

            found = tune_peak(trial, peaks, _score, max_extra=max_extra)
            runs += len(found["trials"])
            tuned[family][str(steps)] = found["peak"]
            status[family][str(steps)] = found["status"]
            tuning[family][str(steps)] = {
                f"{p:g}": None if r["diverged"] else r["final_accuracy"]
                for p, r in sorted(found["trials"].items())}
        report(f"  peaks at {steps} steps: "
               + ", ".join(f"{f} {tuned[f][str(steps)]:g}" for f in families))

    main_budget = max(budgets)

    def measure(family: str, steps: int, peak: float, keep: bool,
                n_seeds: int = seeds) -> dict[str, Any]:
        nonlocal runs
        seed_runs = []
        for seed in range(n_seeds):
            log_dir = (os.path.join(log_root, f"{family}_{steps}_seed{seed}")
                       if log_root is not None and keep else None)
            run = train_one(run_config(base, family, peak, steps, seed), data, log_dir)
            runs += 1
            if keep and steps == main_budget and seed == 0 and not run["diverged"]:
                curves[family] = run["curves"]
            run.pop("curves", None)
            seed_runs.append(run)
        return {**aggregate(seed_runs), "runs": seed_runs}

    measured: dict[str, dict[str, Any]] = {f: {} for f in families}
    versus: dict[str, dict[str, Any]] = {f: {} for f in families}
    curves: dict[str, dict[str, Any]] = {}
    for steps in budgets:
        for family in families:
            peak = tuned[family][str(steps)]
            measured[family][str(steps)] = measure(family, steps, peak, True)
            if peaks_from == "both":
                at_suggested = measure(family, steps, suggested[family], False)
                tuned_acc = measured[family][str(steps)]["final_accuracy"]
                got = at_suggested["final_accuracy"]
                versus[family][str(steps)] = {
                    "suggested_peak": suggested[family], "tuned_peak": peak,
                    "ratio": peak_ratio(suggested[family], peak),
                    "suggested_accuracy": got,
                    "suggested_accuracy_std": at_suggested["final_accuracy_std"],
                    "tuned_accuracy": tuned_acc,
                    "tuned_accuracy_std": measured[family][str(steps)]["final_accuracy_std"],
                    "accuracy_loss_points": None if got is None or tuned_acc is None
                    else 100 * (tuned_acc - got),
                    "runs": at_suggested["runs"]}
        report(f"  measured {steps} steps: "
               + ", ".join(f"{f} {_pct(measured[f][str(steps)]['final_accuracy'])}"
                           for f in families))
    if peaks_from == "both" and recheck_seeds > seeds:
        for family in families:
            for steps in budgets:
                entry = versus[family][str(steps)]
                if (entry["accuracy_loss_points"] or 0) <= RECHECK_POINTS:
                    continue
                both = [measure(family, steps, entry[k], False, recheck_seeds)
                        for k in ("suggested_peak", "tuned_peak")]
                entry["recheck"] = {
                    "seeds": recheck_seeds,
                    "suggested_accuracy": both[0]["final_accuracy"],
                    "suggested_accuracy_std": both[0]["final_accuracy_std"],
                    "tuned_accuracy": both[1]["final_accuracy"],
                    "tuned_accuracy_std": both[1]["final_accuracy_std"],
                    "accuracy_loss_points": None if None in (
                        both[0]["final_accuracy"], both[1]["final_accuracy"])
                    else 100 * (both[1]["final_accuracy"] - both[0]["final_accuracy"])}
                report(f"  {family} at {steps} steps, {recheck_seeds} seeds: loss "
                       f"{entry['recheck']['accuracy_loss_points']}")

    smallest = {}
    for family in families:
        ok = [b for b in budgets
              if (measured[family][str(b)]["final_accuracy"] or 0) >= target]
        smallest[family] = min(ok) if ok else None
    return {
        "dataset": base["dataset"]["name"], "model": base["model"]["kind"],
        "budgets": budgets, "main_budget": main_budget, "peaks": sorted(peaks),
        "peaks_from": peaks_from, "max_extra": max_extra,
        "peak_from_range_test": peaks_from == "range-test", "seeds": seeds,
        "target": target, "families": families, "runs": runs,
        "range_test": {k: rt[k] for k in ("suggested_lr", "min_loss_lr", "steepest_lr",
                                          "suggestions_by_schedule", "diverged_at")},
        "tuned_peaks": tuned, "tuning_status": status,
        "tuning_validation_accuracy": tuning, "measured": measured,
        "versus_range_test": versus if peaks_from == "both" else None,
        "smallest_budget": smallest, "curves": curves, "config": base,
    }
