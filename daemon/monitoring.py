"""Monitoring: how the model really does at this site, and whether its input drifts.

A scheduled job computes the feedback report over rolling windows (7 and 30 days by
default) for the model in service and stores each run. It raises an alert (a WARNING
log, a row admins see, and an optional webhook POST) when, with enough labelled
studies, the upper end of the sensitivity's Wilson 95% interval is below the target
sensitivity, or the PPV is below a configured floor. Without any feedback, drift is
watched too: the population stability index of the window's logits against the
site's first scored studies (the reference), binned at the reference's deciles; and
the same for the mean and the standard deviation of each decoded image (brightness
and contrast), which do not depend on the model, so their reference is the site's
first results that have them, whatever model scored them.

Studies are counted, not images: a study's score is its deciding image's (the highest
assessable frontal, see :mod:`daemon.db.studies`), so the score drift and the counts
below take one result a study, the one that decided it; only the image statistics,
which describe images and not calls, are taken per image.

Studies ChestAid found "not assessable" (none of their images a judgeable frontal
chest radiograph) are left out of all of these (the report, the score drift and the
image drift) and counted on their own: each window gives how many of its studies were
not assessable, their rate and their reasons, for the dashboard (the figures keep
their names ``results`` and ``not_assessable_results``, and count studies); a rising
rate is a signal in itself (a modality sending inverted or blank images, another body
part).

The queries of the monitoring tables (runs and alerts) are here too: the dashboard,
the alert banner and the CLI ask this module for them.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chestaid.metrics import population_stability_index
from daemon.db.models import (
    MonitoringAlert,
    MonitoringRun,
    Result,
    Study,
    utcnow,
)
from daemon.feedback import labelled_cases, summarise
from daemon.settings import MonitoringSettings

logger = logging.getLogger(__name__)

# The image statistics watched for drift: the key of their PSI in a run's figures,
# their column, and how an alert names them.
IMAGE_STATISTICS = (
    ("psi_image_mean", Result.image_mean, "image mean brightness"),
    ("psi_image_std", Result.image_std, "image contrast (standard deviation)"),
)


@dataclass(frozen=True)
class Outcomes:
    """How many studies a period has, how many of them were not assessable, and why.

    ``results`` counts studies (one deciding result each)."""

    results: int
    not_assessable: int
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float | None:
        """The share of results that were not assessable (None without results)."""
        return self.not_assessable / self.results if self.results else None

    def to_dict(self) -> dict[str, Any]:
        """As plain values (the rate None without results)."""
        return {
            "results": self.results,
            "not_assessable_results": self.not_assessable,
            "not_assessable_rate": self.rate,
            "not_assessable_reasons": dict(self.reasons),
        }


def outcome_counts(
    session: Session, *, since: datetime | None = None, model_version: str | None = None
) -> Outcomes:
    """The studies decided by a result recorded ``since`` (by one model, if given): how
    many, how many not assessable (none of their images was), and those by reason."""
    query = (
        select(Result.assessable, Result.not_assessable_reason, func.count())
        .join(Study, Study.result_id == Result.id)
        .group_by(Result.assessable, Result.not_assessable_reason)
    )
    if since is not None:
        query = query.where(Result.scored_at >= since)
    if model_version is not None:
        query = query.where(Result.model_version == model_version)
    results = unjudged = 0
    reasons: dict[str, int] = {}
    for assessable, reason, count in session.execute(query).all():
        results += int(count)
        if not assessable:
            unjudged += int(count)
            key = reason or "unknown"
            reasons[key] = reasons.get(key, 0) + int(count)
    return Outcomes(results=results, not_assessable=unjudged, reasons=dict(sorted(reasons.items())))


@dataclass(frozen=True)
class Alert:
    """What a run found wrong."""

    kind: str
    window_days: int
    message: str


def study_logits(
    session: Session, *, model_version: str, since: datetime | None, first: int | None
) -> np.ndarray:
    """The logits of the studies' deciding results (one a study), in scoring order."""
    query = (
        select(Result.logit)
        .join(Study, Study.result_id == Result.id)
        .where(Result.model_version == model_version, Result.assessable.is_(True))
    )
    if since is not None:
        query = query.where(Result.scored_at >= since)
    query = query.order_by(Result.id)
    if first is not None:
        query = query.limit(first)
    return np.array(session.scalars(query).all(), dtype=np.float64)


def _image_statistics(session: Session, *, since: datetime | None, first: int | None) -> np.ndarray:
    """One row per assessable result, one column per watched statistic; results without
    them are left out."""
    columns = [column for _, column, _ in IMAGE_STATISTICS]
    query = select(*columns).where(
        Result.assessable.is_(True), *(column.is_not(None) for column in columns)
    )
    if since is not None:
        query = query.where(Result.scored_at >= since)
    query = query.order_by(Result.id)
    if first is not None:
        query = query.limit(first)
    rows = session.execute(query).all()
    return np.array([tuple(row) for row in rows], dtype=np.float64).reshape(-1, len(columns))


def _image_drift(
    session: Session, *, settings: MonitoringSettings, window_days: int, since: datetime
) -> tuple[dict[str, Any], list[Alert]]:
    """PSI of the window's image statistics against the reference, and their alerts."""
    reference = _image_statistics(session, since=None, first=settings.reference_studies)
    current = _image_statistics(session, since=since, first=None)
    figures: dict[str, Any] = {"image_statistics_scored": int(current.shape[0])}
    alerts: list[Alert] = []
    enough = (
        reference.shape[0] >= settings.reference_studies
        and current.shape[0] >= settings.min_window_results
    )
    for index, (key, _, name) in enumerate(IMAGE_STATISTICS):
        if not enough:
            figures[key] = None
            continue
        psi = population_stability_index(reference[:, index], current[:, index])
        figures[key] = psi
        if psi >= settings.psi_alert:
            alerts.append(
                Alert(
                    "drift",
                    window_days,
                    f"{name} PSI {psi:.3f} ≥ {settings.psi_alert} over {window_days} days "
                    f"({current.shape[0]} images against the site's first "
                    f"{reference.shape[0]})",
                )
            )
    return figures, alerts


def evaluate_window(
    session: Session,
    *,
    settings: MonitoringSettings,
    model_version: str,
    target_sensitivity: float,
    window_days: int,
    now: datetime,
) -> tuple[dict[str, Any], list[Alert]]:
    """The figures of one rolling window and the alerts they call for."""
    since = now - timedelta(days=window_days)
    cases = [c for c in labelled_cases(session, since=since) if c.model_version == model_version]
    group = summarise(cases, model_version=model_version).to_dict()
    alerts: list[Alert] = []
    c = group
    positives = c["tp"] + c["fn"]
    upper = group["sensitivity"]["ci95"][1]
    if positives >= settings.min_labelled and upper is not None and upper < target_sensitivity:
        alerts.append(
            Alert(
                "sensitivity",
                window_days,
                f"sensitivity over {window_days} days is {group['sensitivity']['value']:.3f} "
                f"(95% CI up to {upper:.3f}) on {positives} confirmed pneumonias: below the "
                f"target {target_sensitivity:.2f}",
            )
        )
    flagged = c["tp"] + c["fp"]
    ppv = group["ppv"]["value"]
    if (
        settings.ppv_floor is not None
        and flagged >= settings.min_labelled
        and ppv is not None
        and ppv < settings.ppv_floor
    ):
        alerts.append(
            Alert(
                "ppv",
                window_days,
                f"PPV over {window_days} days is {ppv:.3f} on {flagged} flagged studies: "
                f"below the floor {settings.ppv_floor:.2f}",
            )
        )
    reference = study_logits(
        session, model_version=model_version, since=None, first=settings.reference_studies
    )
    current = study_logits(session, model_version=model_version, since=since, first=None)
    psi = float("nan")
    if reference.size >= settings.reference_studies and current.size >= settings.min_window_results:
        psi = population_stability_index(reference, current)
        if psi >= settings.psi_alert:
            alerts.append(
                Alert(
                    "drift",
                    window_days,
                    f"score drift over {window_days} days: PSI {psi:.3f} against the site's "
                    f"first {reference.size} studies (alert from {settings.psi_alert})",
                )
            )
    image_figures, image_alerts = _image_drift(
        session, settings=settings, window_days=window_days, since=since
    )
    alerts.extend(image_alerts)
    outcomes = outcome_counts(session, since=since, model_version=model_version)
    figures = {
        **group,
        "window_days": window_days,
        "scored": int(current.size),  # assessable studies: those drift is measured on
        "psi": None if np.isnan(psi) else psi,
        **image_figures,
        **outcomes.to_dict(),
    }
    return figures, alerts


@dataclass(frozen=True)
class WindowResult:
    """One window's figures and the alerts they call for, not yet stored."""

    days: int
    figures: dict[str, Any]
    alerts: list[Alert]


def evaluate_windows(
    session: Session,
    *,
    settings: MonitoringSettings,
    model_version: str,
    target_sensitivity: float,
    now: datetime,
) -> list[WindowResult]:
    """Every window's figures and alerts (reads only: run it in a reading unit)."""
    results = []
    for days in settings.windows_days:
        figures, alerts = evaluate_window(
            session,
            settings=settings,
            model_version=model_version,
            target_sensitivity=target_sensitivity,
            window_days=days,
            now=now,
        )
        results.append(WindowResult(days, figures, alerts))
    return results


def store_runs(
    session: Session, results: list[WindowResult], *, model_version: str, now: datetime
) -> dict[str, Any]:
    """Store the runs and their alerts, log the alerts; the summary of what was stored.

    The alerts raised are listed under ``raised``; the caller sends them with
    :func:`send_alerts` *after* its transaction commits, so that a slow webhook never
    holds the database (on SQLite, the write lock every other role needs).
    """
    summary: dict[str, Any] = {"windows": {}, "alerts": 0, "raised": []}
    for result in results:
        days, figures, alerts = result.days, result.figures, result.alerts
        run = MonitoringRun(
            ran_at=now, window_days=days, model_version=model_version, figures=json.dumps(figures)
        )
        session.add(run)
        session.flush()
        for alert in alerts:
            session.add(
                MonitoringAlert(
                    raised_at=now,
                    kind=alert.kind,
                    window_days=days,
                    message=alert.message,
                    run_id=run.id,
                )
            )
            logger.warning(
                "monitoring alert",
                extra={"kind": alert.kind, "window_days": days, "alert": alert.message},
            )
            summary["raised"].append(
                {
                    "kind": alert.kind,
                    "window_days": days,
                    "message": alert.message,
                    "at": now.isoformat(),
                }
            )
        summary["windows"][days] = {
            "labelled": figures["labelled"],
            "not_assessable_results": figures["not_assessable_results"],
            "psi": figures["psi"],
            "psi_image_mean": figures["psi_image_mean"],
            "psi_image_std": figures["psi_image_std"],
        }
        summary["alerts"] += len(alerts)
    return summary


def run_monitoring(
    session: Session,
    *,
    settings: MonitoringSettings,
    model_version: str,
    target_sensitivity: float,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Evaluate every window and store the runs and alerts in one unit of work (see
    :func:`daemon.maintenance.monitor` for the scheduled job, which evaluates in a
    reading unit and holds the write lock only to store)."""
    now = now or utcnow()
    results = evaluate_windows(
        session,
        settings=settings,
        model_version=model_version,
        target_sensitivity=target_sensitivity,
        now=now,
    )
    return store_runs(session, results, model_version=model_version, now=now)


def send_alerts(settings: MonitoringSettings, raised: list[dict[str, Any]]) -> int:
    """POST each alert a committed monitoring run raised to the webhook, if one is set;
    returns how many were accepted. Call it outside any database transaction."""
    if not settings.webhook_url:
        return 0
    return sum(send_webhook(settings.webhook_url, payload) for payload in raised)


def send_webhook(url: str, payload: dict[str, Any], *, timeout: float = 10.0) -> bool:
    """POST an alert as JSON; a failure is logged, never raised."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        logger.warning("alert webhook failed", extra={"error": str(exc)})
        return False


# -- what the dashboard, the banner and the CLI show -------------------------------------


def banner_alerts(session: Session) -> list[MonitoringAlert]:
    """The alerts of each window's latest run: the ones that still hold."""
    latest = (
        select(func.max(MonitoringRun.id)).group_by(MonitoringRun.window_days).scalar_subquery()
    )
    query = select(MonitoringAlert).where(MonitoringAlert.run_id.in_(latest))
    return list(session.scalars(query.order_by(MonitoringAlert.id)).all())


def recent_alerts(session: Session, *, limit: int) -> list[MonitoringAlert]:
    """The newest alerts, newest first."""
    query = select(MonitoringAlert).order_by(MonitoringAlert.id.desc()).limit(limit)
    return list(session.scalars(query).all())


def latest_runs(session: Session) -> dict[int, tuple[datetime, dict[str, Any]]]:
    """Each window's latest run: its time and figures, by window length in days."""
    newest = select(func.max(MonitoringRun.id)).group_by(MonitoringRun.window_days)
    runs = session.scalars(select(MonitoringRun).where(MonitoringRun.id.in_(newest)))
    return {run.window_days: (run.ran_at, json.loads(run.figures)) for run in runs}


def psi_history(
    session: Session, *, window_days: int, since: datetime | None, limit: int = 2000
) -> list[tuple[datetime, float]]:
    """The score drift (PSI) of one window's runs, oldest first (at most the last ``limit``)."""
    query = (
        select(MonitoringRun.ran_at, MonitoringRun.figures)
        .where(MonitoringRun.window_days == window_days)
        .order_by(MonitoringRun.id.desc())
        .limit(limit)
    )
    if since is not None:
        query = query.where(MonitoringRun.ran_at >= since)
    return [
        (ran_at, float(psi))
        for ran_at, text in reversed(session.execute(query).all())
        if (psi := json.loads(text).get("psi")) is not None
    ]


def daily_scores(
    session: Session, *, model_version: str, since: datetime | None
) -> list[tuple[date, list[float]]]:
    """The calibrated scores of assessed studies (their deciding results), by day
    (not-assessable ones have none)."""
    query = (
        select(Result.scored_at, Result.score)
        .join(Study, Study.result_id == Result.id)
        .where(Result.model_version == model_version, Result.assessable.is_(True))
    )
    if since is not None:
        query = query.where(Result.scored_at >= since)
    days: dict[date, list[float]] = {}
    for scored_at, score in session.execute(query).all():
        days.setdefault(scored_at.date(), []).append(score)
    return sorted(days.items())
