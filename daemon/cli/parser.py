"""The command line's grammar."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

from daemon.db.models import DeliveryState, FeedbackLabel, JobState, UserRole
from daemon.feedback import FeedbackError, parse_since
from daemon.roles import ROLES

SINCE_HELP = "30d, 12h, 90m or an ISO date (default: all)"


def since(text: str) -> datetime:
    """A ``--since`` value as a time; a bad one is a usage error (one line, exit status 2)."""
    try:
        return parse_since(text)
    except FeedbackError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``chestaid-daemon`` and its subcommands."""
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

    sub.add_parser(
        "status", parents=[common], help="the mode (live or shadow), jobs and deliveries by state"
    )

    retry = _queue_commands(
        sub,
        common,
        "outbox",
        help_text="deliveries of outputs to destinations",
        states=[s.value for s in DeliveryState],
        items="deliveries",
        retry_help="retry dead-lettered deliveries",
    )
    retry.add_argument("--all-dead", action="store_true", help="every dead delivery")

    retry = _queue_commands(
        sub,
        common,
        "jobs",
        help_text="scoring jobs of received instances",
        states=[s.value for s in JobState],
        items="jobs",
        retry_help="queue failed jobs again",
    )
    retry.add_argument("--all-failed", action="store_true", help="every failed job")

    wl = sub.add_parser("worklist", parents=[common], help="open studies in reading order")
    wl.add_argument("--format", choices=["table", "json"], default="table")

    study = sub.add_parser("study", help="studies")
    study_sub = study.add_subparsers(dest="study_command", required=True)
    read = study_sub.add_parser("read", parents=[common], help="mark a study read")
    read.add_argument("study_instance_uid")
    read.add_argument("--user", required=True)
    close = study_sub.add_parser(
        "close",
        parents=[common],
        help="take a study off the worklist: read elsewhere (audited)",
    )
    close.add_argument("study_instance_uid")
    close.add_argument("--reason", required=True, choices=["reported-elsewhere"])
    close.add_argument("--user", required=True, help="who says so (for the audit trail)")

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
    # The shadow comparison always covers the whole shadow period: no --since with it.
    span = rep.add_mutually_exclusive_group()
    span.add_argument("--since", type=since, default=None, help=SINCE_HELP)
    span.add_argument(
        "--shadow",
        action="store_true",
        help="the shadow period instead: studies scored in shadow mode against their labels",
    )
    rep.add_argument("--format", choices=["table", "csv", "json"], default="table")
    exp = fb_sub.add_parser("export", parents=[common], help="every feedback with its prediction")
    exp.add_argument("--since", type=since, default=None, help=SINCE_HELP)
    exp.add_argument("--format", choices=["csv", "json"], default="csv")
    exp.add_argument(
        "--identified",
        action="store_true",
        help="add patient name and ID, accession and study date (audited; needs --user)",
    )
    exp.add_argument("--user", default=None, help="who asks for an identified export")

    cal = sub.add_parser("calibration", help="calibration versions fitted on local feedback")
    cal_sub = cal.add_subparsers(dest="calibration_command", required=True)
    fit = cal_sub.add_parser(
        "fit", parents=[common], help="fit a pending version on labelled studies"
    )
    fit.add_argument(
        "--min-cases",
        type=int,
        default=None,
        help="raise the minimum of labelled studies for this fit (never below [calibration])",
    )
    fit.add_argument(
        "--target-sensitivity",
        type=float,
        default=None,
        help="default: the sensitivity the bundle's threshold was set for",
    )
    fit.add_argument("--user", required=True)
    cal_sub.add_parser("list", parents=[common], help="every version and which is active")
    rev = cal_sub.add_parser(
        "review", parents=[common], help="the guardrails and what a version would change"
    )
    rev.add_argument("version", type=int)
    act = cal_sub.add_parser("activate", parents=[common], help="use a version for new studies")
    act.add_argument("version", type=int)
    act.add_argument(
        "--confirm-changes",
        type=int,
        required=True,
        metavar="N",
        help="the number of recent studies that would change band, as `review` counts it",
    )
    act.add_argument("--user", required=True)
    deact = cal_sub.add_parser("deactivate", parents=[common], help="go back to the bundle's own")
    deact.add_argument("--user", required=True)

    mon = sub.add_parser("monitoring", help="performance and drift over rolling windows")
    mon_sub = mon.add_subparsers(dest="monitoring_command", required=True)
    mon_sub.add_parser("run", parents=[common], help="run the monitoring job now")
    mon_sub.add_parser("alerts", parents=[common], help="alerts raised, newest first")

    aud = sub.add_parser("audit", parents=[common], help="the audit trail")
    aud.add_argument("--since", type=since, default=None, help=SINCE_HELP)

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


def _row_id(text: str) -> int:
    """A database id from the command line: a whole number from 1 to 2**62."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 2**62:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (a whole number from 1)")
    return value


def _queue_commands(
    sub: Any,
    common: argparse.ArgumentParser,
    name: str,
    *,
    help_text: str,
    states: list[str],
    items: str,
    retry_help: str,
) -> argparse.ArgumentParser:
    """A queue's ``list`` and ``retry`` subcommands (outbox, jobs); the retry parser, for
    the options only one of them has."""
    group: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    group_sub = group.add_subparsers(dest=f"{name}_command", required=True)
    listing = group_sub.add_parser("list", parents=[common], help=f"list {items}")
    listing.add_argument("--state", choices=states, default=None)
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--format", choices=["table", "json"], default="table")
    retry: argparse.ArgumentParser = group_sub.add_parser(
        "retry", parents=[common], help=retry_help
    )
    singular = items[:-3] + "y" if items.endswith("ies") else items[:-1]
    retry.add_argument("ids", nargs="*", type=_row_id, help=f"{singular} ids")
    retry.add_argument(
        "--by", default=None, help="who asks (for the audit trail; default: the login name)"
    )
    return retry
