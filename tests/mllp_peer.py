"""An MLLP listener for tests: a RIS that validates what it receives and answers as told.

Every message is parsed by hl7apy at its strict validation level against HL7 v2.5.1
(structure, required fields, data types); a message that fails is answered ``AR``
with the reason, and kept in ``invalid``. A valid message is kept in ``received`` and
answered by ``answer`` (``AA`` by default; ``AE``/``AR`` to test failures; ``None``
for no answer at all; ``"wrong-id"`` for an acknowledgement of another message).
Connections stay open for as many messages as the caller sends.
"""

from __future__ import annotations

import socketserver
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from daemon.hl7.mllp import FrameReader, MllpError, frame

Policy = Callable[[Message], str | None]


def acknowledgement(message: Message, code: str, text: str = "", *, control_id: str = "") -> str:
    """An original-mode ACK answering ``message`` with MSA-1 ``code``."""
    ack = Message("ACK", version="2.5.1")
    ack.msh.msh_3 = "TEST-RIS"
    ack.msh.msh_5 = str(message.msh.msh_3.value)
    ack.msh.msh_9 = "ACK^R01^ACK"
    ack.msh.msh_10 = "ACK" + str(message.msh.msh_10.value)[:17]
    ack.msh.msh_11 = "P"
    ack.msa.msa_1 = code
    ack.msa.msa_2 = control_id or str(message.msh.msh_10.value)
    if text:
        ack.msa.msa_3 = text[:80].replace("|", "/").replace("^", "/")
    return str(ack.to_er7())


@dataclass
class MllpPeer:
    """A threaded MLLP listener on a free loopback port."""

    answer: str | None = "AA"
    received: list[Message] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    connections: int = 0
    tls: ssl.SSLContext | None = None  # MLLP in TLS with this server context

    def __post_init__(self) -> None:
        peer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                if peer.tls is not None:
                    try:
                        self.request = peer.tls.wrap_socket(self.request, server_side=True)
                    except (OSError, ssl.SSLError):
                        return  # a client that does not trust us, or speaks no TLS
                with peer.changed:
                    peer.connections += 1
                reader = FrameReader()
                while True:
                    try:
                        data = self.request.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    try:
                        messages = reader.feed(data)
                    except MllpError:
                        return
                    for text in messages:
                        reply = peer._handle(text)
                        if reply is not None:
                            self.request.sendall(frame(reply))

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handle(self, text: str) -> str | None:
        try:
            message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT)
            message.validate()
        except HL7apyException as exc:
            with self.changed:
                self.invalid.append((text, str(exc)))
                self.changed.notify_all()
            return None if self.answer is None else self._ack_from_text(text, str(exc))
        with self.changed:
            self.received.append(message)
            self.raw.append(text)
            self.changed.notify_all()
        if self.answer is None:
            return None
        if self.answer == "wrong-id":
            return acknowledgement(message, "AA", control_id="SOMETHING-ELSE")
        return acknowledgement(message, self.answer, f"answered {self.answer} by the test")

    @staticmethod
    def _ack_from_text(text: str, why: str) -> str:
        message = parse_message(text.split("\r", 1)[0] + "\r", find_groups=False)
        return acknowledgement(message, "AR", f"invalid: {why}")

    def start(self) -> MllpPeer:
        self._thread.start()
        return self

    def wait_count(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until ``count`` valid messages are in."""
        with self.changed:
            return self.changed.wait_for(lambda: len(self.received) >= count, timeout)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
