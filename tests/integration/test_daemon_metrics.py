"""Prometheus metrics of a real daemon: its own listener and the web's protected /metrics,
scraped after DCMTK's storescu sent images that were scored and delivered to storescp."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_harness import Daemon, StoreSCP, free_port, storescu, wait_until
from tests.dicom_factory import make_dx

pytestmark = pytest.mark.integration

TOKEN = "a-metrics-token-for-the-test-0123456789"


def scrape(
    url: str, token: str | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by name and sorted labels."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


DELIVERED = (
    "chestaid_delivery_attempts_total",
    (("destination", "pacs"), ("outcome", "delivered")),
)
END_TO_END = ("chestaid_end_to_end_seconds_count", ())


def scrape_once_counted(
    url: str, counts: dict[tuple[str, tuple[tuple[str, str], ...]], float]
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The first scrape that shows ``counts``.

    A counter moves just after the commit the database shows, from the thread that did the
    work, so a scrape taken when the database says "delivered" may still be a step behind.
    """
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def counted() -> bool:
        seen.clear()
        seen.update(scrape(url))
        return all(seen.get(key) == value for key, value in counts.items())

    wait_until(counted, timeout=30, what=f"a scrape of {url} counting {counts}")
    return seen


def status_of(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_scrape_counts_what_the_daemon_received_scored_and_delivered(tmp_path: Path) -> None:
    pacs = StoreSCP(tmp_path / "pacs").start()
    token_file = tmp_path / "metrics.token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    metrics_port = free_port()
    daemon = Daemon(
        tmp_path / "node",
        destinations=[pacs.destination()],
        sections={"metrics": {"listen": True, "port": metrics_port, "token_file": str(token_file)}},
    )
    daemon.start()
    try:
        files = [tmp_path / f"{i}.dcm" for i in range(2)]
        for path in files:
            make_dx(path, rows=128, cols=128)
        assert storescu(files, daemon.port).returncode == 0
        wait_until(
            lambda: (
                daemon.query("SELECT count(*) FROM deliveries WHERE state = 'delivered'")[0][0] == 4
            ),
            timeout=90,
            what="four outputs delivered",
        )
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        own = scrape_once_counted(url, {DELIVERED: 4, END_TO_END: 2})
        assert own[("chestaid_cstore_total", (("status", "0x0000"),))] == 2
        assert own[("chestaid_cstore_total", (("status", "0xA700"),))] == 0
        assert own[("chestaid_jobs_finished_total", (("state", "done"),))] == 2
        assert own[("chestaid_scoring_seconds_count", ())] == 2
        # Receipt to result is at least the scoring time, and every image's fell in a bucket.
        assert (
            own[("chestaid_end_to_end_seconds_sum", ())]
            >= own[("chestaid_scoring_seconds_sum", ())]
        )
        assert own[("chestaid_end_to_end_seconds_bucket", (("le", "+Inf"),))] == 2
        assert own[("chestaid_delivery_seconds_count", ())] == 4
        for state in ("queued", "running", "failed"):
            assert own[("chestaid_jobs", (("state", state),))] == 0
        for state in ("pending", "sending", "dead"):
            assert own[("chestaid_deliveries", (("state", state),))] == 0
        assert own[("chestaid_database_up", ())] == 1
        [model] = [labels for name, labels in own if name == "chestaid_model_info"]
        labels = dict(model)
        assert labels["calibration_version"] == str(int(own[("chestaid_calibration_version", ())]))
        assert labels["model_version"] == daemon.query("SELECT model_version FROM results")[0][0]
        assert own[("process_resident_memory_bytes", ())] > 0
        # No UID anywhere in the labels.
        uids = {row[0] for row in daemon.query("SELECT sop_instance_uid FROM instances")}
        assert not uids & {value for _, labels in own for _, value in labels}

        web = f"http://127.0.0.1:{daemon.web_port}/metrics"
        assert status_of(web) == 401
        assert status_of(web, "not-the-token") == 401
        assert scrape(web, TOKEN)[("chestaid_cstore_total", (("status", "0x0000"),))] == 2
    finally:
        daemon.stop()
        pacs.stop()


def test_with_roles_split_each_process_serves_the_counts_of_its_own_work(tmp_path: Path) -> None:
    pacs = StoreSCP(tmp_path / "pacs").start()
    intake_metrics, scoring_metrics = free_port(), free_port()
    intake = Daemon(
        tmp_path / "node",
        destinations=[pacs.destination()],
        sections={"metrics": {"listen": True, "port": intake_metrics, "database_gauges": False}},
    )
    scoring = Daemon(
        tmp_path / "scoring",
        destinations=[pacs.destination()],
        sections={
            "storage": {"var_dir": str(tmp_path / "node" / "var")},  # one database and spool
            "metrics": {"listen": True, "port": scoring_metrics},
        },
    )
    intake.start(roles="scp")
    try:
        scoring.starts = 1  # the database is already migrated
        scoring.start(roles="worker,sender")
        try:
            make_dx(tmp_path / "a.dcm", rows=128, cols=128)
            assert storescu([tmp_path / "a.dcm"], intake.port).returncode == 0
            wait_until(
                lambda: (
                    intake.query("SELECT count(*) FROM deliveries WHERE state = 'delivered'")[0][0]
                    == 2
                ),
                timeout=90,
                what="both outputs delivered",
            )
            received = scrape(f"http://127.0.0.1:{intake_metrics}/metrics")
            scored = scrape_once_counted(
                f"http://127.0.0.1:{scoring_metrics}/metrics", {DELIVERED: 2, END_TO_END: 1}
            )
        finally:
            assert scoring.stop() == 0
    finally:
        assert intake.stop() == 0
        pacs.stop()
    ok = ("chestaid_cstore_total", (("status", "0x0000"),))
    assert received[ok] == 1 and scored[ok] == 0
    assert received[("chestaid_end_to_end_seconds_count", ())] == 0
    assert scored[("chestaid_end_to_end_seconds_count", ())] == 1
    delivered = (
        "chestaid_delivery_attempts_total",
        (("destination", "pacs"), ("outcome", "delivered")),
    )
    assert scored[delivered] == 2 and received.get(delivered, 0) == 0
    # The database gauges where asked for only.
    assert not any(name == "chestaid_jobs" for name, _ in received)
    assert scored[("chestaid_jobs", (("state", "queued"),))] == 0
