"""Not-assessed studies on the web pages and in the API: the badge, the place, the study."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from daemon.db.models import UserRole
from daemon.db.session import SessionFactory
from daemon.heatmaps import encode_cam
from daemon.web import imaging
from tests.daemon_harness import not_assessable_detail, record_scored
from tests.scorers import NOISE_DETAIL, NotAssessableScorer, active_model, tiny_net
from tests.web_fixtures import Site, hidden_csrf

API = "/api/v1"


@pytest.fixture
def site(tmp_path: Path, sessions: SessionFactory) -> Site:
    return Site.build(tmp_path, sessions)


@pytest.fixture
def reader(site: Site) -> int:
    return site.add_user("reader", UserRole.RADIOLOGIST)


def test_the_worklist_shows_not_assessed_before_routine_with_its_badge(
    site: Site, reader: int
) -> None:
    routine = record_scored(site.sessions, "1.2.1", logit=1.0, score=0.6, above=False)
    unjudged = record_scored(
        site.sessions, "1.2.2", logit=4.0, score=0.98, above=False, not_assessable="noise"
    )
    # The default bundle's governed threshold is high: a score of 1.0 is URGENT.
    urgent = record_scored(site.sessions, "1.2.3", logit=9.0, score=1.0, above=True)
    items = site.client().get(f"{API}/worklist", headers=site.bearer(reader)).json()["items"]
    assert [i["study_instance_uid"] for i in items] == [urgent, unjudged, routine]
    middle = items[1]
    assert middle["not_assessed"] is True
    assert (middle["band"], middle["score"], middle["above_threshold"]) == (None, None, None)
    assert middle["not_assessed_images"] == {
        "reason": "noise",
        "detail": not_assessable_detail("noise"),
        "images": 1,
    }
    assert items[2]["not_assessed"] is False and items[2]["not_assessed_images"] is None
    assert items[2]["band"] == "ROUTINE"

    browser, _ = site.browser(reader)
    for path in ("/worklist", "/worklist/rows"):
        html = browser.get(path).text
        assert re.findall(r'data-study="([^"]+)"', html) == [urgent, unjudged, routine], path
        row = html[html.index(f'data-study="{unjudged}"') :]
        row = row[: row.index("</tr>")]
        assert 'data-not-assessed="noise"' in row and "NOT ASSESSED: noise" in row
        assert not_assessable_detail("noise") in row
        assert "data-score" not in row and "98.0 %" not in row  # its audit score is not shown


def test_the_study_page_and_api_give_the_reason_not_a_score_and_take_feedback(
    site: Site, reader: int
) -> None:
    uid = record_scored(
        site.sessions, "1.2.1", logit=4.0, score=0.98, above=False, not_assessable="inverted"
    )
    bearer = site.bearer(reader)
    study = site.client().get(f"{API}/studies/{uid}", headers=bearer).json()
    (image,) = study["images"]
    assert image["assessable"] is False
    assert (image["not_assessable_reason"], image["not_assessable_detail"]) == (
        "inverted",
        not_assessable_detail("inverted"),
    )
    for hidden in ("score", "above_threshold", "band"):
        assert image[hidden] is None, hidden
    assert image["has_heatmap"] is False and image["result_id"] is not None

    browser, _ = site.browser(reader)
    page = browser.get(f"/studies/{uid}").text
    assert 'id="not-assessed"' in page and "NOT ASSESSED: inverted" in page
    assert not_assessable_detail("inverted") in page
    assert 'id="study-score"' not in page and "98.0 %" not in page
    assert 'id="feedback-form"' in page
    given = browser.post(
        f"/studies/{uid}/feedback", data={"csrf_token": hidden_csrf(page), "label": "pneumonia"}
    )
    assert given.status_code == 303
    again = site.client().get(f"{API}/studies/{uid}", headers=bearer).json()
    assert again["feedback_label"] == "pneumonia" and again["read_by"] == "reader"
    assert site.client().get(f"{API}/worklist", headers=bearer).json()["items"] == []


def test_a_study_with_a_scored_and_a_not_assessed_image_shows_both(site: Site, reader: int) -> None:
    cam = encode_cam(np.eye(3, dtype=np.float32))
    uid = record_scored(
        site.sessions, "1.2.1", logit=1.0, score=0.6, above=False, cam=cam, quarter_turns=3
    )
    record_scored(
        site.sessions,
        "1.2.2",
        logit=5.0,
        score=0.99,
        above=False,
        study_uid=uid,
        not_assessable="orientation",
    )
    study = site.client().get(f"{API}/studies/{uid}", headers=site.bearer(reader)).json()
    scored, unjudged = study["images"]  # the scored image first
    assert (scored["assessable"], scored["score"], scored["band"]) == (True, 0.6, "ROUTINE")
    assert scored["quarter_turns"] == 3 and scored["has_heatmap"] is True
    assert (unjudged["assessable"], unjudged["score"]) == (False, None)

    browser, _ = site.browser(reader)
    page = browser.get(f"/studies/{uid}").text
    assert 'id="study-score"' in page and "60.0 %" in page
    assert "Scored after turning upright by 3 x 90 degrees" in page
    assert "NOT ASSESSED: orientation" in page and not_assessable_detail("orientation") in page
    assert "99.0 %" not in page
    assert page.count("/heatmap.png") == 1  # the scored image's only


def test_the_dashboard_and_feedback_report_show_the_not_assessed_rate(
    site: Site, reader: int
) -> None:
    admin = site.add_user("admin", UserRole.ADMIN)
    bearer = site.bearer(reader)
    client = site.client()
    served = site.context.serving.current().model_version
    scored = record_scored(
        site.sessions, "1.2.1", logit=2.0, score=0.9, above=True, model_version=served
    )
    unjudged = record_scored(
        site.sessions,
        "1.2.2",
        logit=-6.0,
        score=0.01,
        above=False,
        model_version=served,
        not_assessable="featureless",
    )
    record_scored(site.sessions, "1.2.3", logit=0.0, score=0.5, above=False, model_version=served)
    for uid in (scored, unjudged):
        answer = client.put(
            f"{API}/studies/{uid}/feedback", json={"label": "pneumonia"}, headers=bearer
        )
        assert answer.status_code == 200
    overall = client.get(f"{API}/report", headers=site.bearer(admin)).json()[0]
    assert (overall["feedback"], overall["labelled"], overall["not_assessable"]) == (2, 1, 1)
    assert (overall["tp"], overall["fn"]) == (1, 0)  # the not-assessed pneumonia is no FN
    exported = client.get(f"{API}/feedback", headers=site.bearer(admin)).json()
    assert [(r["assessable"], r["not_assessable_reason"]) for r in exported] == [
        (True, ""),
        (False, "featureless"),
    ]

    browser, _ = site.browser(admin)
    dashboard = browser.get("/admin").text
    card = dashboard[dashboard.index('id="dash-not-assessed"') :]
    card = card[: card.index("</div>")]
    assert "33.3 %" in card and "1 of 3 studies" in card and "featureless 1" in card
    page = browser.get("/admin/feedback").text
    line = page[page.index('id="not-assessed-rate"') :]
    line = line[: line.index("</p>")]
    assert "<strong>1</strong> of 3 studies (33.3 %)" in line and "featureless 1" in line
    assert 'data-field="not_assessable">1<' in page
    assert "NOT ASSESSED: featureless" in page  # the latest feedback shows no score for it


def test_an_upload_found_not_assessable_is_refused_with_its_reason_and_no_heatmap() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 80), dtype=np.uint8)).save(
        buffer, format="PNG"
    )
    with pytest.raises(imaging.NotAssessedUploadError) as refused:
        imaging.analyse_upload(
            buffer.getvalue(),
            filename="noise.png",
            model=active_model(tiny_net(), NotAssessableScorer),
            max_pixels=10**6,
            max_bytes=10**6,
        )
    assert imaging.http_status(refused.value) == 422
    assert f"did not assess this image (noise): {NOISE_DETAIL}" in str(refused.value)
