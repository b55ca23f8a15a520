"""Fixtures the integration tests share: a headless Debian Chromium, a PACS (a Store SCP on
loopback) and a RIS (an MLLP peer), one of each per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.daemon_harness import StoreSCP
from tests.dicom_factory import require_tool
from tests.mllp_peer import MllpPeer

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's chromium driven by Playwright (skips naming the package when missing)."""
    executable = require_tool("chromium", "chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[StoreSCP]:
    scp = StoreSCP(tmp_path / "pacs").start()
    yield scp
    scp.stop()


@pytest.fixture
def ris() -> Iterator[MllpPeer]:
    peer = MllpPeer().start()
    yield peer
    peer.stop()
