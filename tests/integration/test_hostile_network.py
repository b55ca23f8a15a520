"""A hostile network against the live daemon: connections that stall half-way through
an A-ASSOCIATE-RQ, one address trying to take every slot, and what the log says."""

from __future__ import annotations

import json
import select
import socket
import struct
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from pynetdicom import AE

from daemon.scp import VERIFICATION
from tests.daemon_harness import Daemon, wait_until

pytestmark = pytest.mark.integration

# The first 8 bytes of an A-ASSOCIATE-RQ: PDU type 0x01, reserved, a length of 200
# bytes that never follow, protocol version 1.
STALLED_REQUEST = b"\x01\x00" + struct.pack(">I", 200) + b"\x00\x01"
MAX_ASSOCIATIONS = 8


def _stall(stack: ExitStack, port: int, source: str) -> socket.socket:
    """A connection from ``source`` that sends 8 bytes of an A-ASSOCIATE-RQ and no more."""
    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.sendall(STALLED_REQUEST)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (without waiting)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


def _echo(port: int, source: str = "127.0.0.1") -> str:
    """One real association with a C-ECHO from ``source``: "ok" or why it failed."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", port, ae_title="CHESTAID", bind_address=(source, 0))
    if not assoc.is_established:
        return "rejected" if assoc.is_rejected else "not established"
    status = assoc.send_c_echo()
    assoc.release()
    return "ok" if status is not None and status.Status == 0 else "echo failed"


def _log_lines(daemon: Daemon) -> list[dict[str, object]]:
    return [json.loads(line) for line in daemon.logs().splitlines() if line.strip()]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(
        tmp_path / "node",
        sections={"node": {"max_associations": MAX_ASSOCIATIONS, "acse_timeout": 3.0}},
    )
    d.start(roles="scp")
    yield d
    d.stop()


def test_stalled_requests_are_closed_and_a_modality_gets_in(node: Daemon) -> None:
    acse_timeout = 3.0
    with ExitStack() as stack:
        # One stalled connection from each of eight addresses: every slot is taken.
        stalled = [_stall(stack, node.port, f"127.0.0.{10 + i}") for i in range(MAX_ASSOCIATIONS)]
        # A real modality keeps trying; it must get in once the stalled ones are closed.
        outcome = wait_until(
            lambda: _echo(node.port) == "ok",
            timeout=acse_timeout + 30.0,
            what="a real association while stalled requests hold the slots",
        )
        assert outcome
        wait_until(
            lambda: all(_closed_by_server(s) for s in stalled),
            timeout=acse_timeout + 30.0,
            what="the server to close every stalled connection",
        )
    reaped = [line for line in _log_lines(node) if "association request" in str(line["message"])]
    assert len(reaped) >= MAX_ASSOCIATIONS
    assert {str(line["peer"]) for line in reaped} >= {
        f"127.0.0.{10 + i}" for i in range(MAX_ASSOCIATIONS)
    }


@pytest.fixture
def patient_node(tmp_path: Path) -> Iterator[Daemon]:
    # The stalled connections are not closed by the ACSE timeout during this test.
    d = Daemon(
        tmp_path / "node",
        sections={"node": {"max_associations": MAX_ASSOCIATIONS, "acse_timeout": 600.0}},
    )
    d.start(roles="scp")
    yield d
    d.stop()


def test_one_address_cannot_take_every_slot(patient_node: Daemon) -> None:
    node = patient_node
    share = MAX_ASSOCIATIONS // 2  # the default per-address share
    with ExitStack() as stack:
        stalled = [_stall(stack, node.port, "127.0.0.20") for _ in range(MAX_ASSOCIATIONS)]
        # Those over the address's share are closed at once, before any PDU is read.
        wait_until(
            lambda: sum(_closed_by_server(s) for s in stalled) >= MAX_ASSOCIATIONS - share,
            timeout=30.0,
            what="connections over the address's share to be closed",
        )
        # Another address still gets in while the share is held.
        assert _echo(node.port, "127.0.0.1") == "ok"
        open_now = [s for s in stalled if not _closed_by_server(s)]
        assert len(open_now) == share
    refused = [
        line
        for line in _log_lines(node)
        if line["message"] == "connection refused: too many connections from this address"
    ]
    assert len(refused) == MAX_ASSOCIATIONS - share
    assert {line["peer"] for line in refused} == {"127.0.0.20"}


def test_an_idle_association_does_not_hold_the_stop(patient_node: Daemon) -> None:
    """Stopping waits only for associations part-way through a message: an idle
    established association is aborted at once (it was acknowledged nothing), not
    waited out to the drain deadline."""
    node = patient_node
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(VERIFICATION)
    idle = ae.associate("127.0.0.1", node.port, ae_title="CHESTAID")
    assert idle.is_established
    assert node.stop() == 0
    stopping = [
        line for line in _log_lines(node) if line["message"] == "stopping: open associations"
    ]
    assert len(stopping) == 1
    assert stopping[0]["waited_for"] == 0
    assert stopping[0]["aborted_without_a_message"] == 1
    wait_until(lambda: not idle.is_alive(), timeout=10.0, what="the client to see the end")
    assert idle.is_aborted
