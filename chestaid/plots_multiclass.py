"""PNG plots of N-class results: the confusion matrix with counts and row shares."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from chestaid.plots import _save


def plot_confusion_matrix(
    matrix: np.ndarray,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """Rows the true class, columns the predicted one; each cell its count and row share."""
    counts = np.asarray(matrix, dtype=np.int64)
    k = len(classes)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(1.3 * k + 1.5, 1.2 * k + 1.0))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                f"{counts[i, j]}\n{shares[i, j]:.0%}",
                ha="center",
                va="center",
                color="white" if shares[i, j] > 0.6 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(k), list(classes), rotation=30, ha="right")
    ax.set_yticks(range(k), list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    return _save(fig, path)
