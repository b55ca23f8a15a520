"""PNG plots of an evaluation: ROC, PR, reliability diagram, score histograms, confusion.

Figures are built with matplotlib's object API on an Agg canvas (no pyplot global
state, safe in threads and on machines without a display).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from chestaid.display import score_text
from chestaid.metrics import ConfusionMatrix, ReliabilityCurve, as_scores_and_labels


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    return out


def _ci_label(name: str, ci: tuple[float, float, float] | None, value: float) -> str:
    if ci is None:
        return f"{name} {value:.3f}"
    return f"{name} {ci[0]:.3f} (95% CI {ci[1]:.3f}-{ci[2]:.3f})"


def plot_roc(
    scores: ArrayLike,
    labels: ArrayLike,
    path: str | os.PathLike[str],
    *,
    auc_ci: tuple[float, float, float] | None = None,
) -> Path:
    """ROC curve with the chance diagonal; the legend gives the AUC and its interval."""
    from sklearn.metrics import roc_auc_score, roc_curve

    s, y = as_scores_and_labels(scores, labels, probabilities=False)
    fpr, tpr, _ = roc_curve(y, s)
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, lw=2, label=_ci_label("ROC-AUC", auc_ci, float(roc_auc_score(y, s))))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_pr(
    scores: ArrayLike,
    labels: ArrayLike,
    path: str | os.PathLike[str],
    *,
    ap_ci: tuple[float, float, float] | None = None,
) -> Path:
    """Precision-recall curve with the prevalence line."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    s, y = as_scores_and_labels(scores, labels, probabilities=False)
    precision, recall, _ = precision_recall_curve(y, s)
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot(
        recall,
        precision,
        lw=2,
        label=_ci_label("PR-AUC", ap_ci, float(average_precision_score(y, s))),
    )
    ax.axhline(float(y.mean()), ls="--", c="grey", lw=1, label=f"prevalence {y.mean():.2f}")
    ax.set(
        xlabel="recall (sensitivity)",
        ylabel="precision (PPV)",
        title="Precision-recall",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower left")
    return _save(fig, path)


def plot_reliability(
    curves: Mapping[str, ReliabilityCurve],
    path: str | os.PathLike[str],
    *,
    title: str = "Reliability diagram",
) -> Path:
    """Fraction positive against mean score per bin, one line per curve, counts below."""
    fig = Figure(figsize=(5.5, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect calibration")
    first: ReliabilityCurve | None = None
    for name, curve in curves.items():
        seen = curve.bin_count > 0
        top.plot(
            curve.bin_mean_prob[seen], curve.bin_frac_pos[seen], marker="o", lw=1.5, label=name
        )
        first = first or curve
    top.set(ylabel="fraction with pneumonia", title=title, xlim=(0, 1), ylim=(0, 1))
    top.legend(loc="upper left", fontsize="small")
    if first is not None:
        edges = first.bin_edges
        bottom.bar(
            edges[:-1],
            first.bin_count,
            width=np.diff(edges),
            align="edge",
            color="tab:blue",
            alpha=0.6,
        )
    bottom.set(xlabel="calibrated score", ylabel="cases")
    return _save(fig, path)


def plot_score_histograms(
    probs: ArrayLike,
    labels: ArrayLike,
    path: str | os.PathLike[str],
    *,
    threshold: float | None = None,
) -> Path:
    """Score distributions of normal and pneumonia cases, with the threshold."""
    p, y = as_scores_and_labels(probs, labels)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 31).tolist()
    ax.hist(
        p[y == 0],
        bins=bins,
        alpha=0.6,
        label=f"normal (n={int((y == 0).sum())})",
        color="tab:green",
    )
    ax.hist(
        p[y == 1],
        bins=bins,
        alpha=0.6,
        label=f"pneumonia (n={int((y == 1).sum())})",
        color="tab:red",
    )
    if threshold is not None:
        ax.axvline(threshold, c="black", ls="--", label=f"threshold {score_text(threshold)}")
    ax.set(xlabel="calibrated score", ylabel="cases", title="Score distributions")
    ax.legend()
    return _save(fig, path)


def plot_confusion(cm: ConfusionMatrix, path: str | os.PathLike[str], *, threshold: float) -> Path:
    """The 2x2 confusion matrix at ``threshold`` with counts and rates."""
    fig = Figure(figsize=(4.8, 4.5))
    ax = fig.add_subplot()
    grid = np.array([[cm.tn, cm.fp], [cm.fn, cm.tp]])
    ax.imshow(grid, cmap="Blues")
    for (i, j), value in np.ndenumerate(grid):
        ax.text(
            j,
            i,
            str(value),
            ha="center",
            va="center",
            fontsize=14,
            color="white" if value > grid.max() / 2 else "black",
        )
    ax.set_xticks([0, 1], ["below threshold", "above threshold"])
    ax.set_yticks([0, 1], ["normal", "pneumonia"])
    ax.set_title(
        f"threshold {score_text(threshold)}: sensitivity {cm.sensitivity:.3f}, specificity {cm.specificity:.3f}",
        fontsize="small",
    )
    return _save(fig, path)


def plot_levels(
    series: Mapping[str, Sequence[tuple[str, float]]],
    path: str | os.PathLike[str],
    *,
    ylabel: str,
    title: str,
    ylim: tuple[float, float] = (0.0, 1.02),
) -> Path:
    """One line per series over its levels (clean first); the legend names the levels.

    Families measure severity in their own units, so the x axis is the level's rank
    (0 = clean) and each series' legend entry lists what its levels are.
    """
    fig = Figure(figsize=(7, 4.8))
    ax = fig.add_subplot()
    longest = 1
    for name, points in series.items():
        levels = ", ".join(level for level, _ in points[1:])
        ax.plot(
            range(len(points)),
            [value for _, value in points],
            marker="o",
            lw=1.5,
            label=f"{name}: {levels}" if levels else name,
        )
        longest = max(longest, len(points))
    ax.set_xticks(list(range(longest)), ["clean", *[f"level {i}" for i in range(1, longest)]])
    ax.set(xlabel="severity", ylabel=ylabel, title=title, ylim=ylim)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_grouped_bars(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    path: str | os.PathLike[str],
    *,
    xlabel: str,
    title: str,
    xlim: tuple[float, float] = (0.0, 1.0),
) -> Path:
    """Horizontal bars: one group per condition, one bar per series (e.g. per recipe).

    A missing value (None) leaves its bar out; groups read top to bottom in order.
    """
    fig = Figure(figsize=(7.5, 0.32 * len(groups) * max(1, len(series)) + 1.4))
    ax = fig.add_subplot()
    height = 0.8 / max(1, len(series))
    rows = np.arange(len(groups))[::-1].astype(float)
    for i, (name, values) in enumerate(series.items()):
        offsets = rows + 0.4 - (i + 0.5) * height
        shown = [(y, v) for y, v in zip(offsets, values, strict=True) if v is not None]
        ax.barh([y for y, _ in shown], [v for _, v in shown], height=height * 0.9, label=name)
    ax.set_yticks(rows, list(groups))
    ax.set(xlabel=xlabel, title=title, xlim=xlim)
    ax.grid(axis="x", alpha=0.3)
    if series:  # below the axes, where it cannot hide a bar
        ax.legend(
            loc="upper center", bbox_to_anchor=(0.5, -0.6 / fig.get_figheight()), fontsize="small"
        )
    return _save(fig, path)
