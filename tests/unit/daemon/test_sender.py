"""The sender on a real SQLite file, through a second destination kind registered here.

The ``test-files`` transport copies each output into a directory: a real transport
behind the same seam as DICOM (which is tested against storescp and Orthanc in
tests/integration), so these tests are about the sender's part: claims grouped by
destination, outcomes recorded, retries, dead letters, stopping and waking.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from chestaid.errors import ConfigurationError
from daemon.db import queue
from daemon.db.models import Delivery, DeliveryState, OutputKind
from daemon.db.session import SessionFactory, writing
from daemon.sender import Sender
from daemon.settings import NodeSettings, SenderSettings
from daemon.spool import FileStore
from daemon.transports import (
    Outcome,
    PermanentFailure,
    Stored,
    TransientFailure,
    Transport,
    TransportSession,
    register,
)
from tests.daemon_harness import complete_urgent, record_received


@dataclass(frozen=True)
class FolderDestination:
    """A directory that receives copies of the outputs."""

    name: str
    directory: Path
    refuse: bool = False  # every object refused for good
    kind: str = "test-files"


class _FolderSession(TransportSession):
    def __init__(self, destination: FolderDestination) -> None:
        self.destination = destination

    def send(self, path: Path) -> Outcome:
        if self.destination.refuse:
            return PermanentFailure(f"{self.destination.name} takes no {path.suffix} files", 415)
        try:
            shutil.copyfile(path, self.destination.directory / path.name)
        except OSError as exc:
            return TransientFailure(f"cannot copy {path.name}: {exc.strerror}")
        return Stored(0)

    def close(self) -> None:
        pass


@register("test-files")
class FolderTransport(Transport[FolderDestination]):
    """Delivers by copying files into the destination's directory."""

    def open(self, destination: FolderDestination) -> TransportSession:
        return _FolderSession(destination)


def _outputs(
    sessions: SessionFactory, outbox: Path, destinations: list[str], uid: str = "1.1"
) -> list[str]:
    """A scored job with an SC and an SR in the outbox, due to ``destinations``."""
    job_id = record_received(sessions, uid, spool_name=f"2026/01/01/{uid}.dcm")
    with writing(sessions) as s:
        claim = queue.claim_job(s, owner="w", lease_seconds=60, max_attempts=3)
        assert claim is not None and claim.job_id == job_id
    outputs = []
    for i, kind in enumerate(OutputKind):
        name = f"2026/01/01/out-{uid}-{i}.dcm"
        (outbox / name).parent.mkdir(parents=True, exist_ok=True)
        (outbox / name).write_bytes(f"object {i}".encode())
        outputs.append(
            queue.NewOutput(
                kind=kind,
                sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
                sop_instance_uid=f"{uid}.9.{i}",
                series_instance_uid=f"{uid}.9.9.{i}",
                file_name=name,
                size_bytes=8,
            )
        )
    complete_urgent(sessions, job_id, outputs=outputs, destinations=destinations)
    return [Path(o.file_name).name for o in outputs]


class _ObservedSender(Sender):
    """A sender that tells the test about every round it finished."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rounds: list[dict[str, int]] = []
        self.changed = threading.Condition()

    def deliver_round(self) -> dict[str, int]:
        counts = super().deliver_round()
        with self.changed:
            self.rounds.append(counts)
            self.changed.notify_all()
        return counts

    def total(self, key: str) -> int:
        return sum(r[key] for r in self.rounds)

    def wait_for(self, done: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Wait (generously) until ``done()`` holds after some round."""
        with self.changed:
            return self.changed.wait_for(done, timeout)


def _sender(
    tmp_path: Path,
    sessions: SessionFactory,
    *destinations: FolderDestination,
    settings: SenderSettings | None = None,
) -> _ObservedSender:
    return _ObservedSender(
        sessions=sessions,
        outbox=FileStore(tmp_path / "outbox"),
        destinations=destinations,
        node=NodeSettings(),
        settings=settings or SenderSettings(backoff_initial_seconds=60, max_attempts=3),
        owner="host:1:sender:test",
    )


def _stop(sender: Sender) -> None:
    """Stop the sender, failing (not hanging) the test if that takes more than long."""
    stopper = threading.Thread(target=sender.stop)
    stopper.start()
    stopper.join(timeout=30)
    assert not stopper.is_alive() and not sender.running


def _states(sessions: SessionFactory) -> dict[str, list[DeliveryState]]:
    with writing(sessions) as s:
        rows = s.scalars(select(Delivery).order_by(Delivery.id)).all()
        found: dict[str, list[DeliveryState]] = {}
        for d in rows:
            found.setdefault(d.destination, []).append(d.state)
        return found


def test_each_destination_gets_the_outputs_through_the_transport_of_its_kind(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    archive, mirror = tmp_path / "archive", tmp_path / "mirror"
    archive.mkdir()
    mirror.mkdir()
    names = _outputs(sessions, tmp_path / "outbox", ["archive", "mirror"])
    sender = _sender(
        tmp_path,
        sessions,
        FolderDestination("archive", archive),
        FolderDestination("mirror", mirror),
    )
    assert sender.deliver_until_idle() == {"claimed": 4, "delivered": 4, "retrying": 0, "dead": 0}
    assert sorted(p.name for p in archive.iterdir()) == sorted(names)
    assert sorted(p.name for p in mirror.iterdir()) == sorted(names)
    assert _states(sessions) == {
        "archive": [DeliveryState.DELIVERED] * 2,
        "mirror": [DeliveryState.DELIVERED] * 2,
    }
    assert sender.deliver_round()["claimed"] == 0


def test_a_transient_failure_waits_its_backoff_and_a_permanent_one_is_dead_at_once(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    _outputs(sessions, tmp_path / "outbox", ["gone", "strict"])
    sender = _sender(
        tmp_path,
        sessions,
        FolderDestination("gone", tmp_path / "not-there"),
        FolderDestination("strict", tmp_path, refuse=True),
    )
    assert sender.deliver_until_idle() == {"claimed": 4, "delivered": 0, "retrying": 2, "dead": 2}
    assert _states(sessions) == {
        "gone": [DeliveryState.PENDING] * 2,
        "strict": [DeliveryState.DEAD] * 2,
    }
    with writing(sessions) as s:
        rows = s.scalars(select(Delivery).order_by(Delivery.id)).all()
        gone = [d for d in rows if d.destination == "gone"]
        strict = [d for d in rows if d.destination == "strict"]
        assert all(d.attempts == 1 and "cannot copy" in (d.last_error or "") for d in gone)
        assert all(d.next_attempt_at > d.created_at for d in gone)
        assert all(d.attempts == 1 and d.last_status == 415 for d in strict)
    # The retry is not due before its backoff has passed.
    assert sender.deliver_round()["claimed"] == 0


def test_a_destination_of_a_kind_without_a_transport_is_refused_at_construction(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    @dataclass(frozen=True)
    class Elsewhere:
        name: str = "ris"
        kind: str = "test-unregistered"

    with pytest.raises(ConfigurationError, match="test-unregistered"):
        Sender(
            sessions=sessions,
            outbox=FileStore(tmp_path / "outbox"),
            destinations=[Elsewhere()],
            node=NodeSettings(),
            settings=SenderSettings(),
        )


def test_a_wake_delivers_new_outputs_at_once_while_the_loop_waits_out_a_long_poll(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    sender = _sender(
        tmp_path,
        sessions,
        FolderDestination("archive", archive),
        settings=SenderSettings(poll_seconds=86_400),
    )
    sender.start()
    try:
        assert sender.running
        # The first round found nothing: from here the loop waits a day unless woken.
        assert sender.wait_for(lambda: len(sender.rounds) >= 1)
        assert sender.rounds[0]["claimed"] == 0
        names = _outputs(sessions, tmp_path / "outbox", ["archive"])
        sender.wake()  # what a worker does after committing outputs
        assert sender.wait_for(lambda: sender.total("delivered") == 2)
    finally:
        _stop(sender)
    assert sorted(p.name for p in archive.iterdir()) == sorted(names)
    assert _states(sessions) == {"archive": [DeliveryState.DELIVERED] * 2}


def test_the_poll_picks_up_a_retry_once_its_backoff_has_passed(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    archive = tmp_path / "archive"  # missing until the first attempts failed
    names = _outputs(sessions, tmp_path / "outbox", ["archive"])
    sender = _sender(
        tmp_path,
        sessions,
        FolderDestination("archive", archive),
        settings=SenderSettings(
            poll_seconds=0.1,
            backoff_initial_seconds=0.1,
            backoff_max_seconds=1,
            max_attempts=1000,
        ),
    )
    sender.start()
    try:
        assert sender.wait_for(lambda: sender.total("retrying") >= 2)
        archive.mkdir()
        # No wake: only the poll brings the deliveries round again.
        assert sender.wait_for(lambda: sender.total("delivered") == 2)
    finally:
        _stop(sender)
    assert sorted(p.name for p in archive.iterdir()) == sorted(names)
    with writing(sessions) as s:
        rows = s.scalars(select(Delivery)).all()
        assert all(d.state == DeliveryState.DELIVERED and d.attempts >= 2 for d in rows)
        assert all(d.last_error is None for d in rows)


def test_a_clean_stop_gives_back_what_the_sender_holds_uncounted(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    _outputs(sessions, tmp_path / "outbox", ["archive", "other"])
    sender = _sender(tmp_path, sessions, FolderDestination("archive", tmp_path))
    with writing(sessions) as s:
        held = queue.claim_deliveries(
            s, owner=sender.owner, lease_seconds=60, destinations=["archive"], limit=10
        )
        other = queue.claim_deliveries(
            s, owner="another-sender", lease_seconds=60, destinations=["other"], limit=10
        )
    assert len(held) == 2 and len(other) == 2
    sender.stop()  # never started: only the giving back
    assert _states(sessions) == {
        "archive": [DeliveryState.PENDING] * 2,
        "other": [DeliveryState.SENDING] * 2,
    }
    with writing(sessions) as s:
        rows = s.scalars(select(Delivery).where(Delivery.destination == "archive")).all()
        assert all(d.attempts == 0 and d.lease_owner is None for d in rows)


def test_a_started_sender_cannot_be_started_twice(tmp_path: Path, sessions: SessionFactory) -> None:
    sender = _sender(tmp_path, sessions, settings=SenderSettings(poll_seconds=86_400))
    sender.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            sender.start()
    finally:
        _stop(sender)
