"""The sender: delivers the outbox through each destination's transport, retrying with backoff.

Deliveries are claimed from the database with a lease (so a sender that died gives
its claims back when the lease expires), grouped by destination, and sent over one
session per destination per round, by the transport registered for the
destination's ``kind`` (:mod:`daemon.transports`: DICOM C-STORE, DICOMweb STOW-RS). A failed
attempt is retried after an exponentially growing wait
(``backoff_initial_seconds * 2**(attempt-1)``, capped at ``backoff_max_seconds``);
after ``max_attempts``, or at once when the transport says retrying cannot help, the
delivery is dead-lettered, visible with ``chestaid-daemon outbox list --state dead``
and put back with ``outbox retry``.

The sender is one thread shaped like a worker's: it runs rounds while there is
work, then waits on an event until a worker commits new outputs (:meth:`Sender.wake`,
at once) or ``poll_seconds`` pass (which picks up retries whose backoff has passed).
A clean stop finishes the object in flight and gives back every claim it holds,
uncounted. The state lives in the database, so delivery survives a restart, and a
PACS that is down for minutes is simply retried.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from daemon import metrics
from daemon.db import queue
from daemon.db.models import DeliveryState
from daemon.db.session import SessionFactory, writing
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
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the loop ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the delivery thread: a round now, then on every wake and poll.

        Raises:
            RuntimeError: the sender is already running.
        """
        if self.running:
            raise RuntimeError("the sender is already running")
        self._stopping.clear()
        self._thread = threading.Thread(target=self.run, name="chestaid-sender", daemon=True)
        self._thread.start()

    def run(self) -> None:
        """Deliver until :meth:`stop`: rounds while there is work, then a wait.

        The wait ends at a :meth:`wake` or after ``poll_seconds``, whichever comes
        first; the poll is what picks up retries whose backoff has passed.
        """
        logger.info(
            "sender started", extra={"owner": self.owner, "destinations": sorted(self.destinations)}
        )
        while not self._stopping.is_set():
            # Cleared before the round, so a wake during the round is not lost: the
            # wait below then returns at once and the next round sees the new outputs.
            self._wakeup.clear()
            try:
                claimed = self.deliver_round()["claimed"]
            except SQLAlchemyError as exc:
                # The database is locked or gone for a moment: claims in hand keep
                # their leases and come back; the sender stays alive and tries again.
                logger.error("database error in the sender", extra={"error": str(exc)})
                claimed = 0
            except Exception:
                # Anything else is a bug; it is logged with its traceback and the sender
                # lives on (its claims expire and are retried), rather than dying quietly.
                logger.exception("unexpected error in the sender")
                claimed = 0
            # A stop that came between the loop's test and the clear above is not waited on.
            if claimed == 0 and not self._stopping.is_set():
                self._wakeup.wait(self.settings.poll_seconds)

    def wake(self) -> None:
        """Deliver as soon as possible (a worker committed new outputs)."""
        self._wakeup.set()

    def stop(self) -> None:
        """Stop after the object in flight; give back anything still claimed."""
        self._stopping.set()
        self._wakeup.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        try:
            with writing(self.sessions) as session:
                released = queue.release_owned_deliveries(session, owner=self.owner)
        except SQLAlchemyError as exc:
            logger.error(
                "cannot give back claimed deliveries; their leases will expire",
                extra={"error": str(exc)},
            )
            released = 0
        logger.info("sender stopped", extra={"owner": self.owner, "released": released})

    @property
    def running(self) -> bool:
        """Whether the delivery thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def deliver_until_idle(self) -> dict[str, int]:
        """Run rounds until one claims nothing (or a stop); for tests and the CLI.

        Returns:
            The counts of every round added up (see :meth:`deliver_round`).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed.
        """
        totals = dict.fromkeys(("claimed", "delivered", "retrying", "dead"), 0)
        while not self._stopping.is_set():
            outcome = self.deliver_round()
            for key, value in outcome.items():
                totals[key] += value
            if outcome["claimed"] == 0:
                break
        return totals

    # -- one round ---------------------------------------------------------------------

    def deliver_round(self) -> dict[str, int]:
        """Claim due deliveries and send them, one session per destination.

        Returns:
            How many deliveries were ``claimed``, and how many of them ended
            ``delivered``, ``retrying`` (pending again after a backoff) or ``dead``.
        """
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
                metrics.DELIVERY_ATTEMPTS.labels(destination=name, outcome=state).inc()
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
            with writing(self.sessions) as db:
                kept = queue.mark_delivered(
                    db, delivery_id=claim.delivery_id, owner=self.owner, status=outcome.status
                )
        except SQLAlchemyError as exc:
            # Stored at the destination but not recorded: the lease runs out and the
            # object is sent again (same SOP Instance UID; the destination keeps one).
            logger.error("delivered but not recorded", extra={**log, "error": str(exc)})
            return "retrying"
        metrics.observe_since(metrics.DELIVERY_LATENCY, claim.received_at)
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
        with writing(self.sessions) as session:
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
