"""Bad stored data and odd requests get typed answers on the study pages, never a 500."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from daemon.db.models import Result, UserRole
from daemon.db.session import SessionFactory, writing
from daemon.heatmaps import encode_cam
from tests.daemon_harness import record_scored
from tests.web_fixtures import Site


def _site(tmp_path: Path, sessions: SessionFactory) -> tuple[Site, TestClient]:
    site = Site.build(tmp_path, sessions)
    reader = site.add_user("reader", UserRole.RADIOLOGIST)
    client, _ = site.browser(reader)
    return site, client


def test_unreadable_images_and_maps_are_typed_answers(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    import numpy as np

    site, client = _site(tmp_path, sessions)
    spool = site.settings.storage.spool
    (spool / "x").mkdir(parents=True)
    (spool / "x" / "garbage.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64)
    uid = record_scored(
        sessions,
        "1.2.9",
        logit=0.1,
        score=0.52,
        above=True,
        spool_name="x/garbage.dcm",
        cam=encode_cam(np.full((2, 2), 0.5)),
    )
    with writing(sessions) as session:
        result_id = session.query(Result.id).scalar()
    base = f"/studies/{uid}/images/{result_id}"
    assert client.get(f"{base}/source.png").status_code == 422  # corrupt, not a 500
    assert client.get(f"{base}/heatmap.png").status_code == 200
    with writing(sessions) as session:
        session.execute(update(Result).values(cam="[[2.0]]"))  # out of range: unusable
    assert client.get(f"{base}/heatmap.png").status_code == 404
    (spool / "x" / "garbage.dcm").unlink()
    assert client.get(f"{base}/source.png").status_code == 410  # purged by retention


def test_ids_beyond_the_database_range_are_refused(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    _, client = _site(tmp_path, sessions)
    huge = 2**70
    assert client.get(f"/studies/1.2/images/{huge}/source.png").status_code == 422
    assert client.get(f"/analyses/{huge}").status_code == 422


def test_study_uids_are_quoted_in_links(tmp_path: Path, sessions: SessionFactory) -> None:
    _, client = _site(tmp_path, sessions)
    odd = record_scored(sessions, "1.2.10", logit=0.1, score=0.52, above=True, study_uid="1.2?3#4")
    html = client.get("/worklist").text
    (href,) = re.findall(r'href="(/studies/[^"]+)"', html)
    assert href == "/studies/1.2%3F3%234"
    page = client.get(href)
    assert page.status_code == 200 and odd in page.text


def test_analyses_beyond_the_free_slots_wait_then_get_503(
    tmp_path: Path, sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daemon.web.api import analyses as api

    site = Site.build(tmp_path, sessions)
    reader = site.add_user("reader", UserRole.RADIOLOGIST)
    monkeypatch.setattr(api, "ANALYSIS_WAIT_SECONDS", 0.05)
    slots = site.context.analysis_slots
    taken = [slots.acquire(blocking=False) for _ in range(2)]
    assert taken == [True, True] and not slots.acquire(blocking=False)
    try:
        answer = site.client().post(
            "/api/v1/analyses?filename=x.png", content=b"\x89PNG", headers=site.bearer(reader)
        )
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "10"
    finally:
        slots.release()
        slots.release()
    answer = site.client().post(
        "/api/v1/analyses?filename=x.png", content=b"", headers=site.bearer(reader)
    )
    assert answer.status_code == 422  # a free slot: the (empty) upload itself is judged


def test_the_api_reference_page_is_rendered_from_the_openapi_document(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site, client = _site(tmp_path, sessions)
    html = client.get("/api").text
    spec = site.app.openapi()
    for path, item in spec["paths"].items():
        for method in item:
            assert f'<span class="method">{method.upper()}</span> <code>{path}</code>' in html
    # A schema's fields, with their types, as a reader needs them.
    assert 'id="schema-WorklistItemOut"' in html
    assert "<code>waiting_seconds</code></td><td>integer</td>" in html
    assert site.client().get("/api").status_code == 303  # signed-out: to the sign-in page
