"""A page's own refresh does not keep an unattended session alive; a request body is bounded."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from daemon import accounts
from daemon.db.models import UserRole, WebSession, utcnow
from daemon.db.session import SessionFactory, writing
from daemon.web.security import REFRESH_HEADER
from tests.web_fixtures import Site


def _last_seen(site: Site, session_id: int) -> object:
    with writing(site.sessions) as session:
        row = session.get(WebSession, session_id)
        assert row is not None
        return row.last_seen_at


def test_refreshes_do_not_count_as_activity(tmp_path: Path, sessions: SessionFactory) -> None:
    site = Site.build(tmp_path, sessions, session_idle_minutes=30)
    reader = site.add_user("reader", UserRole.RADIOLOGIST)
    started = utcnow() - timedelta(minutes=20)
    with writing(sessions) as session:
        user = site.user("reader")
        new = accounts.start_session(
            session,
            user=user,
            kind=accounts.BROWSER,
            address="127.0.0.1",
            settings=site.settings.web,
            now=started,
        )
        row_id = session.query(WebSession.id).filter_by(user_id=reader).scalar()
    client = site.client()
    client.cookies.set("chestaid_session", new.token)
    refreshed = client.get("/worklist/rows", headers={REFRESH_HEADER: "1"})
    assert refreshed.status_code == 200
    assert _last_seen(site, row_id) == started  # the refresh left it idle
    assert client.get("/worklist/rows").status_code == 200
    assert _last_seen(site, row_id) != started  # a request of the user's own counts

    with writing(sessions) as session:
        later = started + timedelta(minutes=31)
        idle = accounts.resolve_session(
            session, token=new.token, settings=site.settings.web, now=later, activity=False
        )
        assert idle is not None  # touched above, so not yet idle at +31 min
        gone = accounts.resolve_session(
            session,
            token=new.token,
            settings=site.settings.web,
            now=utcnow() + timedelta(minutes=31),
            activity=False,
        )
        assert gone is None


def test_a_form_body_beyond_the_limit_is_refused_before_it_is_read(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site = Site.build(tmp_path, sessions)
    client = site.client()
    big = b"x" * (2 * 2**20)
    answer = client.post(
        "/login", files={"username": ("a.txt", big)}, data={"password": "p", "csrf_token": "t"}
    )
    assert answer.status_code == 413

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(3):
            yield b"y" * 2**20

    streamed = client.post(
        "/login",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413
