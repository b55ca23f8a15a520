"""Images and deliveries in trouble, made on a real database through the queue's own
functions: a job failed or skipped with a reason, a delivery dead-lettered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from daemon.db import queue
from daemon.db.models import JobState, OutputKind
from daemon.db.session import writing
from tests.daemon_harness import complete_urgent, record_received


def ended_job(
    sessions: Any, uid: str, *, state: JobState, reason: str, when: datetime | None = None
) -> int:
    """A received instance whose job ended ``state`` (failed or skipped) with ``reason``
    (at ``when``); its job id."""
    job_id = record_received(sessions, uid, spool_name=f"x/{uid}.dcm")
    with writing(sessions) as s:
        claim = queue.claim_job(s, owner="w", lease_seconds=60, max_attempts=3, now=when)
        assert claim is not None and claim.job_id == job_id
        assert queue.finish_job(s, job_id=job_id, owner="w", state=state, reason=reason, now=when)
    return job_id


def dead_deliveries(sessions: Any, uid: str, *, destination: str = "pacs") -> list[int]:
    """A scored instance whose two outputs (SC and SR) could not be delivered to
    ``destination``: their dead delivery ids."""
    job_id = record_received(sessions, uid, spool_name=f"x/{uid}.dcm")
    with writing(sessions) as s:
        assert queue.claim_job(s, owner="w", lease_seconds=60, max_attempts=3) is not None
    outputs = [
        queue.NewOutput(
            kind=kind,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
            sop_instance_uid=f"{uid}.9.{i}",
            series_instance_uid=f"{uid}.9",
            file_name=f"{uid}-{i}.dcm",
            size_bytes=1,
        )
        for i, kind in enumerate(OutputKind)
    ]
    complete_urgent(sessions, job_id, outputs=outputs, destinations=[destination])
    with writing(sessions) as s:
        claims = queue.claim_deliveries(
            s, owner="s", lease_seconds=60, destinations=[destination], limit=10
        )
        for claim in claims:
            state = queue.mark_attempt_failed(
                s,
                delivery_id=claim.delivery_id,
                owner="s",
                error="association rejected",
                status=0xA700,
                retry_in=None,
            )
            assert state is not None
    return sorted(c.delivery_id for c in claims)
