"""PNG figures for the scripts (matplotlib is optional: only these functions need it)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..files import atomic_path

__all__ = ["pyplot", "plot_comparison", "plot_lm_run", "plot_range_test", "plot_run",
           "plot_schedules", "smooth"]


def pyplot():
    """matplotlib's pyplot on the Agg backend, or a clear error when it is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("PNG plots need matplotlib (pip install matplotlib, or "
                           "pip install 'mlx-schedules[plot]'); plot_schedules.py --text "
                           "draws in the terminal without it") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def smooth(values: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """Moving average over ``window`` points (shorter at the start), for noisy loss curves.

    Example:
        >>> smooth([1.0, 3.0, 5.0], 2).tolist()
        [1.0, 2.0, 4.0]
    """
    array = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(array) == 0:
        return array
    cumsum = np.cumsum(np.insert(array, 0, 0.0))
    out = np.empty_like(array)
    for i in range(len(array)):
        lo = max(0, i + 1 - window)
        out[i] = (cumsum[i + 1] - cumsum[lo]) / (i + 1 - lo)
    return out


def save_figure(fig: Any, path: str, *, dpi: int = 110) -> None:
    """Write the figure whole or not at all (a temporary file renamed over ``path``)."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)


def _log_scale_if_wide(ax, values: np.ndarray) -> None:
    positive = values[values > 0]
    if positive.size and positive.max() / positive.min() > 50:
        ax.set_yscale("log")


def plot_schedules(entries: Sequence[Mapping[str, Any]], path: str, *, title: str = "") -> None:
    """One panel per schedule: the rate against step, and its momentum on a second axis.

    Each entry has ``title``, ``steps``, ``learning_rate`` and optionally ``momentum``.
    """
    plt = pyplot()
    n = len(entries)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, entry in zip(axes.flat, entries):
        ax.plot(entry["steps"], entry["learning_rate"], color="tab:blue", lw=1.6)
        ax.set_title(entry["title"], fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("learning rate", color="tab:blue", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if entry.get("log_y"):
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        if entry.get("momentum") is not None:
            twin = ax.twinx()
            twin.plot(entry["steps"], entry["momentum"], color="tab:orange", lw=1.2, ls="--")
            twin.set_ylabel("momentum", color="tab:orange", fontsize=8)
            twin.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.97) if title else None)
    save_figure(fig, path)


def plot_run(train_rows: Sequence[Mapping[str, Any]], eval_rows: Sequence[Mapping[str, Any]],
             path: str, *, title: str = "") -> None:
    """The four curves of a run against step: rate, momentum (or beta1), loss, eval accuracy."""
    plt = pyplot()
    steps = np.array([r["step"] for r in train_rows])
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    rate = np.array([r["learning_rate"] for r in train_rows])
    axes[0, 0].plot(steps, rate, color="tab:blue")
    axes[0, 0].set_title("learning rate (from optimizer.state)")
    axes[0, 0].set_ylabel("learning rate")
    axes[0, 0].set_ylim(bottom=0)
    others = [k for k in ("momentum", "beta1", "weight_decay", "beta2")
              if train_rows and k in train_rows[0]]
    if others:
        for name in others:
            axes[0, 1].plot(steps, [r[name] for r in train_rows], label=name)
        axes[0, 1].legend()
        axes[0, 1].set_title("scheduled hyperparameters")
        axes[0, 1].set_ylabel("value")
    else:
        axes[0, 1].text(0.5, 0.5, "no scheduled momentum / beta1 / weight decay",
                        ha="center", va="center", transform=axes[0, 1].transAxes)
        axes[0, 1].set_title("scheduled hyperparameters")
    loss = np.array([r["loss"] for r in train_rows])
    axes[1, 0].plot(steps, loss, color="tab:gray", alpha=0.35, lw=0.8, label="per step")
    axes[1, 0].plot(steps, smooth(loss, max(1, len(loss) // 50)), color="tab:red",
                    label="moving average")
    if eval_rows:
        axes[1, 0].plot([r["step"] for r in eval_rows], [r["eval_loss"] for r in eval_rows],
                        "o-", color="tab:green", ms=3, label="test loss")
    axes[1, 0].set_yscale("log")
    axes[1, 0].set_title("loss")
    axes[1, 0].set_ylabel("cross-entropy (log scale)")
    axes[1, 0].legend()
    if eval_rows:
        axes[1, 1].plot([r["step"] for r in eval_rows],
                        [r["eval_accuracy"] for r in eval_rows], "o-", color="tab:green", ms=3)
    axes[1, 1].set_title("test accuracy")
    axes[1, 1].set_ylabel("accuracy")
    for ax in axes.flat:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def plot_range_test(rates: Sequence[float], losses: Sequence[float],
                    smoothed: Sequence[float], path: str, *, suggested_lr: float,
                    min_loss_lr: float, title: str = "") -> None:
    """Loss against rate (log x) with the minimum and the suggested ``max_lr`` marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.plot(rates, losses, color="tab:gray", alpha=0.4, lw=0.8, label="loss per step")
    ax.plot(rates, smoothed, color="tab:blue", lw=1.8, label="smoothed loss")
    ax.axvline(min_loss_lr, color="tab:red", ls=":", label=f"minimum at {min_loss_lr:.3g}")
    ax.axvline(suggested_lr, color="tab:green", ls="--",
               label=f"suggested max_lr {suggested_lr:.3g}")
    ax.set_xscale("log")
    finite = np.asarray([s for s in smoothed if math.isfinite(s)])
    if finite.size:
        ax.set_ylim(0.0, min(finite.max(), 3 * finite[0]) * 1.1)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(title or "learning-rate range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def plot_comparison(curves: Mapping[str, Mapping[str, Any]],
                    budgets: Mapping[str, Mapping[int, float | None]], path: str, *,
                    title: str = "", target: float | None = None) -> None:
    """The comparison figure: rates, training loss, test accuracy and the budget sweep.

    ``curves[label]`` holds ``steps``, ``learning_rate``, ``loss``, ``eval_steps`` and
    ``eval_accuracy`` of one run per schedule; ``budgets[label][steps]`` is the mean final test
    accuracy of that schedule at that budget.
    """
    plt = pyplot()
    # One legend for all panels, outside them (below), so it never hides a data point.
    fig, grid = plt.subplots(2, 2, figsize=(15, 10.5), layout="constrained")
    axes = list(grid.flat)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, c) in enumerate(curves.items()):
        color = colors[i % len(colors)]
        axes[0].plot(c["steps"], c["learning_rate"], color=color, lw=1.5, label=label)
        loss = np.asarray(c["loss"])
        axes[1].plot(c["steps"], smooth(loss, max(1, len(loss) // 30)), color=color, lw=1.5,
                     label=label)
        axes[2].plot(c["eval_steps"], c["eval_accuracy"], "o-", color=color, ms=2.5, lw=1.2,
                     label=label)
        points = sorted((b, a) for b, a in budgets.get(label, {}).items() if a is not None)
        if points:
            axes[3].plot(*zip(*points), "o-", color=color, lw=1.5, label=label)
    axes[0].set_yscale("log")
    top = max(max(c["learning_rate"]) for c in curves.values()) if curves else 1.0
    axes[0].set_ylim(top * 1e-4, top * 2)  # CED's troughs reach 0; keep the peaks readable
    axes[0].set_title("learning rate (read from optimizer.state)")
    axes[0].set_ylabel("learning rate (log scale)")
    axes[1].set_yscale("log")
    axes[1].set_title("training loss (moving average)")
    axes[1].set_ylabel("cross-entropy (log scale)")
    axes[2].set_title("test accuracy during the run")
    axes[2].set_ylabel("test accuracy")
    accuracies = [a for c in curves.values() for a in c["eval_accuracy"]]
    if accuracies:
        axes[2].set_ylim(max(0.0, min(0.8, float(np.percentile(accuracies, 10)))), 1.0)
    axes[3].set_xscale("log")
    axes[3].set_title("budget sweep: final test accuracy")
    axes[3].set_ylabel("final test accuracy (mean over seeds)")
    all_budgets = sorted({b for v in budgets.values() for b in v})
    if all_budgets:
        axes[3].set_xticks(all_budgets)
        axes[3].set_xticklabels([str(b) for b in all_budgets])
        axes[3].minorticks_off()
    if target is not None:
        for ax in (axes[2], axes[3]):
            ax.axhline(target, color="black", ls=":", lw=1, label=f"target {target:.0%}")
    for ax in axes[:3]:
        ax.set_xlabel("step")
    axes[3].set_xlabel("run length in steps (log scale)")
    for ax in axes:
        ax.grid(alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncol=min(len(handles), 4), fontsize=10, frameon=False)
    if title:
        fig.suptitle(title)
    save_figure(fig, path, dpi=100)


def plot_lm_run(train_rows: Sequence[Mapping[str, Any]], eval_rows: Sequence[Mapping[str, Any]],
                path: str, *, byte_level: bool, title: str = "") -> None:
    """The run's curves against step: the rate (and any scheduled beta1), and the training
    and validation loss (in bits per byte for byte-level data)."""
    plt = pyplot()
    unit = 1 / np.log(2) if byte_level else 1.0
    steps = np.array([r["step"] for r in train_rows])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rate_key = next((k for k in (train_rows[0] if train_rows else {})
                     if k.startswith("learning_rate")), "learning_rate")
    axes[0].plot(steps, [r[rate_key] for r in train_rows], color="tab:blue", label=rate_key)
    axes[0].set_ylabel("learning rate")
    axes[0].set_ylim(bottom=0)
    if train_rows and "beta1" in train_rows[0]:
        twin = axes[0].twinx()
        twin.plot(steps, [r["beta1"] for r in train_rows], color="tab:orange", label="beta1")
        twin.set_ylabel("beta1")
    axes[0].set_title("schedule (from optimizer.state)")
    loss = np.array([r["loss"] for r in train_rows]) * unit
    axes[1].plot(steps, loss, color="tab:gray", alpha=0.35, lw=0.8, label="train, per step")
    axes[1].plot(steps, smooth(loss, max(1, len(loss) // 50)), color="tab:red",
                 label="train, moving average")
    if eval_rows:
        axes[1].plot([r["step"] for r in eval_rows],
                     [r["eval_loss"] * unit for r in eval_rows], "o-", color="tab:green", ms=3,
                     label="validation")
    axes[1].set_ylabel("bits per byte" if byte_level else "loss (nats per token)")
    axes[1].set_title("loss")
    axes[1].legend()
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
