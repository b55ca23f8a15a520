"""PNG plots of an N-class evaluation: confusion matrix, per-class ROC and PR curves,
per-class reliability, and a Grad-CAM panel of every class.

Built like :mod:`chestaid.plots`: matplotlib's object API on an Agg canvas.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from chestaid.metrics import ReliabilityCurve
from chestaid.plots import _save


def plot_confusion_matrix(
    matrix: np.ndarray, classes: Sequence[str], path: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """True classes in rows, predicted (argmax) classes in columns; counts and row shares."""
    k = len(classes)
    fig = Figure(figsize=(1.3 * k + 2.5, 1.1 * k + 2))
    ax = fig.add_subplot()
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            f"{value}\n{shares[i, j]:.0%}",
            ha="center",
            va="center",
            fontsize=10,
            color="white" if shares[i, j] > 0.5 else "black",
        )
    ax.set_xticks(range(k), list(classes), rotation=30, ha="right")
    ax.set_yticks(range(k), list(classes))
    ax.set(xlabel="predicted (highest probability)", ylabel="true class")
    accuracy = f"accuracy {np.trace(matrix) / max(1, matrix.sum()):.3f}"
    ax.set_title(f"{title}: {accuracy}" if title else accuracy, fontsize="small")
    return _save(fig, path)


def plot_class_roc(
    probs: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    *,
    areas: Mapping[str, float] | None = None,
) -> Path:
    """One-vs-rest ROC curve of each class's probability, with the chance diagonal."""
    from sklearn.metrics import roc_curve

    def curve(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fpr, tpr, _ = roc_curve(positive, score)
        return fpr, tpr

    fig, ax = _one_vs_rest(probs, labels, classes, areas, curve, chance=None)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC, each class against the rest")
    ax.legend(loc="lower right", fontsize="small", title="ROC-AUC")
    return _save(fig, path)


def plot_class_pr(
    probs: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    *,
    areas: Mapping[str, float] | None = None,
) -> Path:
    """One-vs-rest precision-recall curve of each class's probability."""
    from sklearn.metrics import precision_recall_curve

    def curve(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        precision, recall, _ = precision_recall_curve(positive, score)
        return recall, precision

    fig, ax = _one_vs_rest(probs, labels, classes, areas, curve, chance="prevalence")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        title="Precision-recall, each class against the rest (dotted: prevalence)",
    )
    ax.legend(loc="lower left", fontsize="small", title="PR-AUC")
    return _save(fig, path)


def _one_vs_rest(
    probs: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    areas: Mapping[str, float] | None,
    curve: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    *,
    chance: str | None,
) -> tuple[Figure, Any]:
    """A figure with one curve per class that has both positives and negatives."""
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.add_subplot()
    for c, name in enumerate(classes):
        positive = labels == c
        if positive.all() or not positive.any():
            continue
        x, y = curve(positive, probs[:, c])
        area = f" {areas[name]:.3f}" if areas and name in areas else ""
        line = ax.plot(x, y, lw=1.8, label=f"{name}{area}")[0]
        if chance == "prevalence":
            ax.axhline(float(positive.mean()), ls=":", lw=1, c=line.get_color())
    ax.set(xlim=(0, 1), ylim=(0, 1.01))
    return fig, ax


def plot_class_reliability(
    curves: Mapping[str, Sequence[ReliabilityCurve]],
    classes: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "Reliability of each class's probability",
) -> Path:
    """One panel per class: observed frequency against mean probability, a line per curve set."""
    k = len(classes)
    cols = min(k, 2 if k == 4 else 3)
    rows = -(-k // cols)
    fig = Figure(figsize=(4.2 * cols, 4.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for c, name in enumerate(classes):
        ax = axes[c // cols][c % cols]
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
        for label, per_class in curves.items():
            curve = per_class[c]
            seen = curve.bin_count > 0
            ax.plot(
                curve.bin_mean_prob[seen],
                curve.bin_frac_pos[seen],
                marker="o",
                ms=3,
                lw=1.4,
                label=label,
            )
        ax.set(
            title=name,
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel=f"mean p({name})",
            ylabel=f"fraction {name}",
        )
        ax.legend(loc="upper left", fontsize="x-small")
    for extra in range(k, rows * cols):
        axes[extra // cols][extra % cols].set_axis_off()
    fig.suptitle(title)
    return _save(fig, path)


def plot_class_cams(
    images: Sequence[np.ndarray],
    overlays: Sequence[Sequence[np.ndarray]],
    classes: Sequence[str],
    captions: Sequence[str],
    probabilities: np.ndarray,
    path: str | os.PathLike[str],
) -> Path:
    """A row per case: the image, then its Grad-CAM overlay for each class with p(class).

    Args:
        images: grey images in [0, 1], one a case.
        overlays: per case, an RGB uint8 overlay per class.
        captions: per case, a short title (its true class).
        probabilities: (cases, K) calibrated probabilities shown over each map.
    """
    k = len(classes)
    n = len(images)
    fig = Figure(figsize=(2.2 * (k + 1), 2.4 * max(1, n)), layout="constrained")
    axes = fig.subplots(max(1, n), k + 1, squeeze=False)
    for r in range(n):
        axes[r][0].imshow(images[r], cmap="gray", vmin=0.0, vmax=1.0)
        axes[r][0].set_title(captions[r], fontsize="small")
        for c in range(k):
            axes[r][c + 1].imshow(overlays[r][c])
            axes[r][c + 1].set_title(f"{classes[c]} p={probabilities[r, c]:.2f}", fontsize="small")
        for ax in axes[r]:
            ax.set_axis_off()
    fig.suptitle("Grad-CAM of each class's logit (one colour scale per case)", fontsize="medium")
    return _save(fig, path)
