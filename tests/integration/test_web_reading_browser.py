"""Reading with the keyboard and undoing a dismissal, in a real browser (Debian Chromium).

A web-only ``chestaid-daemon serve`` on a database holding three scored studies, one of
them URGENT. A radiologist moves through the worklist with j/k (keys typed into the
filter form are text, not shortcuts), opens a study with Enter and the next one with n;
dismissing the URGENT study without feedback asks first (cancelling keeps it), then it
leaves the worklist; it is found under Recently read, undone, and is back on the
worklist.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from daemon.db.models import User, UserRole, utcnow
from daemon.db.session import make_engine, make_session_factory, writing
from tests.daemon_harness import Daemon, record_scored
from tests.integration.test_web_browser import ConsoleErrors
from tests.web_fixtures import PASSWORD, password_hash

pytestmark = pytest.mark.integration

READER = "dr.keys"


@pytest.fixture
def studies(tmp_path: Path, browser: Browser) -> Iterator[tuple[Daemon, dict[str, str]]]:
    """A web-only daemon, a radiologist, and three scored studies: urgent, middle, low."""
    node = Daemon(tmp_path / "node", sections={"web": {"worklist_refresh_seconds": 5}})
    node.start(roles="web")
    engine = make_engine(node.db_url)
    try:
        sessions = make_session_factory(engine)
        with writing(sessions) as session:
            now = utcnow()
            session.add(
                User(
                    username=READER,
                    password_hash=password_hash(),
                    role=UserRole.RADIOLOGIST,
                    active=True,
                    must_change_password=False,
                    created_at=now,
                    created_by="test",
                    password_changed_at=now,
                )
            )
        uids = {
            name: record_scored(sessions, uid, logit=logit, score=score, above=score >= 0.5)
            for name, uid, logit, score in (
                ("urgent", "1.1", 4.0, 0.98),
                ("middle", "1.2", -0.5, 0.38),
                ("low", "1.3", -3.0, 0.05),
            )
        }
        yield node, uids
    finally:
        engine.dispose()
        node.stop()


def test_keys_confirmation_recently_read_and_undo(
    browser: Browser, studies: tuple[Daemon, dict[str, str]]
) -> None:
    node, uids = studies
    context = browser.new_context(
        base_url=f"http://127.0.0.1:{node.web_port}", viewport={"width": 1280, "height": 800}
    )
    context.set_default_timeout(15_000)
    page: Page = context.new_page()
    errors = ConsoleErrors()
    errors.watch(page)
    # The studies were recorded without spooled files: their images are gone (410).
    errors.expected.add(("/source.png", 410))
    try:
        page.goto("/login")
        form = page.locator("#login-form")
        form.locator("input[name=username]").fill(READER)
        form.locator("input[name=password]").fill(PASSWORD)
        form.locator("button[type=submit]").click()
        rows = page.locator("#worklist-rows tr.row")
        expect(rows).to_have_count(3)
        order = [uids["urgent"], uids["middle"], uids["low"]]
        assert [r.get_attribute("data-study") for r in rows.all()] == order
        expect(page.locator("#keyboard-help")).to_contain_text("j")

        # Typing into the filter form is not a shortcut: no selection, no navigation.
        search = page.locator("#worklist-filters input[name=q]")
        search.type("jkn")
        expect(search).to_have_value("jkn")
        expect(page).to_have_url(re.compile(r"/worklist$"))
        expect(page.locator("#worklist-rows tr.row.selected")).to_have_count(0)
        search.fill("")
        page.locator("h1").click()

        # j/k move the selection; Enter opens the selected study.
        selected = page.locator("#worklist-rows tr.row.selected")
        page.keyboard.press("j")
        expect(selected).to_have_attribute("data-study", uids["urgent"])
        page.keyboard.press("j")
        page.keyboard.press("j")
        expect(selected).to_have_attribute("data-study", uids["low"])
        page.keyboard.press("k")
        page.keyboard.press("k")
        expect(selected).to_have_attribute("data-study", uids["urgent"])
        page.keyboard.press("Enter")
        expect(page.locator("#study-uid")).to_have_text(uids["urgent"])
        expect(page.locator("#study-place")).to_contain_text("urgent by score")

        # n opens the next open study; typing an n in the comment box does not.
        page.locator("textarea[name=comment]").type("no n here")
        expect(page.locator("#study-uid")).to_have_text(uids["urgent"])
        page.locator("h1").click()
        page.keyboard.press("n")
        expect(page.locator("#study-uid")).to_have_text(uids["middle"])
        page.go_back()
        expect(page.locator("#study-uid")).to_have_text(uids["urgent"])

        # Dismissing the URGENT study asks first; cancelling keeps it open.
        asked: list[str] = []

        def answer(accept: bool) -> None:
            def handle(dialog: Dialog) -> None:
                asked.append(dialog.message)
                if accept:
                    dialog.accept()
                else:
                    dialog.dismiss()

            page.once("dialog", handle)

        answer(accept=False)
        page.locator("#mark-read").click()
        expect(page.locator("#mark-read")).to_be_visible()
        assert len(asked) == 1 and "URGENT" in asked[0]
        answer(accept=True)
        page.locator("#mark-read").click()
        expect(page).to_have_url(re.compile(r"/worklist\?read="))
        expect(page.locator("#just-read")).to_contain_text(uids["urgent"])
        assert len(asked) == 2
        expect(rows).to_have_count(2)

        # Recently read lists it with an undo button; undoing puts it back on the worklist.
        page.locator("header nav a", has_text="Recently read").click()
        mine = page.locator(f'#my-reads tr[data-study="{uids["urgent"]}"]')
        expect(mine).to_contain_text("marked read")
        mine.locator("button.undo-read").click()
        expect(page.locator("#read-undone")).to_be_visible()
        expect(page.locator(f'#my-reads tr[data-study="{uids["urgent"]}"]')).to_have_count(0)
        page.locator("header nav a", has_text="Worklist").click()
        expect(rows).to_have_count(3)
        expect(rows.first).to_have_attribute("data-study", uids["urgent"])
        assert errors.seen == [], errors.seen
    finally:
        context.close()
