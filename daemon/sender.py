"""The sender: delivers the outbox to each destination by C-STORE, retrying with backoff.

Deliveries are claimed from the database with a lease (so a sender that died gives
its claims back when the lease expires), grouped by destination, and sent over one
association per destination per round. A failed attempt is retried after an
exponentially growing wait (``backoff_initial_seconds * 2**(attempt-1)``, capped at
``backoff_max_seconds``); after ``max_attempts`` the delivery is dead-lettered, visible
with ``chestaid-daemon outbox list --state dead`` and put back with ``outbox retry``.

Rounds run on an APScheduler job every ``poll_seconds`` (which picks up retries whose
backoff has passed), and at once when a worker commits new outputs (:meth:`Sender.wake`). The state lives in the database, so
delivery survives a restart, and a PACS that is down for minutes is simply retried.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from pydicom.uid import (
    ComprehensiveSRStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)
from pynetdicom import AE
from pynetdicom.association import Association
from sqlalchemy.exc import SQLAlchemyError

from daemon.db import queue
from daemon.db.models import DeliveryState
from daemon.db.session import SessionFactory, writing
from daemon.errors import SpoolError
from daemon.settings import Destination, NodeSettings, SenderSettings
from daemon.spool import FileStore

logger = logging.getLogger(__name__)

OUTPUT_SOP_CLASSES = (SecondaryCaptureImageStorage, ComprehensiveSRStorage)
# Statuses after which the object is stored at the destination (PS3.4 B.2.3): success
# and the warnings (coercion, elements discarded, dataset does not match SOP class).
STORED_STATUSES = frozenset({0x0000, 0xB000, 0xB006, 0xB007, 0x0107, 0x0116})
DELIVER_JOB_ID = "deliver-outbox"


class Sender:
    """Delivers outputs to destinations.

    Args:
        sessions: the process's session factory.
        outbox: where the outputs' files are.
        destinations: the configured destinations.
        node: this node's settings (the AE title and timeouts used when calling out).
        settings: retry and polling settings.
    """

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        outbox: FileStore,
        destinations: Sequence[Destination],
        node: NodeSettings,
        settings: SenderSettings,
        owner: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.outbox = outbox
        self.destinations = {d.name: d for d in destinations}
        self.node = node
        self.settings = settings
        self.owner = owner or queue.process_owner("sender")
        self._pending_wake = threading.Event()
        self._stopping = threading.Event()
        self._round_lock = threading.Lock()
        self._scheduler: BackgroundScheduler | None = None
        self._waker: threading.Thread | None = None

    # -- running on a schedule ---------------------------------------------------------

    def start(self) -> None:
        """Start delivering: a round now, every ``poll_seconds``, and on every wake."""
        scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(1)}, timezone=UTC)
        scheduler.add_job(
            self._scheduled_round,
            "interval",
            seconds=self.settings.poll_seconds,
            id=DELIVER_JOB_ID,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
            misfire_grace_time=None,
        )
        scheduler.start()
        self._scheduler = scheduler
        self._waker = threading.Thread(
            target=self._wake_loop, name="chestaid-sender-wake", daemon=True
        )
        self._waker.start()
        logger.info(
            "sender started", extra={"owner": self.owner, "destinations": sorted(self.destinations)}
        )

    def wake(self) -> None:
        """Run a round as soon as possible (new outputs were committed)."""
        self._pending_wake.set()

    def _wake_loop(self) -> None:
        # Rounds on demand, beside the scheduled ones; the round lock makes them take
        # turns, and a wake that arrives during a round makes that round go again.
        while not self._stopping.is_set():
            self._pending_wake.wait()
            if self._stopping.is_set():
                return
            with self._round_lock:
                self.deliver_until_idle()

    def _scheduled_round(self) -> None:
        with self._round_lock:
            self.deliver_until_idle()

    def stop(self) -> None:
        """Stop after the object in flight; give back anything still claimed."""
        self._stopping.set()
        self._pending_wake.set()
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=True)
        if self._waker is not None:
            self._waker.join()
        with writing(self.sessions) as session:
            released = queue.release_owned_deliveries(session, owner=self.owner)
        logger.info("sender stopped", extra={"owner": self.owner, "released": released})

    @property
    def running(self) -> bool:
        """Whether the schedule and the wake thread are running."""
        return (
            self._scheduler is not None
            and bool(self._scheduler.running)
            and self._waker is not None
            and self._waker.is_alive()
        )

    def deliver_until_idle(self) -> dict[str, int]:
        """Run rounds until nothing is due and no wake came in meanwhile (or a stop)."""
        totals: dict[str, int] = defaultdict(int)
        while not self._stopping.is_set():
            self._pending_wake.clear()
            try:
                outcome = self.deliver_round()
            except SQLAlchemyError as exc:
                logger.error("database error in the sender", extra={"error": str(exc)})
                break
            for key, value in outcome.items():
                totals[key] += value
            if outcome["claimed"] == 0 and not self._pending_wake.is_set():
                break
        return dict(totals)

    # -- one round ---------------------------------------------------------------------

    def deliver_round(self) -> dict[str, int]:
        """Claim due deliveries and send them; returns counts of what happened."""
        counts = {"claimed": 0, "delivered": 0, "retrying": 0, "dead": 0}
        if not self.destinations:
            return counts
        with writing(self.sessions) as session:
            claims = queue.claim_deliveries(
                session,
                owner=self.owner,
                lease_seconds=self.settings.lease_seconds,
                destinations=list(self.destinations),
                limit=self.settings.batch_size,
            )
        counts["claimed"] = len(claims)
        by_destination: dict[str, list[queue.DeliveryClaim]] = defaultdict(list)
        for claim in claims:
            by_destination[claim.destination].append(claim)
        for name, group in by_destination.items():
            for state in self._send_group(self.destinations[name], group):
                counts[state] += 1
        return counts

    def _send_group(self, destination: Destination, claims: list[queue.DeliveryClaim]) -> list[str]:
        ae = AE(ae_title=self.settings.calling_ae_title or self.node.ae_title)
        ae.acse_timeout = self.node.acse_timeout
        ae.dimse_timeout = self.node.dimse_timeout
        ae.network_timeout = self.node.network_timeout
        ae.maximum_pdu_size = self.node.max_pdu_bytes
        for sop_class in OUTPUT_SOP_CLASSES:
            ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        log: dict[str, Any] = {"destination": destination.name}
        assoc: Association | None = None
        try:
            assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
        except (OSError, RuntimeError, ValueError) as exc:
            error = f"cannot associate with {destination.ae_title}@{destination.host}:{destination.port}: {exc}"
            return [self._failed(c, error, None, log) for c in claims]
        if not assoc.is_established:
            why = (
                "rejected"
                if assoc.is_rejected
                else "aborted"
                if assoc.is_aborted
                else "not established"
            )
            error = f"association with {destination.ae_title}@{destination.host}:{destination.port} {why}"
            return [self._failed(c, error, None, log) for c in claims]
        states: list[str] = []
        try:
            for claim in claims:
                if self._stopping.is_set():
                    break  # the rest are given back by stop()
                states.append(self._send_one(assoc, claim, log))
        finally:
            if assoc.is_established:
                assoc.release()
        return states

    def _send_one(self, assoc: Association, claim: queue.DeliveryClaim, log: dict[str, Any]) -> str:
        log = {**log, "delivery_id": claim.delivery_id, "sop_instance_uid": claim.sop_instance_uid}
        if not assoc.is_established:
            return self._failed(claim, "association ended before this object was sent", None, log)
        try:
            path = self.outbox.path(claim.file_name)
            status_ds = assoc.send_c_store(path)
        except (SpoolError, OSError, ValueError, RuntimeError, AttributeError) as exc:
            return self._failed(claim, f"cannot send {claim.file_name}: {exc}", None, log)
        status = int(status_ds.get("Status", -1)) if status_ds else -1
        if status in STORED_STATUSES:
            try:
                with writing(self.sessions) as session:
                    kept = queue.mark_delivered(
                        session, delivery_id=claim.delivery_id, owner=self.owner, status=status
                    )
            except SQLAlchemyError as exc:
                # Stored at the destination but not recorded: the lease runs out and
                # the object is sent again (same SOP Instance UID; the PACS keeps one).
                logger.error("delivered but not recorded", extra={**log, "error": str(exc)})
                return "retrying"
            logger.info(
                "output delivered", extra={**log, "status": f"0x{status:04X}", "lease_kept": kept}
            )
            return "delivered"
        if status < 0:
            return self._failed(
                claim, "no response to C-STORE (timeout or connection lost)", None, log
            )
        return self._failed(claim, f"C-STORE refused with status 0x{status:04X}", status, log)

    def _failed(
        self, claim: queue.DeliveryClaim, error: str, status: int | None, log: dict[str, Any]
    ) -> str:
        dead = claim.attempts >= self.settings.max_attempts
        retry_in = (
            None
            if dead
            else queue.backoff(
                claim.attempts,
                initial=self.settings.backoff_initial_seconds,
                maximum=self.settings.backoff_max_seconds,
            )
        )
        with writing(self.sessions) as session:
            state = queue.mark_attempt_failed(
                session,
                delivery_id=claim.delivery_id,
                owner=self.owner,
                error=error,
                status=status,
                retry_in=retry_in,
            )
        extra = {**log, "delivery_id": claim.delivery_id, "attempt": claim.attempts, "error": error}
        if state == DeliveryState.DEAD:
            logger.error("delivery dead-lettered after its last attempt", extra=extra)
            return "dead"
        logger.warning("delivery failed, will retry", extra={**extra, "retry_in_s": retry_in})
        return "retrying"
