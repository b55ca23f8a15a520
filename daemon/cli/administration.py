"""The admin's commands: local calibration, monitoring, and web accounts."""

from __future__ import annotations

import argparse
import json

from chestaid.display import interval_text, score_text
from daemon import accounts, calibration_review, maintenance, recalibration
from daemon import monitoring as monitoring_queries
from daemon.cli.common import database, emit, out
from daemon.db.models import UserRole
from daemon.db.session import reading, writing
from daemon.serving import Serving
from daemon.settings import Settings


def _threshold_interval(report_json: str) -> str:
    """The bootstrap 95% interval of a local version's threshold, from its report."""
    spread = json.loads(report_json).get("threshold_ci95")
    return interval_text(*spread) if spread else interval_text(None, None)


def _print_review(found: calibration_review.Review) -> None:
    """The guardrails' reasons, or the preview, one fact a line."""
    if found.preview is None:
        out(f"calibration version {found.version} cannot be activated:")
        for reason in found.reasons:
            out(f"- {reason}")
        return
    p = found.preview
    out(
        f"calibration version {found.version}: of {p.studies} studies scored in the last "
        f"{p.days} days, {p.changed} would change band ({p.raised} up, {p.lowered} down); "
        f"flagged {p.flagged_before} as scored, {p.flagged_after} under v{found.version}"
    )
    out(
        f"to activate: calibration activate {found.version} --confirm-changes {p.changed} --user NAME"
    )


def calibration(settings: Settings, args: argparse.Namespace) -> int:
    """Fit, list, activate and deactivate local calibration versions."""
    with database(settings) as sessions:
        serving = Serving(settings.model, settings.priority.bands, sessions)
        served = serving.current()
        command = args.calibration_command
        if command == "fit":
            target = args.target_sensitivity
            if target is None:
                target = served.target_sensitivity
            # Fitted while reading (the cross-validation holds no lock), stored briefly.
            version = recalibration.fit_version(
                sessions,
                model_version=served.model_version,
                bundle_calibration_version=served.bundle_calibration_version,
                target_sensitivity=target,
                min_cases=args.min_cases,
                floors=calibration_review.floors_of(settings.calibration),
                user=args.user,
            )
            with reading(sessions) as session:
                (row,) = (r for r in recalibration.versions(session) if r.version == version)
                out(f"calibration version {row.version} fitted (pending): {row.method}")
                out(json.dumps(json.loads(row.report), indent=2))
            return 0
        if command == "review":
            with reading(sessions) as session:
                found = recalibration.review(
                    session,
                    version=args.version,
                    bands=settings.priority.bands,
                    settings=settings.calibration,
                )
            _print_review(found)
            return 0 if found.preview is not None else 1
        with (reading if command == "list" else writing)(sessions) as session:
            if command == "activate":
                row, seen = recalibration.activate(
                    session,
                    version=args.version,
                    user=args.user,
                    bands=settings.priority.bands,
                    settings=settings.calibration,
                    confirm_changes=args.confirm_changes,
                )
                out(
                    f"calibration version {row.version} active; threshold "
                    f"{score_text(row.threshold)} (95% interval {_threshold_interval(row.report)}); "
                    f"{seen.changed} studies of the last {seen.days} days would have changed band"
                )
            elif command == "deactivate":
                retired = recalibration.deactivate(
                    session,
                    model_version=served.model_version,
                    user=args.user,
                    bundle=serving.bundle_candidate(),
                    bands=settings.priority.bands,
                    settings=settings.calibration,
                )
                out(
                    "the bundle's calibration in use"
                    + (f" (v{retired} retired)" if retired else "")
                )
            else:
                rows = [
                    {
                        "version": r.version,
                        "state": r.state.value,
                        "method": r.method,
                        "threshold": score_text(r.threshold),
                        "threshold_ci95": _threshold_interval(r.report),
                        "cases": r.n_cases,
                        "fitted": f"{r.fitted_at:%Y-%m-%d %H:%M} {r.fitted_by}",
                        "activated": f"{r.activated_at:%Y-%m-%d %H:%M} {r.activated_by}"
                        if r.activated_at
                        else "",
                    }
                    for r in recalibration.versions(session)
                ]
                emit(rows, "table")
    return 0


def monitoring(settings: Settings, args: argparse.Namespace) -> int:
    """Run the monitoring job now, or list the alerts."""
    with database(settings) as sessions:
        if args.monitoring_command == "run":
            out(
                json.dumps(
                    maintenance.monitor(
                        sessions,
                        settings=settings,
                        serving=Serving(settings.model, settings.priority.bands, sessions),
                    ),
                    indent=2,
                    default=str,
                )
            )
            return 0
        with reading(sessions) as session:
            rows = [
                {
                    "raised_at": a.raised_at.isoformat(timespec="seconds"),
                    "kind": a.kind,
                    "window_days": a.window_days,
                    "message": a.message,
                }
                for a in monitoring_queries.recent_alerts(session, limit=100)
            ]
        emit(rows, "table")
    return 0


def users(settings: Settings, args: argparse.Namespace) -> int:
    """Web accounts from the command line: the way back in when no admin can sign in."""
    command = args.users_command
    unit = reading if command == "list" else writing
    with database(settings) as sessions, unit(sessions) as session:
        if command == "list":
            emit(
                [
                    {
                        "username": u.username,
                        "role": u.role.value,
                        "active": u.active,
                        "one_time_password": u.must_change_password,
                        "last_login": u.last_login_at.isoformat(timespec="seconds")
                        if u.last_login_at
                        else "",
                    }
                    for u in accounts.users(session)
                ],
                "table",
            )
            return 0
        actor = f"cli:{args.by}"
        if command == "add":
            user, password = accounts.create_user(
                session, username=args.username, role=UserRole(args.role), actor=actor
            )
            out(f"{user.username} ({user.role.value}) created; one-time password: {password}")
            return 0
        found = accounts.find_user(session, username=args.username.strip().lower())
        if found is None:
            raise accounts.AccountError(f"no user {args.username!r}")
        if command == "reset":
            _, password = accounts.reset_password(session, user_id=found.id, actor=actor)
            out(f"{found.username}: new one-time password: {password}")
        else:
            accounts.set_active(session, user_id=found.id, active=command == "enable", actor=actor)
            out(f"{found.username} {'enabled' if found.active else 'disabled'}")
    return 0
