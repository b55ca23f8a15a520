"""sd_notify and the watchdog, against real AF_UNIX datagram sockets the tests own."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import systemd

RECEIVE_TIMEOUT = 10.0  # a guard against a hang, never a way to wait for something


def receive(sock: socket.socket) -> list[str]:
    """The next datagram's assignments (fails the test after RECEIVE_TIMEOUT)."""
    return sock.recv(4096).decode().split("\n")


def pending(sock: socket.socket) -> list[bytes]:
    """Every datagram already queued on the socket, without waiting."""
    sock.setblocking(False)
    datagrams: list[bytes] = []
    while True:
        try:
            datagrams.append(sock.recv(4096))
        except BlockingIOError:
            return datagrams


@pytest.fixture(autouse=True)
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start outside systemd, whatever runs them."""
    for name in (systemd.NOTIFY_SOCKET, systemd.WATCHDOG_USEC, systemd.WATCHDOG_PID):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket bound at a path, named in NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(RECEIVE_TIMEOUT)
        monkeypatch.setenv(systemd.NOTIFY_SOCKET, str(path))
        yield sock


@pytest.fixture
def abstract_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket in the abstract namespace, named "@..." in NOTIFY_SOCKET."""
    name = f"chestaid-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(RECEIVE_TIMEOUT)
        monkeypatch.setenv(systemd.NOTIFY_SOCKET, "@" + name)
        yield sock


# notify


def test_notify_sends_one_datagram_to_a_path_socket(notify_socket: socket.socket) -> None:
    assert systemd.notify("READY=1", "STATUS=serving roles scp,worker") is True
    assert receive(notify_socket) == ["READY=1", "STATUS=serving roles scp,worker"]
    assert pending(notify_socket) == []


def test_notify_sends_to_an_abstract_socket(abstract_socket: socket.socket) -> None:
    assert systemd.notify("STOPPING=1") is True
    assert receive(abstract_socket) == ["STOPPING=1"]


def test_notify_outside_systemd_is_a_quiet_no_op(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="daemon.systemd"):
        assert systemd.notify("READY=1") is False
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


def test_notify_failure_is_a_warning_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(systemd.NOTIFY_SOCKET, str(tmp_path / "nobody-listens.sock"))
    with caplog.at_level(logging.WARNING, logger="daemon.systemd"):
        assert systemd.notify("READY=1") is False
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "failed" in caplog.records[0].getMessage()


@pytest.mark.parametrize("name", ["relative/notify.sock", "@", "vsock:2:1234"])
def test_notify_refuses_an_unusable_socket_name(
    name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(systemd.NOTIFY_SOCKET, name)
    with caplog.at_level(logging.WARNING, logger="daemon.systemd"):
        assert systemd.notify("READY=1") is False
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


@pytest.mark.parametrize("states", [(), ("READY",), ("=1",), ("STATUS=two\nlines",)])
def test_notify_rejects_malformed_states(states: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        systemd.notify(*states)


# watchdog_interval


def test_no_watchdog_without_watchdog_usec() -> None:
    assert systemd.watchdog_interval() is None


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(systemd.WATCHDOG_USEC, "60000000")
    assert systemd.watchdog_interval() == 30.0


def test_watchdog_interval_for_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(systemd.WATCHDOG_USEC, "5000000")
    monkeypatch.setenv(systemd.WATCHDOG_PID, str(os.getpid()))
    assert systemd.watchdog_interval() == 2.5


def test_no_watchdog_for_another_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(systemd.WATCHDOG_USEC, "5000000")
    monkeypatch.setenv(systemd.WATCHDOG_PID, str(os.getpid() + 1))
    assert systemd.watchdog_interval() is None


@pytest.mark.parametrize(
    ("usec", "pid"),
    [("sixty", None), ("", None), ("0", None), ("-5", None), ("1.5e6", None), ("5000000", "me")],
)
def test_malformed_watchdog_variables_turn_it_off_with_a_warning(
    usec: str, pid: str | None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(systemd.WATCHDOG_USEC, usec)
    if pid is not None:
        monkeypatch.setenv(systemd.WATCHDOG_PID, pid)
    with caplog.at_level(logging.WARNING, logger="daemon.systemd"):
        assert systemd.watchdog_interval() is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


# Watchdog


class Checks:
    """A health check answering from a script, then False; ``done`` is set when it runs out."""

    def __init__(self, answers: list[bool | Exception]) -> None:
        self.answers = answers
        self.calls = 0
        self.done = threading.Event()

    def __call__(self) -> bool:
        self.calls += 1
        if not self.answers:
            self.done.set()
            return False
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def watchdog_env(monkeypatch: pytest.MonkeyPatch, interval: float) -> None:
    monkeypatch.setenv(systemd.WATCHDOG_USEC, str(int(interval * 2 * 1_000_000)))
    monkeypatch.setenv(systemd.WATCHDOG_PID, str(os.getpid()))


def run_until_done(check: Checks) -> None:
    watchdog = systemd.Watchdog(check)
    watchdog.start()
    assert check.done.wait(RECEIVE_TIMEOUT)
    watchdog.stop()
    assert not watchdog.running


def test_watchdog_pings_while_healthy(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    watchdog_env(monkeypatch, 0.01)
    watchdog = systemd.Watchdog(lambda: True)
    assert watchdog.interval == 0.01
    watchdog.start()
    try:
        assert [receive(notify_socket) for _ in range(3)] == [["WATCHDOG=1"]] * 3
    finally:
        watchdog.stop()
    assert not watchdog.running


def test_watchdog_withholds_pings_while_unhealthy(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    watchdog_env(monkeypatch, 0.01)
    check = Checks([False, False, False])
    run_until_done(check)
    assert check.calls >= 4
    assert pending(notify_socket) == []


def test_watchdog_pings_only_after_healthy_checks(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    watchdog_env(monkeypatch, 0.01)
    check = Checks([True, False, RuntimeError("check broke"), True, True])
    with caplog.at_level(logging.INFO, logger="daemon.systemd"):
        run_until_done(check)
    assert pending(notify_socket) == [b"WATCHDOG=1"] * 3
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in messages].count(logging.WARNING) == 2  # two transitions
    assert any(level == logging.ERROR and "raised" in text for level, text in messages)
    assert any("healthy again" in text for _, text in messages)


def test_stop_wakes_the_watchdog_at_once(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    watchdog_env(monkeypatch, 3600.0)  # the next ping would be an hour away
    watchdog = systemd.Watchdog(lambda: True)
    watchdog.start()
    assert receive(notify_socket) == ["WATCHDOG=1"]  # the first ping comes at start
    stopper = threading.Thread(target=watchdog.stop)
    stopper.start()
    stopper.join(RECEIVE_TIMEOUT)
    assert not stopper.is_alive()
    assert not watchdog.running


@pytest.mark.parametrize("other_process", [False, True])
def test_watchdog_is_a_no_op_without_an_interval(
    other_process: bool, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    if other_process:
        monkeypatch.setenv(systemd.WATCHDOG_USEC, "20000")
        monkeypatch.setenv(systemd.WATCHDOG_PID, str(os.getpid() + 1))
    check = Checks([True])
    watchdog = systemd.Watchdog(check)
    watchdog.start()
    assert watchdog.interval is None
    assert not watchdog.running
    watchdog.stop()
    assert check.calls == 0
    assert pending(notify_socket) == []


@pytest.mark.parametrize("with_interval", [False, True])
def test_watchdog_starts_once(with_interval: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if with_interval:
        watchdog_env(monkeypatch, 3600.0)
    watchdog = systemd.Watchdog(lambda: True)
    watchdog.start()
    try:
        with pytest.raises(RuntimeError):
            watchdog.start()
    finally:
        watchdog.stop()
