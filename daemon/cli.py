"""``chestaid-daemon``: run the triage daemon and administer it.

    chestaid-daemon serve [--config FILE] [--roles scp,worker,sender,scheduler]
    chestaid-daemon db upgrade | db current
    chestaid-daemon status
    chestaid-daemon outbox list [--state dead] | outbox retry (ID... | --all-dead)
    chestaid-daemon worklist [--format table|json]
    chestaid-daemon study read STUDY_UID --user NAME
    chestaid-daemon feedback record STUDY_UID --label pneumonia|no_pneumonia|indeterminate --user NAME
    chestaid-daemon feedback report [--since 30d] [--format table|csv|json] | feedback export
    chestaid-daemon audit [--since 30d]
    chestaid-daemon calibration fit [--min-cases 100] --user NAME | list | activate N | deactivate
    chestaid-daemon monitoring run | monitoring alerts
    chestaid-daemon config show

Errors are reported as one line on standard error with a non-zero exit status:
1 for a failure, 2 for bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

from chestaid.display import interval_text, score_pair_text, score_text
from chestaid.errors import ChestAidError, ConfigurationError
from daemon import accounts, audit, logs, maintenance, monitoring, recalibration
from daemon.db import queue
from daemon.db.migrate import check_schema, current_revision, head_revision, upgrade
from daemon.db.models import DeliveryState, FeedbackLabel, UserRole
from daemon.db.session import DatabaseError, make_engine, make_session_factory, writing
from daemon.feedback import (
    csv_text,
    labelled_cases,
    mark_read,
    parse_since,
    record_feedback,
    report,
)
from daemon.service import ROLES, Service, parse_roles
from daemon.serving import Serving
from daemon.settings import Settings, load_settings
from daemon.worklist import WorklistItem, worklist

logger = logging.getLogger("daemon.cli")


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chestaid-daemon",
        description="ChestAid's DICOM triage daemon (triage support, not a diagnosis).",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, default=None, help="TOML settings (default: the embedded default)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the daemon")
    serve.add_argument(
        "--roles",
        default="all",
        help=f"comma-separated roles to run in this process ({','.join(ROLES)}; default all)",
    )

    db = sub.add_parser("db", help="the database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", parents=[common], help="migrate the database to this version")
    db_sub.add_parser("current", parents=[common], help="show the schema revision")

    sub.add_parser("status", parents=[common], help="jobs and deliveries by state")

    outbox = sub.add_parser("outbox", help="deliveries of outputs to destinations")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", required=True)
    listing = outbox_sub.add_parser("list", parents=[common], help="list deliveries")
    listing.add_argument("--state", choices=[s.value for s in DeliveryState], default=None)
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--format", choices=["table", "json"], default="table")
    retry = outbox_sub.add_parser("retry", parents=[common], help="retry dead-lettered deliveries")
    retry.add_argument("ids", nargs="*", type=int, help="delivery ids")
    retry.add_argument("--all-dead", action="store_true", help="every dead delivery")

    wl = sub.add_parser("worklist", parents=[common], help="open studies in reading order")
    wl.add_argument("--format", choices=["table", "json"], default="table")

    study = sub.add_parser("study", help="studies")
    study_sub = study.add_subparsers(dest="study_command", required=True)
    read = study_sub.add_parser("read", parents=[common], help="mark a study read")
    read.add_argument("study_instance_uid")
    read.add_argument("--user", required=True)

    fb = sub.add_parser("feedback", help="radiologists' feedback and the report on it")
    fb_sub = fb.add_subparsers(dest="feedback_command", required=True)
    give = fb_sub.add_parser("record", parents=[common], help="give or change a study's feedback")
    give.add_argument("study_instance_uid")
    give.add_argument("--label", required=True, choices=[label.value for label in FeedbackLabel])
    give.add_argument("--comment", default=None)
    give.add_argument("--user", required=True)
    rep = fb_sub.add_parser(
        "report", parents=[common], help="how the model does on labelled studies"
    )
    rep.add_argument("--since", default=None, help="30d, 12h, 90m or an ISO date (default: all)")
    rep.add_argument("--format", choices=["table", "csv", "json"], default="table")
    exp = fb_sub.add_parser("export", parents=[common], help="every feedback with its prediction")
    exp.add_argument("--since", default=None)
    exp.add_argument("--format", choices=["csv", "json"], default="csv")

    cal = sub.add_parser("calibration", help="calibration versions fitted on local feedback")
    cal_sub = cal.add_subparsers(dest="calibration_command", required=True)
    fit = cal_sub.add_parser(
        "fit", parents=[common], help="fit a pending version on labelled studies"
    )
    fit.add_argument("--min-cases", type=int, default=100)
    fit.add_argument(
        "--target-sensitivity",
        type=float,
        default=None,
        help="default: the sensitivity the bundle's threshold was set for",
    )
    fit.add_argument("--user", required=True)
    cal_sub.add_parser("list", parents=[common], help="every version and which is active")
    act = cal_sub.add_parser("activate", parents=[common], help="use a version for new studies")
    act.add_argument("version", type=int)
    act.add_argument("--user", required=True)
    deact = cal_sub.add_parser("deactivate", parents=[common], help="go back to the bundle's own")
    deact.add_argument("--user", required=True)

    mon = sub.add_parser("monitoring", help="performance and drift over rolling windows")
    mon_sub = mon.add_subparsers(dest="monitoring_command", required=True)
    mon_sub.add_parser("run", parents=[common], help="run the monitoring job now")
    mon_sub.add_parser("alerts", parents=[common], help="alerts raised, newest first")

    aud = sub.add_parser("audit", parents=[common], help="the audit trail")
    aud.add_argument("--since", default=None)

    usr = sub.add_parser("users", help="web accounts (also on the web: Users)")
    usr_sub = usr.add_subparsers(dest="users_command", required=True)
    usr_sub.add_parser("list", parents=[common], help="every account")
    add = usr_sub.add_parser("add", parents=[common], help="create an account (one-time password)")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=[r.value for r in UserRole])
    add.add_argument("--by", required=True, help="who makes the change (for the audit trail)")
    reset = usr_sub.add_parser(
        "reset", parents=[common], help="give an account a new one-time password"
    )
    reset.add_argument("username")
    reset.add_argument("--by", required=True)
    for verb in ("enable", "disable"):
        toggle = usr_sub.add_parser(verb, parents=[common], help=f"{verb} an account")
        toggle.add_argument("username")
        toggle.add_argument("--by", required=True)

    config = sub.add_parser("config", help="the settings")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    config_sub.add_parser("show", parents=[common], help="print the validated settings as JSON")
    return parser


def _serve(settings: Settings, roles_text: str) -> int:
    try:
        roles = parse_roles(roles_text)
    except ValueError as exc:
        raise ConfigurationError(f"--roles: {exc}") from exc
    service = Service(settings, roles)
    signal.signal(signal.SIGTERM, service.request_stop)
    signal.signal(signal.SIGINT, service.request_stop)
    try:
        service.start()
    except BaseException:
        service.stop()
        raise
    service.wait()
    logger.info("stop requested")
    service.stop()
    return 0


def _db(settings: Settings, command: str) -> int:
    engine = make_engine(settings.storage.url)
    try:
        if command == "upgrade":
            before, after = upgrade(engine)
            _out(f"database at revision {after} (was {before or 'empty'})")
        else:
            current = current_revision(engine)
            head = head_revision()
            _out(f"current {current or 'none'}; this ChestAid's head {head}")
    finally:
        engine.dispose()
    return 0


def _status(settings: Settings) -> int:
    engine = make_engine(settings.storage.url)
    try:
        with writing(make_session_factory(engine)) as session:
            report = {
                "jobs": queue.job_counts(session),
                "deliveries": queue.delivery_counts(session),
            }
    finally:
        engine.dispose()
    _out(json.dumps(report, indent=2))
    return 0


def _outbox(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.storage.url)
    try:
        sessions = make_session_factory(engine)
        if args.outbox_command == "retry":
            if not args.ids and not args.all_dead:
                raise ConfigurationError("outbox retry: give delivery ids or --all-dead")
            with writing(sessions) as session:
                n = queue.retry_deliveries(session, ids=args.ids, all_dead=args.all_dead)
            _out(f"{n} dead deliveries queued again")
            return 0
        with writing(sessions) as session:
            state = DeliveryState(args.state) if args.state else None
            rows = queue.list_deliveries(session, state=state, limit=args.limit)
            items = [
                {
                    "id": d.id,
                    "destination": d.destination,
                    "state": d.state.value,
                    "attempts": d.attempts,
                    "kind": d.output.kind.value,
                    "sop_instance_uid": d.output.sop_instance_uid,
                    "next_attempt_at": d.next_attempt_at.isoformat(timespec="seconds"),
                    "last_error": d.last_error or "",
                }
                for d in rows
            ]
    finally:
        engine.dispose()
    if args.format == "json":
        _out(json.dumps(items, indent=2))
        return 0
    columns = ["id", "destination", "state", "attempts", "kind", "next_attempt_at", "last_error"]
    _out("\t".join(columns))
    for item in items:
        _out("\t".join(str(item[c]) for c in columns))
    return 0


def _worklist_row(item: WorklistItem) -> dict[str, object]:
    """One worklist line for the command line. A study standing as not assessed has no
    score and (unless promoted) no band: null in JSON, "-" in a table."""
    unjudged = item.entry.not_assessed
    note = None
    if unjudged is not None:
        images = f"{unjudged.count} image{'s' if unjudged.count > 1 else ''}"
        note = (
            f"NOT ASSESSED: {unjudged.reason} ({images})"
            if item.not_assessed
            else f"{images} not assessed: {unjudged.reason}"
        )
    score = item.entry.score
    return {
        "study_instance_uid": item.entry.study_instance_uid,
        "band": item.band,
        "score": None if item.not_assessed or score is None else score,
        "not_assessed": note,
        "waiting_min": round(item.waiting.total_seconds() / 60, 1),
        "overdue": item.overdue,
        "raised_by_sender": item.raised_by_sender,
        "images": item.entry.images,
    }


def _reading(settings: Settings, args: argparse.Namespace) -> int:
    """The worklist, reads, feedback, its report and export, and the audit trail."""
    since = parse_since(args.since) if getattr(args, "since", None) else None
    engine = make_engine(settings.storage.url)
    try:
        check_schema(engine)
        sessions = make_session_factory(engine)
        bands = Serving(settings.model, settings.priority.bands, sessions).current().bands
        with writing(sessions) as session:
            if args.command == "worklist":
                items = worklist(
                    session,
                    bands,
                    max_wait=timedelta(minutes=settings.worklist.max_wait_minutes),
                )
                rows = _worklist_rows(items, for_people=args.format == "table")
                if args.format != "json":
                    rows = [{k: "-" if v is None else v for k, v in r.items()} for r in rows]
                _emit(rows, args.format)
            elif args.command == "study":
                done = mark_read(
                    session, study_instance_uid=args.study_instance_uid, user=args.user
                )
                _out("marked read" if done else "already read")
            elif args.command == "audit":
                _emit(
                    [
                        {
                            "id": e.id,
                            "at": e.at.isoformat(timespec="seconds"),
                            "actor": e.actor,
                            "action": e.action,
                            "subject": e.subject or "",
                            "detail": e.detail or "",
                        }
                        for e in audit.entries(session, since=since)
                    ],
                    "table",
                )
            elif args.feedback_command == "record":
                record_feedback(
                    session,
                    study_instance_uid=args.study_instance_uid,
                    label=FeedbackLabel(args.label),
                    comment=args.comment,
                    user=args.user,
                )
                _out(f"feedback recorded: {args.label}")
            elif args.feedback_command == "export":
                _emit([c.to_dict() for c in labelled_cases(session, since=since)], args.format)
            else:
                groups = [g.to_dict() for g in report(labelled_cases(session, since=since))]
                if args.format == "json":
                    _out(json.dumps(groups, indent=2))
                else:
                    _emit([_flat(g) for g in groups], "csv" if args.format == "csv" else "table")
    finally:
        engine.dispose()
    return 0


def _worklist_rows(items: Sequence[WorklistItem], *, for_people: bool) -> list[dict[str, object]]:
    """Worklist rows: scores as full-precision numbers, or as text for a person to read.

    The text shows the score and threshold with the digits that tell them apart
    (:mod:`chestaid.display`); JSON and CSV keep the numbers. A study standing as not
    assessed has no score and (unless promoted) no band: null in JSON, "-" in a table.
    """
    rows: list[dict[str, object]] = []
    for i in items:
        row = _worklist_row(i)
        score: object = row["score"]
        threshold: object = None if score is None else i.entry.threshold
        if for_people and score is not None and i.entry.score is not None:
            score, threshold = score_pair_text(i.entry.score, i.entry.threshold)
        row["score"] = score
        rows.append({**row, "threshold": threshold})
    return rows


def _threshold_interval(report_json: str) -> str:
    """The bootstrap 95% interval of a local version's threshold, from its report."""
    spread = json.loads(report_json).get("threshold_ci95")
    return interval_text(*spread) if spread else interval_text(None, None)


def _calibration(settings: Settings, args: argparse.Namespace) -> int:
    """Fit, list, activate and deactivate local calibration versions."""
    engine = make_engine(settings.storage.url)
    try:
        check_schema(engine)
        sessions = make_session_factory(engine)
        served = Serving(settings.model, settings.priority.bands, sessions).current()
        with writing(sessions) as session:
            command = args.calibration_command
            if command == "fit":
                target = args.target_sensitivity
                if target is None:
                    target = served.target_sensitivity
                row = recalibration.fit_local_calibration(
                    session,
                    model_version=served.model_version,
                    bundle_calibration_version=served.bundle_calibration_version,
                    target_sensitivity=target,
                    min_cases=args.min_cases,
                    user=args.user,
                )
                _out(f"calibration version {row.version} fitted (pending): {row.method}")
                _out(json.dumps(json.loads(row.report), indent=2))
            elif command == "activate":
                row = recalibration.activate(session, version=args.version, user=args.user)
                _out(
                    f"calibration version {row.version} active; threshold "
                    f"{score_text(row.threshold)} (95% interval {_threshold_interval(row.report)})"
                )
            elif command == "deactivate":
                retired = recalibration.deactivate(
                    session, model_version=served.model_version, user=args.user
                )
                _out(
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
                _emit(rows, "table")
    finally:
        engine.dispose()
    return 0


def _monitoring(settings: Settings, args: argparse.Namespace) -> int:
    """Run the monitoring job now, or list the alerts."""
    engine = make_engine(settings.storage.url)
    try:
        check_schema(engine)
        sessions = make_session_factory(engine)
        if args.monitoring_command == "run":
            _out(
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
        with writing(sessions) as session:
            rows = [
                {
                    "raised_at": a.raised_at.isoformat(timespec="seconds"),
                    "kind": a.kind,
                    "window_days": a.window_days,
                    "message": a.message,
                }
                for a in monitoring.recent_alerts(session, limit=100)
            ]
        _emit(rows, "table")
    finally:
        engine.dispose()
    return 0


def _users(settings: Settings, args: argparse.Namespace) -> int:
    """Web accounts from the command line: the way back in when no admin can sign in."""
    engine = make_engine(settings.storage.url)
    try:
        check_schema(engine)
        with writing(make_session_factory(engine)) as session:
            command = args.users_command
            if command == "list":
                _emit(
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
                _out(f"{user.username} ({user.role.value}) created; one-time password: {password}")
                return 0
            found = accounts.find_user(session, username=args.username.strip().lower())
            if found is None:
                raise accounts.AccountError(f"no user {args.username!r}")
            if command == "reset":
                _, password = accounts.reset_password(session, user_id=found.id, actor=actor)
                _out(f"{found.username}: new one-time password: {password}")
            else:
                accounts.set_active(
                    session, user_id=found.id, active=command == "enable", actor=actor
                )
                _out(f"{found.username} {'enabled' if found.active else 'disabled'}")
    finally:
        engine.dispose()
    return 0


def _flat(group: dict[str, object]) -> dict[str, object]:
    """A report group as one row: each rate as 'value [low, high]'."""
    row: dict[str, object] = {}
    for key, value in group.items():
        if isinstance(value, dict):
            lo, hi = value["ci95"]
            row[key] = _fmt(value["value"]) + f" [{_fmt(lo)}, {_fmt(hi)}]"
        else:
            row[key] = _fmt(value) if isinstance(value, float) or value is None else value
    return row


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _emit(rows: Sequence[Mapping[str, object]], fmt: str) -> None:
    """Rows as a tab-separated table, CSV or JSON on standard output."""
    if fmt == "json":
        _out(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        _out("(none)" if fmt == "table" else "")
        return
    if fmt == "csv":
        sys.stdout.write(csv_text([dict(row) for row in rows]))
        return
    _out("\t".join(rows[0]))
    for row in rows:
        _out("\t".join(str(v) for v in row.values()))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        logs.configure(settings.logging.level, settings.logging.format)
        if args.command == "serve":
            return _serve(settings, args.roles)
        if args.command == "db":
            return _db(settings, args.db_command)
        if args.command == "status":
            return _status(settings)
        if args.command == "outbox":
            return _outbox(settings, args)
        if args.command in ("worklist", "study", "feedback", "audit"):
            return _reading(settings, args)
        if args.command == "calibration":
            return _calibration(settings, args)
        if args.command == "monitoring":
            return _monitoring(settings, args)
        if args.command == "users":
            return _users(settings, args)
        _out(settings.model_dump_json(indent=2))
        return 0
    except ConfigurationError as exc:
        _err(f"chestaid-daemon: {exc}")
        return 2
    except ChestAidError as exc:
        _err(f"chestaid-daemon: {exc}")
        return 1
    except DatabaseError as exc:
        _err(f"chestaid-daemon: database error: {exc.__class__.__name__}: {exc}")
        return 1
    except OSError as exc:
        _err(f"chestaid-daemon: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
