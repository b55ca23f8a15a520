"""The admin's failed-images and audit pages in a real browser (headless Debian Chromium,
Playwright) against a live ``chestaid-daemon serve``.

An image received while the outbox cannot be written fails for good; an image For
Processing is skipped. The admin sees both with their reasons (the skipped one without a
retry), retries the failed one once the outbox is mended and sees it leave the failed
list and be scored; then filters the audit trail by day and downloads it as CSV.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from daemon.spool import TEMP_DIR
from tests.daemon_harness import Daemon, storescu, wait_until
from tests.dicom_factory import make_dx, require_tool
from tests.integration.test_web_browser import (
    ConsoleErrors,
    choose_password,
    one_time_password,
    sign_in,
)

pytestmark = pytest.mark.integration

# Without the user name in it, which the password rules refuse.
ADMIN_PASSWORD = "chief-chooses-this-one"
FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"  # DX Image Storage - For Processing


@pytest.fixture
def daemon(tmp_path: Path, browser: Browser) -> Iterator[Daemon]:
    require_tool("storescu", "dcmtk")
    node = Daemon(
        tmp_path / "node",
        sections={
            "worker": {
                "retry_initial_seconds": 0.2,
                "retry_max_seconds": 0.2,
                "retry_max_attempts": 2,
                "yield_to_intake_seconds": 0,
            }
        },
    )
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def page(browser: Browser, daemon: Daemon) -> Iterator[Page]:
    context = browser.new_context(
        base_url=f"http://127.0.0.1:{daemon.web_port}",
        viewport={"width": 1280, "height": 800},
        accept_downloads=True,
    )
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def _job(daemon: Daemon, uid: str) -> tuple[int, str]:
    rows = daemon.query(
        "SELECT j.id, j.state FROM jobs j JOIN instances i ON i.id = j.instance_id"
        " WHERE i.sop_instance_uid = :uid",
        uid=uid,
    )
    return (rows[0][0], rows[0][1]) if rows else (0, "")


def _send(tmp_path: Path, daemon: Daemon, name: str, **extra: str) -> str:
    path = tmp_path / f"{name}.dcm"
    ds = make_dx(path, **extra)  # type: ignore[arg-type]
    sent = storescu([path], daemon.port)
    assert "Received Store Response (Success)" in sent.stdout + sent.stderr
    return str(ds.SOPInstanceUID)


def test_an_admin_retries_a_failed_image_and_exports_the_audit_trail(
    tmp_path: Path, daemon: Daemon, page: Page
) -> None:
    errors = ConsoleErrors(expected={("from=2026-02-30", 422)})
    errors.watch(page)
    # A file where the outbox's temporary directory should be: every output write fails.
    temp = daemon.root / "var" / "outbox" / TEMP_DIR
    temp.rmdir()
    temp.write_bytes(b"")
    failed_uid = _send(tmp_path, daemon, "failed")
    skipped_uid = _send(tmp_path, daemon, "skipped", sop_class=FOR_PROCESSING)
    wait_until(lambda: _job(daemon, failed_uid)[1] == "failed", timeout=120, what="failed")
    wait_until(lambda: _job(daemon, skipped_uid)[1] == "skipped", timeout=120, what="skipped")
    failed_id, skipped_id = _job(daemon, failed_uid)[0], _job(daemon, skipped_uid)[0]
    temp.unlink()  # mended
    temp.mkdir()

    first_password = one_time_password(daemon)
    sign_in(page, "admin", first_password)
    choose_password(page, first_password, ADMIN_PASSWORD)

    # Both images with their reasons; only the failed one can be retried.
    page.locator("header nav a", has_text="Failed images").click()
    failed_row = page.locator(f'#images tr[data-job="{failed_id}"]')
    skipped_row = page.locator(f'#images tr[data-job="{skipped_id}"]')
    expect(failed_row.locator(".reason")).to_contain_text("after 2 attempts")
    expect(failed_row).to_contain_text(failed_uid)
    expect(skipped_row.locator(".reason")).to_contain_text("For Processing")
    expect(skipped_row.locator("button")).to_have_count(0)
    expect(page.locator("#total")).to_have_text("2")
    page.locator("#images-filter select[name=state]").select_option("failed")
    page.locator("#images-filter button[type=submit]").click()
    expect(page.locator("#total")).to_have_text("1")
    expect(skipped_row).to_have_count(0)

    failed_row.get_by_role("button", name="Retry").click()
    expect(page.locator("#retried")).to_have_text("1 failed image queued again.")
    expect(page.locator(f'#images tr[data-job="{failed_id}"]')).to_have_count(0)
    wait_until(lambda: _job(daemon, failed_uid)[1] == "done", timeout=120, what="scored")
    page.goto("/admin/images?state=failed")
    expect(page.locator("#total")).to_have_text("0")

    # The audit trail: a day with nothing, then today's entries, downloaded as CSV.
    page.locator("header nav a", has_text="Audit").click()
    audit_filter = page.locator("#audit-filter")
    audit_filter.locator("input[name=from]").fill("2001-01-01")
    audit_filter.locator("input[name=to]").fill("2001-01-02")
    audit_filter.locator("button[type=submit]").click()
    expect(page.locator("#total")).to_have_text("0")
    today = datetime.now(UTC).date()
    audit_filter.locator("input[name=from]").fill((today - timedelta(days=1)).isoformat())
    audit_filter.locator("input[name=to]").fill(today.isoformat())
    audit_filter.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(rf"from={today - timedelta(days=1)}&to={today}"))
    expect(page.locator("#audit")).to_contain_text("jobs.retried")
    with page.expect_download() as info:
        page.locator("#export-csv").click()
    download = info.value
    assert download.suggested_filename == "chestaid-audit.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    retried = [r for r in rows if r["action"] == "jobs.retried"]
    assert [(r["actor"], r["subject"]) for r in retried] == [("admin", str(failed_id))]
    assert all(r["at"][:10] in (str(today - timedelta(days=1)), str(today)) for r in rows)
    exported = daemon.query("SELECT actor FROM audit_log WHERE action = 'audit.exported'")
    assert exported == [("admin",)]

    page.goto("/admin/audit?from=2026-02-30")
    expect(page.locator("#filter-error")).to_contain_text("no such day")
    assert errors.seen == []
