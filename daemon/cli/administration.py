"""The admin's commands: local calibration, monitoring, and web accounts."""

from __future__ import annotations

import argparse
import json

from chestaid.display import interval_text, score_text
from daemon import accounts, maintenance, recalibration
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


def calibration(settings: Settings, args: argparse.Namespace) -> int:
    """Fit, list, activate and deactivate local calibration versions."""
    with database(settings) as sessions:
        served = Serving(settings.model, settings.priority.bands, sessions).current()
        command = args.calibration_command
        if command == "fit":
            target = args.target_sensitivity
            if target is None:
                target = served.target_sensitivity
            # Fitted while reading (the cross-validation holds no lock), stored briefly.
            with reading(sessions) as session:
                fitted = recalibration.fit(
                    session,
                    model_version=served.model_version,
                    bundle_calibration_version=served.bundle_calibration_version,
                    target_sensitivity=target,
                    min_cases=args.min_cases,
                )
            with writing(sessions) as session:
                row = recalibration.store(session, fitted, user=args.user)
            out(f"calibration version {row.version} fitted (pending): {row.method}")
            out(json.dumps(json.loads(row.report), indent=2))
            return 0
        with (reading if command == "list" else writing)(sessions) as session:
            if command == "activate":
                row = recalibration.activate(session, version=args.version, user=args.user)
                out(
                    f"calibration version {row.version} active; threshold "
                    f"{score_text(row.threshold)} (95% interval {_threshold_interval(row.report)})"
                )
            elif command == "deactivate":
                retired = recalibration.deactivate(
                    session, model_version=served.model_version, user=args.user
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
