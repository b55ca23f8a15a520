"""``chestaid-daemon``: run the triage daemon and administer it.

    chestaid-daemon serve [--config FILE] [--roles scp,worker,sender,scheduler]
    chestaid-daemon db upgrade | db current
    chestaid-daemon status
    chestaid-daemon outbox list [--state dead] | outbox retry (ID... | --all-dead) [--by NAME]
    chestaid-daemon jobs list [--state failed] | jobs retry (ID... | --all-failed) [--by NAME]
    chestaid-daemon worklist [--format table|json]
    chestaid-daemon study read STUDY_UID --user NAME
    chestaid-daemon feedback record STUDY_UID --label pneumonia|no_pneumonia|indeterminate --user NAME
    chestaid-daemon feedback report [--since 30d | --shadow] [--format table|csv|json] | feedback export
    chestaid-daemon audit [--since 30d]
    chestaid-daemon calibration fit [--min-cases 100] --user NAME | list | activate N | deactivate
    chestaid-daemon monitoring run | monitoring alerts
    chestaid-daemon config show

Errors are reported as one line on standard error with a non-zero exit status:
1 for a failure, 2 for bad usage or configuration.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from chestaid.errors import ChestAidError, ConfigurationError
from daemon import logs
from daemon.cli.common import err, out
from daemon.cli.parser import build_parser
from daemon.db.session import DatabaseError
from daemon.settings import Settings, load_settings

__all__ = ["main"]

logger = logging.getLogger("daemon.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        logs.configure(settings.logging.level, settings.logging.format)
        return _run(settings, args)
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


def _run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the parsed command.

    Each command's module is imported here, when it is run: ``--help`` and the
    commands that only read the database do not wait for the model's libraries and the
    web application to load.
    """
    if args.command in ("serve", "db", "status", "outbox", "jobs"):
        from daemon.cli import operations

        if args.command == "serve":
            return operations.serve(settings, args.roles)
        if args.command == "db":
            return operations.db(settings, args.db_command)
        if args.command == "status":
            return operations.status(settings)
        if args.command == "outbox":
            return operations.outbox(settings, args)
        return operations.jobs(settings, args)
    if args.command in ("worklist", "study", "feedback", "audit"):
        from daemon.cli.reading import reading_command

        return reading_command(settings, args)
    if args.command in ("calibration", "monitoring", "users"):
        from daemon.cli import administration

        command = {
            "calibration": administration.calibration,
            "monitoring": administration.monitoring,
            "users": administration.users,
        }[args.command]
        return command(settings, args)
    out(settings.model_dump_json(indent=2))
    return 0
