"""The delivery seam: a transport per destination kind, found in one registry.

A transport opens a session to one destination, sends output files over it one at a
time, each answered with a typed :data:`Outcome`, and closes it. The sender knows
nothing of the protocol: it groups its claims by destination, asks
:func:`transport_for` for the destination's ``kind``, and records each outcome in
the queue. A new kind (HL7 v2 to the RIS, say) is a new module beside
:mod:`daemon.transports.dicom` and :mod:`daemon.transports.dicomweb` that subclasses
:class:`Transport` under ``@register("kind")``, plus its destination settings; no
existing function changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from chestaid.errors import ConfigurationError
from daemon.settings import NodeSettings, SenderSettings


class DestinationLike(Protocol):
    """What every destination's settings have: a unique name and the transport's kind."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...


@dataclass(frozen=True)
class Stored:
    """The destination has the object.

    Attributes:
        status: the destination's answer (a DICOM status such as 0x0000 or a warning).
    """

    status: int


@dataclass(frozen=True)
class TransientFailure:
    """Not delivered this time; worth trying again after the backoff.

    Attributes:
        error: what went wrong, for the outbox listing (no patient data).
        status: the destination's answer when it gave one.
    """

    error: str
    status: int | None = None


@dataclass(frozen=True)
class PermanentFailure:
    """Not delivered, and trying again cannot help: the delivery is dead-lettered at once.

    Attributes:
        error: what went wrong, for the outbox listing (no patient data).
        status: the destination's answer when it gave one.
    """

    error: str
    status: int | None = None


Outcome = Stored | TransientFailure | PermanentFailure

DestinationT = TypeVar("DestinationT", bound=DestinationLike)


class TransportSession(ABC):
    """An open connection to one destination; close it (or use it as a context manager)."""

    @abstractmethod
    def send(self, path: Path) -> Outcome:
        """Send one output file.

        Expected failures (refusals, timeouts, a lost connection) are returned as a
        failure outcome, never raised.
        """

    @abstractmethod
    def close(self) -> None:
        """End the session (release the association, close the connection)."""

    def __enter__(self) -> TransportSession:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class Transport(ABC, Generic[DestinationT]):
    """Delivers files to destinations of one kind.

    Args:
        node: this node's settings (identity and timeouts when calling out).
        settings: the sender's settings.
    """

    def __init__(self, *, node: NodeSettings, settings: SenderSettings) -> None:
        self.node = node
        self.settings = settings

    @abstractmethod
    def open(self, destination: DestinationT) -> TransportSession:
        """Open a session to ``destination``.

        Raises:
            DeliveryError: the destination cannot be reached or refused the session;
                the message says which and why.
        """


TransportT = TypeVar("TransportT", bound=type[Transport[Any]])

_TRANSPORTS: dict[str, type[Transport[Any]]] = {}


def register(kind: str) -> Callable[[TransportT], TransportT]:
    """A class decorator that makes a transport the one for destinations of ``kind``.

    Raises:
        ValueError: another transport is already registered for ``kind``.
    """

    def add(transport: TransportT) -> TransportT:
        known = _TRANSPORTS.get(kind)
        if known is not None and known is not transport:
            raise ValueError(f"{known.__qualname__} is already the transport for {kind!r}")
        _TRANSPORTS[kind] = transport
        return transport

    return add


def transport_for(kind: str) -> type[Transport[Any]]:
    """The transport registered for destinations of ``kind``.

    Raises:
        ConfigurationError: no transport is registered for ``kind``.
    """
    try:
        return _TRANSPORTS[kind]
    except KeyError:
        raise ConfigurationError(
            f"no transport for destinations of kind {kind!r} (known: {', '.join(kinds())})"
        ) from None


def kinds() -> tuple[str, ...]:
    """The registered destination kinds, sorted."""
    return tuple(sorted(_TRANSPORTS))
