"""The admin's pages and API for failed and skipped images, dead deliveries and the
audit trail: the real app on a migrated SQLite file, driven with the test client."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon import audit
from daemon.db.models import JobState, UserRole
from daemon.db.session import SessionFactory, writing
from tests.trouble import dead_deliveries, ended_job
from tests.web_fixtures import Site, hidden_csrf

API = "/api/v1"
FAIL_REASON = "CorruptImageError: the pixel data ends early"
SKIP_REASON = "View Position is not a frontal (PA/AP) view"
DAY = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
NEW_API = [
    ("GET", f"{API}/images"),
    ("POST", f"{API}/images/retry"),
    ("GET", f"{API}/deliveries"),
    ("POST", f"{API}/deliveries/retry"),
    ("GET", f"{API}/audit"),
]
NEW_PAGES = [
    ("GET", "/admin/images"),
    ("POST", "/admin/images/retry"),
    ("POST", "/admin/images/1/retry"),
    ("GET", "/admin/deliveries"),
    ("POST", "/admin/deliveries/retry"),
    ("POST", "/admin/deliveries/1/retry"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/audit.csv"),
    ("GET", "/admin/audit.json"),
]


@pytest.fixture
def site(tmp_path: Path, sessions: SessionFactory) -> Site:
    return Site.build(tmp_path, sessions)


def _actions(site: Site) -> list[str]:
    return [e.action for e in site.audit()]


def test_the_new_routes_need_a_token_and_the_admin_role(site: Site) -> None:
    failed = ended_job(site.sessions, "1.1", state=JobState.FAILED, reason=FAIL_REASON)
    dead = dead_deliveries(site.sessions, "1.2")
    admin = site.add_user("admin", UserRole.ADMIN)
    reader_id = site.add_user("reader", UserRole.RADIOLOGIST)
    body = {"ids": [failed, *dead], "all": True}
    anonymous = site.client()
    for method, path in NEW_API:
        answer = anonymous.request(method, path, json=body)
        assert answer.status_code == 401, (method, path, answer.status_code)
    bearer = site.bearer(reader_id)
    for method, path in NEW_API:
        answer = site.client().request(method, path, json=body, headers=bearer)
        assert answer.status_code == 403, (method, path, answer.status_code)
    reader, csrf = site.browser(reader_id)
    for method, path in NEW_PAGES:
        data = {"csrf_token": csrf} if method == "POST" else None
        answer = reader.request(method, path, data=data)
        assert answer.status_code == 403, (method, path, answer.status_code)
    # A browser's forged post (no token) is refused for an admin too.
    browser, _ = site.browser(admin)
    for method, path in NEW_PAGES:
        if method == "POST":
            assert browser.post(path, data={}).status_code == 403, path
    assert _actions(site) == []  # nothing was retried or exported


def test_the_api_lists_images_with_a_total_and_retries_failed_ones(site: Site) -> None:
    failed = [
        ended_job(site.sessions, f"2.{i}", state=JobState.FAILED, reason=FAIL_REASON, when=DAY)
        for i in range(3)
    ]
    skipped = ended_job(
        site.sessions,
        "2.9",
        state=JobState.SKIPPED,
        reason=SKIP_REASON,
        when=DAY + timedelta(days=1),
    )
    bearer = site.bearer(site.add_user("admin", UserRole.ADMIN))
    client = site.client()
    listed = client.get(f"{API}/images", params={"limit": 2}, headers=bearer).json()
    assert listed["total"] == 4 and len(listed["items"]) == 2
    first = listed["items"][0]
    assert (first["job_id"], first["state"], first["reason"]) == (skipped, "skipped", SKIP_REASON)
    assert first["retryable"] is False and first["calling_ae_title"] == "MODALITY"
    assert "patient" not in json.dumps(listed).lower()
    by_day = client.get(
        f"{API}/images", params={"from": "2026-03-10", "to": "2026-03-10"}, headers=bearer
    ).json()
    assert by_day["total"] == 3 and {i["state"] for i in by_day["items"]} == {"failed"}
    for params, message in (
        ({"from": "2026-02-31"}, "no such day"),
        ({"to": "10/03/2026"}, "YYYY-MM-DD"),
        ({"state": "done"}, "failed or skipped"),
    ):
        bad = client.get(f"{API}/images", params=params, headers=bearer)
        assert bad.status_code == 422 and message in bad.json()["detail"], params
    assert client.get(f"{API}/images", params={"limit": 0}, headers=bearer).status_code == 422

    one = client.post(f"{API}/images/retry", json={"ids": [failed[0], skipped]}, headers=bearer)
    assert one.json() == {"queued": [failed[0]]}
    rest = client.post(f"{API}/images/retry", json={"all": True}, headers=bearer)
    assert rest.json() == {"queued": failed[1:]}
    left = client.get(f"{API}/images", headers=bearer).json()
    assert [i["job_id"] for i in left["items"]] == [skipped]
    entries = [e for e in site.audit() if e.action == "jobs.retried"]
    assert [json.loads(e.detail or "")["via"] for e in entries] == ["api", "api"]


def test_an_admin_retries_a_failed_image_on_its_page(site: Site) -> None:
    failed = ended_job(site.sessions, "3.1", state=JobState.FAILED, reason=FAIL_REASON)
    skipped = ended_job(site.sessions, "3.2", state=JobState.SKIPPED, reason=SKIP_REASON)
    browser, csrf = site.browser(site.add_user("admin", UserRole.ADMIN))
    page = browser.get("/admin/images")
    assert page.status_code == 200
    assert FAIL_REASON in page.text and SKIP_REASON in page.text
    assert f'action="/admin/images/{failed}/retry"' in page.text
    assert f'action="/admin/images/{skipped}/retry"' not in page.text  # no retry for a skip
    retried = browser.post(
        f"/admin/images/{failed}/retry", data={"csrf_token": hidden_csrf(page.text)}
    )
    assert retried.status_code == 303 and retried.headers["location"] == "/admin/images?retried=1"
    after = browser.get(retried.headers["location"])
    assert "1 failed image queued again" in after.text
    assert f'data-job="{failed}"' not in after.text and f'data-job="{skipped}"' in after.text
    (entry,) = [e for e in site.audit() if e.action == "jobs.retried"]
    assert (entry.actor, entry.subject) == ("admin", str(failed))
    assert json.loads(entry.detail or "")["via"] == "web"
    nothing = browser.post("/admin/images/retry", data={"csrf_token": csrf})
    assert nothing.headers["location"] == "/admin/images?retried=0"
    bad = browser.get("/admin/images", params={"from": "2026-03-02", "to": "2026-03-01"})
    assert bad.status_code == 422 and "The from date is after the to date." in bad.text
    assert browser.get("/admin/images", params={"state": "<b>"}).status_code == 422
    assert browser.get("/admin/images", params={"retried": "a lot"}).status_code == 422


def test_an_admin_retries_dead_deliveries_on_their_page_and_through_the_api(site: Site) -> None:
    ids = dead_deliveries(site.sessions, "4.1")
    admin = site.add_user("admin", UserRole.ADMIN)
    browser, csrf = site.browser(admin)
    page = browser.get("/admin/deliveries")
    assert page.status_code == 200 and "association rejected" in page.text
    assert "0xA700" in page.text and page.text.count('data-delivery="') == 2
    answer = browser.post(f"/admin/deliveries/{ids[0]}/retry", data={"csrf_token": csrf})
    assert answer.headers["location"] == "/admin/deliveries?retried=1"
    bearer = site.bearer(admin)
    listed = site.client().get(f"{API}/deliveries", headers=bearer).json()
    assert listed["total"] == 1 and listed["items"][0]["delivery_id"] == ids[1]
    assert listed["items"][0]["last_status"] == 0xA700
    rest = site.client().post(f"{API}/deliveries/retry", json={"all": True}, headers=bearer)
    assert rest.json() == {"queued": [ids[1]]}
    vias = [
        json.loads(e.detail or "")["via"] for e in site.audit() if e.action == "deliveries.retried"
    ]
    assert vias == ["web", "api"]


def _trail(site: Site) -> None:
    with writing(site.sessions) as s:
        for i in range(130):
            audit.record(
                s,
                actor="anne" if i % 2 else "=cmd|' /C calc'!A0",
                action="login",
                subject=f"s{i}",
                now=DAY + timedelta(hours=i),
            )


def test_the_audit_page_filters_by_days_pages_and_exports(site: Site) -> None:
    _trail(site)  # 130 entries over 6 days from 2026-03-10 12:00
    browser, _ = site.browser(site.add_user("admin", UserRole.ADMIN))
    everything = browser.get("/admin/audit")
    assert 'id="total">130<' in everything.text and 'id="next-page"' in everything.text
    second = browser.get("/admin/audit", params={"page": 2})
    assert "entries 101 to 130 of" in second.text and 'id="previous-page"' in second.text
    one_day = browser.get("/admin/audit", params={"from": "2026-03-11", "to": "2026-03-11"})
    assert 'id="total">24<' in one_day.text
    assert "from=2026-03-11&amp;to=2026-03-11" in one_day.text  # the export keeps the filter
    by_anne = browser.get("/admin/audit", params={"actor": "anne", "to": "2026-03-10"})
    assert 'id="total">6<' in by_anne.text
    for params, message in (
        ({"from": "2026-13-01"}, "no such day"),
        ({"to": "tomorrow"}, "YYYY-MM-DD"),
        ({"from": "2026-03-12", "to": "2026-03-11"}, "after the to date"),
    ):
        bad = browser.get("/admin/audit", params=params)
        assert bad.status_code == 422 and message in bad.text, params
        assert browser.get("/admin/audit.csv", params=params).status_code == 422

    exported = browser.get("/admin/audit.csv", params={"from": "2026-03-11", "to": "2026-03-11"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 24 and all(r["at"].startswith("2026-03-11") for r in rows)
    assert {r["actor"] for r in rows} == {"anne", "'=cmd|' /C calc'!A0"}
    as_json = browser.get("/admin/audit.json", params={"actor": "anne"}).json()
    assert len(as_json) == 65 and as_json[0]["actor"] == "anne"
    exports = [e for e in site.audit() if e.action == "audit.exported"]
    assert [json.loads(e.detail or "")["format"] for e in exports] == ["csv", "json"]
    assert json.loads(exports[0].detail or "")["rows"] == 24

    api = (
        site.client()
        .get(
            f"{API}/audit",
            params={"action": "audit.", "limit": 1},
            headers=site.bearer(site.user("admin").id),
        )
        .json()
    )
    assert api["total"] == 2 and api["items"][0]["detail"]


def test_ids_too_large_for_the_database_are_refused_not_a_500(site: Site) -> None:
    bearer = site.bearer(site.add_user("admin", UserRole.ADMIN))
    for path in (f"{API}/images/retry", f"{API}/deliveries/retry"):
        for ids in ([2**64], [0], [-1]):
            answer = site.client().post(path, json={"ids": ids}, headers=bearer)
            assert answer.status_code == 422, (path, ids, answer.status_code)
    huge_page = site.client().get(f"{API}/audit", params={"offset": 2**70}, headers=bearer)
    assert huge_page.status_code == 422
    assert site.audit() == []


def test_the_dashboard_counts_what_needs_mending_and_links_to_it(site: Site) -> None:
    ended_job(site.sessions, "6.1", state=JobState.FAILED, reason=FAIL_REASON)
    ended_job(site.sessions, "6.2", state=JobState.SKIPPED, reason=SKIP_REASON)
    ended_job(site.sessions, "6.3", state=JobState.SKIPPED, reason=SKIP_REASON)
    dead_deliveries(site.sessions, "6.4")
    browser, _ = site.browser(site.add_user("admin", UserRole.ADMIN))
    text = browser.get("/admin").text
    assert '<a href="/admin/images?state=failed" id="dash-failed">1 failed image</a>' in text
    assert ">2 skipped</a>" in text and ">2 dead-lettered deliveries</a>" in text
    nav = text.split("<nav>")[1].split("</nav>")[0]
    assert 'href="/admin/images"' in nav and 'href="/admin/deliveries"' in nav
