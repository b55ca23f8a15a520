"""Pure policies of the SCP and the worker: the allowlist, giving way to intake, bands."""

from __future__ import annotations

import math
import threading

import pytest

from chestaid.errors import ConfigurationError
from daemon.scp import REASON_CALLING_AE_NOT_RECOGNISED, IntakeMonitor, peer_allowed
from daemon.serving import PriorityBands
from daemon.settings import AllowSettings, Band


def test_allowlist_by_calling_ae_and_network() -> None:
    allow = AllowSettings(calling_ae_titles=["MODALITY"], networks=["10.1.0.0/16", "::1/128"])
    assert peer_allowed(allow, calling_ae="MODALITY        ", address="10.1.2.3") is None
    assert peer_allowed(allow, calling_ae="MODALITY", address="::1") is None
    assert peer_allowed(allow, calling_ae="MODALITY", address="::ffff:10.1.2.3") is None
    refused = peer_allowed(allow, calling_ae="OTHER", address="10.1.2.3")
    assert refused is not None and refused[0] == REASON_CALLING_AE_NOT_RECOGNISED
    refused = peer_allowed(allow, calling_ae="MODALITY", address="10.2.0.1")
    assert refused is not None and "not in an allowed network" in refused[1]
    open_titles = AllowSettings(calling_ae_titles=[], networks=["127.0.0.0/8"])
    assert peer_allowed(open_titles, calling_ae="ANYONE", address="127.0.0.1") is None


def test_intake_monitor_is_idle_until_a_store_arrives() -> None:
    monitor = IntakeMonitor(quiet_seconds=30.0)
    assert monitor.wait_idle(0.0)
    monitor.opened()
    assert monitor.wait_idle(0.0)  # an open connection that sends nothing
    monitor.touch()
    assert not monitor.wait_idle(0.01)  # busy, and the wait is bounded


def test_intake_monitor_is_idle_once_the_last_connection_closes() -> None:
    # A modality that sent its study and released: scoring need not wait out the
    # quiet period after its last C-STORE.
    monitor = IntakeMonitor(quiet_seconds=30.0)
    monitor.opened()
    monitor.opened()
    monitor.touch()
    monitor.closed()
    assert not monitor.wait_idle(0.0)  # another sender is still connected
    monitor.closed()
    assert monitor.wait_idle(0.0)
    monitor.closed()  # a close without its open never makes a connection count negative
    monitor.opened()
    monitor.touch()
    assert not monitor.wait_idle(0.0)


def test_intake_monitor_wakes_a_waiter_when_the_last_connection_closes() -> None:
    monitor = IntakeMonitor(quiet_seconds=3600.0)
    monitor.opened()
    monitor.touch()
    waiting = threading.Event()
    result: list[bool] = []

    def waiter() -> None:
        waiting.set()
        result.append(monitor.wait_idle(3600.0))

    thread = threading.Thread(target=waiter, daemon=True)  # never left behind
    thread.start()
    waiting.wait(timeout=10.0)
    monitor.closed()
    thread.join(timeout=10.0)
    assert result == [True]


def test_intake_monitor_becomes_idle_after_the_quiet_period() -> None:
    monitor = IntakeMonitor(quiet_seconds=0.05)
    monitor.opened()
    monitor.touch()
    done = threading.Event()

    def waiter() -> None:
        if monitor.wait_idle(10.0):
            done.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    thread.join(timeout=10.0)
    assert done.is_set()


def test_priority_bands_resolve_the_threshold_and_order() -> None:
    bands = PriorityBands.resolve(
        [
            Band(name="ROUTINE", min_score=0.0),
            Band(name="URGENT", min_score="threshold"),
            Band(name="SOON", min_score=0.5),
        ],
        threshold=0.9,
    )
    assert bands.cutoffs == (("URGENT", 0.9), ("SOON", 0.5), ("ROUTINE", 0.0))
    assert bands.assign(0.95) == "URGENT"
    assert bands.assign(0.9) == "URGENT"  # at the threshold is urgent
    assert bands.assign(0.89) == "SOON"
    assert bands.assign(0.0) == "ROUTINE"


def test_priority_bands_need_a_governed_threshold() -> None:
    with pytest.raises(ConfigurationError, match="governed threshold"):
        PriorityBands.resolve([Band(name="URGENT", min_score="threshold")], threshold=math.nan)


def test_delivery_backoff_doubles_up_to_its_cap() -> None:
    from daemon.db.queue import backoff
    from daemon.settings import SenderSettings

    settings = SenderSettings(backoff_initial_seconds=5, backoff_max_seconds=300, max_attempts=12)
    waits = [
        backoff(
            attempt,
            initial=settings.backoff_initial_seconds,
            maximum=settings.backoff_max_seconds,
        )
        for attempt in range(1, 12)
    ]
    assert waits[:4] == [5, 10, 20, 40]
    assert max(waits) == 300 and waits[-1] == 300
    # A PACS down for half an hour is retried before anything is dead-lettered.
    assert sum(waits) > 30 * 60
