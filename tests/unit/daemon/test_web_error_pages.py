"""A browser asking for an address that does not exist gets the HTML error page; the API JSON.

Issue 14 item 8: every 404 (and 405) was raw JSON, in a browser too. The real app on
a migrated SQLite file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.db.models import UserRole
from daemon.db.session import SessionFactory
from tests.web_fixtures import Site


@pytest.fixture
def site(tmp_path: Path, sessions: SessionFactory) -> Site:
    return Site.build(tmp_path, sessions)


@pytest.mark.parametrize("signed_in", [False, True], ids=["signed out", "signed in"])
@pytest.mark.parametrize("path", ["/no/such/page", "/worklist/extra", "/studies/1.2/nothing"])
def test_a_missing_page_is_the_html_error_page(site: Site, path: str, signed_in: bool) -> None:
    if signed_in:
        client, _ = site.browser(site.add_user("reader", UserRole.RADIOLOGIST))
    else:
        client = site.client()
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert '<p class="error" id="error-message">' in answer.text
    assert "Not found" in answer.text
    assert answer.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert ("reader (radiologist)" in answer.text) == signed_in


def test_a_wrong_method_on_a_page_is_the_html_error_page(site: Site) -> None:
    client, _ = site.browser(site.add_user("reader", UserRole.RADIOLOGIST))
    answer = client.put("/worklist")
    assert answer.status_code == 405
    assert answer.headers["content-type"].startswith("text/html")
    assert 'id="error-message"' in answer.text


def test_the_api_stays_json(site: Site) -> None:
    headers = site.bearer(site.add_user("reader", UserRole.RADIOLOGIST))
    client = site.client()
    for path in ("/api/v1/no-such-thing", "/api/nothing"):
        answer = client.get(path, headers=headers)
        assert answer.status_code == 404
        assert answer.json() == {"detail": "Not Found"}
    wrong = client.delete("/api/v1/worklist", headers=headers)
    assert wrong.status_code == 405 and wrong.json() == {"detail": "Method Not Allowed"}
    assert "allow" in {k.lower() for k in wrong.headers}
