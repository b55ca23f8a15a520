"""MLLP, the framing HL7 v2 travels in over TCP: a start byte, the message, an end pair.

A frame is ``0x0B`` + message + ``0x1C 0x0D`` (HL7 v2.5.1 Appendix C, the Minimal Lower
Layer Protocol). :class:`MllpConnection` is the calling side: it sends a message and
reads the one answer, each bounded by a timeout and the answer by a size, so a peer
that stalls or floods never holds the sender.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from types import TracebackType

START = b"\x0b"
END = b"\x1c\x0d"
# An acknowledgement is a few hundred bytes; a peer sending more is not answering.
MAX_ANSWER_BYTES = 1 << 20


class MllpError(OSError):
    """The peer broke the framing, sent too much, closed the connection, or timed out."""


def frame(message: str) -> bytes:
    """The message (segments separated by CR) as one MLLP frame, in UTF-8.

    Raises:
        ValueError: the message contains a framing byte (it could end the frame early).
    """
    data = message.encode("utf-8")
    if START in data or b"\x1c" in data:
        raise ValueError("an HL7 message cannot contain the MLLP framing bytes 0x0B or 0x1C")
    return START + data + END


class FrameReader:
    """Collects bytes until a whole frame is in; the frames in a byte stream, one by one."""

    def __init__(self, *, limit: int = MAX_ANSWER_BYTES) -> None:
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[str]:
        """Add received bytes; return the messages they completed (UTF-8, CRs kept).

        Raises:
            MllpError: bytes before a start byte, or a frame longer than the limit.
        """
        self._buffer += data
        messages = []
        while self._buffer:
            if self._buffer[:1] != START:
                raise MllpError("the peer sent bytes outside an MLLP frame")
            end = self._buffer.find(END)
            if (end < 0 and len(self._buffer) > self.limit) or end > self.limit:
                raise MllpError(f"an MLLP frame longer than {self.limit} bytes")
            if end < 0:
                break
            body = bytes(self._buffer[1:end])
            del self._buffer[: end + len(END)]
            messages.append(body.decode("utf-8", errors="replace"))
        return messages


class MllpConnection:
    """A connection to an MLLP listener (the RIS, or an interface engine before it).

    Args:
        host, port: the listener.
        timeout: seconds for the connect, the TLS handshake, each send and the answer.
        tls: a client context when the listener speaks TLS; ``server_name`` is the name
            its certificate must carry.

    Raises:
        MllpError: the connection or the handshake failed (the message says which).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.where = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise MllpError(f"cannot connect to {self.where}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=server_name or host)
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                raise MllpError(f"TLS handshake with {self.where} failed: {exc}") from exc
        self._sock: socket.socket | None = sock
        self._reader = FrameReader()

    def exchange(self, message: str) -> str:
        """Send one message and return the peer's one answer.

        Raises:
            MllpError: the peer closed the connection, timed out, or broke the framing;
                the connection is closed and cannot be used again.
        """
        if self._sock is None:
            raise MllpError(f"the connection to {self.where} is closed")
        try:
            self._sock.sendall(frame(message))
            while True:
                data = self._sock.recv(65536)
                if not data:
                    raise MllpError(f"{self.where} closed the connection without an answer")
                answers = self._reader.feed(data)
                if answers:
                    if len(answers) > 1:
                        raise MllpError(f"{self.where} answered one message more than once")
                    return answers[0]
        except TimeoutError as exc:
            self.close()
            raise MllpError(f"no answer from {self.where} within {self.timeout:g} s") from exc
        except MllpError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise MllpError(f"connection to {self.where} lost: {exc}") from exc

    @property
    def open(self) -> bool:
        """Whether the connection can still be used."""
        return self._sock is not None

    def close(self) -> None:
        """Close the connection (idempotent)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):  # closing a broken socket may complain
                sock.close()

    def __enter__(self) -> MllpConnection:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
