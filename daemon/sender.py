"""The sender: delivers the outbox through each destination's transport, retrying with backoff.

Deliveries are claimed from the database with a lease (so a sender that died gives
its claims back when the lease expires), grouped by destination, and sent over one
session per destination per round, by the transport registered for the
destination's ``kind`` (:mod:`daemon.transports`; DICOM C-STORE today). A failed
attempt is retried after an exponentially growing wait
(``backoff_initial_seconds * 2**(attempt-1)``, capped at ``backoff_max_seconds``);
after ``max_attempts``, or at once when the transport says retrying cannot help, the
delivery is dead-lettered, visible with ``chestaid-daemon outbox list --state dead``
and put back with ``outbox retry``.

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
from sqlalchemy.exc import SQLAlchemyError

from daemon.db import queue
from daemon.db.models import DeliveryState
from daemon.db.session import SessionFactory, unit_of_work
from daemon.errors import DeliveryError, SpoolError
from daemon.settings import NodeSettings, SenderSettings
from daemon.spool import FileStore
from daemon.transports import (
    DestinationLike,
    PermanentFailure,
    Stored,
    TransientFailure,
    Transport,
    TransportSession,
    transport_for,
)

logger = logging.getLogger(__name__)

DELIVER_JOB_ID = "deliver-outbox"


class Sender:
    """Delivers outputs to destinations.

    Args:
        sessions: the process's session factory.
        outbox: where the outputs' files are.
        destinations: the configured destinations, each delivered to by the transport
            registered for its ``kind``.
        node: this node's settings (the AE title and timeouts used when calling out).
        settings: retry and polling settings.

    Raises:
        ConfigurationError: a destination's kind has no transport.
    """

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        outbox: FileStore,
        destinations: Sequence[DestinationLike],
        node: NodeSettings,
        settings: SenderSettings,
        owner: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.outbox = outbox
        self.destinations = {d.name: d for d in destinations}
        # One transport per kind, made now: a kind without a transport fails at start.
        self._transports: dict[str, Transport[Any]] = {
            kind: transport_for(kind)(node=node, settings=settings)
            for kind in {d.kind for d in destinations}
        }
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
        with unit_of_work(self.sessions) as session:
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
        with unit_of_work(self.sessions) as session:
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

    def _send_group(
        self, destination: DestinationLike, claims: list[queue.DeliveryClaim]
    ) -> list[str]:
        log: dict[str, Any] = {"destination": destination.name, "kind": destination.kind}
        try:
            session = self._transports[destination.kind].open(destination)
        except DeliveryError as exc:
            return [self._failed(c, TransientFailure(str(exc)), log) for c in claims]
        except Exception as exc:
            # The boundary of the transport: a bug in it is logged with its traceback
            # and retried like an unreachable destination, never the sender's end.
            logger.exception("transport raised an unexpected error", extra=log)
            failure = TransientFailure(f"internal error: {type(exc).__name__}: {exc}")
            return [self._failed(c, failure, log) for c in claims]
        states: list[str] = []
        with session:
            for claim in claims:
                if self._stopping.is_set():
                    break  # the rest are given back by stop()
                states.append(self._send_one(session, claim, log))
        return states

    def _send_one(
        self, session: TransportSession, claim: queue.DeliveryClaim, log: dict[str, Any]
    ) -> str:
        log = {**log, "delivery_id": claim.delivery_id, "sop_instance_uid": claim.sop_instance_uid}
        try:
            outcome = session.send(self.outbox.path(claim.file_name))
        except SpoolError as exc:
            outcome = TransientFailure(f"cannot send {claim.file_name}: {exc}")
        except Exception as exc:
            logger.exception("transport raised an unexpected error", extra=log)
            outcome = TransientFailure(f"internal error: {type(exc).__name__}: {exc}")
        if not isinstance(outcome, Stored):
            return self._failed(claim, outcome, log)
        try:
            with unit_of_work(self.sessions) as db:
                kept = queue.mark_delivered(
                    db, delivery_id=claim.delivery_id, owner=self.owner, status=outcome.status
                )
        except SQLAlchemyError as exc:
            # Stored at the destination but not recorded: the lease runs out and the
            # object is sent again (same SOP Instance UID; the destination keeps one).
            logger.error("delivered but not recorded", extra={**log, "error": str(exc)})
            return "retrying"
        logger.info(
            "output delivered",
            extra={**log, "status": f"0x{outcome.status:04X}", "lease_kept": kept},
        )
        return "delivered"

    def _failed(
        self,
        claim: queue.DeliveryClaim,
        failure: TransientFailure | PermanentFailure,
        log: dict[str, Any],
    ) -> str:
        permanent = isinstance(failure, PermanentFailure)
        dead = permanent or claim.attempts >= self.settings.max_attempts
        retry_in = (
            None
            if dead
            else queue.backoff(
                claim.attempts,
                initial=self.settings.backoff_initial_seconds,
                maximum=self.settings.backoff_max_seconds,
            )
        )
        with unit_of_work(self.sessions) as session:
            state = queue.mark_attempt_failed(
                session,
                delivery_id=claim.delivery_id,
                owner=self.owner,
                error=failure.error,
                status=failure.status,
                retry_in=retry_in,
            )
        extra = {
            **log,
            "delivery_id": claim.delivery_id,
            "attempt": claim.attempts,
            "error": failure.error,
        }
        if state == DeliveryState.DEAD:
            why = "refused for good" if permanent else "after its last attempt"
            logger.error(f"delivery dead-lettered {why}", extra=extra)
            return "dead"
        logger.warning("delivery failed, will retry", extra={**extra, "retry_in_s": retry_in})
        return "retrying"
