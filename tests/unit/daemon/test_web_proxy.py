"""Whose address sign-in limits count: X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import pytest

from daemon.web.security import forwarded_client

PROXY = ["127.0.0.1/32", "10.9.0.0/24"]


@pytest.mark.parametrize(
    ("peer", "header", "trusted", "expected"),
    [
        # No proxy configured: the peer, whatever the header says.
        ("203.0.113.5", "198.51.100.7", [], "203.0.113.5"),
        # A trusted proxy: the client it names.
        ("127.0.0.1", "198.51.100.7", PROXY, "198.51.100.7"),
        # Two trusted hops: the nearest untrusted one, not a value the client sent.
        ("127.0.0.1", "1.2.3.4, 198.51.100.7, 10.9.0.3", PROXY, "198.51.100.7"),
        # A peer that is not a proxy cannot choose its address.
        ("203.0.113.5", "198.51.100.7", PROXY, "203.0.113.5"),
        # A trusted proxy without the header, or with garbage.
        ("127.0.0.1", None, PROXY, "127.0.0.1"),
        ("127.0.0.1", "not-an-address", PROXY, "not-an-address"),
    ],
)
def test_forwarded_client(peer: str, header: str | None, trusted: list[str], expected: str) -> None:
    assert forwarded_client(peer, header, trusted) == expected
