"""The operator's commands: run the service, migrate the database, the queue, the jobs and
the outbox."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence

from chestaid.errors import ConfigurationError
from daemon import operations
from daemon.cli.common import database, out
from daemon.db import queue
from daemon.db.migrate import current_revision, head_revision, upgrade
from daemon.db.models import DeliveryState, JobState
from daemon.db.session import make_engine, reading, writing
from daemon.roles import parse_roles
from daemon.settings import Settings

logger = logging.getLogger("daemon.cli")


def serve(settings: Settings, roles_text: str) -> int:
    try:
        roles = parse_roles(roles_text)
    except ValueError as exc:
        raise ConfigurationError(f"--roles: {exc}") from exc
    from daemon.service import Service  # the roles' code: only the command that runs them

    service = Service(settings, roles)
    signal.signal(signal.SIGTERM, service.request_stop)
    signal.signal(signal.SIGINT, service.request_stop)
    # `kill -USR1` prints every thread's stack to standard error (the journal): what a
    # process that does not stop, or does not move, is waiting on.
    signal.signal(signal.SIGUSR1, print_stacks)
    try:
        service.start()
    except BaseException:
        service.stop()
        raise
    service.wait()
    logger.info("stop requested")
    service.stop()
    return 0


def print_stacks(signum: int = signal.SIGUSR1, frame: object = None) -> None:
    """Write every thread's stack to standard error, most recent call last.

    A Python-level handler, run by the main thread holding the interpreter lock: it reads the
    threads' frames safely while threads start and end. (An asynchronous dump from the signal
    itself reads them without that lock and can crash the process it was meant to examine.)
    """
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    current = threading.get_ident()
    frames = sys._current_frames()
    parts = [f"stacks of {len(frames)} threads (signal {signum})\n"]
    for ident, top in frames.items():
        mark = ", current thread" if ident == current else ""
        parts.append(f"Thread 0x{ident:016x} ({names.get(ident, '?')}{mark}):\n")
        parts.extend(traceback.format_stack(top))
    sys.stderr.write("".join(parts))
    sys.stderr.flush()


def db(settings: Settings, command: str) -> int:
    engine = make_engine(settings.storage.url)
    try:
        if command == "upgrade":
            before, after = upgrade(engine)
            out(f"database at revision {after} (was {before or 'empty'})")
        else:
            current = current_revision(engine)
            head = head_revision()
            out(f"current {current or 'none'}; this ChestAid's head {head}")
    finally:
        engine.dispose()
    return 0


def status(settings: Settings) -> int:
    with database(settings, check=False) as sessions, reading(sessions) as session:
        report = {
            # "shadow": scored and kept, nothing sent (``[site] mode``).
            "mode": settings.site.mode,
            "jobs": queue.job_counts(session),
            "deliveries": queue.delivery_counts(session),
        }
    out(json.dumps(report, indent=2))
    return 0


def outbox(settings: Settings, args: argparse.Namespace) -> int:
    """List deliveries, or queue dead ones again (audited)."""
    with database(settings, check=False) as sessions:
        if args.outbox_command == "retry":
            if not args.ids and not args.all_dead:
                raise ConfigurationError("outbox retry: give delivery ids or --all-dead")
            with writing(sessions) as session:
                queued = operations.retry_deliveries(
                    session,
                    actor=args.by or getpass.getuser(),
                    via="cli",
                    ids=args.ids,
                    all_dead=args.all_dead,
                )
            out(f"{len(queued)} dead deliveries queued again")
            return 0
        with reading(sessions) as session:
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
    return _listing(
        items,
        ["id", "destination", "state", "attempts", "kind", "next_attempt_at", "last_error"],
        args.format,
    )


def jobs(settings: Settings, args: argparse.Namespace) -> int:
    """List jobs, or queue failed ones again (audited)."""
    with database(settings, check=False) as sessions:
        if args.jobs_command == "retry":
            if not args.ids and not args.all_failed:
                raise ConfigurationError("jobs retry: give job ids or --all-failed")
            with writing(sessions) as session:
                queued = operations.retry_images(
                    session,
                    actor=args.by or getpass.getuser(),
                    via="cli",
                    ids=args.ids,
                    all_failed=args.all_failed,
                )
            out(f"{len(queued)} failed jobs queued again")
            return 0
        with reading(sessions) as session:
            state = JobState(args.state) if args.state else None
            items = [
                {
                    "id": job.id,
                    "state": job.state.value,
                    "attempts": job.attempts,
                    "sop_instance_uid": job.instance.sop_instance_uid,
                    "updated_at": job.updated_at.isoformat(timespec="seconds"),
                    "reason": job.reason or "",
                }
                for job in queue.list_jobs(session, state=state, limit=args.limit)
            ]
    return _listing(items, ["id", "state", "attempts", "updated_at", "reason"], args.format)


def _listing(items: Sequence[Mapping[str, object]], columns: list[str], fmt: str) -> int:
    """Rows as JSON (every field), or as a tab-separated table of ``columns``."""
    if fmt == "json":
        out(json.dumps(list(items), indent=2))
        return 0
    out("\t".join(columns))
    for item in items:
        out("\t".join(str(item[c]) for c in columns))
    return 0
