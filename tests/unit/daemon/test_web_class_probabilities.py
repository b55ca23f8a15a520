"""An N-class bundle's result on the study page and in the JSON API: the calibrated
probability of each class beside the score; nothing of the kind for a binary bundle."""

from __future__ import annotations

import re
from pathlib import Path

from daemon.db.models import UserRole
from daemon.db.session import SessionFactory
from daemon.serving import Serving
from daemon.web.app import create_app
from daemon.web.context import WebContext
from tests.daemon_harness import record_scored
from tests.web_fixtures import Site, web_settings

API = "/api/v1"
CLASSES = (("NORMAL", 0.25), ("BACTERIAL", 0.5), ("VIRAL", 0.125), ("COVID-19", 0.125))


def _site(tmp_path: Path, sessions: SessionFactory) -> Site:
    settings = web_settings(tmp_path)
    context = WebContext(
        settings=settings,
        sessions=sessions,
        serving=Serving(settings.model, settings.priority.bands, sessions),
    )
    return Site(settings=settings, sessions=sessions, context=context, app=create_app(context))


def test_the_study_page_and_api_show_each_class_probability(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site = _site(tmp_path, sessions)
    reader = site.add_user("reader", UserRole.RADIOLOGIST)
    study = record_scored(
        sessions, "1.1", logit=1.1, score=0.75, above=True, class_probabilities=CLASSES
    )
    browser, _ = site.browser(reader)
    page = browser.get(f"/studies/{study}").text
    listed = re.search(r'<ul id="class-probabilities">(.*?)</ul>', page, re.S)
    assert listed is not None, page
    items = re.findall(r'data-class="([^"]+)" data-probability="([^"]+)">([^<]+)<', listed[1])
    assert [(name, float(p)) for name, p, _ in items] == list(CLASSES)
    assert [text for _, _, text in items] == [
        "NORMAL: 25.0 %",
        "BACTERIAL: 50.0 %",
        "VIRAL: 12.5 %",
        "COVID-19: 12.5 %",
    ]
    (image,) = (
        site.client().get(f"{API}/studies/{study}", headers=site.bearer(reader)).json()["images"]
    )
    assert [tuple(pair) for pair in image["class_probabilities"]] == list(CLASSES)


def test_a_binary_result_shows_no_classes(tmp_path: Path, sessions: SessionFactory) -> None:
    site = _site(tmp_path, sessions)
    reader = site.add_user("reader", UserRole.RADIOLOGIST)
    study = record_scored(sessions, "1.2", logit=1.0, score=0.9, above=True)
    browser, _ = site.browser(reader)
    assert 'id="class-probabilities"' not in browser.get(f"/studies/{study}").text
    (image,) = (
        site.client().get(f"{API}/studies/{study}", headers=site.bearer(reader)).json()["images"]
    )
    assert image["class_probabilities"] == []
