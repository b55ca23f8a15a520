"""The worklist's identifying columns, filters and paging on the page and the API, and
identified export: admins only, audited (the real app, real SQLite)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.db.models import FeedbackLabel, Study, UserRole
from daemon.db.session import SessionFactory, writing
from daemon.feedback import record_feedback
from tests.daemon_harness import record_scored
from tests.web_fixtures import Site

API = "/api/v1"
NAME = "Quillfeather^Ysolde"


@pytest.fixture
def site(tmp_path: Path, sessions: SessionFactory) -> Site:
    return Site.build(tmp_path, sessions, worklist_rows=10)


def _studies(sessions: SessionFactory, count: int) -> list[str]:
    uids = []
    for i in range(count):
        uid = record_scored(sessions, f"1.{i}", logit=i / 10, score=0.3 + i / 100, above=False)
        with writing(sessions) as s:
            study = s.scalars(select(Study).where(Study.study_instance_uid == uid)).one()
            study.patient_name, study.patient_id = f"{NAME}{i}", f"PID{i:03d}"
            study.accession_number, study.study_date = f"ACC{i:03d}", "20261130"
            study.modality = "DX" if i % 2 else "CR"
        uids.append(uid)
    return uids[::-1]  # reading order: highest score first


def test_the_worklist_shows_who_and_filters_by_accession_across_pages(site: Site) -> None:
    order = _studies(site.sessions, 12)
    reader, _ = site.browser(site.add_user("reader", UserRole.RADIOLOGIST))
    page = reader.get("/worklist").text
    assert "Quillfeather, Ysolde11" in page and "PID011" in page and "ACC011" in page
    assert "2026-11-30" in page and 'id="worklist-filters"' in page
    assert re.findall(r'data-study="([^"]+)"', page) == order[:10]
    # The filter form's GET parameters are kept by the refresh URL and the paging links.
    filtered = reader.get("/worklist?modality=DX&q=ACC0").text
    assert re.findall(r'data-study="([^"]+)"', filtered) == [u for u in order if int(u[3:]) % 2]
    assert 'data-refresh-url="/worklist/rows?modality=DX&amp;q=ACC0&amp;page=1"' in filtered
    assert "Rows 1–6 of 6 (filtered)." in filtered
    second = reader.get("/worklist/rows?q=ACC&page=2").text
    assert re.findall(r'data-study="([^"]+)"', second) == order[10:]
    assert 'href="/worklist?q=ACC&amp;page=1"' in second
    # Bad filters are said on the page, never a 500.
    for query in ("from=yesterday", "waiting=-5", "band=SOON", "page=0", "page=" + "9" * 5000):
        answer = reader.get(f"/worklist?{query}")
        assert answer.status_code == 400, query
        assert 'id="worklist-filter-error"' in answer.text, query


def test_the_api_pages_with_a_total_and_filters(site: Site) -> None:
    order = _studies(site.sessions, 12)
    bearer = site.bearer(site.add_user("reader", UserRole.RADIOLOGIST))
    body = site.client().get(f"{API}/worklist?per_page=5&page=3", headers=bearer).json()
    assert [i["study_instance_uid"] for i in body["items"]] == order[10:]
    assert (body["total"], body["page"], body["pages"], body["per_page"]) == (12, 3, 3, 5)
    first = body["items"][0]
    assert (first["patient_name"], first["accession_number"], first["study_date"]) == (
        "Quillfeather, Ysolde1",
        "ACC001",
        "2026-11-30",
    )
    found = site.client().get(f"{API}/worklist?q=ACC00&modality=CR", headers=bearer).json()
    assert [i["accession_number"] for i in found["items"]] == [
        "ACC008",
        "ACC006",
        "ACC004",
        "ACC002",
        "ACC000",
    ]
    assert found["total"] == 5
    # The default page is 100: 12 fit, and the total says so.
    whole = site.client().get(f"{API}/worklist", headers=bearer).json()
    assert (len(whole["items"]), whole["total"]) == (12, 12)


def test_identified_export_is_for_admins_only_and_audited(site: Site) -> None:
    order = _studies(site.sessions, 3)
    with writing(site.sessions) as s:
        for uid in order:
            record_feedback(s, study_instance_uid=uid, label=FeedbackLabel.PNEUMONIA, user="dr.a")
    admin_id = site.add_user("admin", UserRole.ADMIN)
    reader_id = site.add_user("reader", UserRole.RADIOLOGIST)
    reader, _ = site.browser(reader_id)
    admin, _ = site.browser(admin_id)
    assert reader.get("/admin/feedback.csv?identified=1").status_code == 403
    refused = site.client().get(f"{API}/feedback?identified=true", headers=site.bearer(reader_id))
    assert refused.status_code == 403
    assert not any("identified" in e.action for e in site.audit())

    plain = admin.get("/admin/feedback.csv").text
    assert NAME not in plain and "patient_name" not in plain and "ACC00" not in plain
    plain_json = site.client().get(f"{API}/feedback", headers=site.bearer(admin_id)).json()
    assert all("patient_name" not in row for row in plain_json) and len(plain_json) == 3
    assert not any("identified" in e.action for e in site.audit())

    rows = list(csv.DictReader(io.StringIO(admin.get("/admin/feedback.csv?identified=1").text)))
    assert {r["patient_name"] for r in rows} == {f"{NAME}{i}" for i in range(3)}
    assert {r["accession_number"] for r in rows} == {"ACC000", "ACC001", "ACC002"}
    api_rows = (
        site.client().get(f"{API}/feedback?identified=true", headers=site.bearer(admin_id)).json()
    )
    assert {r["patient_id"] for r in api_rows} == {"PID000", "PID001", "PID002"}
    identified = [e for e in site.audit() if e.action == "feedback.exported.identified"]
    assert [e.actor for e in identified] == ["admin", "admin"]


def test_paged_rows_carry_reasons_the_score_band_and_the_accession_viewer_link(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    """The study table's rows keep the reading branch's badges, score band and viewer link
    (by accession), and next study walks the paged order."""
    site = Site.build(
        tmp_path,
        sessions,
        worklist_rows=10,
        time_zone="America/New_York",
        viewer_url_template="https://pacs.example/v?acc={accession_number}",
    )
    order = _studies(site.sessions, 3)  # routine scores, with accession numbers
    late = datetime.now(UTC) - timedelta(hours=5)
    overdue = record_scored(site.sessions, "9.1", logit=-4.0, score=0.01, above=False, when=late)
    urgent = record_scored(site.sessions, "9.2", logit=4.0, score=0.999, above=True)
    reader_id = site.add_user("reader", UserRole.RADIOLOGIST)
    reader, _ = site.browser(reader_id)
    html = reader.get("/worklist").text
    assert re.findall(r'data-study="([^"]+)"', html) == [overdue, urgent, *order]
    assert "Arrived (America/New_York)" in html
    row = html[html.index(f'data-study="{overdue}"') :]
    row = row[: row.index("</tr>")]
    # Overdue with a low score: its score's band, badged overdue, not urgent by score.
    assert 'title="the band of the score">ROUTINE<' in row and 'data-reason="overdue"' in row
    assert "urgent_by_score" not in row and "viewer-link" not in row  # no accession number
    row = html[html.index(f'data-study="{order[0]}"') :]
    assert 'href="https://pacs.example/v?acc=ACC002"' in row[: row.index("</tr>")]

    items = site.client().get(f"{API}/worklist", headers=site.bearer(reader_id)).json()["items"]
    assert [i["reasons"] for i in items[:3]] == [["overdue"], ["urgent_by_score"], []]
    assert [i["band"] for i in items[:2]] == ["ROUTINE", "URGENT"]
    assert items[2]["viewer_url"] == "https://pacs.example/v?acc=ACC002"
    assert items[0]["viewer_url"] is None

    study = reader.get(f"/studies/{order[1]}").text
    assert 'href="https://pacs.example/v?acc=ACC001" id="viewer-link"' in study
    walked = [reader.get(f"/studies/{uid}/next").headers["location"] for uid in order]
    assert walked == [f"/studies/{order[1]}", f"/studies/{order[2]}", "/worklist"]
    assert reader.get(f"/studies/{overdue}/next").headers["location"] == f"/studies/{urgent}"
