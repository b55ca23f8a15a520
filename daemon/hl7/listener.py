"""The HL7 listener (role ``hl7``): final reports from the RIS over MLLP, each acknowledged.

One thread per connection (at most ``max_connections``; more are closed at once),
from allowed networks only. Each message is read (:mod:`daemon.hl7.reports`), taken
in one database transaction (:func:`daemon.final_reports.take_final_report`), and
answered after the commit, so an ``AA`` means the label and the closing are stored:

- ``AA``: taken, or nothing to do (a study ChestAid never received, a preliminary
  report); the sender moves on.
- ``AE``: the database could not take it now; the sender sends it again.
- ``AR``: not an HL7 v2 ORU^R01 ChestAid can read, or a sending application not
  allowed; sending it again cannot help.

A frame larger than ``max_message_kb``, bytes outside a frame, or a connection silent
for ``idle_timeout_seconds`` end the connection. Nothing of a report's text or of the
patient is logged: the message's control ID and what became of it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from chestaid.report_labels import ReportLabel, label_report
from daemon import metrics
from daemon.db.session import SessionFactory, writing
from daemon.final_reports import TakenReport, take_final_report
from daemon.hl7.mllp import FrameReader, MllpError, frame
from daemon.hl7.reports import (
    FinalReport,
    RawMessage,
    ReportMessageError,
    acknowledgement,
    read_final_report,
    split,
)
from daemon.settings import ReportListenerSettings
from daemon.tls import server_context

logger = logging.getLogger(__name__)

REJECTED = "rejected"
ERROR = "error"


class ReportListener:
    """Listens for final reports; :meth:`start` binds, :meth:`stop` closes every connection.

    Args:
        settings: the listener's settings.
        sessions: the process's session factory.
        take: what is done with a report in the open session (tests may wrap it).

    Raises:
        ConfigurationError: the TLS certificate or key cannot be used.
    """

    def __init__(
        self,
        settings: ReportListenerSettings,
        sessions: SessionFactory,
        *,
        take: Callable[[Any, FinalReport, ReportLabel | None], TakenReport] = (
            lambda session, report, derived: take_final_report(session, report, derived=derived)
        ),
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.take = take
        self._tls = (
            None
            if settings.tls is None
            else server_context(
                settings.tls,
                handshake_timeout=min(60.0, settings.idle_timeout_seconds),
                where="hl7_listener.tls",
            )
        )
        self._slots = threading.BoundedSemaphore(settings.max_connections)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one the system chose for 0)."""
        if self._server is None:
            raise RuntimeError("the listener is not started")
        return int(self._server.server_address[1])

    @property
    def alive(self) -> bool:
        """Whether the listener's thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Bind and serve in a background thread.

        Raises:
            OSError: the address cannot be bound.
        """
        listener = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                listener._serve(self.request, self.client_address[0])

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            address_family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET

        self._server = Server((self.settings.host, self.settings.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="chestaid-hl7-listener", daemon=True
        )
        self._thread.start()
        logger.info(
            "HL7 report listener started",
            extra={"address": f"{self.settings.host}:{self.port}", "tls": self._tls is not None},
        )

    def stop(self) -> None:
        """Stop accepting, close every open connection (a message being taken is finished
        first: its transaction commits or rolls back; the sender resends what had no AA)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            for connection in list(self._open):
                with contextlib.suppress(OSError):  # already gone
                    connection.shutdown(socket.SHUT_RDWR)
        logger.info("HL7 report listener stopped")

    # -- one connection -----------------------------------------------------------------

    def _serve(self, connection: socket.socket, address: str) -> None:
        if not self.settings.admits(address):
            logger.warning("HL7 connection refused: address not allowed", extra={"peer": address})
            connection.close()
            return
        if not self._slots.acquire(blocking=False):
            logger.warning("HL7 connection refused: too many open", extra={"peer": address})
            connection.close()
            return
        try:
            connection.settimeout(self.settings.idle_timeout_seconds)
            if self._tls is not None:
                try:
                    connection = self._tls.wrap_socket(connection, server_side=True)
                    connection.do_handshake()
                except (OSError, ssl.SSLError) as exc:
                    logger.warning(
                        "HL7 TLS handshake failed", extra={"peer": address, "error": str(exc)}
                    )
                    connection.close()
                    return
            with self._lock:
                self._open.add(connection)
            self._converse(connection, address)
        finally:
            with self._lock:
                self._open.discard(connection)
            try:
                connection.close()
            finally:
                self._slots.release()

    def _converse(self, connection: socket.socket, address: str) -> None:
        reader = FrameReader(limit=self.settings.max_message_kb * 1024)
        while True:
            try:
                data = connection.recv(65536)
            except (TimeoutError, OSError):
                return  # idle too long, or closed under us: nothing was left unanswered
            if not data:
                return
            try:
                messages = reader.feed(data)
            except MllpError as exc:
                logger.warning("HL7 connection ended", extra={"peer": address, "why": str(exc)})
                return
            for text in messages:
                try:
                    connection.sendall(frame(self.answer(text, address)))
                except OSError:
                    return

    def answer(self, text: str, address: str = "") -> str:
        """Take one message and return its acknowledgement (the ER7 of an ACK)."""
        try:
            message: RawMessage | None = split(text)
        except ReportMessageError as exc:
            return self._answered(None, "AR", str(exc), REJECTED, address)
        assert message is not None
        try:
            report = read_final_report(message)
        except ReportMessageError as exc:
            return self._answered(message, "AR", str(exc), REJECTED, address)
        allowed = self.settings.sending_applications
        if allowed and report.sending_application not in allowed:
            why = f"sending application {report.sending_application!r} is not allowed"
            return self._answered(message, "AR", why, REJECTED, address)
        # The text is labelled before the transaction opens: no write lock waits on it.
        derived = label_report(report.text) if report.labels else None
        try:
            with writing(self.sessions) as session:
                taken = self.take(session, report, derived)
        except SQLAlchemyError as exc:
            logger.error("HL7 report not stored", extra={"error": str(exc)})
            return self._answered(message, "AE", "not stored now; send again", ERROR, address)
        return self._answered(message, "AA", taken.outcome, taken.outcome, address, taken)

    def _answered(
        self,
        message: RawMessage | None,
        code: str,
        text: str,
        outcome: str,
        address: str,
        taken: TakenReport | None = None,
    ) -> str:
        metrics.REPORTS.labels(outcome=outcome).inc()
        control_id = message.value(message.first("MSH"), 10) if message is not None else ""
        extra: dict[str, Any] = {"peer": address, "control_id": control_id, "outcome": outcome}
        if taken is not None and taken.study_instance_uid is not None:
            extra["study_instance_uid"] = taken.study_instance_uid
        if code == "AA":
            logger.info("HL7 report taken", extra=extra)
        else:
            logger.warning("HL7 message refused", extra={**extra, "why": text})
        return acknowledgement(message, code, text)
