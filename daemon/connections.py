"""Accepting TCP connections fairly: a share per peer address and a deadline for the
A-ASSOCIATE-RQ, so stalled or greedy peers cannot lock modalities out.

pynetdicom counts an association against ``maximum_associations`` from the moment its
connection is accepted, and reads the A-ASSOCIATE-RQ with a blocking ``recv`` that no
ACSE timeout interrupts: a peer that sends the first bytes of a request and stops holds
its slot for ever. Here each accepted connection

* is refused before any PDU is read when its address already holds its share
  (``node.max_associations_per_address``);
* gets a socket timeout (``node.network_timeout``), so a PDU that stops half-way
  ends the connection instead of blocking its thread;
* is closed when no complete A-ASSOCIATE-RQ arrived within ``node.acse_timeout``.

Each refusal and closure is logged with the peer's address, never with patient data.

Its sockets read each PDU into one buffer (:class:`BulkReadSocket`) instead of
pynetdicom's 4 KiB pieces appended one by one.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections import Counter
from typing import Any, cast

from pynetdicom import AE, evt
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

logger = logging.getLogger(__name__)


class AddressShares:
    """How many connections each peer address holds, against a per-address limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, address: str) -> bool:
        """Count one more connection from ``address``; False (nothing counted) at the limit."""
        with self._lock:
            if self._held[address] >= self.limit:
                return False
            self._held[address] += 1
            return True

    def give_back(self, address: str) -> None:
        """Count one connection from ``address`` fewer."""
        with self._lock:
            self._held[address] -= 1
            if self._held[address] <= 0:
                del self._held[address]

    def held(self, address: str) -> int:
        """The connections ``address`` holds now."""
        with self._lock:
            return self._held[address]


def _peer(client_address: Any) -> str:
    return str(client_address[0]) if isinstance(client_address, tuple) else str(client_address)


def _note(_event: evt.Event, *flags: threading.Event) -> None:
    for flag in flags:
        flag.set()


class BulkReadSocket(AssociationSocket):
    """pynetdicom's association socket, reading what a PDU still lacks in one buffer.

    pynetdicom's ``recv`` takes 4 KiB per call and appends each piece to a growing
    array: a thousand calls and copies for each 4 MiB P-DATA PDU, the largest CPU cost
    of receiving an image. This one reads straight into an array of the PDU's size,
    as much as the kernel has per call. As pynetdicom's, it returns fewer bytes than
    asked when the peer closes the connection, and lets ``OSError`` (a socket timeout
    among them) through.
    """

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes`` from the socket (fewer when the connection closes)."""
        sock = cast(socket.socket, self.socket)
        quick_ack(sock)
        buffer = bytearray(nr_bytes)
        read = 0
        with memoryview(buffer) as view:
            while read < nr_bytes:
                got = sock.recv_into(view[read:])
                if not got:
                    break
                read += got
        del buffer[read:]
        return buffer


def no_delay(sock: socket.socket) -> None:
    """Send each PDU at once (TCP_NODELAY).

    With Nagle's algorithm on, the last piece of a PDU waits for the peer to
    acknowledge the one before, and peers delay their acknowledgements by up to 40 ms:
    a C-STORE of a few PDUs, or its response, would wait that long for nothing.
    """
    with contextlib.suppress(OSError):  # not TCP (a test's socket pair): nothing to set
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def quick_ack(sock: socket.socket) -> None:
    """Acknowledge what arrives next at once (TCP_QUICKACK, which Linux does not keep).

    A peer whose own sends wait on acknowledgements (Nagle's algorithm, DCMTK's
    default) writes a PDU's header and its body apart: the body then waits until this
    side acknowledges the header, which a delayed acknowledgement holds back by up to
    40 ms, once for every response and for the end of every dataset.
    """
    with contextlib.suppress(OSError, AttributeError):  # not Linux TCP: nothing to set
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def no_delay_on_connect(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler of an association this node requests.

    Its socket sends each PDU at once (:func:`no_delay`) and reads as the SCP's do
    (:class:`BulkReadSocket`, acknowledging at once).
    """
    association_socket = event.assoc.dul.socket
    if association_socket is None or association_socket.socket is None:
        return
    no_delay(association_socket.socket)
    association_socket.__class__ = BulkReadSocket


class GuardedRequestHandler(RequestHandler):
    """pynetdicom's request handler, with the request deadline and the share given back.

    The handler's thread stays with its connection until the association ends, so the
    address's share is given back exactly when the connection is gone.
    """

    server: GuardedAssociationServer

    def _create_association(self) -> Any:
        """pynetdicom's association, its socket reading whole PDUs (:class:`BulkReadSocket`)."""
        assoc = super()._create_association()
        # The socket is made inside pynetdicom's method and already announced to the
        # state machine (Evt5), so a second one cannot be set: it changes class instead.
        assoc.dul.socket.__class__ = BulkReadSocket
        return assoc

    def handle(self) -> None:
        """Start the association, close it if no request comes in time, wait for its end."""
        try:
            self._handle()
        finally:
            self.server.shares.give_back(_peer(self.client_address))

    def _handle(self) -> None:
        sock = cast(socket.socket, self.request)
        # A peer that stops half-way through a PDU: recv raises instead of blocking.
        sock.settimeout(self.ae.network_timeout)
        no_delay(sock)
        assoc = self._create_association()
        if not self.server.admit(assoc):  # the node is stopping: nothing is started
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            return
        try:
            self._serve(sock, assoc)
        finally:
            self.server.forget(assoc)

    def _serve(self, sock: socket.socket, assoc: Any) -> None:
        requested = threading.Event()  # a whole PDU (the A-ASSOCIATE-RQ) arrived
        settled = threading.Event()  # that, or the connection closed
        assoc.bind(evt.EVT_PDU_RECV, _note, [requested, settled])
        assoc.bind(evt.EVT_CONN_CLOSE, _note, [settled])
        evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
        assoc.start()
        timeout = self.ae.acse_timeout
        settled.wait(timeout)
        if not requested.is_set() and assoc.is_alive():
            logger.warning(
                "connection closed: no complete association request within the ACSE timeout",
                extra={"peer": _peer(self.client_address), "acse_timeout": timeout},
            )
            # Wakes the association's blocked recv (it reads end-of-stream), which
            # then ends the association and frees its slot.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        assoc.join()


class GuardedAssociationServer(ThreadedAssociationServer):
    """A threaded association server that gives each peer address a share of the slots."""

    # Handler threads last as long as their associations: stopping the server does
    # not wait for them (the service drains associations itself, with a deadline).
    daemon_threads = True
    block_on_close = False

    def __init__(self, *args: Any, per_address: int, **kwargs: Any) -> None:
        self.shares = AddressShares(per_address)
        # The associations started and not yet ended, and whether new ones may start:
        # under one lock, so the stop sees every association that ever started.
        self._admitted: set[Any] = set()
        self._admitting = True
        self._admission = threading.Lock()
        super().__init__(*args, **{**kwargs, "request_handler": GuardedRequestHandler})

    def admit(self, assoc: Any) -> bool:
        """Record an association about to start; False once the node is stopping."""
        with self._admission:
            if self._admitting:
                self._admitted.add(assoc)
            return self._admitting

    def forget(self, assoc: Any) -> None:
        """An association has ended."""
        with self._admission:
            self._admitted.discard(assoc)

    def stop_admitting(self) -> list[Any]:
        """Start no more associations; returns those started and not yet ended."""
        with self._admission:
            self._admitting = False
            return list(self._admitted)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Refuse (close, before any PDU is read) a connection over its address's share."""
        peer = _peer(client_address)
        if self.shares.take(peer):
            return True
        logger.warning(
            "connection refused: too many connections from this address",
            extra={"peer": peer, "per_address_limit": self.shares.limit},
        )
        return False

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start the connection's thread; give the share back if it cannot start."""
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.shares.give_back(_peer(client_address))
            raise


class GuardedAE(AE):
    """An AE whose servers are :class:`GuardedAssociationServer`.

    Args:
        per_address: the connections one peer address may hold at once.
    """

    def __init__(self, ae_title: str, *, per_address: int) -> None:
        super().__init__(ae_title=ae_title)
        self.per_address = per_address

    def make_server(
        self,
        address: tuple[str, int] | tuple[str, int, int, int],
        ae_title: str | None = None,
        contexts: Any = None,
        ssl_context: Any = None,
        evt_handlers: Any = None,
        server_class: Any = None,
        **kwargs: Any,
    ) -> GuardedAssociationServer:
        """The server pynetdicom's ``start_server`` runs: always a guarded one."""
        return cast(
            GuardedAssociationServer,
            super().make_server(
                address,
                ae_title=ae_title,
                contexts=contexts,
                ssl_context=ssl_context,
                evt_handlers=evt_handlers,
                server_class=GuardedAssociationServer,
                per_address=self.per_address,
                **kwargs,
            ),
        )


def log_rejection(event: evt.Event) -> None:
    """EVT_REJECTED: log pynetdicom's own rejections (local limit, called AE title)."""
    assoc = event.assoc
    primitive = assoc.acceptor.primitive
    reason = str(primitive.reason_str) if primitive is not None else "unknown"
    calling = assoc.requestor.primitive
    logger.warning(
        "association rejected",
        extra={
            "calling_ae": str(calling.calling_ae_title).strip() if calling is not None else "",
            "peer": str(assoc.requestor.address),
            "reason": reason,
        },
    )


def carrying_a_message(assoc: Any) -> bool:
    """Whether an established association is part-way through a DIMSE message.

    True while a message's P-DATA is arriving or a whole message waits to be handled;
    the handler running a message is known to the service that registered it.
    """
    if not assoc.is_established:
        return False
    dimse = assoc.dimse
    return dimse.message is not None or not dimse.msg_queue.empty()


def close_at_once(assoc: Any) -> None:
    """End an association that carries no message: an A-ABORT when it is established;
    otherwise its socket shut, so that a read blocked mid-PDU (a stalled or failed
    request) returns now instead of at the network timeout, and its DUL stopped."""
    if assoc.is_established:
        assoc.abort(block=False)
        return
    raw = getattr(assoc.dul.socket, "socket", None)
    if raw is not None:
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)
    # The association's own thread may wait out the ACSE timeout for a request that
    # will never come, and would leave its (non-daemon) DUL thread holding the exit.
    assoc.dul.kill_dul()


def stop_acceptor_reactors() -> int:
    """Tell every acceptor's DUL reactor still running to end; returns how many.

    An association whose connection failed before its request (a stalled or broken
    handshake) can leave its reactor, a non-daemon thread, running after the
    association is gone, which would hold the process's exit.
    """
    stopped = 0
    for thread in threading.enumerate():
        if isinstance(thread, DULServiceProvider) and thread.assoc.is_acceptor:
            thread.kill_dul()
            stopped += 1
    return stopped
