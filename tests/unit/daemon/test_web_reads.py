"""Reading on the pages and the API: the URGENT confirmation, undo, recently read, badges,
scores at a reader's resolution, the viewer link, the next study and the site's time zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon import audit
from daemon.db.models import StudyRead, UserRole
from daemon.db.session import SessionFactory, writing
from tests.daemon_harness import record_scored
from tests.web_fixtures import Site, hidden_csrf

API = "/api/v1"
VIEWER = "https://pacs.example/viewer?StudyInstanceUIDs={study_instance_uid}&x=1"


@pytest.fixture
def site(tmp_path: Path, sessions: SessionFactory) -> Site:
    return Site.build(tmp_path, sessions, viewer_url_template=VIEWER, time_zone="America/New_York")


@dataclass(frozen=True)
class People:
    admin: int
    reader: int
    other: int


@pytest.fixture
def people(site: Site) -> People:
    return People(
        admin=site.add_user("admin", UserRole.ADMIN),
        reader=site.add_user("reader", UserRole.RADIOLOGIST),
        other=site.add_user("other", UserRole.RADIOLOGIST),
    )


def _open(site: Site, people: People) -> list[str]:
    items = site.client().get(f"{API}/worklist", headers=site.bearer(people.reader)).json()["items"]
    return [i["study_instance_uid"] for i in items]


def _row(html: str, uid: str) -> str:
    start = html.index(f'data-study="{uid}"')
    return html[start : html.index("</tr>", start)]


def test_an_urgent_study_is_not_dismissed_by_one_click(site: Site, people: People) -> None:
    urgent = record_scored(site.sessions, "1.1", logit=3.0, score=0.97, above=True)
    routine = record_scored(site.sessions, "1.2", logit=-3.0, score=0.05, above=False)
    browser, csrf = site.browser(people.reader)
    page = browser.get(f"/studies/{urgent}").text
    assert 'id="mark-read-form" data-confirm=' in page
    assert 'name="confirm_urgent" value=""' in page

    refused = browser.post(f"/studies/{urgent}/read", data={"csrf_token": csrf})
    assert refused.status_code == 409
    assert "stands in the top band" in refused.text and "It was not marked read" in refused.text
    assert 'name="confirm_urgent" value="yes"' in refused.text
    assert hidden_csrf(refused.text) == csrf
    assert urgent in _open(site, people)

    done = browser.post(
        f"/studies/{urgent}/read", data={"csrf_token": csrf, "confirm_urgent": "yes"}
    )
    assert done.status_code == 303 and done.headers["location"] == f"/worklist?read={urgent}"
    assert _open(site, people) == [routine]
    # A routine study needs no confirmation.
    assert "data-confirm" not in browser.get(f"/studies/{routine}").text
    assert browser.post(f"/studies/{routine}/read", data={"csrf_token": csrf}).status_code == 303

    bearer = site.bearer(people.reader)
    api_urgent = record_scored(site.sessions, "1.3", logit=3.0, score=0.98, above=True)
    answer = site.client().post(f"{API}/studies/{api_urgent}/read", headers=bearer)
    assert answer.status_code == 409 and "confirm" in answer.json()["detail"]
    answer = site.client().post(
        f"{API}/studies/{api_urgent}/read", params={"confirm_urgent": "true"}, headers=bearer
    )
    assert answer.status_code == 200 and answer.json()["newly_read"] is True


def test_a_read_is_undone_from_the_worklist_the_study_page_and_recently_read(
    site: Site, people: People
) -> None:
    uid = record_scored(site.sessions, "1.1", logit=3.0, score=0.97, above=True)
    browser, csrf = site.browser(people.reader)
    browser.post(f"/studies/{uid}/read", data={"csrf_token": csrf, "confirm_urgent": "yes"})

    worklist = browser.get(f"/worklist?read={uid}").text
    assert 'id="just-read"' in worklist and f'action="/studies/{uid}/undo-read"' in worklist
    # Another user's page does not offer it; nor does a UID that is not a read of theirs.
    others, _ = site.browser(people.other)
    assert 'id="just-read"' not in others.get(f"/worklist?read={uid}").text
    assert 'id="just-read"' not in browser.get("/worklist?read=%3Cb%3Eforged").text

    study = browser.get(f"/studies/{uid}").text
    assert 'id="undo-read"' in study
    assert 'id="undo-read"' not in others.get(f"/studies/{uid}").text

    recent = browser.get("/reads").text
    mine = recent[recent.index('id="my-reads"') : recent.index('id="all-reads"')]
    assert uid in mine and "undo-read" in mine
    everyone = others.get("/reads").text
    assert uid in everyone[everyone.index('id="all-reads"') :]
    assert "undo-read" not in everyone  # not theirs to undo

    refused = others.post(
        f"/studies/{uid}/undo-read", data={"csrf_token": hidden_csrf(everyone), "back": "reads"}
    )
    assert refused.status_code == 403 and "reader read study" in refused.text
    assert uid not in _open(site, people)
    assert browser.post(f"/studies/{uid}/undo-read", data={"back": "reads"}).status_code == 403

    undone = browser.post(f"/studies/{uid}/undo-read", data={"csrf_token": csrf, "back": "reads"})
    assert undone.status_code == 303 and undone.headers["location"].startswith("/reads?")
    assert 'id="read-undone"' in browser.get(undone.headers["location"]).text
    assert uid in _open(site, people)
    again = browser.post(f"/studies/{uid}/undo-read", data={"csrf_token": csrf})
    assert again.status_code == 409 and "not marked read" in again.text
    forged = browser.post("/studies/Call%20the%20helpdesk/undo-read", data={"csrf_token": csrf})
    assert forged.status_code == 409 and "helpdesk" not in forged.text
    actions = [(e.actor, e.action, e.subject) for e in site.audit()]
    assert ("reader", "study.read_undone", uid) in actions


def test_the_api_undoes_a_read_within_the_window_for_its_reader_or_an_admin(
    site: Site, people: People
) -> None:
    uid = record_scored(site.sessions, "1.1", logit=-3.0, score=0.05, above=False)
    old = record_scored(site.sessions, "1.2", logit=-3.0, score=0.05, above=False)
    reader, other, admin = (site.bearer(p) for p in (people.reader, people.other, people.admin))
    client = site.client()
    client.put(f"{API}/studies/{uid}/feedback", json={"label": "no_pneumonia"}, headers=reader)
    with writing(site.sessions) as s:
        s.add(
            StudyRead(
                study_instance_uid=old,
                read_by="reader",
                read_at=datetime.now(UTC) - timedelta(minutes=11),
                via="explicit",
            )
        )
    listed = client.get(f"{API}/reads", headers=reader).json()
    assert [(r["study_instance_uid"], r["undoable"]) for r in listed] == [
        (uid, True),
        (old, False),
    ]
    assert listed[0]["via"] == "feedback" and listed[0]["feedback_label"] == "no_pneumonia"
    assert client.delete(f"{API}/studies/{uid}/read", headers=other).status_code == 403
    late = client.delete(f"{API}/studies/{old}/read", headers=admin)
    assert late.status_code == 409 and "10 minutes" in late.json()["detail"]
    undone = client.delete(f"{API}/studies/{uid}/read", headers=admin)
    assert undone.status_code == 200
    assert undone.json() == {
        "study_instance_uid": uid,
        "read_by": "reader",
        "via": "feedback",
        "feedback_removed": True,
    }
    assert client.get(f"{API}/studies/{uid}", headers=reader).json()["feedback_label"] is None
    assert uid in _open(site, people)
    assert client.get(f"{API}/reads", params={"hours": "1e9"}, headers=reader).status_code == 422


def test_rows_say_why_they_stand_where_they_do(site: Site, people: People) -> None:
    long_ago = datetime.now(UTC) - timedelta(hours=5)
    overdue_low = record_scored(
        site.sessions, "1.1", logit=-9.0, score=0.0, above=False, when=long_ago
    )
    urgent = record_scored(site.sessions, "1.2", logit=9.0, score=0.99999999, above=True)
    sender = record_scored(
        site.sessions, "1.3", logit=-2.0, score=0.1, above=False, requested_priority="HIGH"
    )
    items = site.client().get(f"{API}/worklist", headers=site.bearer(people.reader)).json()["items"]
    by_uid = {i["study_instance_uid"]: i for i in items}
    assert [i["study_instance_uid"] for i in items] == [overdue_low, urgent, sender]
    assert by_uid[overdue_low]["band"] == "ROUTINE"  # not URGENT: its score is 0
    assert by_uid[overdue_low]["reasons"] == ["overdue"]
    assert by_uid[urgent]["reasons"] == ["urgent_by_score"]
    assert by_uid[sender]["reasons"] == ["sender_high"] and by_uid[sender]["band"] == "ROUTINE"

    browser, _ = site.browser(people.reader)
    html = browser.get("/worklist/rows").text
    low = _row(html, overdue_low)
    assert "overdue (waiting &gt; 120 min)" in low
    assert "URGENT" not in low and "urgent by score" not in low
    assert re.search(r'data-score="0.0"[^>]*>&lt;1 %<span class="muted"> / 50 %', low)
    top = _row(html, urgent)
    shown = re.sub(r'title="[^"]*"', "", top)  # the exact digits are in the tooltip only
    assert "urgent by score" in shown and "&gt;99 %" in shown and "99.9999" not in shown
    assert 'data-reason="sender_high"' in _row(html, sender)

    study = browser.get(f"/studies/{overdue_low}").text
    place = study[study.index('id="study-place"') :]
    place = place[: place.index("</p>")]
    assert "overdue (waiting &gt; 120 min)" in place and "urgent by score" not in place
    assert re.search(r'id="study-score"[^>]*>&lt;1 %<', study)


def test_viewer_link_next_study_and_times_in_the_site_zone(site: Site, people: People) -> None:
    arrived = datetime(2026, 7, 1, 16, 30, tzinfo=UTC)
    first = record_scored(
        site.sessions, "1.1", logit=3.0, score=0.97, above=True, study_uid="1.2.3&4", when=arrived
    )
    second = record_scored(site.sessions, "1.2", logit=-3.0, score=0.05, above=False)
    browser, _ = site.browser(people.reader)
    html = browser.get("/worklist").text
    row = _row(html, first.replace("&", "&amp;"))
    quoted = "https://pacs.example/viewer?StudyInstanceUIDs=1.2.3%264&amp;x=1"
    assert (
        f'<a class="viewer-link" href="{quoted}" target="_blank" rel="noopener noreferrer">' in row
    )
    assert "Arrived (America/New_York)" in html
    assert "2026-07-01 12:30:00" in row  # 16:30 UTC is 12:30 in New York in July

    study = browser.get("/studies/1.2.3%264").text
    assert f'href="{quoted}" id="viewer-link"' in study
    assert 'href="/studies/1.2.3%264/next" id="next-study"' in study
    assert "Received (America/New_York)" in study and "2026-07-01 12:30:00" in study
    assert browser.get("/studies/1.2.3%264/next").headers["location"] == f"/studies/{second}"
    assert browser.get(f"/studies/{second}/next").headers["location"] == "/worklist"
    browser.post(f"/studies/{second}/read", data={"csrf_token": hidden_csrf(study)})
    # Read: the next study is the first open one.
    assert browser.get(f"/studies/{second}/next").headers["location"] == "/studies/1.2.3%264"
    items = site.client().get(f"{API}/worklist", headers=site.bearer(people.reader)).json()["items"]
    assert items[0]["viewer_url"] == "https://pacs.example/viewer?StudyInstanceUIDs=1.2.3%264&x=1"


def test_without_a_template_there_is_no_viewer_link(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    plain = Site.build(tmp_path, sessions)
    reader = plain.add_user("reader", UserRole.RADIOLOGIST)
    uid = record_scored(plain.sessions, "1.1", logit=3.0, score=0.97, above=True)
    browser, _ = plain.browser(reader)
    assert "viewer-link" not in browser.get("/worklist").text
    assert "viewer-link" not in browser.get(f"/studies/{uid}").text
    assert "Arrived (UTC)" in browser.get("/worklist").text


def test_recently_read_shows_the_newest_fifty_of_each_list(site: Site, people: People) -> None:
    now = datetime.now(UTC)
    with writing(site.sessions) as session:
        for n in range(55):
            uid = f"5.{n}"
            record_scored(site.sessions, uid, logit=-3.0, score=0.05, above=False)
            session.add(
                StudyRead(
                    study_instance_uid=uid,
                    read_by="reader",
                    read_at=now - timedelta(minutes=n),
                    via="explicit",
                )
            )
    browser, _ = site.browser(people.reader)
    page = browser.get("/reads").text
    mine = page[page.index('id="my-reads"') : page.index('id="all-reads"')]
    assert mine.count("<tr data-study=") == 50
    assert 'data-study="5.0"' in mine and 'data-study="5.54"' not in mine
    assert "The newest 50 of 55 are shown." in page


def test_every_page_gives_times_in_the_site_zone(site: Site, people: People) -> None:
    """Not only the worklist: the admin pages' times and headings follow web.time_zone."""
    with writing(site.sessions) as session:
        audit.record(session, actor="admin", action="test.marker", subject="zone")
    browser, _ = site.browser(people.admin)
    for path in ("/admin/audit", "/admin/users", "/admin/images", "/admin/deliveries"):
        page = browser.get(path).text
        assert "(America/New_York)</th>" in page, path
        assert "(UTC)" not in page, path
    trail = browser.get("/admin/audit").text
    stamp = re.search(r'<td class="when">(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)</td>', trail)
    assert stamp is not None
    shown = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")
    utc_now = datetime.now(UTC).replace(tzinfo=None)
    # New York is 4 or 5 hours behind UTC; the entry was written moments ago.
    assert timedelta(hours=3, minutes=55) < utc_now - shown < timedelta(hours=5, minutes=5)
