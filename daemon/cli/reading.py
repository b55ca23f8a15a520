"""The reader's commands: the worklist, reads, feedback, its report and export, the audit trail."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import timedelta

from chestaid.display import score_pair_text
from daemon import audit
from daemon.cli.common import database, emit, flat, out
from daemon.closing import close_study
from daemon.db.models import FeedbackLabel
from daemon.db.session import reading, writing
from daemon.feedback import export_rows, labelled_cases, mark_read, record_feedback, report
from daemon.serving import Serving
from daemon.settings import Settings
from daemon.shadow import shadow_report
from daemon.worklist import WorklistItem, worklist


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


def reading_command(settings: Settings, args: argparse.Namespace) -> int:
    """The worklist, reads, feedback, its report and export, and the audit trail."""
    since = getattr(args, "since", None)  # parsed (and bounded) by the parser
    with database(settings) as sessions:
        bands = Serving(settings.model, settings.priority.bands, sessions).current().bands
        writes = (
            args.command == "study"
            or getattr(args, "feedback_command", "") == "record"
            or getattr(args, "identified", False)
        )
        with (writing if writes else reading)(sessions) as session:
            if args.command == "worklist":
                hours = settings.worklist.close_after_hours
                items = worklist(
                    session,
                    bands,
                    max_wait=timedelta(minutes=settings.worklist.max_wait_minutes),
                    close_after=timedelta(hours=hours) if hours > 0 else None,
                )
                rows = _worklist_rows(items, for_people=args.format == "table")
                if args.format != "json":
                    rows = [{k: "-" if v is None else v for k, v in r.items()} for r in rows]
                emit(rows, args.format)
            elif args.command == "study" and args.study_command == "close":
                closed = close_study(
                    session,
                    study_instance_uid=args.study_instance_uid,
                    reason=args.reason,
                    actor=args.user,
                    allowed=settings.worklist.close_reported_elsewhere,
                )
                out(f"closed: {args.reason}" if closed else "already off the worklist")
            elif args.command == "study":
                done = mark_read(
                    session, study_instance_uid=args.study_instance_uid, user=args.user
                )
                out("marked read" if done else "already read")
            elif args.command == "audit":
                emit(
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
                out(f"feedback recorded: {args.label}")
            elif args.feedback_command == "export":
                cases = labelled_cases(session, since=since)
                emit(
                    export_rows(session, cases, identified=args.identified, actor=args.user),
                    args.format,
                )
            elif args.shadow:
                figures = shadow_report(session, mode=settings.site.mode).to_dict()
                if args.format == "json":
                    out(json.dumps(figures, indent=2))
                else:
                    emit([flat(figures)], "csv" if args.format == "csv" else "table")
            else:
                groups = [g.to_dict() for g in report(labelled_cases(session, since=since))]
                if args.format == "json":
                    out(json.dumps(groups, indent=2))
                else:
                    emit([flat(g) for g in groups], "csv" if args.format == "csv" else "table")
    return 0
