"""Drift over time: the population stability index of each monitoring run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from daemon.web.charts.plot import (
    Frame,
    Linear,
    legend,
    nice_ticks,
    point,
    polyline,
    rule,
    x_axis,
    y_axis,
)
from daemon.web.charts.svg import (
    BLUE,
    RED,
    chart,
    data_text,
    el,
    placeholder,
)


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
        return placeholder("psi-history", name, "No drift figure yet")

    frame = Frame(left=56, top=16, width=560, height=200)
    t0, t1 = runs[0][0].timestamp(), runs[-1][0].timestamp()
    sx = Linear(t0, t1, frame.left + 10, frame.right - 10)
    y_ticks = nice_ticks(max(max(psi for _, psi in runs), alert_level) * 1.1)
    sy = Linear(0.0, y_ticks[-1][0], frame.bottom, frame.top)

    vertices: list[tuple[float, float]] = []
    marks: list[str] = []
    alerts = 0
    for moment, psi in runs:
        cx, cy = sx(moment.timestamp()), sy(psi)
        above = psi >= alert_level
        alerts += above
        vertices.append((cx, cy))
        hover = f"{moment:%Y-%m-%d %H:%M} UTC: PSI {psi:.3f}" + (
            " (at or above the alert level)" if above else ""
        )
        marks.append(
            point(
                cx,
                cy,
                5.0 if above else 3.5,
                RED if above else BLUE,
                hover,
                data_role="run",
                data_time=moment.isoformat(),
                data_psi=data_text(psi),
                data_alert="true" if above else "false",
            )
        )

    times = _time_ticks(t0, t1)
    fine = len(times) > 1 and times[1] - times[0] < 86400
    time_format = "%m-%d %H:%M" if fine or t1 - t0 < 86400 else "%Y-%m-%d"
    x_ticks = [(sx(t), f"{datetime.fromtimestamp(t, UTC):{time_format}}") for t in times]
    legend_y = frame.bottom + 62
    body = [
        y_axis(frame, sy, y_ticks, "PSI"),
        x_axis(frame, x_ticks, "Monitoring run (UTC)"),
        polyline(vertices, width=2, role="psi-line", linejoin="round"),
        el("g", {"data-role": "runs"}, *marks),
        # Labelled at the left, where the latest runs are not.
        rule(
            frame,
            sy(alert_level),
            f"alert level {alert_level:g}",
            label_at_left=True,
            data_role="alert-line",
            data_level=data_text(alert_level),
        ),
        legend(
            frame.left,
            legend_y,
            [("dot", BLUE, "Monitoring run"), ("big-dot", RED, "At or above the alert level")],
        ),
    ]
    desc = (
        f"{len(runs)} monitoring runs from {runs[0][0]:%Y-%m-%d} to {runs[-1][0]:%Y-%m-%d} "
        f"(UTC); {alerts} at or above the alert level {alert_level:g}; latest PSI "
        f"{runs[-1][1]:.3f}."
    )
    return chart("psi-history", (656, int(legend_y) + 12), name, desc, body)
