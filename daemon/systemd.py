"""systemd integration with no dependencies: readiness, status and watchdog (sd_notify).

The protocol (see ``sd_notify(3)``): newline-separated ``KEY=VALUE`` assignments, sent
as one datagram to the ``AF_UNIX`` socket named by ``$NOTIFY_SOCKET``; a name that
starts with ``@`` is in the abstract namespace. With ``WatchdogSec=`` in the unit,
systemd sets ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``) and restarts the service when
no ``WATCHDOG=1`` arrives in time. Outside systemd nothing is sent and nothing fails,
so the daemon runs the same in a terminal, in tests and in the unit.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


def _address(name: str) -> str | None:
    """The socket address for a ``$NOTIFY_SOCKET`` value, or None when it is not one."""
    if name.startswith("@") and len(name) > 1:
        return "\0" + name[1:]  # Linux abstract namespace: a leading NUL byte
    if name.startswith("/"):
        return name
    return None


def notify(*states: str) -> bool:
    """Send state assignments to systemd as one datagram.

    Args:
        states: assignments such as ``"READY=1"``, ``"STATUS=scoring"``,
            ``"WATCHDOG=1"`` or ``"STOPPING=1"``.

    Returns:
        True when the datagram was sent; False when not running under systemd
        (no ``$NOTIFY_SOCKET``), when the socket name is unusable, or when sending
        failed (logged at WARNING: a lost notification must never stop the daemon).

    Raises:
        ValueError: no state, or a state that is not ``KEY=VALUE`` on one line
            (a programming error, checked even outside systemd).
    """
    if not states:
        raise ValueError("notify() needs at least one KEY=VALUE state")
    for state in states:
        key, sep, _ = state.partition("=")
        if not key or not sep or "\n" in state:
            raise ValueError(f"not a one-line KEY=VALUE state: {state!r}")
    name = os.environ.get(NOTIFY_SOCKET)
    if not name:
        logger.debug("not under systemd; notification not sent", extra={"states": list(states)})
        return False
    address = _address(name)
    if address is None:
        logger.warning(
            "NOTIFY_SOCKET is neither an absolute path nor an abstract name; not sent",
            extra={"notify_socket": name, "states": list(states)},
        )
        return False
    data = "\n".join(states).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(data, address)
    except OSError as exc:
        logger.warning(
            "notification to systemd failed: %s",
            exc,
            extra={"notify_socket": name, "states": list(states)},
        )
        return False
    logger.debug("notified systemd", extra={"states": list(states)})
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings systemd expects from this process.

    Half of ``$WATCHDOG_USEC`` (systemd's advice, to leave a margin), provided
    ``$WATCHDOG_PID`` is unset or names this process: a child that inherited the
    variables must not ping for its parent.

    Returns:
        The interval, or None when the watchdog is off for this process or a
        variable is malformed (logged at WARNING).
    """
    usec_text = os.environ.get(WATCHDOG_USEC)
    if usec_text is None:
        return None
    pid_text = os.environ.get(WATCHDOG_PID)
    if pid_text is not None:
        try:
            pid = int(pid_text)
        except ValueError:
            logger.warning(
                "WATCHDOG_PID is not a process id; watchdog off", extra={"value": pid_text}
            )
            return None
        if pid != os.getpid():
            logger.debug("the watchdog is for process %d, not this one", pid)
            return None
    try:
        usec = int(usec_text)
    except ValueError:
        logger.warning("WATCHDOG_USEC is not an integer; watchdog off", extra={"value": usec_text})
        return None
    if usec <= 0:
        logger.warning("WATCHDOG_USEC is not positive; watchdog off", extra={"value": usec_text})
        return None
    return usec / 2 / 1_000_000


class Watchdog:
    """Pings systemd's watchdog from a daemon thread while a health check passes.

    Every :func:`watchdog_interval` seconds (and once at start) the thread calls
    ``healthy``; only when it returns True does it send ``WATCHDOG=1``. A daemon whose
    roles have died, or whose check raises, stops pinging and systemd restarts it.
    Without a watchdog for this process, :meth:`start` does nothing.

    The check runs on the watchdog thread: it must be quick and must not block.
    """

    def __init__(self, healthy: Callable[[], bool]) -> None:
        """Prepare the watchdog; reads the interval from the environment now.

        Args:
            healthy: returns True while the daemon can do its work.
        """
        self._healthy = healthy
        self._interval = watchdog_interval()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._was_healthy = True

    @property
    def interval(self) -> float | None:
        """Seconds between pings, or None when there is no watchdog."""
        return self._interval

    @property
    def running(self) -> bool:
        """Whether the pinging thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start pinging (no-op without a watchdog interval).

        Raises:
            RuntimeError: already started once.
        """
        if self._started:
            raise RuntimeError("a Watchdog starts once")
        self._started = True
        if self._interval is None:
            logger.debug("no systemd watchdog for this process")
            return
        self._thread = threading.Thread(
            target=self._run, args=(self._interval,), name="chestaid-watchdog", daemon=True
        )
        self._thread.start()
        logger.info("systemd watchdog started", extra={"interval_seconds": self._interval})

    def stop(self) -> None:
        """Stop pinging; wakes the thread at once and waits for it to end."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, interval: float) -> None:
        while True:
            self._beat()
            if self._stopping.wait(interval):
                return

    def _beat(self) -> None:
        try:
            ok = bool(self._healthy())
        except Exception:
            # A failing check is a failed check: withhold the ping, keep the thread.
            logger.exception("watchdog health check raised; treating it as unhealthy")
            ok = False
        if ok:
            if not self._was_healthy:
                logger.info("daemon healthy again; watchdog pings resumed")
            notify("WATCHDOG=1")
        elif self._was_healthy:
            logger.warning("daemon unhealthy; withholding watchdog pings so systemd restarts it")
        self._was_healthy = ok
