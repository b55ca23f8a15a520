"""Daily score distributions as a heat strip, with the daily median and threshold."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from chestaid.display import score_pair_text, score_text
from daemon.web.charts.checks import check_bins, probabilities
from daemon.web.charts.plot import UNIT_TICKS, Frame, Linear, legend, point, rule, x_axis, y_axis
from daemon.web.charts.svg import (
    BLUE,
    GRID,
    INK,
    RED,
    WHITE,
    chart,
    data_text,
    el,
    placeholder,
    shape,
    text,
    tooltip,
)


def _bin_of(score: float, n_bins: int) -> int:
    # Equal-width bins of [0, 1]; the top bin includes 1.0 (as chestaid.metrics.ece).
    return min(int(score * n_bins), n_bins - 1)


def _share_opacity(share: float) -> float:
    # Any non-empty cell stays visible; the rest of the range is linear in the share.
    return 0.08 + 0.92 * share


def score_distribution_svg(
    days: Sequence[tuple[date, Sequence[float]]],
    *,
    n_bins: int = 10,
    threshold: float | None = None,
    title: str | None = None,
) -> str:
    """Daily score distributions as a heat strip, with the daily median and threshold.

    One column per given day on a date axis (dates not given are gaps), score bins of
    [0, 1] stacked upwards, each cell shaded by that day's share of studies in the bin.
    A black line joins the daily medians (broken across days without studies); a red
    dashed line marks ``threshold``. Date labels are thinned to fit.

    Data attributes: each column ``<g data-role="day">`` has ``data-day`` (ISO date),
    ``data-count`` and, when it has studies, ``data-median``; its cells
    (``data-role="cell"``, only non-empty ones) have ``data-bin``, ``data-count`` and
    ``data-fraction``. Each median vertex is a ``circle`` with
    ``data-role="median-point"``, ``data-day`` and ``data-median``; the line itself is
    the path ``data-role="median-line"``. The threshold line has
    ``data-role="threshold"`` and ``data-threshold``.

    Args:
        days: (day, scores of that day's studies); days in any order, a repeated day
            is merged, a ``datetime`` counts as its date.
        n_bins: number of equal-width score bins.
        threshold: the operating threshold to mark, in [0, 1], or None.
        title: accessible name of the chart; a default names what it shows.

    Returns:
        The ``<svg>`` element; with no scores at all, a placeholder saying so.

    Raises:
        ValueError: a score or the threshold is not in [0, 1], or ``n_bins`` is below 1.
    """
    check_bins(n_bins)
    if threshold is not None:
        threshold = probabilities([threshold], "threshold")[0]
    merged: dict[date, list[float]] = {}
    for day, scores in days:
        key = day.date() if isinstance(day, datetime) else day
        merged.setdefault(key, []).extend(probabilities(scores, f"scores of {key.isoformat()}"))
    name = title if title is not None else "Daily distribution of ChestAid scores"
    total = sum(len(s) for s in merged.values())
    if total == 0:
        return placeholder("score-distribution", name, "No scored studies in this period")

    ordered = sorted(merged.items())
    first, last = ordered[0][0], ordered[-1][0]
    span = (last - first).days + 1
    frame = Frame(left=56, top=16, width=560, height=220)
    sy = Linear(0.0, 1.0, frame.bottom, frame.top)
    col_w = frame.width / span
    gap = 1.0 if col_w >= 4 else 0.0

    def centre(day: date) -> float:
        return frame.left + ((day - first).days + 0.5) * col_w

    columns: list[str] = []
    medians: list[str] = []
    path: list[str] = []
    previous: date | None = None
    for day, scores in ordered:
        n = len(scores)
        counts = [0] * n_bins
        for s in scores:
            counts[_bin_of(s, n_bins)] += 1
        x = frame.left + (day - first).days * col_w + gap / 2
        cells: list[str] = []
        for b, c in enumerate(counts):
            if c == 0:
                continue
            top, bottom = sy((b + 1) / n_bins), sy(b / n_bins)
            cells.append(
                shape(
                    "rect",
                    x=x,
                    y=top,
                    width=col_w - gap,
                    height=bottom - top,
                    fill=BLUE,
                    fill_opacity=f"{_share_opacity(c / n):.3f}",
                    data_role="cell",
                    data_bin=b,
                    data_count=c,
                    data_fraction=data_text(c / n),
                )
            )
        median = statistics.median(scores) if scores else None
        hover = f"{day.isoformat()}: {n} studies" + (
            f", median score {score_pair_text(median, threshold)[0]}" if median is not None else ""
        )
        columns.append(
            shape(
                "g",
                tooltip(hover),
                *cells,
                data_role="day",
                data_day=day.isoformat(),
                data_count=n,
                data_median=data_text(median) if median is not None else None,
            )
        )
        if median is None:
            continue
        mx, my = centre(day), sy(median)
        joined = previous is not None and (day - previous).days == 1
        path.append(f"{'L' if joined else 'M'}{mx:.2f} {my:.2f}")
        previous = day
        medians.append(
            point(
                mx,
                my,
                2.5,
                INK,
                None,
                stroke_width=0.75,
                data_role="median-point",
                data_day=day.isoformat(),
                data_median=data_text(median),
            )
        )

    d = " ".join(path)
    body = [
        shape(
            "rect",
            x=frame.left,
            y=frame.top,
            width=frame.width,
            height=frame.height,
            fill=WHITE,
            stroke=GRID,
        ),
        el("g", {"data-role": "days"}, *columns),
        y_axis(frame, sy, UNIT_TICKS, "ChestAid score"),
    ]
    # Thin the date labels to about one per 80 units of width.
    step = max(1, math.ceil(span / max(1, int(frame.width // 80))))
    date_ticks = [
        (centre(first + timedelta(days=offset)), (first + timedelta(days=offset)).isoformat())
        for offset in range(0, span, step)
    ]
    body.append(x_axis(frame, date_ticks, None))
    # The median over a white halo, so it stays visible on dark cells.
    for stroke, width, role in ((WHITE, 4, "median-halo"), (INK, 2, "median-line")):
        body.append(
            shape(
                "path",
                d=d,
                fill="none",
                stroke=stroke,
                stroke_width=width,
                stroke_linejoin="round",
                data_role=role,
            )
        )
    body.append(el("g", {"data-role": "medians"}, *medians))
    if threshold is not None:
        body.append(
            rule(
                frame,
                sy(threshold),
                f"threshold {score_text(threshold)}",
                label_at_left=False,
                data_role="threshold",
                data_threshold=data_text(threshold),
            )
        )

    # Legend: the shading scale on one row, the lines on the next.
    row1, row2 = frame.bottom + 44, frame.bottom + 66
    scale = [text(frame.left, row1, "Share of the day's studies:", font_size=11)]
    for i, share in enumerate((0.1, 0.25, 0.5, 0.75, 1.0)):
        x = frame.left + 150 + 58 * i
        opacity = f"{_share_opacity(share):.3f}"
        scale.append(
            shape(
                "rect",
                x=x,
                y=row1 - 11,
                width=14,
                height=14,
                fill=BLUE,
                fill_opacity=opacity,
                stroke=GRID,
            )
        )
        scale.append(text(x + 18, row1, f"{share:.0%}", font_size=11))
    body.append(el("g", {"data-role": "legend"}, *scale))
    lines = [("line", INK, "Daily median")]
    if threshold is not None:
        lines.append(("dash", RED, "Threshold"))
    body.append(legend(frame.left, row2, lines))

    desc = (
        f"{total} scored studies on {sum(1 for _, s in ordered if s)} of "
        f"{len(ordered)} days from {first.isoformat()} to {last.isoformat()}, "
        f"in {n_bins} score bins, with the daily median"
        + (f" and the threshold {score_text(threshold)}." if threshold is not None else ".")
    )
    return chart("score-distribution", (656, int(row2) + 12), name, desc, body)
