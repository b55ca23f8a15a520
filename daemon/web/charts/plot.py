"""The plot area of a chart: scales, frame, axes, ticks, rules, legends and marks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from daemon.web.charts.svg import (
    BLUE,
    DASH,
    GRID,
    MUTED,
    RED,
    WHITE,
    Value,
    data_text,
    el,
    halo,
    shape,
    text,
    tooltip,
)


@dataclass(frozen=True)
class Linear:
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
class Frame:
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


def y_axis(frame: Frame, scale: Linear, ticks: Sequence[tuple[float, str]], title: str) -> str:
    """Grid lines, ticks and labels on the left edge of ``frame``, and a rotated title."""
    parts: list[str] = []
    for value, label in ticks:
        y = scale(value)
        parts.append(shape("line", x1=frame.left, y1=y, x2=frame.right, y2=y, stroke=GRID))
        parts.append(shape("line", x1=frame.left - 5, y1=y, x2=frame.left, y2=y, stroke=MUTED))
        parts.append(
            text(
                frame.left - 8,
                y + 4,
                label,
                fill=MUTED,
                text_anchor="end",
                data_role="y-tick",
                data_value=data_text(value),
            )
        )
    parts.append(
        shape("line", x1=frame.left, y1=frame.top, x2=frame.left, y2=frame.bottom, stroke=MUTED)
    )
    x_title, y_title = frame.left - 42, frame.top + frame.height / 2
    parts.append(
        text(
            x_title,
            y_title,
            title,
            text_anchor="middle",
            transform=f"rotate(-90 {x_title:.2f} {y_title:.2f})",
            data_role="y-title",
        )
    )
    return el("g", {"data-role": "y-axis"}, *parts)


def x_axis(
    frame: Frame,
    ticks: Sequence[tuple[float, str]],
    title: str | None,
    *,
    grid: bool = False,
) -> str:
    """Ticks and labels (at drawing positions) under ``frame``, and an optional title."""
    parts: list[str] = []
    for x, label in ticks:
        if grid:
            parts.append(shape("line", x1=x, y1=frame.top, x2=x, y2=frame.bottom, stroke=GRID))
        parts.append(shape("line", x1=x, y1=frame.bottom, x2=x, y2=frame.bottom + 5, stroke=MUTED))
        parts.append(
            text(x, frame.bottom + 18, label, fill=MUTED, text_anchor="middle", data_role="x-tick")
        )
    parts.append(
        shape("line", x1=frame.left, y1=frame.bottom, x2=frame.right, y2=frame.bottom, stroke=MUTED)
    )
    if title is not None:
        parts.append(
            text(
                frame.left + frame.width / 2,
                frame.bottom + 38,
                title,
                text_anchor="middle",
                data_role="x-title",
            )
        )
    return el("g", {"data-role": "x-axis"}, *parts)


UNIT_TICKS = [(i / 5, f"{i / 5:.1f}") for i in range(6)]


def nice_ticks(top: float, target: int = 5) -> list[tuple[float, str]]:
    """Ticks from 0 to at least ``top`` (> 0) at a 1-2-5 step, about ``target`` of them."""
    raw = top / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 5.0, 10.0) if m * magnitude >= raw * (1 - 1e-9))
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    count = math.ceil(top / step - 1e-9)
    return [(i * step, f"{i * step:.{decimals}f}") for i in range(count + 1)]


def rule(frame: Frame, y: float, label: str, *, label_at_left: bool, **data: Value) -> str:
    """A red dashed line across ``frame`` at ``y``, labelled (drawn over the data)."""
    label_y = y - 5 if y - 5 > frame.top + 10 else y + 14
    return el(
        "g",
        {},
        shape(
            "line",
            x1=frame.left,
            y1=y,
            x2=frame.right,
            y2=y,
            stroke=RED,
            stroke_width=1.5,
            stroke_dasharray=DASH,
            **data,
        ),
        text(
            frame.left + 4 if label_at_left else frame.right - 4,
            label_y,
            label,
            fill=RED,
            font_size=11,
            text_anchor="start" if label_at_left else "end",
            **halo(),
        ),
    )


def legend(x: float, y: float, items: Sequence[tuple[str, str, str]]) -> str:
    """One row of legend entries (mark, colour, label); marks: line, dash, dot, big-dot."""
    parts: list[str] = []
    for mark, colour, label in items:
        if mark in ("line", "dash"):
            dash = DASH if mark == "dash" else None
            parts.append(
                shape(
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
                shape("circle", cx=x + 5, cy=y - 4, r=5 if mark == "big-dot" else 3.5, fill=colour)
            )
            x += 14
        parts.append(text(x, y, label, font_size=11))
        x += 6.5 * len(label) + 20  # roughly the label's width at 11 units
    return el("g", {"data-role": "legend"}, *parts)


def polyline(
    vertices: Sequence[tuple[float, float]],
    *,
    width: float,
    role: str,
    linejoin: str | None = None,
) -> str:
    """A blue line through ``vertices`` (drawing positions) with ``data-role`` ``role``."""
    return shape(
        "polyline",
        points=" ".join(f"{x:.2f},{y:.2f}" for x, y in vertices),
        fill="none",
        stroke=BLUE,
        stroke_width=width,
        stroke_linejoin=linejoin,
        data_role=role,
    )


def point(
    cx: float,
    cy: float,
    r: float,
    fill: str,
    hover: str | None,
    *,
    fill_opacity: str | None = None,
    stroke_width: float = 1,
    **data: Value,
) -> str:
    """A circle with a white outline and, unless ``hover`` is None, a tooltip."""
    children = [tooltip(hover)] if hover is not None else []
    return shape(
        "circle",
        *children,
        cx=cx,
        cy=cy,
        r=r,
        fill=fill,
        fill_opacity=fill_opacity,
        stroke=WHITE,
        stroke_width=stroke_width,
        **data,
    )
