"""Each peer address's share of the associations, and its setting."""

from __future__ import annotations

import socket
import threading

import pytest
from pydantic import ValidationError
from pynetdicom import AE

from daemon.connections import AddressShares, BulkReadSocket, GuardedAE, quick_ack
from daemon.scp import VERIFICATION, build_ae
from daemon.settings import NodeSettings


def test_an_address_gets_no_more_than_its_share() -> None:
    shares = AddressShares(2)
    assert shares.take("10.0.0.1")
    assert shares.take("10.0.0.1")
    assert not shares.take("10.0.0.1")
    assert shares.take("10.0.0.2")
    shares.give_back("10.0.0.1")
    assert shares.held("10.0.0.1") == 1
    assert shares.take("10.0.0.1")


def test_the_default_share_is_half_the_associations() -> None:
    assert NodeSettings(max_associations=8).per_address_limit == 4
    assert NodeSettings(max_associations=1).per_address_limit == 1
    node = NodeSettings(max_associations=8, max_associations_per_address=8)
    assert node.per_address_limit == 8


def test_a_share_larger_than_the_total_is_refused_naming_the_key() -> None:
    with pytest.raises(ValidationError, match="max_associations_per_address"):
        NodeSettings(max_associations=4, max_associations_per_address=5)


def test_the_ae_from_settings_guards_its_servers() -> None:
    ae = build_ae(NodeSettings(max_associations=6))
    assert isinstance(ae, GuardedAE)
    assert ae.per_address == 3


def _bulk_reader(sock: socket.socket) -> BulkReadSocket:
    reader = BulkReadSocket.__new__(BulkReadSocket)  # no association: only recv is used
    reader.socket = sock
    return reader


def test_a_pdu_is_read_whole_into_one_buffer() -> None:
    ours, peer = socket.socketpair()
    payload = bytes(range(256)) * (3 * 2**20 // 256)  # larger than the socket buffers
    sender = threading.Thread(target=peer.sendall, args=(payload,))
    sender.start()
    try:
        head = _bulk_reader(ours).recv(6)
        rest = _bulk_reader(ours).recv(len(payload) - 6)
    finally:
        sender.join()
        ours.close()
        peer.close()
    assert bytes(head + rest) == payload


def test_a_connection_closed_mid_pdu_gives_what_arrived() -> None:
    ours, peer = socket.socketpair()
    peer.sendall(b"abc")
    peer.close()
    try:
        assert _bulk_reader(ours).recv(10) == bytearray(b"abc")
    finally:
        ours.close()


def test_accepted_associations_read_with_the_bulk_socket() -> None:
    ae = build_ae(NodeSettings(max_associations=2))
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        port = server.server_address[1]
        client = AE("PEER")
        client.add_requested_context(VERIFICATION)
        assoc = client.associate("127.0.0.1", port, ae_title=ae.ae_title)
        assert assoc.is_established
        (accepted,) = server.active_associations
        assert isinstance(accepted.dul.socket, BulkReadSocket)
        # Each PDU goes at once: no response waits on the peer's delayed acknowledgement.
        accepted_socket = accepted.dul.socket.socket
        assert accepted_socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert assoc.send_c_echo().Status == 0
        assoc.release()
    finally:
        server.shutdown()


def test_quick_ack_sets_the_option_and_ignores_a_socket_without_it() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        accepted.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
        quick_ack(accepted)
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1
    finally:
        for sock in (accepted, client, listener):
            sock.close()
    ours, peer = socket.socketpair()  # not TCP: nothing to set, nothing raised
    try:
        quick_ack(ours)
    finally:
        ours.close()
        peer.close()
