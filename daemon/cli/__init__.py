"""``chestaid-daemon``: run the triage daemon and administer it.

    chestaid-daemon serve [--config FILE] [--roles scp,worker,sender,scheduler]
    chestaid-daemon db upgrade | db current
    chestaid-daemon status
    chestaid-daemon outbox list [--state dead] | outbox retry (ID... | --all-dead) [--by NAME]
    chestaid-daemon jobs list [--state failed] | jobs retry (ID... | --all-failed) [--by NAME]
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

import logging
from collections.abc import Sequence

from chestaid.errors import ChestAidError, ConfigurationError
from daemon import logs
from daemon.cli.administration import calibration, monitoring, users
from daemon.cli.common import err, out
from daemon.cli.operations import db, jobs, outbox, serve, status
from daemon.cli.parser import build_parser
from daemon.cli.reading import reading_command
from daemon.db.session import DatabaseError
from daemon.settings import load_settings

__all__ = ["main"]

logger = logging.getLogger("daemon.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        logs.configure(settings.logging.level, settings.logging.format)
        if args.command == "serve":
            return serve(settings, args.roles)
        if args.command == "db":
            return db(settings, args.db_command)
        if args.command == "status":
            return status(settings)
        if args.command == "outbox":
            return outbox(settings, args)
        if args.command == "jobs":
            return jobs(settings, args)
        if args.command in ("worklist", "study", "feedback", "audit"):
            return reading_command(settings, args)
        if args.command == "calibration":
            return calibration(settings, args)
        if args.command == "monitoring":
            return monitoring(settings, args)
        if args.command == "users":
            return users(settings, args)
        out(settings.model_dump_json(indent=2))
        return 0
    except ConfigurationError as exc:
        err(f"chestaid-daemon: {exc}")
        return 2
    except ChestAidError as exc:
        err(f"chestaid-daemon: {exc}")
        return 1
    except DatabaseError as exc:
        err(f"chestaid-daemon: database error: {exc.__class__.__name__}: {exc}")
        return 1
    except OSError as exc:
        err(f"chestaid-daemon: {exc}")
        return 1
