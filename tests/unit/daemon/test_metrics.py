"""Metrics: the settings that protect them, the web's /metrics for Prometheus and admins
only, the database gauges, the C-STORE counter and the listener binding where told."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from pydicom.dataset import Dataset
from sqlalchemy import text

from chestaid.bundle import read_manifest
from chestaid.errors import ConfigurationError
from daemon import metrics
from daemon.db import queue
from daemon.db.models import UserRole
from daemon.db.session import SessionFactory, writing
from daemon.serving import Serving
from daemon.settings import MetricsSettings, ModelSettings, PrioritySettings
from tests.bundles import unchecked_default_bundle
from tests.daemon_harness import free_port, record_received
from tests.web_fixtures import Site

TOKEN = "prometheus-token-0123456789abcdef"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _files(tmp_path: Path, *names: str) -> list[Path]:
    paths = [tmp_path / name for name in names]
    for path in paths:
        path.write_text("x")
    return paths


def test_a_listener_beyond_loopback_needs_mutual_tls(tmp_path: Path) -> None:
    cert, key, ca = _files(tmp_path, "m.pem", "m.key", "ca.pem")
    with pytest.raises(ValidationError, match="needs mutual TLS"):
        MetricsSettings(listen=True, host="0.0.0.0")
    with pytest.raises(ValidationError, match="needs mutual TLS"):
        MetricsSettings(listen=True, host="10.0.0.7", tls_certificate=cert, tls_key=key)
    with pytest.raises(ValidationError, match="go together"):
        MetricsSettings(tls_certificate=cert)
    with pytest.raises(ValidationError, match="client_ca_file needs"):
        MetricsSettings(client_ca_file=ca)
    assert (
        MetricsSettings(
            listen=True, host="0.0.0.0", tls_certificate=cert, tls_key=key, client_ca_file=ca
        ).client_ca_file
        == ca
    )
    assert MetricsSettings(listen=True, host="localhost").host == "localhost"
    assert MetricsSettings(listen=True, host="::1").host == "::1"
    assert not MetricsSettings().listen  # no port is opened unless asked for


def test_the_token_file_must_hold_a_long_token(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ConfigurationError, match="fewer than 16"):
        metrics.read_token(short)
    good = tmp_path / "good"
    good.write_text(TOKEN + "\n")
    assert metrics.read_token(good) == TOKEN
    assert metrics.read_token(None) is None
    assert metrics.token_matches(TOKEN, TOKEN)
    assert not metrics.token_matches(TOKEN, TOKEN[:-1])
    assert not metrics.token_matches(None, TOKEN)
    assert not metrics.token_matches(TOKEN, None)


def _serving(sessions: SessionFactory) -> Serving:
    return Serving(
        ModelSettings(bundle=unchecked_default_bundle()), PrioritySettings().bands, sessions
    )


def test_web_metrics_answer_prometheus_and_admins_only(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site = Site.build(tmp_path, sessions)
    client = site.client()
    assert client.get("/metrics").status_code == 404  # metrics disabled
    site.context.metrics = metrics.Exported(metrics.DatabaseCollector(sessions, _serving(sessions)))
    site.context.metrics_token = TOKEN
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert "chestaid" not in anonymous.text
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    reader = site.add_user("reader", UserRole.RADIOLOGIST)
    assert client.get("/metrics", headers=site.bearer(reader)).status_code == 403
    reader_browser, _ = site.browser(reader)
    assert reader_browser.get("/metrics").status_code == 403
    admin_browser, _ = site.browser(site.add_user("boss", UserRole.ADMIN))
    assert admin_browser.get("/metrics").status_code == 200
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    samples = parse(scraped.text)
    assert samples[("chestaid_database_up", ())] == 1
    assert ("chestaid_cstore_total", (("status", "0x0000"),)) in samples


def test_the_database_gauges_count_jobs_deliveries_and_name_the_model(
    sessions: SessionFactory,
) -> None:
    for i in range(3):
        record_received(sessions, f"1.2.3.{i}", spool_name=f"f{i}")
    with writing(sessions) as session:
        claim = queue.claim_job(session, owner="test", lease_seconds=60, max_attempts=3)
    assert claim is not None
    samples = parse(
        metrics.Exported(metrics.DatabaseCollector(sessions, _serving(sessions)))
        .exposition()
        .decode()
    )
    assert samples[("chestaid_jobs", (("state", "queued"),))] == 2
    assert samples[("chestaid_jobs", (("state", "running"),))] == 1
    assert samples[("chestaid_jobs", (("state", "failed"),))] == 0
    # Finished work grows for ever: it is counted by the processes, not at each scrape.
    assert ("chestaid_jobs", (("state", "done"),)) not in samples
    assert samples[("chestaid_deliveries", (("state", "pending"),))] == 0
    assert samples[("chestaid_deliveries", (("state", "dead"),))] == 0
    assert samples[("chestaid_oldest_queued_job_seconds", ())] >= 0
    manifest = read_manifest(unchecked_default_bundle())
    [info] = [labels for name, labels in samples if name == "chestaid_model_info"]
    assert dict(info)["model_version"] == manifest.version
    assert dict(info)["local_calibration"] == "false"
    assert float(dict(info)["calibration_version"]) == samples[("chestaid_calibration_version", ())]
    # No UID in any label.
    assert not any("1.2.3." in value for _, labels in samples for _, value in labels)


def test_an_unreadable_database_gives_database_up_0_not_a_failed_scrape(
    sessions: SessionFactory,
) -> None:
    with writing(sessions) as session:
        session.execute(text("DROP TABLE deliveries"))
    samples = parse(metrics.Exported(metrics.DatabaseCollector(sessions)).exposition().decode())
    assert samples[("chestaid_database_up", ())] == 0
    assert not any(name == "chestaid_jobs" for name, _ in samples)
    assert ("process_resident_memory_bytes", ()) in samples  # the process's own still there


def test_cstore_answers_are_counted_by_status() -> None:
    def value(status: str) -> float:
        return REGISTRY.get_sample_value("chestaid_cstore_total", {"status": status}) or 0.0

    before_ok, before_mismatch = value("0x0000"), value("0xA900")
    metrics.count_store(0x0000)
    answer = Dataset()
    answer.Status = 0xA900
    metrics.count_store(answer)
    assert value("0x0000") == before_ok + 1
    assert value("0xA900") == before_mismatch + 1


def test_the_listener_binds_where_configured_and_refuses_a_port_in_use() -> None:
    port = free_port()
    listener = metrics.Listener(MetricsSettings(listen=True, port=port), metrics.Exported())
    try:
        assert listener.address == f"127.0.0.1:{port}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            samples = parse(answer.read().decode())
        assert ("chestaid_scoring_seconds_count", ()) in samples
        with pytest.raises(OSError, match=f"metrics cannot listen on 127.0.0.1:{port}"):
            metrics.Listener(MetricsSettings(listen=True, port=port), metrics.Exported())
    finally:
        listener.stop()
