"""Shadow mode in a real browser (Debian Chromium): a web-only ``chestaid-daemon serve``
of a site in shadow mode, on a database holding a study scored in shadow. The reader's
worklist carries the banner saying nothing is sent to PACS or RIS, and the study page
says its result was made in shadow; the admin's report shows the shadow period."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from daemon.db.models import FeedbackLabel, User, UserRole, utcnow
from daemon.db.session import make_engine, make_session_factory, writing
from daemon.feedback import record_feedback
from tests.daemon_harness import Daemon, record_scored
from tests.integration.test_web_browser import ConsoleErrors
from tests.web_fixtures import PASSWORD, password_hash

pytestmark = pytest.mark.integration


@pytest.fixture
def shadow_site(tmp_path: Path, browser: Browser) -> Iterator[tuple[Daemon, str, str]]:
    """A web-only daemon in shadow mode, a radiologist, an admin, and two shadow studies
    (one open, one labelled); the open study's UID and the labelled one's."""
    node = Daemon(tmp_path / "node", sections={"site": {"mode": "shadow"}})
    node.start(roles="web")
    engine = make_engine(node.db_url)
    try:
        sessions = make_session_factory(engine)
        with writing(sessions) as session:
            now = utcnow()
            for name, role in (("dr.quiet", UserRole.RADIOLOGIST), ("chief", UserRole.ADMIN)):
                session.add(
                    User(
                        username=name,
                        password_hash=password_hash(),
                        role=role,
                        active=True,
                        must_change_password=False,
                        created_at=now,
                        created_by="test",
                        password_changed_at=now,
                    )
                )
        open_study = record_scored(sessions, "1.1", logit=4.0, score=0.98, above=True, shadow=True)
        labelled = record_scored(sessions, "1.2", logit=4.0, score=0.97, above=True, shadow=True)
        with writing(sessions) as session:
            record_feedback(
                session, study_instance_uid=labelled, label=FeedbackLabel.PNEUMONIA, user="dr"
            )
        yield node, open_study, labelled
    finally:
        engine.dispose()
        node.stop()


def _sign_in(page: Page, username: str) -> None:
    page.goto("/login")
    form = page.locator("#login-form")
    form.locator("input[name=username]").fill(username)
    form.locator("input[name=password]").fill(PASSWORD)
    form.locator("button[type=submit]").click()


def test_the_shadow_banner_the_study_and_the_report_in_a_browser(
    browser: Browser, shadow_site: tuple[Daemon, str, str]
) -> None:
    node, open_study, _ = shadow_site
    context = browser.new_context(
        base_url=f"http://127.0.0.1:{node.web_port}", viewport={"width": 1280, "height": 800}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors = ConsoleErrors()
    errors.watch(page)
    # The studies were recorded without spooled files: their images are gone (410).
    errors.expected.add(("/source.png", 410))
    try:
        _sign_in(page, "dr.quiet")
        expect(page.locator("#worklist-rows tr.row")).to_have_count(1)
        banner = page.locator("#shadow-banner")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("Shadow mode")
        expect(banner).to_contain_text("sends nothing to PACS or RIS")

        page.goto(f"/studies/{open_study}")
        expect(page.locator("#study-shadow")).to_contain_text("not sent to PACS or RIS")
        expect(page.locator("#shadow-banner")).to_be_visible()

        context.clear_cookies()
        _sign_in(page, "chief")
        expect(page.locator("#worklist")).to_be_visible()
        link = page.locator("#shadow-banner a")
        expect(link).to_have_attribute("href", "/admin/feedback#shadow")
        page.goto("/admin/feedback")
        section = page.locator("#shadow")
        expect(section).to_be_visible()
        expect(page.locator("#shadow-period")).to_contain_text("2 images of 2 studies")
        expect(section.locator('[data-field="tp"]')).to_have_text("1")
        expect(section.locator('[data-field="sensitivity"]')).to_contain_text("1.000")
        assert errors.seen == [], errors.seen
    finally:
        context.close()
