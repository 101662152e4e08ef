"""The LM study: the schedules of current language-model practice against the source article's,
on a byte-level llama at two model sizes and two token budgets per size
(``mlx-schedules compare-lm --study``).

Schedules (:data:`STUDY_FAMILIES`, shapes in :mod:`trainers.experiments.lm_schedules`):
cosine to 10% of the peak, linear decay to zero (Bergsma et al. 2025), warmup-stable-decay
with a linear and with a 1-sqrt cooldown (Hägele et al. 2024), schedule-free AdamW (Defazio et
al. 2024, :class:`trainers.schedule_free.ScheduleFreeAdamW`), the power scheduler (Shen et al.
2024, :func:`mlx_schedules.power_schedule`), and the source article's exponential decay,
cyclic exponential decay and 1-cycle.

Each size is one :func:`trainers.experiments.comparison_lm.compare_lm` run (the same protocol:
a small peak grid on seed 0 scored on the tuning files, extended past a winning edge, then
every seed at the tuned peak scored on the test files). The budgets are in updates; with a
fixed batch their tokens per parameter differ by the ratio of the budgets (at least 4x).

:func:`run_study` returns every number; :func:`study_report` writes ``study.md`` with the
table "what the literature claims / what we measured at this scale"; :func:`plot_study` the
figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import mlx.core as mx

from ..files import write_json_atomic, write_text_atomic
from .comparison_lm import LM_LABELS, LMSettings, compare_lm

__all__ = ["STUDY_FAMILIES", "StudyConfig", "claims_rows", "default_study", "plot_study",
           "run_study", "study_report", "tiny_study"]

STUDY_FAMILIES = ("warmup_cosine", "linear", "wsd", "wsd_sqrt", "schedule_free", "power",
                  "exponential", "cyclic_exponential", "one_cycle")


@dataclass
class StudyConfig:
    """What the study runs: model sizes (name -> llama overrides of the ``tiny`` preset), the
    budgets in updates (the same for every size), the peak grid, the seeds."""

    sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    budgets: tuple[int, ...] = (100, 400)
    peaks: tuple[float, ...] = (0.003, 0.01)
    seeds: int = 3
    families: tuple[str, ...] = STUDY_FAMILIES
    max_extra: int = 1
    seq_len: int = 32
    batch_size: int = 16
    tune_windows: int = 128
    test_windows: int = 256


def default_study() -> StudyConfig:
    """The default study: llama widths 32 and 64 (2 layers), 100 and 400 updates of 16 x 32
    bytes, grid {0.003, 0.01} (one extension per side), 3 seeds. Sized for about 20 minutes on
    2 CPU cores (2 worker processes) on a quiet machine.

    Example:
        >>> list(default_study().sizes), default_study().budgets
        (['S', 'M'], (100, 400))
    """
    return StudyConfig(sizes={
        "S": {"hidden_size": 32, "intermediate_size": 96, "num_attention_heads": 4},
        "M": {"hidden_size": 64, "intermediate_size": 192, "num_attention_heads": 4}})


def tiny_study() -> StudyConfig:
    """A seconds-long study for tests: two very small models, 8 and 32 updates, one peak,
    two seeds, four schedules.

    Example:
        >>> tiny_study().budgets
        (8, 32)
    """
    small = {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2,
             "num_key_value_heads": 2, "num_hidden_layers": 1}
    return StudyConfig(sizes={"S": small, "M": {**small, "hidden_size": 32}},
                       budgets=(8, 32), peaks=(0.01,), seeds=2,
                       families=("wsd", "wsd_sqrt", "schedule_free", "power"), max_extra=0,
                       seq_len=16, batch_size=4, tune_windows=8, test_windows=8)


def run_study(study: StudyConfig, *, jobs: int = 1,
              report: Callable[[str], Any] = print) -> dict[str, Any]:
    """Every size's comparison (``results["sizes"][name]``, as ``compare_lm`` returns it) and
    the tokens per parameter of every budget."""
    if not study.sizes:
        raise ValueError("the study needs at least one model size")
    if len(study.budgets) < 2 or max(study.budgets) < 4 * min(study.budgets):
        raise ValueError(f"budgets must span at least 4x (tokens per parameter), got "
                         f"{list(study.budgets)}")
    start = time.perf_counter()
    sizes = {}
    for name, overrides in study.sizes.items():
        settings = replace(LMSettings(), model_overrides=dict(overrides),
                           seq_len=study.seq_len, batch_size=study.batch_size,
                           tune_windows=study.tune_windows, test_windows=study.test_windows)
        report(f"size {name}: {overrides}")
        result = compare_lm(settings, families=study.families, budgets=study.budgets,
                            peaks=study.peaks, seeds=study.seeds, jobs=jobs,
                            max_extra=study.max_extra, range_test_steps=0, report=report)
        result.pop("curves", None)  # the figure shows the budget sweep, not the curves
        tokens = result["tokens_per_step"]
        result["tokens_per_parameter"] = {
            str(b): b * tokens / result["model_parameters"] for b in result["budgets"]}
        sizes[name] = result
    return {"study": {"sizes": study.sizes, "budgets": list(study.budgets),
                      "peaks": list(study.peaks), "seeds": study.seeds,
                      "families": list(study.families), "max_extra": study.max_extra,
                      "seq_len": study.seq_len, "batch_size": study.batch_size},
            "sizes": sizes, "wall_time_s": time.perf_counter() - start}


# ------------------------------------------------------------------------------ the report
def _bpb(results: Mapping[str, Any], size: str, family: str, budget: int) -> tuple:
    cell = results["sizes"][size]["measured"][family][str(budget)]
    return cell["test_bpb"], cell["test_bpb_std"] or 0.0


def _fmt(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "diverged"
    return f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def _difference(results: Mapping[str, Any], a: str, b: str) -> tuple[list[str], list[str]]:
    """Per size and budget, ``a`` minus ``b`` (bits per byte) and a verdict word each: a
    difference counts when it exceeds twice the larger seed std of the two cells."""
    cells, words = [], []
    for size in results["sizes"]:
        for budget in results["study"]["budgets"]:
            (ma, sa), (mb, sb) = _bpb(results, size, a, budget), _bpb(results, size, b, budget)
            where = f"{size}/{budget}"
            if ma is None or mb is None:
                cells.append(f"{where}: diverged")
                words.append("diverged")
                continue
            noise = 2 * max(sa, sb)
            diff = ma - mb
            cells.append(f"{where}: {diff:+.3f} (±{noise:.3f})")
            words.append("tie" if abs(diff) <= noise else ("a" if diff < 0 else "b"))
    return cells, words


def claims_rows(results: Mapping[str, Any]) -> list[str]:
    """The table "what the literature claims / what we measured at this scale", written from
    the numbers (a - b in test bits per byte per size/budget; negative: a is better)."""
    families = results["study"]["families"]
    rows = ["| claim (source) | a vs b | what we measured (a - b, bits/byte, per size/budget; "
            "± twice the larger seed std) | verdict at this scale |", "|---|---|---|---|"]

    def pair(claim: str, a: str, b: str, holds: str, fails: str) -> None:
        if a not in families or b not in families:
            return
        cells, words = _difference(results, a, b)
        counts = {w: words.count(w) for w in ("a", "b", "tie", "diverged")}
        if counts["a"] and not counts["b"]:
            verdict = f"{holds} ({counts['a']} of {len(words)} cells; ties elsewhere)" \
                if counts["tie"] else f"{holds} (every cell)"
        elif counts["b"] and not counts["a"]:
            verdict = f"{fails} ({counts['b']} of {len(words)} cells)"
        elif not counts["a"] and not counts["b"]:
            verdict = "no difference beyond the seed noise"
        else:
            verdict = f"mixed: a better in {counts['a']}, b in {counts['b']} of {len(words)}"
        rows.append(f"| {claim} | {LM_LABELS[a]} vs {LM_LABELS[b]} | {'; '.join(cells)} | "
                    f"{verdict} |")

    pair("WSD with a 1-sqrt cooldown matches or beats cosine (Hägele et al. 2024)",
         "wsd_sqrt", "warmup_cosine", "holds", "does not hold: cosine is better")
    pair("the 1-sqrt cooldown beats a linear one (Hägele et al. 2024)", "wsd_sqrt", "wsd",
         "holds", "does not hold: linear cooldown is better")
    pair("linear decay to zero beats cosine to 10%, more so at more tokens per parameter "
         "(Bergsma et al. 2025)", "linear", "warmup_cosine", "holds",
         "does not hold: cosine to 10% is better")
    pair("schedule-free AdamW matches or beats a tuned cosine schedule (Defazio et al. 2024)",
         "schedule_free", "warmup_cosine", "holds", "does not hold: cosine is better")
    pair("the power scheduler matches WSD without knowing the run's length (Shen et al. 2024)",
         "power", "wsd", "holds (better)", "does not hold: WSD is better")
    pair("CED beats its own envelope (the source article)", "cyclic_exponential",
         "exponential", "holds", "does not hold: exponential decay is better")
    pair("1-cycle is the choice under a time limit (the source article)", "one_cycle",
         "warmup_cosine", "holds: beats cosine", "does not hold: cosine is better")
    return rows


def study_report(results: Mapping[str, Any]) -> str:
    """study.md: the setup, one table per size (schedule x budget), the claims table, scope."""
    study = results["study"]
    lines = ["# LM study: the schedules of current practice on a byte-level llama", "",
             f"Command: `{results.get('command', '?')}`", "",
             f"Machine: {results.get('machine', '?')}. Wall time "
             f"{results['wall_time_s']:.0f} s.", ""]
    lines += [f"Every size: llama, byte vocabulary, batch {study['batch_size']} x "
              f"{study['seq_len']} bytes, AdamW (weight decay 0.1, beta2 0.99, clip 1.0); "
              f"peaks tuned over {study['peaks']} on seed 0 (the tuning files; a winning edge "
              f"extends the grid by up to {study['max_extra']} point per side), then "
              f"{study['seeds']} seeds at the tuned peak scored on the test files "
              "(bits per byte, lower is better).", ""]
    for size, r in results["sizes"].items():
        mc = r["model_config"]
        lines += [f"## Size {size}: {r['model_parameters']:,} weights (width "
                  f"{mc['hidden_size']}, {mc['num_hidden_layers']} layers)", "",
                  "| schedule | " + " | ".join(
                      f"{b} updates ({r['tokens_per_parameter'][str(b)]:.1f} tokens/param)"
                      for b in study["budgets"]) + " |",
                  "|---|" + "---|" * len(study["budgets"])]
        for family in study["families"]:
            cells = []
            for b in study["budgets"]:
                mean, std = _bpb(results, size, family, b)
                status = r["tuning_status"][family][str(b)]
                edge = ", grid edge (limit)" if status == "grid edge (limit)" else ""
                cells.append(f"{_fmt(mean, std)} (peak {r['tuned_peaks'][family][str(b)]:g}"
                             f"{edge})")
            lines.append(f"| {LM_LABELS[family]} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## What the literature claims / what we measured at this scale", "",
              "a - b in mean test bits per byte per size/budget (negative: a is better); a "
              "difference counts when it exceeds twice the larger seed std (population std "
              "over the seeds) of the two cells.", ""]
    lines += claims_rows(results)
    params = [r["model_parameters"] for r in results["sizes"].values()]
    lines += ["", f"Scope: models of {min(params):,} to {max(params):,} weights trained for at "
              f"most {max(study['budgets'])} updates on a byte-level corpus. The papers "
              "measured models of 10^8 to 10^10 weights on 10^9 to 10^12 tokens; what they "
              "claim about long runs (cooldown shape at scale, tokens-per-parameter trends "
              "past 20) cannot show here. The power scheduler's `a` is set so that its power "
              "law meets the peak at the end of the warmup (the paper's a = 4 assumes muP).",
              ""]
    return "\n".join(lines)


def plot_study(results: Mapping[str, Any], path: str) -> None:
    """One panel per size: test bits per byte against tokens per parameter, per schedule."""
    from .plotting import pyplot, save_figure

    plt = pyplot()
    study = results["study"]
    sizes = list(results["sizes"])
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.5), squeeze=False)
    colors = {f: plt.get_cmap("tab10")(i) for i, f in enumerate(STUDY_FAMILIES)}
    for ax, size in zip(axes[0], sizes, strict=True):
        r = results["sizes"][size]
        for family in study["families"]:
            xs, ys, es = [], [], []
            for b in study["budgets"]:
                mean, std = _bpb(results, size, family, b)
                if mean is not None:
                    xs.append(r["tokens_per_parameter"][str(b)])
                    ys.append(mean)
                    es.append(std)
            ax.errorbar(xs, ys, yerr=es, marker="o", ms=4, capsize=3, lw=1.2,
                        color=colors.get(family), label=LM_LABELS[family])
        ax.set_xscale("log")
        ax.set(title=f"size {size}: {r['model_parameters']:,} weights",
               xlabel="tokens per parameter", ylabel="test bits per byte")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"LM study: test bits per byte (mean ± std, {study['seeds']} seeds)")
    fig.tight_layout()
    save_figure(fig, path)


def run_study_cli(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``mlx-schedules compare-lm --study [--tiny]``: run the study, write ``results.json``,
    ``study.md`` and ``study.png`` into ``--out-dir`` (default ``runs/lm_study``)."""
    try:
        import mlx_lm  # noqa: F401
    except ImportError:
        print("error: the LM study needs mlx-lm: pip install 'mlx-schedules[lm]'",
              file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"config error: --jobs: need >= 1, got {args.jobs}", file=sys.stderr)
        return 2
    study = tiny_study() if args.tiny else default_study()
    out_dir = args.out_dir or "runs/lm_study"
    os.makedirs(out_dir, exist_ok=True)
    results = run_study(study, jobs=args.jobs, report=lambda line: print(line, flush=True))
    results = {"command": "mlx-schedules compare-lm" + "".join(f" {shlex.quote(a)}"
                                                             for a in argv),
               "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
                          f"mlx {getattr(mx, '__version__', '?')}, {args.jobs} worker "
                          f"process(es), load average at the end {os.getloadavg()[0]:.1f}",
               **results}
    report = study_report(results)
    write_json_atomic(os.path.join(out_dir, "results.json"), results)
    write_text_atomic(os.path.join(out_dir, "study.md"), report)
    if not args.no_plot:
        try:
            plot_study(results, os.path.join(out_dir, "study.png"))
        except RuntimeError as e:
            print(f"warning: no figure: {e}", file=sys.stderr)
    print(report)
    print(f"wrote {out_dir}/results.json, study.md, study.png ({results['wall_time_s']:.0f} s)")
    return 0
