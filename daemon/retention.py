"""Retention: spooled images and generated outputs are deleted after a configured age,
and the identifying fields of their studies (patient name and ID, accession number,
study date and the like) are blanked at the same age.

The database keeps every row (what was received, scored and delivered, and when);
only the pixels, and who the patient was, go. An image is purged once its job is finished; an output once none
of its deliveries is pending or being sent. The rows are updated in one writing unit
and the files removed after it commits: a rollback never leaves a row naming a file
that is gone, and the write lock is never held across file-system work.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from daemon.db.models import DeliveryState, Instance, Job, JobState, Output, utcnow
from daemon.db.session import SessionFactory, writing
from daemon.db.studies import blank_identities
from daemon.spool import FileStore

logger = logging.getLogger(__name__)

BUSY_DELIVERIES = (DeliveryState.PENDING, DeliveryState.SENDING)
FINISHED_JOBS = (JobState.DONE, JobState.SKIPPED, JobState.FAILED)


def purge_old_files(
    sessions: SessionFactory,
    *,
    spool: FileStore,
    outbox: FileStore,
    older_than_days: int,
    now: datetime | None = None,
) -> dict[str, int]:
    """Delete spooled images and outputs of finished work older than the given age.

    Returns how many images and outputs were deleted.
    """
    if older_than_days <= 0:
        return {"images": 0, "outputs": 0}
    cutoff = (now or utcnow()) - timedelta(days=older_than_days)
    with writing(sessions) as session:
        instances = session.scalars(
            select(Instance)
            .join(Job, Job.instance_id == Instance.id)
            .where(
                Instance.received_at < cutoff,
                Instance.spool_name.is_not(None),
                Job.state.in_(FINISHED_JOBS),
            )
        ).all()
        images = [instance.spool_name or "" for instance in instances]
        for instance in instances:
            instance.spool_name = None
        outputs = [
            output.file_name
            for output in session.scalars(select(Output).where(Output.created_at < cutoff))
            if not any(d.state in BUSY_DELIVERIES for d in output.deliveries)
        ]
    removed_images = sum(_removed(spool, name) for name in images)
    removed_outputs = sum(_removed(outbox, name) for name in outputs)
    return {"images": removed_images, "outputs": removed_outputs}


def blank_old_identities(
    sessions: SessionFactory, *, older_than_days: int, now: datetime | None = None
) -> dict[str, int]:
    """Blank the identifying fields of studies whose last image is older than the given
    age (kept only as long as the study's images are). Returns how many studies."""
    if older_than_days <= 0:
        return {"identities": 0}
    cutoff = (now or utcnow()) - timedelta(days=older_than_days)
    with writing(sessions) as session:
        return {"identities": blank_identities(session, received_before=cutoff, now=now)}


def _removed(store: FileStore, name: str) -> bool:
    """Remove one file; a failure is logged and the purge goes on with the next file."""
    path = store.path(name)
    if not path.exists():  # purged by an earlier run
        return False
    try:
        store.remove(name)
    except OSError as exc:
        logger.error(
            "a file past retention cannot be removed", extra={"file": str(path), "error": str(exc)}
        )
        return False
    return True
