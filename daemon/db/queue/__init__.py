"""The work queue: received instances and their scoring jobs, deliveries of outputs, leases.

Each function works inside the caller's session and transaction (one unit of work),
takes keyword arguments and never commits. A job or a delivery is claimed under a
lease held by one process (:func:`process_owner`); a failed attempt waits
:func:`backoff` before the next. Claims (of jobs and of deliveries) lock the row with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite every transaction is begun
IMMEDIATE (see :mod:`daemon.db.session`), which serialises claimers the same way.

By concern: :mod:`.jobs` (instances and jobs), :mod:`.results` (completing a job with
its result, outputs and deliveries), :mod:`.deliveries` (the outbox), :mod:`.leases`
(owners, backoff, leases of dead processes), :mod:`.counts` (rows per state). Callers
use the names re-exported here (``queue.claim_job``).
"""

from __future__ import annotations

from daemon.db.queue.counts import delivery_counts, job_counts
from daemon.db.queue.deliveries import (
    DeliveryClaim,
    claim_deliveries,
    delivery_page,
    list_deliveries,
    mark_attempt_failed,
    mark_delivered,
    release_owned_deliveries,
    retry_deliveries,
)
from daemon.db.queue.jobs import (
    TERMINAL_JOB_STATES,
    Claim,
    Duplicate,
    claim_job,
    finish_job,
    instance_exists,
    job_page,
    list_jobs,
    receive_again,
    record_instance,
    release_job,
    release_owned_jobs,
    retry_failed_jobs,
)
from daemon.db.queue.leases import backoff, expire_leases_of_dead_owners, process_owner
from daemon.db.queue.results import ImageStatistics, NewOutput, NotAssessable, complete_job

__all__ = [
    "TERMINAL_JOB_STATES",
    "Claim",
    "DeliveryClaim",
    "Duplicate",
    "ImageStatistics",
    "NewOutput",
    "NotAssessable",
    "backoff",
    "claim_deliveries",
    "claim_job",
    "complete_job",
    "delivery_counts",
    "delivery_page",
    "expire_leases_of_dead_owners",
    "finish_job",
    "instance_exists",
    "job_counts",
    "job_page",
    "list_deliveries",
    "list_jobs",
    "mark_attempt_failed",
    "mark_delivered",
    "process_owner",
    "receive_again",
    "record_instance",
    "release_job",
    "release_owned_deliveries",
    "release_owned_jobs",
    "retry_deliveries",
    "retry_failed_jobs",
]
