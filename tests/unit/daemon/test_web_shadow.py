"""Shadow mode where people see it: the banner and the worklist API's mode, shadow
results on the study page, the shadow period on the admin's report page, in the JSON
API and on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest

from daemon.cli import main
from daemon.db.migrate import upgrade
from daemon.db.models import FeedbackLabel, FeedbackSource, UserRole
from daemon.db.session import SessionFactory, make_engine, make_session_factory, writing
from daemon.feedback import record_feedback
from daemon.serving import Serving
from daemon.settings import SiteSettings, load_settings
from daemon.web.app import create_app
from daemon.web.context import WebContext
from tests.daemon_harness import record_scored
from tests.web_fixtures import Site, web_settings

API = "/api/v1"
BANNER = 'id="shadow-banner"'


def _site(tmp_path: Path, sessions: SessionFactory, mode: Literal["live", "shadow"]) -> Site:
    """The web application of a site in this mode."""
    settings = web_settings(tmp_path).model_copy(update={"site": SiteSettings(mode=mode)})
    context = WebContext(
        settings=settings,
        sessions=sessions,
        serving=Serving(settings.model, settings.priority.bands, sessions),
    )
    return Site(settings=settings, sessions=sessions, context=context, app=create_app(context))


def _labelled(
    sessions: SessionFactory,
    uid: str,
    *,
    above: bool,
    label: FeedbackLabel,
    source: FeedbackSource = FeedbackSource.READER,
    shadow: bool = True,
) -> str:
    study = record_scored(
        sessions,
        uid,
        logit=1.0 if above else -1.0,
        score=0.9 if above else 0.1,
        above=above,
        shadow=shadow,
    )
    with writing(sessions) as s:
        record_feedback(s, study_instance_uid=study, label=label, user="dr", source=source)
    return study


def test_in_shadow_the_worklist_says_so_on_the_page_and_in_the_api(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site = _site(tmp_path, sessions, "shadow")
    reader = site.add_user("reader", UserRole.RADIOLOGIST)
    record_scored(sessions, "1.1", logit=1.0, score=0.9, above=True, shadow=True)
    browser, _ = site.browser(reader)
    page = browser.get("/worklist").text
    assert BANNER in page and "sends nothing to PACS or RIS" in page
    assert "/admin/feedback#shadow" not in page  # the report's link is for admins
    answer = site.client().get(f"{API}/worklist", headers=site.bearer(reader)).json()
    assert answer["mode"] == "shadow" and len(answer["items"]) == 1


def test_a_live_site_shows_no_banner_and_says_live(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site = _site(tmp_path, sessions, "live")
    reader = site.add_user("reader", UserRole.RADIOLOGIST)
    browser, _ = site.browser(reader)
    assert BANNER not in browser.get("/worklist").text
    assert site.client().get(f"{API}/worklist", headers=site.bearer(reader)).json()["mode"] == (
        "live"
    )
    assert BANNER not in site.client().get("/login").text


def test_a_result_made_in_shadow_says_so_on_the_study_page_after_going_live(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site = _site(tmp_path, sessions, "live")
    reader = site.add_user("reader", UserRole.RADIOLOGIST)
    quiet = record_scored(sessions, "1.1", logit=1.0, score=0.9, above=True, shadow=True)
    sent = record_scored(sessions, "1.2", logit=1.0, score=0.9, above=True)
    browser, _ = site.browser(reader)
    page = browser.get(f"/studies/{quiet}").text
    assert 'id="study-shadow"' in page and "not sent to PACS or RIS" in page
    assert 'id="study-shadow"' not in browser.get(f"/studies/{sent}").text
    bearer = site.bearer(reader)
    (image,) = site.client().get(f"{API}/studies/{quiet}", headers=bearer).json()["images"]
    assert image["shadow"] is True
    (image,) = site.client().get(f"{API}/studies/{sent}", headers=bearer).json()["images"]
    assert image["shadow"] is False


def test_the_admin_sees_the_shadow_period_on_the_report_page_and_in_the_api(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site = _site(tmp_path, sessions, "shadow")
    admin = site.add_user("chief", UserRole.ADMIN)
    reader = site.add_user("reader", UserRole.RADIOLOGIST)
    # TP, FN from a report, TN, FP; and a live FP that must not count.
    _labelled(sessions, "1.1", above=True, label=FeedbackLabel.PNEUMONIA)
    _labelled(
        sessions, "1.2", above=False, label=FeedbackLabel.PNEUMONIA, source=FeedbackSource.REPORT
    )
    _labelled(sessions, "1.3", above=False, label=FeedbackLabel.NO_PNEUMONIA)
    _labelled(sessions, "1.4", above=True, label=FeedbackLabel.NO_PNEUMONIA)
    _labelled(sessions, "1.5", above=True, label=FeedbackLabel.NO_PNEUMONIA, shadow=False)

    figures = site.client().get(f"{API}/report/shadow", headers=site.bearer(admin)).json()
    assert (figures["tp"], figures["fn"], figures["tn"], figures["fp"]) == (1, 1, 1, 1)
    assert figures["sensitivity"]["value"] == 0.5 and figures["specificity"]["value"] == 0.5
    assert figures["by_source"] == {"reader": 3, "report": 1}
    assert (figures["mode"], figures["results"], figures["unlabelled"]) == ("shadow", 4, 0)
    refused = site.client().get(f"{API}/report/shadow", headers=site.bearer(reader))
    assert refused.status_code == 403

    browser, _ = site.browser(admin)
    page = browser.get("/admin/feedback").text
    section = page[page.index('id="shadow"') :]
    assert "Shadow period" in section and "4 images of 4 studies" in section
    assert '<td class="num" data-field="tp">1</td>' in section
    assert "reader 3, report 1" in section
    assert "/admin/feedback#shadow" in page  # the banner links here for an admin


def test_a_live_site_that_never_ran_in_shadow_has_no_shadow_section(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site = _site(tmp_path, sessions, "live")
    admin = site.add_user("chief", UserRole.ADMIN)
    browser, _ = site.browser(admin)
    assert 'id="shadow"' not in browser.get("/admin/feedback").text


def test_the_command_line_reports_the_shadow_period(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "chestaid.toml"
    config.write_text(
        f'[site]\nmode = "shadow"\n[storage]\nvar_dir = "{tmp_path / "var"}"\n', encoding="utf-8"
    )
    (tmp_path / "var").mkdir()
    engine = make_engine(load_settings(config).storage.url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    _labelled(sessions, "1.1", above=True, label=FeedbackLabel.PNEUMONIA)
    _labelled(sessions, "1.2", above=True, label=FeedbackLabel.NO_PNEUMONIA)
    engine.dispose()

    assert main(["status", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "shadow"
    report = ["feedback", "report", "--shadow", "--config", str(config)]
    assert main([*report, "--format", "json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert (figures["tp"], figures["fp"], figures["labelled"]) == (1, 1, 2)
    assert figures["ppv"]["value"] == 0.5
    assert main(report) == 0
    header, row = capsys.readouterr().out.splitlines()
    cells = dict(zip(header.split("\t"), row.split("\t"), strict=True))
    assert (cells["by_source.reader"], cells["by_source.report"]) == ("2", "0")
    assert cells["sensitivity"].startswith("1.000 [")
    # The shadow comparison covers the whole shadow period: no --since with it.
    with pytest.raises(SystemExit) as refused:
        main([*report, "--since", "30d"])
    assert refused.value.code == 2
    # The ordinary report's table, with its labels by source, prints too.
    assert main(["feedback", "report", "--config", str(config)]) == 0
    header, overall = capsys.readouterr().out.splitlines()[:2]
    cells = dict(zip(header.split("\t"), overall.split("\t"), strict=True))
    assert (cells["by_source.reader"], cells["by_source.report"]) == ("2", "0")
