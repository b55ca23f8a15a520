"""Repository functions on a real, migrated SQLite file: the queue's guarantees."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from daemon.db import queue
from daemon.db.models import Delivery, DeliveryState, Job, JobState, OutputKind, Result, utcnow
from daemon.db.session import SessionFactory, writing
from daemon.heatmaps import ImageStatistics
from tests.daemon_harness import complete_urgent, record_received


def _receive(sessions: SessionFactory, uid: str) -> int:
    return record_received(sessions, uid, spool_name=f"2026/01/01/{uid}.dcm")


def _claim(sessions: SessionFactory, owner: str, **kw: object) -> queue.Claim | None:
    args: dict[str, object] = {"lease_seconds": 60.0, "max_attempts": 3, **kw}
    with writing(sessions) as s:
        return queue.claim_job(s, owner=owner, **args)  # type: ignore[arg-type]


def test_same_sop_instance_uid_is_kept_once(sessions: SessionFactory) -> None:
    _receive(sessions, "1.1")
    with writing(sessions) as s:
        assert queue.instance_exists(s, sop_instance_uid="1.1")
    with pytest.raises(IntegrityError):
        _receive(sessions, "1.1")
    with writing(sessions) as s:
        assert queue.job_counts(s)["queued"] == 1


def test_jobs_are_claimed_oldest_first_and_once(sessions: SessionFactory) -> None:
    first, second = _receive(sessions, "1.1"), _receive(sessions, "1.2")
    a, b = _claim(sessions, "a"), _claim(sessions, "b")
    assert a is not None and b is not None
    assert (a.job_id, b.job_id) == (first, second)
    assert _claim(sessions, "c") is None


def test_an_expired_lease_is_reclaimed_and_the_old_owner_cannot_record(
    sessions: SessionFactory,
) -> None:
    job_id = _receive(sessions, "1.1")
    dead = _claim(sessions, "dead-worker")
    assert dead is not None
    assert _claim(sessions, "other") is None  # lease still held
    later = utcnow() + timedelta(seconds=61)
    taken = _claim(sessions, "other", now=later)
    assert taken is not None and taken.job_id == job_id and taken.attempts == 2
    with writing(sessions) as s:
        assert not queue.finish_job(
            s, job_id=job_id, owner="dead-worker", state=JobState.FAILED, reason="x"
        )
        assert queue.finish_job(s, job_id=job_id, owner="other", state=JobState.SKIPPED, reason="y")
    with writing(sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.state == JobState.SKIPPED and job.reason == "y"


def test_a_job_that_keeps_killing_its_worker_is_failed(sessions: SessionFactory) -> None:
    job_id = _receive(sessions, "1.1")
    now = utcnow()
    for attempt in range(3):
        claim = _claim(sessions, f"w{attempt}", now=now + timedelta(seconds=61 * attempt))
        assert claim is not None
    assert _claim(sessions, "w3", now=now + timedelta(seconds=61 * 3)) is None
    with writing(sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.state == JobState.FAILED
        assert "abandoned" in (job.reason or "")


def test_a_clean_stop_gives_jobs_back_uncounted(sessions: SessionFactory) -> None:
    job_id = _receive(sessions, "1.1")
    assert _claim(sessions, "w") is not None
    with writing(sessions) as s:
        assert queue.release_owned_jobs(s, owner="w") == 1
    claim = _claim(sessions, "w2")
    assert claim is not None and claim.job_id == job_id and claim.attempts == 1


def _complete(sessions: SessionFactory, destinations: list[str]) -> int:
    job_id = _receive(sessions, "1.1")
    assert _claim(sessions, "w") is not None
    outputs = [
        queue.NewOutput(
            kind=kind,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
            sop_instance_uid=f"9.{i}",
            series_instance_uid=f"9.9.{i}",
            file_name=f"job-{i}.dcm",
            size_bytes=1,
        )
        for i, kind in enumerate(OutputKind)
    ]
    complete_urgent(sessions, job_id, outputs=outputs, destinations=destinations)
    return job_id


def test_completion_records_result_outputs_and_a_delivery_per_destination(
    sessions: SessionFactory,
) -> None:
    job_id = _complete(sessions, ["pacs", "archive"])
    with writing(sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.state == JobState.DONE
        assert job.result is not None and job.result.priority == "URGENT"
        deliveries = s.scalars(select(Delivery)).all()
        assert len(deliveries) == 4
        assert {d.destination for d in deliveries} == {"pacs", "archive"}
        assert all(d.state == DeliveryState.PENDING for d in deliveries)


def test_completion_stores_the_map_and_image_statistics_when_given(
    sessions: SessionFactory,
) -> None:
    statistics = ImageStatistics(mean=0.42, std=0.17, rows=96, cols=80)
    given, omitted = _receive(sessions, "1.1"), _receive(sessions, "1.2")
    for job_id in (given, omitted):
        assert _claim(sessions, "w") is not None
        with writing(sessions) as s:
            assert queue.complete_job(
                s,
                job_id=job_id,
                owner="w",
                logit=0.0,
                score=0.5,
                threshold=0.8,
                above_threshold=False,
                priority="ROUTINE",
                model_version="m",
                calibration_version=1,
                outputs=[],
                destinations=[],
                cam="[[0.0,1.0],[0.25,0.5]]" if job_id == given else None,
                image=statistics if job_id == given else None,
            )
    with writing(sessions) as s:
        results = {r.job_id: r for r in s.scalars(select(Result))}
        stored, bare = results[given], results[omitted]
        assert stored.cam == "[[0.0,1.0],[0.25,0.5]]"
        assert (stored.image_mean, stored.image_std) == (0.42, 0.17)
        assert (stored.image_rows, stored.image_cols) == (96, 80)
        assert bare.cam is None and bare.image_mean is None and bare.image_std is None
        assert bare.image_rows is None and bare.image_cols is None


def test_deliveries_back_off_then_die_then_retry(sessions: SessionFactory) -> None:
    _complete(sessions, ["pacs"])
    now = utcnow()
    with writing(sessions) as s:
        claims = queue.claim_deliveries(
            s, owner="s", lease_seconds=60, destinations=["pacs"], limit=10, now=now
        )
    assert len(claims) == 2
    with writing(sessions) as s:
        state = queue.mark_attempt_failed(
            s, delivery_id=claims[0].delivery_id, owner="s", error="down", status=None, retry_in=30
        )
        assert state == DeliveryState.PENDING
        assert (
            queue.mark_attempt_failed(
                s,
                delivery_id=claims[1].delivery_id,
                owner="s",
                error="no",
                status=0xA700,
                retry_in=None,
            )
            == DeliveryState.DEAD
        )
    with writing(sessions) as s:
        # Not due before its backoff has passed; the dead one is never claimed.
        assert (
            queue.claim_deliveries(
                s, owner="s", lease_seconds=60, destinations=["pacs"], limit=10, now=now
            )
            == []
        )
    with writing(sessions) as s:
        again = queue.claim_deliveries(
            s,
            owner="s",
            lease_seconds=60,
            destinations=["pacs"],
            limit=10,
            now=now + timedelta(seconds=31),
        )
        assert [c.delivery_id for c in again] == [claims[0].delivery_id]
        assert again[0].attempts == 2
        assert queue.mark_delivered(s, delivery_id=again[0].delivery_id, owner="s", status=0)
    with writing(sessions) as s:
        assert len(queue.retry_deliveries(s, all_dead=True)) == 1
        counts = queue.delivery_counts(s)
    assert counts == {"pending": 1, "sending": 0, "delivered": 1, "dead": 0}


def test_leases_of_dead_processes_on_this_host_end_at_once(sessions: SessionFactory) -> None:
    first, second = _receive(sessions, "1.1"), _receive(sessions, "1.2")
    assert _claim(sessions, "here:111:worker:aa") is not None
    assert _claim(sessions, "here:222:worker:bb") is not None
    with writing(sessions) as s:
        ended = queue.expire_leases_of_dead_owners(s, host="here", alive=lambda pid: pid == 222)
    assert ended == 1
    taken = _claim(sessions, "here:333:worker:cc")
    assert taken is not None and taken.job_id == first and taken.attempts == 2
    assert _claim(sessions, "here:333:worker:cc") is None  # 222 is alive: its lease holds
    assert second


def _fail(sessions: SessionFactory, uid: str) -> int:
    job_id = _receive(sessions, uid)
    claim = _claim(sessions, "w")
    assert claim is not None and claim.job_id == job_id
    with writing(sessions) as s:
        queue.finish_job(s, job_id=job_id, owner="w", state=JobState.FAILED, reason="outbox full")
    return job_id


def test_failed_jobs_are_queued_again_with_fresh_attempts(sessions: SessionFactory) -> None:
    failed, other = _fail(sessions, "1.1"), _fail(sessions, "1.2")
    running = _receive(sessions, "1.3")
    assert _claim(sessions, "w") is not None
    with writing(sessions) as s:
        assert queue.retry_failed_jobs(s) == []  # neither ids nor all
        assert queue.retry_failed_jobs(s, ids=[failed, running]) == [failed]
    with writing(sessions) as s:
        job = s.get(Job, failed)
        assert job is not None
        assert (job.state, job.attempts, job.reason, job.finished_at) == (
            JobState.QUEUED,
            0,
            None,
            None,
        )
        assert s.get(Job, running).state == JobState.RUNNING  # type: ignore[union-attr]
        assert [j.id for j in queue.list_jobs(s, state=JobState.FAILED)] == [other]
        assert queue.retry_failed_jobs(s, all_failed=True) == [other]


def test_a_failed_job_whose_image_is_purged_is_not_queued_again(
    sessions: SessionFactory,
) -> None:
    purged, kept = _fail(sessions, "3.1"), _fail(sessions, "3.2")
    with writing(sessions) as s:
        s.get(Job, purged).instance.spool_name = None  # type: ignore[union-attr]
    with writing(sessions) as s:
        assert queue.retry_failed_jobs(s, ids=[purged]) == []
        assert queue.retry_failed_jobs(s, all_failed=True) == [kept]
    with writing(sessions) as s:
        job = s.get(Job, purged)
        assert job is not None and (job.state, job.reason) == (JobState.FAILED, "outbox full")


def test_an_instance_received_again_is_requeued_only_if_its_job_failed(
    sessions: SessionFactory,
) -> None:
    purged = _fail(sessions, "2.3")
    with writing(sessions) as s:
        s.get(Job, purged).instance.spool_name = None  # type: ignore[union-attr]
    failed = _fail(sessions, "2.1")
    _receive(sessions, "2.2")
    with writing(sessions) as s:
        assert queue.receive_again(s, sop_instance_uid="2.9") is queue.Duplicate.NEW
        assert queue.receive_again(s, sop_instance_uid="2.2") is queue.Duplicate.KEPT
        assert queue.receive_again(s, sop_instance_uid="2.1") is queue.Duplicate.REQUEUED
    with writing(sessions) as s:
        assert s.get(Job, failed).state == JobState.QUEUED  # type: ignore[union-attr]
        # Queued again, it is no longer a failure to requeue.
        assert queue.receive_again(s, sop_instance_uid="2.1") is queue.Duplicate.KEPT
    with writing(sessions) as s:
        # Its pixels are gone past retention: nothing to score again.
        assert queue.receive_again(s, sop_instance_uid="2.3") is queue.Duplicate.KEPT
