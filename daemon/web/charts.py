"""Inline SVG charts for the admin dashboard.

Pure functions: numbers in, one standalone ``<svg>`` string out; no database, clock,
JavaScript or plotting library. The pages embed the strings with ``|safe``, so every
piece of text is XML-escaped here (and characters XML cannot carry are replaced).

Every chart has ``role="img"``, an ``aria-label`` and a ``<title>`` naming it, a
``<desc>`` summing up its data, a ``viewBox`` and ``width="100%"`` without a height,
so it scales with its container. No ``id`` attributes are used, so any number of
charts can share a page. The data behind each mark is repeated in ``data-``
attributes (``data-role`` names the kind of mark) for tests and the browser test.
Empty input gives a small placeholder chart with ``data-empty="true"``.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from chestaid.display import score_pair_text, score_text
from chestaid.metrics import reliability_curve

__all__ = [
    "SVG_NS",
    "confusion_matrix_svg",
    "psi_history_svg",
    "reliability_diagram_svg",
    "score_distribution_svg",
]

SVG_NS = "http://www.w3.org/2000/svg"

_FONT = "system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"
# Colours chosen for contrast on white: ink 17:1, muted 8.5:1, blue 8:1, red 5.6:1.
_INK = "#1a1a1a"
_MUTED = "#4d4d4d"
_GRID = "#e0e0e0"
_BLUE = "#1f4e9a"
_RED = "#c62828"
_WHITE = "#ffffff"
_DASH = "6 4"

# Characters XML 1.0 cannot carry at all, even escaped (controls, lone surrogates).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_Value = str | int | float


# --------------------------------------------------------------------------- markup


def _esc(text: str) -> str:
    """``text`` safe for XML character data and double- or single-quoted attributes."""
    text = _NOT_XML.sub("\ufffd", text)
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def _attr_text(value: _Value) -> str:
    # Floats are coordinates in viewBox units: two decimals are plenty.
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _el(tag: str, attrs: Mapping[str, _Value | None], *children: str) -> str:
    """One element; attributes whose value is None are left out, children are markup."""
    head = tag + "".join(
        f' {name}="{_esc(_attr_text(value))}"' for name, value in attrs.items() if value is not None
    )
    if not children:
        return f"<{head}/>"
    return f"<{head}>{''.join(children)}</{tag}>"


def _shape(tag: str, *children: str, **attrs: _Value | None) -> str:
    """Like ``_el``, with attributes as keywords that use ``_`` for ``-`` (``stroke_width``)."""
    return _el(tag, {name.replace("_", "-"): value for name, value in attrs.items()}, *children)


def _text(x: float, y: float, content: str, **style: _Value | None) -> str:
    """A ``<text>`` at (x, y), near-black unless ``fill`` is given."""
    return _shape("text", _esc(content), x=x, y=y, **({"fill": _INK} | style))


def _tooltip(content: str) -> str:
    """A ``<title>`` child: the browser shows it on hover, screen readers read it."""
    return _el("title", {}, _esc(content))


def _halo() -> dict[str, _Value]:
    # A white outline under text that may sit on lines or shaded cells.
    return {
        "stroke": _WHITE,
        "stroke_width": 3,
        "stroke_linejoin": "round",
        "paint_order": "stroke",
    }


def _data(value: float) -> str:
    """A number for a ``data-`` attribute: six significant digits."""
    return f"{value:.6g}"


def _svg(
    kind: str,
    size: tuple[int, int],
    title: str,
    desc: str,
    body: Sequence[str],
    *,
    empty: bool = False,
) -> str:
    """The root element around ``body``: accessible name, description and viewBox."""
    width, height = size
    attrs: dict[str, _Value | None] = {
        "xmlns": SVG_NS,
        "viewBox": f"0 0 {width} {height}",
        "width": "100%",
        "role": "img",
        "aria-label": title,
        "class": f"chart chart-{kind}",
        "data-chart": kind,
        "data-empty": "true" if empty else None,
        "font-family": _FONT,
        "font-size": 12,
    }
    return _el("svg", attrs, _tooltip(title), _el("desc", {}, _esc(desc)), *body)


def _placeholder(kind: str, title: str, message: str) -> str:
    """A small chart that only says why there is nothing to draw."""
    width, height = 480, 120
    body = [
        _shape(
            "rect",
            x=1,
            y=1,
            width=width - 2,
            height=height - 2,
            rx=6,
            fill="#fafafa",
            stroke="#bdbdbd",
            stroke_dasharray="4 3",
        ),
        _text(
            width / 2,
            height / 2 + 5,
            message,
            fill=_MUTED,
            font_size=15,
            text_anchor="middle",
            data_role="placeholder",
        ),
    ]
    return _svg(kind, (width, height), title, message, body, empty=True)


# ---------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Linear:
    """Maps the data interval [d0, d1] onto the drawing interval [r0, r1]."""

    d0: float
    d1: float
    r0: float
    r1: float

    def __call__(self, value: float) -> float:
        if self.d1 == self.d0:
            return (self.r0 + self.r1) / 2
        return self.r0 + (value - self.d0) * (self.r1 - self.r0) / (self.d1 - self.d0)


@dataclass(frozen=True)
class _Frame:
    """The plot area inside the viewBox."""

    left: float
    top: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height


def _y_axis(frame: _Frame, scale: _Linear, ticks: Sequence[tuple[float, str]], title: str) -> str:
    """Grid lines, ticks and labels on the left edge of ``frame``, and a rotated title."""
    parts: list[str] = []
    for value, label in ticks:
        y = scale(value)
        parts.append(_shape("line", x1=frame.left, y1=y, x2=frame.right, y2=y, stroke=_GRID))
        parts.append(_shape("line", x1=frame.left - 5, y1=y, x2=frame.left, y2=y, stroke=_MUTED))
        parts.append(
            _text(
                frame.left - 8,
                y + 4,
                label,
                fill=_MUTED,
                text_anchor="end",
                data_role="y-tick",
                data_value=_data(value),
            )
        )
    parts.append(
        _shape("line", x1=frame.left, y1=frame.top, x2=frame.left, y2=frame.bottom, stroke=_MUTED)
    )
    x_title, y_title = frame.left - 42, frame.top + frame.height / 2
    parts.append(
        _text(
            x_title,
            y_title,
            title,
            text_anchor="middle",
            transform=f"rotate(-90 {x_title:.2f} {y_title:.2f})",
            data_role="y-title",
        )
    )
    return _el("g", {"data-role": "y-axis"}, *parts)


def _x_axis(
    frame: _Frame,
    ticks: Sequence[tuple[float, str]],
    title: str | None,
    *,
    grid: bool = False,
) -> str:
    """Ticks and labels (at drawing positions) under ``frame``, and an optional title."""
    parts: list[str] = []
    for x, label in ticks:
        if grid:
            parts.append(_shape("line", x1=x, y1=frame.top, x2=x, y2=frame.bottom, stroke=_GRID))
        parts.append(
            _shape("line", x1=x, y1=frame.bottom, x2=x, y2=frame.bottom + 5, stroke=_MUTED)
        )
        parts.append(
            _text(
                x, frame.bottom + 18, label, fill=_MUTED, text_anchor="middle", data_role="x-tick"
            )
        )
    parts.append(
        _shape(
            "line", x1=frame.left, y1=frame.bottom, x2=frame.right, y2=frame.bottom, stroke=_MUTED
        )
    )
    if title is not None:
        parts.append(
            _text(
                frame.left + frame.width / 2,
                frame.bottom + 38,
                title,
                text_anchor="middle",
                data_role="x-title",
            )
        )
    return _el("g", {"data-role": "x-axis"}, *parts)


_UNIT_TICKS = [(i / 5, f"{i / 5:.1f}") for i in range(6)]


def _nice_ticks(top: float, target: int = 5) -> list[tuple[float, str]]:
    """Ticks from 0 to at least ``top`` (> 0) at a 1-2-5 step, about ``target`` of them."""
    raw = top / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 5.0, 10.0) if m * magnitude >= raw * (1 - 1e-9))
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    count = math.ceil(top / step - 1e-9)
    return [(i * step, f"{i * step:.{decimals}f}") for i in range(count + 1)]


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _mix(base: str, other: str, t: float) -> str:
    """The colour ``t`` of the way from ``base`` to ``other`` (t in [0, 1])."""
    a, b = _rgb(base), _rgb(other)
    r, g, bl = (round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return f"#{r:02x}{g:02x}{bl:02x}"


def _luminance(colour: str) -> float:
    """WCAG relative luminance."""

    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in _rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _ink_on(background: str) -> str:
    """White or near-black, whichever contrasts more with ``background``."""
    lum = _luminance(background)
    on_white = 1.05 / (lum + 0.05)
    on_ink = (lum + 0.05) / (_luminance(_INK) + 0.05)
    return _WHITE if on_white > on_ink else _INK


def _rule(frame: _Frame, y: float, label: str, *, label_at_left: bool, **data: _Value) -> str:
    """A red dashed line across ``frame`` at ``y``, labelled (drawn over the data)."""
    label_y = y - 5 if y - 5 > frame.top + 10 else y + 14
    return _el(
        "g",
        {},
        _shape(
            "line",
            x1=frame.left,
            y1=y,
            x2=frame.right,
            y2=y,
            stroke=_RED,
            stroke_width=1.5,
            stroke_dasharray=_DASH,
            **data,
        ),
        _text(
            frame.left + 4 if label_at_left else frame.right - 4,
            label_y,
            label,
            fill=_RED,
            font_size=11,
            text_anchor="start" if label_at_left else "end",
            **_halo(),
        ),
    )


def _legend(x: float, y: float, items: Sequence[tuple[str, str, str]]) -> str:
    """One row of legend entries (mark, colour, label); marks: line, dash, dot, big-dot."""
    parts: list[str] = []
    for mark, colour, label in items:
        if mark in ("line", "dash"):
            dash = _DASH if mark == "dash" else None
            parts.append(
                _shape(
                    "line",
                    x1=x,
                    y1=y - 4,
                    x2=x + 24,
                    y2=y - 4,
                    stroke=colour,
                    stroke_width=2,
                    stroke_dasharray=dash,
                )
            )
            x += 30
        else:
            parts.append(
                _shape("circle", cx=x + 5, cy=y - 4, r=5 if mark == "big-dot" else 3.5, fill=colour)
            )
            x += 14
        parts.append(_text(x, y, label, font_size=11))
        x += 6.5 * len(label) + 20  # roughly the label's width at 11 units
    return _el("g", {"data-role": "legend"}, *parts)


# ------------------------------------------------------------------------ checks


def _probabilities(values: Sequence[float], what: str) -> list[float]:
    """``values`` as floats, each finite and within [0, 1]."""
    out = [float(v) for v in values]
    for v in out:
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise ValueError(f"{what} must be finite and within [0, 1], got {v!r}")
    return out


def _check_bins(n_bins: int) -> None:
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")


def _bin_of(score: float, n_bins: int) -> int:
    # Equal-width bins of [0, 1]; the top bin includes 1.0 (as chestaid.metrics.ece).
    return min(int(score * n_bins), n_bins - 1)


# ------------------------------------------------------------ reliability diagram


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
    _check_bins(n_bins)
    p = _probabilities(scores, "scores")
    if len(labels) != len(p):
        raise ValueError(f"scores and labels differ in length: {len(p)} vs {len(labels)}")
    y = [int(v) for v in labels]
    if any(v not in (0, 1) or v != orig for v, orig in zip(y, labels, strict=True)):
        raise ValueError("labels must be 0 (no pneumonia) or 1 (pneumonia)")
    name = title if title is not None else "Reliability diagram: observed rate against score"
    if not p:
        return _placeholder("reliability", name, "No labelled studies yet")

    curve = reliability_curve(np.asarray(p), np.asarray(y), n_bins=n_bins)
    frame = _Frame(left=64, top=28, width=300, height=300)
    sx = _Linear(0.0, 1.0, frame.left, frame.right)
    sy = _Linear(0.0, 1.0, frame.bottom, frame.top)
    max_count = int(curve.bin_count.max())
    show_counts = frame.width / n_bins >= 22

    markers: list[str] = []
    count_labels: list[str] = []
    vertices: list[str] = []
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
        vertices.append(f"{cx:.2f},{cy:.2f}")
        tooltip = (
            f"Scores {lo:.2f}–{hi:.2f}: {count} studies, mean score {score_text(mean)}, "
            f"{positives} with pneumonia ({observed:.0%})"
        )
        markers.append(
            _shape(
                "circle",
                _tooltip(tooltip),
                cx=cx,
                cy=cy,
                r=r,
                fill=_BLUE,
                fill_opacity="0.85",
                stroke=_WHITE,
                stroke_width=1,
                data_role="bin",
                data_bin=index,
                data_lo=_data(lo),
                data_hi=_data(hi),
                data_mean=_data(mean),
                data_observed=_data(observed),
                data_count=count,
                data_positives=positives,
            )
        )
        if show_counts:
            # Above the marker, or below it when that would leave the plot.
            label_y = cy - r - 4 if cy - r - 16 >= frame.top else cy + r + 12
            count_labels.append(
                _text(
                    cx,
                    label_y,
                    str(count),
                    font_size=10,
                    text_anchor="middle",
                    data_role="bin-count",
                    data_bin=index,
                    **_halo(),
                )
            )

    legend_y = frame.bottom + 62
    body = [
        _y_axis(frame, sy, _UNIT_TICKS, "Observed fraction with pneumonia"),
        _x_axis(
            frame,
            [(sx(v), label) for v, label in _UNIT_TICKS],
            "Mean ChestAid score in the bin",
            grid=True,
        ),
        _shape(
            "line",
            x1=sx(0.0),
            y1=sy(0.0),
            x2=sx(1.0),
            y2=sy(1.0),
            stroke=_MUTED,
            stroke_width=1.5,
            stroke_dasharray=_DASH,
            data_role="diagonal",
        ),
        _shape(
            "polyline",
            points=" ".join(vertices),
            fill="none",
            stroke=_BLUE,
            stroke_width=1.5,
            data_role="curve",
        ),
        _el("g", {"data-role": "bins"}, *markers),
        *count_labels,
        _legend(
            frame.left,
            legend_y,
            [("dash", _MUTED, "Perfect calibration"), ("big-dot", _BLUE, "Bin (size: studies)")],
        ),
    ]
    total = len(p)
    desc = (
        f"{total} labelled studies, {sum(y)} with pneumonia, in "
        f"{len(markers)} of {n_bins} equal-width score bins."
    )
    return _svg("reliability", (392, int(legend_y) + 14), name, desc, body)


# ------------------------------------------------------------ score distribution


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
    _check_bins(n_bins)
    if threshold is not None:
        threshold = _probabilities([threshold], "threshold")[0]
    merged: dict[date, list[float]] = {}
    for day, scores in days:
        key = day.date() if isinstance(day, datetime) else day
        merged.setdefault(key, []).extend(_probabilities(scores, f"scores of {key.isoformat()}"))
    name = title if title is not None else "Daily distribution of ChestAid scores"
    total = sum(len(s) for s in merged.values())
    if total == 0:
        return _placeholder("score-distribution", name, "No scored studies in this period")

    ordered = sorted(merged.items())
    first, last = ordered[0][0], ordered[-1][0]
    span = (last - first).days + 1
    frame = _Frame(left=56, top=16, width=560, height=220)
    sy = _Linear(0.0, 1.0, frame.bottom, frame.top)
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
                _shape(
                    "rect",
                    x=x,
                    y=top,
                    width=col_w - gap,
                    height=bottom - top,
                    fill=_BLUE,
                    fill_opacity=f"{_share_opacity(c / n):.3f}",
                    data_role="cell",
                    data_bin=b,
                    data_count=c,
                    data_fraction=_data(c / n),
                )
            )
        median = statistics.median(scores) if scores else None
        tooltip = f"{day.isoformat()}: {n} studies" + (
            f", median score {score_pair_text(median, threshold)[0]}" if median is not None else ""
        )
        columns.append(
            _shape(
                "g",
                _tooltip(tooltip),
                *cells,
                data_role="day",
                data_day=day.isoformat(),
                data_count=n,
                data_median=_data(median) if median is not None else None,
            )
        )
        if median is None:
            continue
        mx, my = centre(day), sy(median)
        joined = previous is not None and (day - previous).days == 1
        path.append(f"{'L' if joined else 'M'}{mx:.2f} {my:.2f}")
        previous = day
        medians.append(
            _shape(
                "circle",
                cx=mx,
                cy=my,
                r=2.5,
                fill=_INK,
                stroke=_WHITE,
                stroke_width=0.75,
                data_role="median-point",
                data_day=day.isoformat(),
                data_median=_data(median),
            )
        )

    d = " ".join(path)
    body = [
        _shape(
            "rect",
            x=frame.left,
            y=frame.top,
            width=frame.width,
            height=frame.height,
            fill=_WHITE,
            stroke=_GRID,
        ),
        _el("g", {"data-role": "days"}, *columns),
        _y_axis(frame, sy, _UNIT_TICKS, "ChestAid score"),
    ]
    # Thin the date labels to about one per 80 units of width.
    step = max(1, math.ceil(span / max(1, int(frame.width // 80))))
    date_ticks = [
        (centre(first + timedelta(days=offset)), (first + timedelta(days=offset)).isoformat())
        for offset in range(0, span, step)
    ]
    body.append(_x_axis(frame, date_ticks, None))
    # The median over a white halo, so it stays visible on dark cells.
    for stroke, width, role in ((_WHITE, 4, "median-halo"), (_INK, 2, "median-line")):
        body.append(
            _shape(
                "path",
                d=d,
                fill="none",
                stroke=stroke,
                stroke_width=width,
                stroke_linejoin="round",
                data_role=role,
            )
        )
    body.append(_el("g", {"data-role": "medians"}, *medians))
    if threshold is not None:
        body.append(
            _rule(
                frame,
                sy(threshold),
                f"threshold {score_text(threshold)}",
                label_at_left=False,
                data_role="threshold",
                data_threshold=_data(threshold),
            )
        )

    # Legend: the shading scale on one row, the lines on the next.
    row1, row2 = frame.bottom + 44, frame.bottom + 66
    scale = [_text(frame.left, row1, "Share of the day's studies:", font_size=11)]
    for i, share in enumerate((0.1, 0.25, 0.5, 0.75, 1.0)):
        x = frame.left + 150 + 58 * i
        opacity = f"{_share_opacity(share):.3f}"
        scale.append(
            _shape(
                "rect",
                x=x,
                y=row1 - 11,
                width=14,
                height=14,
                fill=_BLUE,
                fill_opacity=opacity,
                stroke=_GRID,
            )
        )
        scale.append(_text(x + 18, row1, f"{share:.0%}", font_size=11))
    body.append(_el("g", {"data-role": "legend"}, *scale))
    lines = [("line", _INK, "Daily median")]
    if threshold is not None:
        lines.append(("dash", _RED, "Threshold"))
    body.append(_legend(frame.left, row2, lines))

    desc = (
        f"{total} scored studies on {sum(1 for _, s in ordered if s)} of "
        f"{len(ordered)} days from {first.isoformat()} to {last.isoformat()}, "
        f"in {n_bins} score bins, with the daily median"
        + (f" and the threshold {score_text(threshold)}." if threshold is not None else ".")
    )
    return _svg("score-distribution", (656, int(row2) + 12), name, desc, body)


# --------------------------------------------------------------- confusion matrix


def _share_text(share: float | None) -> str:
    if share is None:
        return "no studies in row"
    if 0 < share < 0.005:
        return "<1% of row"
    if 0.995 <= share < 1:
        return ">99% of row"
    return f"{share:.0%} of row"


def confusion_matrix_svg(*, tp: int, fp: int, tn: int, fn: int, title: str | None = None) -> str:
    """A 2x2 confusion matrix: radiologists' reading (rows) against ChestAid's call.

    Rows are the truth from feedback (pneumonia, no pneumonia), columns ChestAid's
    call at the threshold (flagged, not flagged). Each cell shows its count large
    and its share of the row small, and is shaded by that share: blue where ChestAid
    agrees with the radiologist, red where it does not. Each cell is a ``<g>`` with
    ``data-cell`` (``tp``, ``fn``, ``fp`` or ``tn``), ``data-count`` and, unless its
    row is empty, ``data-share`` (the row share, e.g. the sensitivity for ``tp``).

    Args:
        tp: studies with pneumonia that ChestAid flagged.
        fp: studies without pneumonia that ChestAid flagged.
        tn: studies without pneumonia that ChestAid did not flag.
        fn: studies with pneumonia that ChestAid did not flag.
        title: accessible name of the chart; a default names what it shows.

    Returns:
        The ``<svg>`` element (all-zero counts give an empty-looking but valid grid).

    Raises:
        ValueError: a count is negative.
    """
    counts = {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    for key, value in counts.items():
        if value < 0:
            raise ValueError(f"{key} must not be negative, got {value}")
    name = (
        title if title is not None else "Confusion matrix: radiologists' reading against ChestAid"
    )

    cell_w, cell_h = 140.0, 92.0
    left, top = 168.0, 64.0
    rows = (("Pneumonia", ("tp", "fn")), ("No pneumonia", ("fp", "tn")))
    columns = ("Flagged", "Not flagged")
    captions = {
        "tp": "true positive",
        "fn": "false negative",
        "fp": "false positive",
        "tn": "true negative",
    }
    body: list[str] = [
        _text(
            left + cell_w,
            top - 38,
            "ChestAid's call at the threshold",
            font_weight=600,
            text_anchor="middle",
        )
    ]
    for c, heading in enumerate(columns):
        body.append(
            _text(
                left + (c + 0.5) * cell_w,
                top - 14,
                heading,
                text_anchor="middle",
                data_role="column",
            )
        )
    y_title = top + cell_h
    body.append(
        _text(
            22,
            y_title,
            "Radiologists' reading",
            font_weight=600,
            text_anchor="middle",
            transform=f"rotate(-90 22 {y_title:.2f})",
        )
    )
    for r, (heading, keys) in enumerate(rows):
        row_total = sum(counts[k] for k in keys)
        mid = top + (r + 0.5) * cell_h
        body.append(_text(left - 12, mid - 2, heading, text_anchor="end", data_role="row"))
        body.append(
            _text(
                left - 12,
                mid + 15,
                f"n = {row_total}",
                fill=_MUTED,
                font_size=11,
                text_anchor="end",
            )
        )
        for c, key in enumerate(keys):
            count = counts[key]
            share = count / row_total if row_total else None
            base = _BLUE if key in ("tp", "tn") else _RED
            fill = _mix(_WHITE, base, 0.06 + 0.8 * share) if share is not None else "#f5f5f5"
            ink = _ink_on(fill)
            x, y = left + c * cell_w, top + r * cell_h
            body.append(
                _shape(
                    "g",
                    _shape(
                        "rect",
                        x=x,
                        y=y,
                        width=cell_w,
                        height=cell_h,
                        fill=fill,
                        stroke=_WHITE,
                        stroke_width=2,
                    ),
                    _text(x + 8, y + 16, captions[key], fill=ink, font_size=10),
                    _text(
                        x + cell_w / 2,
                        y + cell_h / 2 + 10,
                        str(count),
                        fill=ink,
                        font_size=28,
                        font_weight=700,
                        text_anchor="middle",
                        data_role="count",
                    ),
                    _text(
                        x + cell_w / 2,
                        y + cell_h - 12,
                        _share_text(share),
                        fill=ink,
                        font_size=11,
                        text_anchor="middle",
                        data_role="share",
                    ),
                    data_cell=key,
                    data_count=count,
                    data_share=_data(share) if share is not None else None,
                )
            )
    note_y = top + 2 * cell_h + 26
    body.append(
        _text(
            left - 140,
            note_y,
            "Shading: share of the row (blue: agrees with the radiologist, red: disagrees)",
            fill=_MUTED,
            font_size=11,
        )
    )
    desc = (
        f"With pneumonia: {tp} flagged (true positives), {fn} not flagged (false "
        f"negatives). Without pneumonia: {fp} flagged (false positives), {tn} not "
        f"flagged (true negatives)."
    )
    return _svg("confusion", (464, int(note_y) + 12), name, desc, body)


# -------------------------------------------------------------------- PSI history


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


_TICK_STEPS = [3600 * h for h in (1, 2, 3, 6, 12)] + [
    86400 * d for d in (1, 2, 7, 14, 28, 56, 91, 182, 364)
]


def _time_ticks(t0: float, t1: float, most: int = 6) -> list[float]:
    """Round times (POSIX seconds) within [t0, t1], at most ``most`` of them."""
    span = t1 - t0
    if span <= 0:
        return [t0]
    # Spans of days get ticks at midnights (UTC), shorter ones at round hours.
    steps = [s for s in _TICK_STEPS if s >= 86400] if span >= 2 * 86400 else _TICK_STEPS
    step = next((s for s in steps if span / s <= most), None)
    if step is None:
        return [t0 + span * i / (most - 1) for i in range(most)]
    ticks = [float(k * step) for k in range(math.ceil(t0 / step), math.floor(t1 / step) + 1)]
    return ticks if ticks else [t0, t1]


def psi_history_svg(
    points: Sequence[tuple[datetime, float]],
    *,
    alert_level: float,
    title: str | None = None,
) -> str:
    """Drift over time: the population stability index of each monitoring run.

    A line through the runs in time order, a red dashed line at ``alert_level``, and
    runs at or above it (where monitoring alerts) drawn as larger red points. Times
    are shown in UTC; runs without a PSI (NaN) are left out. Each run is a circle with
    ``data-role="run"``, ``data-time`` (ISO 8601, UTC), ``data-psi`` and
    ``data-alert`` (``"true"``/``"false"``); the line is the polyline
    ``data-role="psi-line"``; the alert line has ``data-role="alert-line"`` and
    ``data-level``.

    Args:
        points: (time of the run, PSI) in any order; naive times are taken as UTC.
        alert_level: the PSI from which monitoring raises an alert (> 0).
        title: accessible name of the chart; a default names what it shows.

    Returns:
        The ``<svg>`` element; with no runs that have a PSI, a placeholder saying so.

    Raises:
        ValueError: ``alert_level`` is not a positive number, or a PSI is negative.
    """
    if not (math.isfinite(alert_level) and alert_level > 0):
        raise ValueError(f"alert_level must be a positive number, got {alert_level!r}")
    runs = sorted((_utc(moment), float(psi)) for moment, psi in points if math.isfinite(float(psi)))
    for moment, psi in runs:
        if psi < 0:
            raise ValueError(f"PSI cannot be negative, got {psi!r} at {moment.isoformat()}")
    name = title if title is not None else "Score drift: population stability index per run"
    if not runs:
        return _placeholder("psi-history", name, "No drift figure yet")

    frame = _Frame(left=56, top=16, width=560, height=200)
    t0, t1 = runs[0][0].timestamp(), runs[-1][0].timestamp()
    sx = _Linear(t0, t1, frame.left + 10, frame.right - 10)
    y_ticks = _nice_ticks(max(max(psi for _, psi in runs), alert_level) * 1.1)
    sy = _Linear(0.0, y_ticks[-1][0], frame.bottom, frame.top)

    vertices: list[str] = []
    marks: list[str] = []
    alerts = 0
    for moment, psi in runs:
        cx, cy = sx(moment.timestamp()), sy(psi)
        above = psi >= alert_level
        alerts += above
        vertices.append(f"{cx:.2f},{cy:.2f}")
        tooltip = f"{moment:%Y-%m-%d %H:%M} UTC: PSI {psi:.3f}" + (
            " (at or above the alert level)" if above else ""
        )
        marks.append(
            _shape(
                "circle",
                _tooltip(tooltip),
                cx=cx,
                cy=cy,
                r=5.0 if above else 3.5,
                fill=_RED if above else _BLUE,
                stroke=_WHITE,
                stroke_width=1,
                data_role="run",
                data_time=moment.isoformat(),
                data_psi=_data(psi),
                data_alert="true" if above else "false",
            )
        )

    times = _time_ticks(t0, t1)
    fine = len(times) > 1 and times[1] - times[0] < 86400
    time_format = "%m-%d %H:%M" if fine or t1 - t0 < 86400 else "%Y-%m-%d"
    x_ticks = [(sx(t), f"{datetime.fromtimestamp(t, UTC):{time_format}}") for t in times]
    legend_y = frame.bottom + 62
    body = [
        _y_axis(frame, sy, y_ticks, "PSI"),
        _x_axis(frame, x_ticks, "Monitoring run (UTC)"),
        _shape(
            "polyline",
            points=" ".join(vertices),
            fill="none",
            stroke=_BLUE,
            stroke_width=2,
            stroke_linejoin="round",
            data_role="psi-line",
        ),
        _el("g", {"data-role": "runs"}, *marks),
        # Labelled at the left, where the latest runs are not.
        _rule(
            frame,
            sy(alert_level),
            f"alert level {alert_level:g}",
            label_at_left=True,
            data_role="alert-line",
            data_level=_data(alert_level),
        ),
        _legend(
            frame.left,
            legend_y,
            [("dot", _BLUE, "Monitoring run"), ("big-dot", _RED, "At or above the alert level")],
        ),
    ]
    desc = (
        f"{len(runs)} monitoring runs from {runs[0][0]:%Y-%m-%d} to {runs[-1][0]:%Y-%m-%d} "
        f"(UTC); {alerts} at or above the alert level {alert_level:g}; latest PSI "
        f"{runs[-1][1]:.3f}."
    )
    return _svg("psi-history", (656, int(legend_y) + 12), name, desc, body)
