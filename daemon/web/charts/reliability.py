"""The reliability (calibration) diagram: observed rate against score, per score bin."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from chestaid.display import score_text
from chestaid.metrics import reliability_curve
from daemon.web.charts.checks import check_bins, probabilities
from daemon.web.charts.plot import (
    UNIT_TICKS,
    Frame,
    Linear,
    legend,
    point,
    polyline,
    x_axis,
    y_axis,
)
from daemon.web.charts.svg import (
    BLUE,
    DASH,
    MUTED,
    chart,
    data_text,
    el,
    halo,
    placeholder,
    shape,
    text,
)


def reliability_diagram_svg(
    scores: Sequence[float],
    labels: Sequence[int],
    *,
    n_bins: int = 10,
    title: str | None = None,
) -> str:
    """The reliability (calibration) diagram of labelled studies, as inline SVG.

    Scores are binned into ``n_bins`` equal-width bins of [0, 1] (as the ECE in
    ``chestaid.metrics``). Each non-empty bin is a circle at (mean score, observed
    fraction with pneumonia), its area growing with the number of studies, which is
    also written next to it when the bins are wide enough; the dashed diagonal is
    perfect calibration. Each circle carries ``data-role="bin"``, ``data-bin`` (its
    index), ``data-lo``/``data-hi`` (edges), ``data-mean``, ``data-observed``,
    ``data-count`` and ``data-positives``. The diagonal (``data-role="diagonal"``)
    runs from (0, 0) at ``x1``/``y1`` to (1, 1) at ``x2``/``y2``.

    Args:
        scores: calibrated pneumonia scores in [0, 1], one per labelled study.
        labels: the radiologists' reading of the same studies, 1 = pneumonia, 0 = not.
        n_bins: number of equal-width score bins.
        title: accessible name of the chart; a default names what it shows.

    Returns:
        The ``<svg>`` element; with no studies, a placeholder saying so.

    Raises:
        ValueError: lengths differ, a label is not 0/1, a score is not in [0, 1] or
            ``n_bins`` is below 1.
    """
    check_bins(n_bins)
    p = probabilities(scores, "scores")
    if len(labels) != len(p):
        raise ValueError(f"scores and labels differ in length: {len(p)} vs {len(labels)}")
    y = [int(v) for v in labels]
    if any(v not in (0, 1) or v != orig for v, orig in zip(y, labels, strict=True)):
        raise ValueError("labels must be 0 (no pneumonia) or 1 (pneumonia)")
    name = title if title is not None else "Reliability diagram: observed rate against score"
    if not p:
        return placeholder("reliability", name, "No labelled studies yet")

    curve = reliability_curve(np.asarray(p), np.asarray(y), n_bins=n_bins)
    frame = Frame(left=64, top=28, width=300, height=300)
    sx = Linear(0.0, 1.0, frame.left, frame.right)
    sy = Linear(0.0, 1.0, frame.bottom, frame.top)
    max_count = int(curve.bin_count.max())
    show_counts = frame.width / n_bins >= 22

    markers: list[str] = []
    count_labels: list[str] = []
    vertices: list[tuple[float, float]] = []
    for index in range(n_bins):
        count = int(curve.bin_count[index])
        if count == 0:
            continue
        mean = float(curve.bin_mean_prob[index])
        observed = float(curve.bin_frac_pos[index])
        positives = round(observed * count)
        lo, hi = float(curve.bin_edges[index]), float(curve.bin_edges[index + 1])
        cx, cy = sx(mean), sy(observed)
        r = 3 + 7 * math.sqrt(count / max_count)
        vertices.append((cx, cy))
        hover = (
            f"Scores {lo:.2f}–{hi:.2f}: {count} studies, mean score {score_text(mean)}, "
            f"{positives} with pneumonia ({observed:.0%})"
        )
        markers.append(
            point(
                cx,
                cy,
                r,
                BLUE,
                hover,
                fill_opacity="0.85",
                data_role="bin",
                data_bin=index,
                data_lo=data_text(lo),
                data_hi=data_text(hi),
                data_mean=data_text(mean),
                data_observed=data_text(observed),
                data_count=count,
                data_positives=positives,
            )
        )
        if show_counts:
            # Above the marker, or below it when that would leave the plot.
            label_y = cy - r - 4 if cy - r - 16 >= frame.top else cy + r + 12
            count_labels.append(
                text(
                    cx,
                    label_y,
                    str(count),
                    font_size=10,
                    text_anchor="middle",
                    data_role="bin-count",
                    data_bin=index,
                    **halo(),
                )
            )

    legend_y = frame.bottom + 62
    body = [
        y_axis(frame, sy, UNIT_TICKS, "Observed fraction with pneumonia"),
        x_axis(
            frame,
            [(sx(v), label) for v, label in UNIT_TICKS],
            "Mean ChestAid score in the bin",
            grid=True,
        ),
        shape(
            "line",
            x1=sx(0.0),
            y1=sy(0.0),
            x2=sx(1.0),
            y2=sy(1.0),
            stroke=MUTED,
            stroke_width=1.5,
            stroke_dasharray=DASH,
            data_role="diagonal",
        ),
        polyline(vertices, width=1.5, role="curve"),
        el("g", {"data-role": "bins"}, *markers),
        *count_labels,
        legend(
            frame.left,
            legend_y,
            [("dash", MUTED, "Perfect calibration"), ("big-dot", BLUE, "Bin (size: studies)")],
        ),
    ]
    total = len(p)
    desc = (
        f"{total} labelled studies, {sum(y)} with pneumonia, in "
        f"{len(markers)} of {n_bins} equal-width score bins."
    )
    return chart("reliability", (392, int(legend_y) + 14), name, desc, body)
