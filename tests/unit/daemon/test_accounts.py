"""Web accounts: the first admin, one-time passwords, rate limiting, session lifetimes.

Against a real migrated SQLite file; times are passed as ``now=`` so windows and
lifetimes are crossed without waiting. The HTTP tests drive the real application.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import Type, extract_parameters
from sqlalchemy import select, text

from daemon import accounts
from daemon.db.models import LoginAttempt, User, UserRole, WebSession, utcnow
from daemon.db.session import SessionFactory, writing
from daemon.settings import WebSettings
from daemon.web.server import first_start
from tests.postgres_server import PostgresServer
from tests.web_fixtures import (
    PASSWORD,
    Site,
    page_csrf,
    sign_in_form,
)

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


@pytest.fixture
def site(tmp_path: Path, sessions: SessionFactory) -> Site:
    return Site.build(
        tmp_path,
        sessions,
        login_max_failures=3,
        login_max_failures_per_user=3,
        login_window_minutes=10,
    )


def _sign_in(
    site: Site,
    username: str,
    password: str,
    *,
    address: str = "10.0.0.1",
    now: datetime = T0,
    settings: WebSettings | None = None,
) -> User:
    """accounts.sign_in, which keeps its own transactions."""
    return accounts.sign_in(
        site.sessions,
        username=username,
        password=password,
        address=address,
        settings=settings or site.settings.web,
        now=now,
    )


def _resolve(site: Site, token: str, now: datetime) -> WebSession | None:
    with writing(site.sessions) as session:
        return accounts.resolve_session(session, token=token, settings=site.settings.web, now=now)


def _start(site: Site, user_id: int, kind: str, now: datetime) -> accounts.NewSession:
    with writing(site.sessions) as session:
        user = session.get(User, user_id)
        assert user is not None
        return accounts.start_session(
            session, user=user, kind=kind, address="10.0.0.1", settings=site.settings.web, now=now
        )


# --- the first admin and one-time passwords ---------------------------------------------------


def test_the_first_admin_is_created_once_with_a_logged_one_time_password(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="daemon.web.server"):
        first_start(site.sessions)
        first_start(site.sessions)  # a restart: the account exists, nothing new is logged
    issued = [r for r in caplog.records if hasattr(r, "one_time_password")]
    assert len(issued) == 1
    password = issued[0].one_time_password
    assert len(password) >= 16
    with writing(site.sessions) as session:
        assert accounts.ensure_first_admin(session) is None
        (admin,) = accounts.users(session)
    assert (admin.username, admin.role, admin.active) == ("admin", UserRole.ADMIN, True)
    assert admin.must_change_password
    assert _sign_in(site, "admin", password).username == "admin"
    created = [e for e in site.audit() if e.action == "user.created"]
    assert [(e.actor, e.subject) for e in created] == [("system", "admin")]


def test_a_one_time_password_must_be_changed_before_anything_else(site: Site) -> None:
    with writing(site.sessions) as session:
        one_time = accounts.ensure_first_admin(session)
    assert one_time is not None
    browser = site.client()
    signed = sign_in_form(browser, "admin", one_time)
    assert (signed.status_code, signed.headers["location"]) == (303, "/worklist")
    for path in ("/worklist", "/studies/1.2.3", "/analyse", "/admin", "/admin/users"):
        answer = browser.get(path)
        assert (answer.status_code, answer.headers["location"]) == (303, "/account/password"), path

    api = site.client()
    issued = api.post("/api/v1/tokens", json={"username": "admin", "password": one_time})
    assert issued.status_code == 200
    bearer = {"Authorization": f"Bearer {issued.json()['token']}"}
    assert api.get("/api/v1/worklist", headers=bearer).status_code == 403
    assert api.get("/api/v1/report", headers=bearer).status_code == 403
    assert api.get("/api/v1/me", headers=bearer).json() == {"username": "admin", "role": "admin"}

    csrf = page_csrf(browser)
    short = browser.post(
        "/account/password",
        data={"csrf_token": csrf, "current": one_time, "new": "short", "again": "short"},
    )
    assert short.status_code == 422
    assert browser.get("/worklist").headers["location"] == "/account/password"

    changed = browser.post(
        "/account/password",
        data={"csrf_token": csrf, "current": one_time, "new": PASSWORD, "again": PASSWORD},
    )
    assert (changed.status_code, changed.headers["location"]) == (303, "/worklist")
    assert browser.get("/worklist").status_code == 200  # this browser's session is kept
    assert api.get("/api/v1/me", headers=bearer).status_code == 401  # other sessions end
    assert not site.user("admin").must_change_password
    with pytest.raises(accounts.SignInError):
        _sign_in(site, "admin", one_time)
    fresh = api.post("/api/v1/tokens", json={"username": "admin", "password": PASSWORD})
    assert fresh.status_code == 200
    headers = {"Authorization": f"Bearer {fresh.json()['token']}"}
    assert api.get("/api/v1/worklist", headers=headers).status_code == 200


def test_an_api_client_can_replace_a_one_time_password(site: Site) -> None:
    with writing(site.sessions) as session:
        one_time = accounts.ensure_first_admin(session)
    assert one_time is not None
    api = site.client()
    issued = api.post("/api/v1/tokens", json={"username": "admin", "password": one_time})
    bearer = {"Authorization": f"Bearer {issued.json()['token']}"}
    assert api.get("/api/v1/worklist", headers=bearer).status_code == 403
    short = api.post("/api/v1/me/password", json={"current": one_time, "new": "x"}, headers=bearer)
    assert short.status_code == 422
    changed = api.post(
        "/api/v1/me/password", json={"current": one_time, "new": PASSWORD}, headers=bearer
    )
    assert changed.status_code == 204
    assert api.get("/api/v1/worklist", headers=bearer).status_code == 200
    assert not site.user("admin").must_change_password


def test_new_user_names_and_passwords_follow_the_rules(site: Site) -> None:
    with writing(site.sessions) as session:
        user, one_time = accounts.create_user(
            session, username="  Reader.One ", role=UserRole.RADIOLOGIST, actor="admin"
        )
    assert user.username == "reader.one" and user.must_change_password
    for bad in ("r", "-reader", "has space", "reader/one", "x" * 65, "rëader"):
        with writing(site.sessions) as session, pytest.raises(accounts.AccountError):
            accounts.create_user(session, username=bad, role=UserRole.ADMIN, actor="admin")
    with (
        writing(site.sessions) as session,
        pytest.raises(accounts.AccountError, match="taken"),
    ):
        accounts.create_user(session, username="READER.ONE", role=UserRole.ADMIN, actor="admin")

    web = site.settings.web
    for current, new in (
        ("not the password", "a perfectly long password"),  # wrong current password
        (one_time, one_time),  # unchanged
        (one_time, "short"),  # below min_password_length
        (one_time, " Reader.One  "),  # the user name (padded to the minimum length)
    ):
        with pytest.raises(accounts.AccountError):
            accounts.change_password(
                site.sessions, user_id=user.id, current=current, new=new, settings=web
            )
    assert site.user("reader.one").password_hash == user.password_hash
    assert site.user("reader.one").must_change_password


# --- failures and rate limiting -----------------------------------------------------------------


def test_a_wrong_password_unknown_name_or_disabled_account_is_a_recorded_failure(
    site: Site,
) -> None:
    site.add_user("admin", UserRole.ADMIN)
    site.add_user("gone", UserRole.RADIOLOGIST, active=False)
    messages = set()
    for username, password, address in (
        ("admin", "wrong password", "10.0.0.1"),
        ("nobody", PASSWORD, "10.0.0.2"),
        ("gone", PASSWORD, "10.0.0.3"),
    ):
        with pytest.raises(accounts.SignInError) as raised:
            _sign_in(site, username, password, address=address)
        assert not isinstance(raised.value, accounts.SignInRateLimitedError)
        messages.add(str(raised.value))
    assert len(messages) == 1  # the answer does not tell which it was
    with writing(site.sessions) as session:
        attempts = session.scalars(select(LoginAttempt).order_by(LoginAttempt.id)).all()
        rows = [(a.username, a.address, a.succeeded) for a in attempts]
    assert rows == [
        ("admin", "10.0.0.1", False),
        ("nobody", "10.0.0.2", False),
        ("gone", "10.0.0.3", False),
    ]
    failed = [e for e in site.audit() if e.action == "login.failed"]
    assert [e.actor for e in failed] == ["admin", "nobody", "gone"]
    assert '"address": "10.0.0.1"' in (failed[0].detail or "")


def test_failures_for_a_user_name_lock_it_from_every_address_until_the_window_passes(
    site: Site,
) -> None:
    site.add_user("admin", UserRole.ADMIN)
    for minute in range(3):  # login_max_failures = 3, from three addresses
        with pytest.raises(accounts.SignInError):
            _sign_in(
                site,
                "admin",
                "guess",
                address=f"10.0.0.{minute + 1}",
                now=T0 + timedelta(minutes=minute),
            )
    at = T0 + timedelta(minutes=3)
    with pytest.raises(accounts.SignInRateLimitedError) as refused:
        _sign_in(site, "Admin", PASSWORD, address="192.168.1.9", now=at)
    # The oldest failure (T0) leaves the 10-minute window at T0 + 10 min.
    assert refused.value.retry_after == timedelta(minutes=7)
    with pytest.raises(accounts.SignInRateLimitedError):  # still inside the window
        _sign_in(site, "admin", PASSWORD, address="192.168.1.9", now=T0 + timedelta(minutes=10))
    assert site.count(LoginAttempt) == 3  # refusals are not failures: the lock does not grow
    # Refusals are logged, not audited: anyone could fill the append-only trail with them.
    assert [e.action for e in site.audit()].count("login.refused") == 0
    assert [e.action for e in site.audit()].count("login.failed") == 3

    later = T0 + timedelta(minutes=10, seconds=1)
    assert _sign_in(site, "admin", PASSWORD, address="192.168.1.9", now=later).username == "admin"


def test_one_address_guessing_a_name_locks_itself_out_not_the_name(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site = Site.build(
        tmp_path,
        sessions,
        login_max_failures=3,
        login_max_failures_per_user=6,
        login_window_minutes=10,
    )
    site.add_user("admin", UserRole.ADMIN)
    for minute in range(3):
        with pytest.raises(accounts.SignInError):
            _sign_in(site, "admin", "guess", address="10.6.6.6", now=T0 + timedelta(minutes=minute))
    at = T0 + timedelta(minutes=3)
    with pytest.raises(accounts.SignInRateLimitedError):
        _sign_in(site, "admin", PASSWORD, address="10.6.6.6", now=at)
    assert _sign_in(site, "admin", PASSWORD, address="10.1.1.1", now=at).username == "admin"
    for index in range(3):  # three more guesses from elsewhere: the name's limit of 6
        with pytest.raises(accounts.SignInError):
            _sign_in(site, "admin", "guess", address=f"10.7.7.{index}", now=at)
    with pytest.raises(accounts.SignInRateLimitedError):
        _sign_in(site, "admin", PASSWORD, address="10.1.1.1", now=at)


def test_failures_from_an_address_lock_every_user_name_from_it(site: Site) -> None:
    site.add_user("admin", UserRole.ADMIN)
    for minute, name in enumerate(("alice", "bob", "carol")):
        with pytest.raises(accounts.SignInError):
            _sign_in(site, name, "guess", address="10.9.9.9", now=T0 + timedelta(minutes=minute))
    at = T0 + timedelta(minutes=5)
    with pytest.raises(accounts.SignInRateLimitedError):
        _sign_in(site, "admin", PASSWORD, address="10.9.9.9", now=at)
    assert _sign_in(site, "admin", PASSWORD, address="10.1.1.1", now=at).username == "admin"
    later = T0 + timedelta(minutes=10, seconds=1)
    assert _sign_in(site, "admin", PASSWORD, address="10.9.9.9", now=later).username == "admin"


def test_rate_limited_sign_in_is_429_with_retry_after_on_the_page_and_the_api(
    site: Site,
) -> None:
    site.add_user("admin", UserRole.ADMIN)
    site.add_user("reader", UserRole.RADIOLOGIST)
    browser = site.client()
    for _ in range(3):
        assert sign_in_form(browser, "admin", "guess").status_code == 401
    window = site.settings.web.login_window_minutes * 60

    page = sign_in_form(browser, "admin", PASSWORD)
    assert page.status_code == 429
    assert 0 < int(page.headers["retry-after"]) <= window + 1
    assert "Too many failed sign-ins" in page.text
    assert "chestaid_session" not in page.headers.get("set-cookie", "")

    api = site.client().post("/api/v1/tokens", json={"username": "admin", "password": PASSWORD})
    assert api.status_code == 429
    assert 0 < int(api.headers["retry-after"]) <= window + 1
    assert "token" not in api.json()

    # The test client's address has failed three times: other names are refused from it too.
    other = site.client().post("/api/v1/tokens", json={"username": "reader", "password": PASSWORD})
    assert other.status_code == 429
    assert site.count(WebSession) == 0


# --- session lifetimes ----------------------------------------------------------------------------


def test_a_browser_session_ends_after_the_idle_time(site: Site) -> None:
    user_id = site.add_user("reader", UserRole.RADIOLOGIST)
    idle = timedelta(minutes=site.settings.web.session_idle_minutes)
    started = _start(site, user_id, accounts.BROWSER, T0)
    assert _resolve(site, started.token, T0 + idle - timedelta(minutes=1)) is not None
    seen = T0 + idle - timedelta(minutes=1)  # that request counted as activity
    assert _resolve(site, started.token, seen + idle - timedelta(seconds=1)) is not None
    seen += idle - timedelta(seconds=1)
    assert _resolve(site, started.token, seen + idle + timedelta(seconds=1)) is None
    # Once ended it stays ended, even for a request that would have been in time.
    assert _resolve(site, started.token, seen + timedelta(minutes=1)) is None
    with writing(site.sessions) as session:
        row = session.scalar(select(WebSession))
        assert row is not None and row.ended_at is not None


def test_a_browser_session_ends_at_its_maximum_lifetime_however_active(site: Site) -> None:
    user_id = site.add_user("reader", UserRole.RADIOLOGIST)
    max_life = timedelta(hours=site.settings.web.session_max_hours)
    started = _start(site, user_id, accounts.BROWSER, T0)
    assert started.expires_at == T0 + max_life
    now = T0
    step = timedelta(minutes=site.settings.web.session_idle_minutes / 2)
    while now + step < T0 + max_life:
        now += step
        assert _resolve(site, started.token, now) is not None, now - T0
    assert _resolve(site, started.token, T0 + max_life) is None


def test_an_api_token_has_no_idle_time_but_expires(site: Site) -> None:
    user_id = site.add_user("reader", UserRole.RADIOLOGIST)
    life = timedelta(days=site.settings.web.api_token_days)
    started = _start(site, user_id, accounts.API, T0)
    assert _resolve(site, started.token, T0 + life - timedelta(hours=1)) is not None
    assert _resolve(site, started.token, T0 + life) is None


def test_a_disabled_users_sessions_stop_working_at_once(site: Site) -> None:
    admin_id = site.add_user("admin", UserRole.ADMIN)
    reader_id = site.add_user("reader", UserRole.RADIOLOGIST)
    admin, csrf = site.browser(admin_id)
    reader, _ = site.browser(reader_id)
    bearer = site.bearer(reader_id)
    assert reader.get("/worklist").status_code == 200
    assert reader.get("/api/v1/worklist", headers=bearer).status_code == 200

    changed = admin.post(
        f"/admin/users/{reader_id}", data={"csrf_token": csrf, "action": "disable"}
    )
    assert changed.status_code == 200
    assert not site.user("reader").active
    assert reader.get("/worklist").headers["location"] == "/login?next=%2Fworklist"
    assert reader.get("/api/v1/worklist", headers=bearer).status_code == 401
    with pytest.raises(accounts.SignInError):
        _sign_in(site, "reader", PASSWORD, now=utcnow())

    # Enabled again, the old sessions stay ended: a new sign-in is needed.
    admin.post(f"/admin/users/{reader_id}", data={"csrf_token": csrf, "action": "enable"})
    assert site.user("reader").active
    assert reader.get("/worklist").status_code == 303
    assert reader.get("/api/v1/worklist", headers=bearer).status_code == 401


def test_an_inactive_account_has_no_live_session_even_if_its_sessions_were_not_ended(
    site: Site,
) -> None:
    user_id = site.add_user("reader", UserRole.RADIOLOGIST)
    started = _start(site, user_id, accounts.API, T0)
    with writing(site.sessions) as session:
        user = session.get(User, user_id)
        assert user is not None
        user.active = False  # as a direct database change would, without ending sessions
    assert _resolve(site, started.token, T0 + timedelta(minutes=1)) is None


def test_a_password_reset_ends_sessions_and_issues_a_one_time_password(site: Site) -> None:
    admin_id = site.add_user("admin", UserRole.ADMIN)
    reader_id = site.add_user("reader", UserRole.RADIOLOGIST)
    admin, csrf = site.browser(admin_id)
    reader, _ = site.browser(reader_id)
    bearer = site.bearer(reader_id)

    page = admin.post(f"/admin/users/{reader_id}", data={"csrf_token": csrf, "action": "reset"})
    assert page.status_code == 200
    shown = re.search(r'id="issued-password">.*?<code>([^<]+)</code>', page.text, re.S)
    assert shown is not None
    one_time = shown.group(1)

    assert reader.get("/worklist").status_code == 303
    assert reader.get("/api/v1/worklist", headers=bearer).status_code == 401
    assert site.user("reader").must_change_password
    with pytest.raises(accounts.SignInError):
        _sign_in(site, "reader", PASSWORD, now=utcnow())
    again = site.client()
    assert sign_in_form(again, "reader", one_time).status_code == 303
    assert again.get("/worklist").headers["location"] == "/account/password"
    assert [e.subject for e in site.audit() if e.action == "user.password_reset"] == ["reader"]


# --- the last admin -------------------------------------------------------------------------------


def test_the_last_active_admin_cannot_be_disabled_or_demoted(site: Site) -> None:
    first = site.add_user("admin", UserRole.ADMIN)
    second = site.add_user("deputy", UserRole.ADMIN, active=False)

    def refused(change: str) -> None:
        with writing(site.sessions) as session, pytest.raises(accounts.AccountError):
            if change == "disable":
                accounts.set_active(session, user_id=first, active=False, actor="admin")
            else:
                accounts.set_role(session, user_id=first, role=UserRole.RADIOLOGIST, actor="admin")

    refused("disable")
    refused("demote")  # a disabled admin does not count
    assert (site.user("admin").active, site.user("admin").role) == (True, UserRole.ADMIN)

    with writing(site.sessions) as session:
        accounts.set_active(session, user_id=second, active=True, actor="admin")
        accounts.set_role(session, user_id=first, role=UserRole.RADIOLOGIST, actor="admin")
    assert site.user("admin").role == UserRole.RADIOLOGIST
    with writing(site.sessions) as session, pytest.raises(accounts.AccountError):
        accounts.set_active(session, user_id=second, active=False, actor="deputy")


def test_an_admin_cannot_disable_or_demote_themselves_when_last_through_the_page(
    site: Site,
) -> None:
    admin_id = site.add_user("admin", UserRole.ADMIN)
    admin, csrf = site.browser(admin_id)
    for data in ({"action": "disable"}, {"action": "role", "role": "radiologist"}):
        answer = admin.post(f"/admin/users/{admin_id}", data={"csrf_token": csrf, **data})
        assert answer.status_code == 422
        assert "last active admin" in answer.text
    assert (site.user("admin").active, site.user("admin").role) == (True, UserRole.ADMIN)
    assert admin.get("/admin/users").status_code == 200


# --- what is stored ---------------------------------------------------------------------------------


def _stored_bytes(
    request: pytest.FixtureRequest, sessions: SessionFactory, tmp_path: Path
) -> bytes:
    """The database's files as a copy of them would be: SQLite's file and its write-ahead
    log; PostgreSQL's data files of the database, written out by a checkpoint."""
    with sessions() as session:
        bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        files = sorted(tmp_path.glob("chestaid.db*"))
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        with bind.connect() as connection:
            oid = connection.execute(
                text("SELECT oid FROM pg_database WHERE datname = current_database()")
            ).scalar_one()
            connection.execute(text("CHECKPOINT"))
        files = sorted(
            p for p in (server.root / "data" / "base" / str(oid)).iterdir() if p.is_file()
        )
    assert files
    return b"".join(path.read_bytes() for path in files)


def test_passwords_and_tokens_are_stored_only_hashed(
    request: pytest.FixtureRequest, tmp_path: Path, site: Site, sessions: SessionFactory
) -> None:
    with writing(sessions) as session:
        one_time = accounts.ensure_first_admin(session)
    assert one_time is not None
    chosen = "Quartz-Zebra-Lantern-8841"
    browser = site.client()
    sign_in_form(browser, "admin", one_time)
    browser.post(
        "/account/password",
        data={
            "csrf_token": page_csrf(browser),
            "current": one_time,
            "new": chosen,
            "again": chosen,
        },
    )
    cookie = browser.cookies["chestaid_session"]
    api = site.client().post("/api/v1/tokens", json={"username": "admin", "password": chosen})
    bearer = api.json()["token"]

    stored = site.user("admin").password_hash
    assert stored.startswith("$argon2id$")
    assert extract_parameters(stored).type is Type.ID
    assert accounts.verify_password(stored, chosen)

    data = _stored_bytes(request, sessions, tmp_path)
    assert b"admin" in data  # the search sees the stored rows
    assert accounts.token_hash(cookie).encode() in data
    assert accounts.token_hash(bearer).encode() in data
    for secret in (chosen, one_time, cookie, bearer):
        assert secret.encode() not in data, "a secret is stored in clear"
    with writing(sessions) as session:
        hashes = set(session.scalars(select(WebSession.token_hash)).all())
    assert hashes >= {accounts.token_hash(cookie), accounts.token_hash(bearer)}
    assert not hashes & {cookie, bearer}
