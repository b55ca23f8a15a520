"""The calibration page and API enforce the guardrails (issue 14, items 1 and 8).

A version failing them shows its reasons and no activation form; a passing one shows
how many recent studies would change band, and activation needs that number typed in,
checked again on the server; the API takes the same number. The success banner is one
of a fixed set of sentences: nothing from the URL is shown as it came.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from daemon.db.models import UserRole
from daemon.db.session import SessionFactory
from tests.calibration_cases import facts, stored_version
from tests.daemon_harness import record_scored
from tests.web_fixtures import Site

API = "/api/v1"
PLATT_IDENTITY = {"name": "platt", "a": 1.0, "b": 0.0}


@pytest.fixture
def site(tmp_path: Path, sessions: SessionFactory) -> Site:
    return Site.build(tmp_path, sessions)


def _versions(site: Site) -> str:
    """A refused version 2 (threshold 1.0) and a passing version 3 that changes 2 studies."""
    model = site.context.serving.current().model_version
    stored_version(
        site.sessions,
        version=2,
        model_version=model,
        calibrator=PLATT_IDENTITY,
        threshold=1.0,
        report={"guardrail_facts": facts(1.0)},
    )
    stored_version(
        site.sessions, version=3, model_version=model, calibrator=PLATT_IDENTITY, threshold=0.5
    )
    # Scored ROUTINE at a higher threshold, URGENT under v3: 2 raised; one stays URGENT.
    for uid, logit, above in (("1", 2.0, False), ("2", 1.0, False), ("3", 3.0, True)):
        record_scored(
            site.sessions, f"5.{uid}", logit=logit, score=0.5, above=above, model_version=model
        )
    return model


def test_an_arbitrary_banner_text_is_never_shown(site: Site) -> None:
    admin, _ = site.browser(site.add_user("admin", UserRole.ADMIN))
    planted = "Call 555-0100 now: calibration verified by IT"
    for query in (
        {"message": planted},
        {"done": planted},
        {"done": "fitted", "version": planted},
        {"done": "activated", "version": "-1"},
    ):
        page = admin.get("/admin/calibration", params=query)
        assert page.status_code == 200
        assert planted not in page.text and "calibration-message" not in page.text, query
    page = admin.get("/admin/calibration", params={"done": "fitted", "version": "3"}).text
    banner = re.search(r'id="calibration-message">([^<]*)<', page)
    assert banner is not None
    assert banner.group(1) == "Version 3 fitted; it is pending until activated."


def test_the_review_page_refuses_or_previews_and_activation_checks_the_count(
    site: Site,
) -> None:
    _versions(site)
    admin, csrf = site.browser(site.add_user("admin", UserRole.ADMIN))
    refused = admin.get("/admin/calibration/2/review").text
    assert "at an end of the 0-1 score scale" in refused and "activate-form" not in refused
    # Posted anyway (a forged or stale form): refused by the service, not by the page.
    answer = admin.post(
        "/admin/calibration/2/activate", data={"csrf_token": csrf, "confirm_changes": "0"}
    )
    assert answer.status_code == 422 and "at an end of the 0-1 score scale" in answer.text

    review = admin.get("/admin/calibration/3/review").text
    shown = re.search(r'id="preview-changed">(\d+)<', review)
    assert shown is not None and shown.group(1) == "2"
    assert 'id="preview-raised">2<' in review and 'id="preview-lowered">0<' in review
    for wrong, says in (
        ("", "type the number"),
        ("1", "but 1 was confirmed"),
        ("two", "type the number"),
        ("99999999999", "but 99999999999 was"),
    ):
        answer = admin.post(
            "/admin/calibration/3/activate", data={"csrf_token": csrf, "confirm_changes": wrong}
        )
        assert answer.status_code == 422 and says in answer.text, wrong
    assert not any(e.action == "calibration.activated" for e in site.audit())

    answer = admin.post(
        "/admin/calibration/3/activate", data={"csrf_token": csrf, "confirm_changes": "2"}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/calibration?done=activated&version=3"
    page = admin.get(answer.headers["location"]).text
    assert "Version 3 is in use for the next study scored." in page
    (entry,) = [e for e in site.audit() if e.action == "calibration.activated"]
    assert entry.actor == "admin" and entry.subject == "v3"
    assert json.loads(entry.detail or "{}")["preview"]["changed"] == 2
    audit_page = admin.get("/admin/audit").text
    assert "calibration.activated" in audit_page

    # The way back is one click (never held), and audited with what it changes.
    answer = admin.post("/admin/calibration/deactivate", data={"csrf_token": csrf})
    assert answer.headers["location"] == "/admin/calibration?done=bundle"
    (back,) = [e for e in site.audit() if e.action == "calibration.deactivated"]
    detail = json.loads(back.detail or "{}")
    assert (back.actor, detail["previous"], detail["version"]) == ("admin", 3, "bundle")
    assert detail["preview"]["studies"] == 3
    assert (
        detail["preview"]["changed"] == detail["preview"]["raised"] + detail["preview"]["lowered"]
    )


def test_the_api_reviews_and_activates_with_the_same_confirmation(site: Site) -> None:
    _versions(site)
    bearer = site.bearer(site.add_user("admin", UserRole.ADMIN))
    refused = site.client().get(f"{API}/calibrations/2/review", headers=bearer).json()
    assert refused["refused"] and refused["preview"] is None
    assert any("at an end of the 0-1 score scale" in r for r in refused["reasons"])
    found = site.client().get(f"{API}/calibrations/3/review", headers=bearer).json()
    assert not found["refused"]
    assert {k: found["preview"][k] for k in ("changed", "raised", "lowered")} == {
        "changed": 2,
        "raised": 2,
        "lowered": 0,
    }

    client = site.client()
    post = f"{API}/calibrations/3/activate"
    assert (
        client.post(
            f"{API}/calibrations/2/activate", json={"confirm_changes": 0}, headers=bearer
        ).status_code
        == 422
    )
    assert client.post(post, json={}, headers=bearer).status_code == 422
    assert client.post(post, json={"confirm_changes": "x"}, headers=bearer).status_code == 422
    mismatch = client.post(post, json={"confirm_changes": 1}, headers=bearer)
    assert mismatch.status_code == 409 and "confirm 2" in mismatch.json()["detail"]
    assert client.get(f"{API}/calibrations/9/review", headers=bearer).status_code == 404
    done = client.post(post, json={"confirm_changes": 2}, headers=bearer)
    assert done.status_code == 200 and done.json()["state"] == "active"
