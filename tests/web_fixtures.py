"""A ChestAid web site for tests: the real app on a migrated SQLite file, users, sign-in.

Cookies are Secure (the shipped default), so clients talk to ``https://localhost``:
the test client then sends them back as a browser would. Users made here share one
Argon2id hash of :data:`PASSWORD`, computed once, so a test pays for hashing only
where it signs in through the form or the token endpoint.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from daemon import accounts
from daemon.db.models import AuditEntry, User, UserRole, utcnow
from daemon.db.session import SessionFactory, writing
from daemon.serving import Serving
from daemon.settings import Settings, StorageSettings, WebSettings
from daemon.web.app import create_app
from daemon.web.context import WebContext
from daemon.web.security import COOKIE
from tests.bundles import unchecked_default_bundle

BASE_URL = "https://localhost"
PASSWORD = "correct horse battery staple"
TEST_CLIENT_ADDRESS = "testclient"  # the peer address Starlette's test client reports
_HIDDEN = re.compile(r'name="csrf_token" value="([^"]*)"')


@functools.cache
def password_hash() -> str:
    """The Argon2id hash of :data:`PASSWORD` (computed once per test run)."""
    return accounts.hash_password(PASSWORD)


def web_settings(tmp_path: Path, **web: Any) -> Settings:
    """Settings with the var directory under ``tmp_path`` and these ``[web]`` values.

    ``[model]`` is given as values, as a TOML file gives it, so that the suite's
    ``CHESTAID_MODEL__*`` variables are merged into it: given as a ``ModelSettings``,
    the variables replaced it whole, bundle and all.
    """
    values: dict[str, Any] = {
        "storage": StorageSettings(var_dir=tmp_path / "var"),
        "web": WebSettings(**web),
        "model": {"bundle": unchecked_default_bundle()},
    }
    return Settings(**values)


def hidden_csrf(html: str) -> str:
    """The first form's CSRF token on a page."""
    found = _HIDDEN.search(html)
    assert found is not None, "no csrf_token field on the page"
    return found.group(1)


@dataclass(frozen=True)
class RouteInfo:
    """One route of the app: its path template, methods and dependency functions."""

    path: str
    methods: frozenset[str]
    dependencies: frozenset[Callable[..., Any]]


def _calls(dependant: Any) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def app_routes(app: FastAPI) -> list[RouteInfo]:
    """Every API route of the app (included routers flattened), static files excluded."""
    routes = []
    for rc in iter_route_contexts(app.routes):
        if isinstance(rc.original_route, APIRoute):
            routes.append(
                RouteInfo(
                    path=str(rc.path),
                    methods=frozenset(rc.methods or ()),
                    dependencies=frozenset(_calls(rc.dependant)),
                )
            )
    return routes


def fill_path(template: str, values: dict[str, str]) -> str:
    """A concrete path from a route template (a KeyError names a parameter not provided)."""
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], template)


@dataclass
class Site:
    """The web application on a test database, and helpers to act on it."""

    settings: Settings
    sessions: SessionFactory
    context: WebContext
    app: FastAPI

    @classmethod
    def build(cls, tmp_path: Path, sessions: SessionFactory, **web: Any) -> Site:
        """The app with ``web`` settings (see :class:`daemon.settings.WebSettings`)."""
        settings = web_settings(tmp_path, **web)
        context = WebContext(
            settings=settings,
            sessions=sessions,
            serving=Serving(settings.model, settings.priority.bands, sessions),
        )
        return cls(settings=settings, sessions=sessions, context=context, app=create_app(context))

    def client(self) -> TestClient:
        """A new browser (its own cookie jar); redirects are not followed."""
        return TestClient(self.app, base_url=BASE_URL, follow_redirects=False)

    def add_user(self, username: str, role: UserRole, *, active: bool = True) -> int:
        """An account whose password is :data:`PASSWORD` and already chosen; its id."""
        with writing(self.sessions) as session:
            user = User(
                username=username,
                password_hash=password_hash(),
                role=role,
                active=active,
                must_change_password=False,
                created_at=utcnow(),
                created_by="test",
                password_changed_at=utcnow(),
            )
            session.add(user)
            session.flush()
            return user.id

    def start_session(self, user_id: int, kind: str = accounts.BROWSER) -> accounts.NewSession:
        """A session started as sign-in starts it (the password check is skipped)."""
        with writing(self.sessions) as session:
            user = session.get(User, user_id)
            assert user is not None
            return accounts.start_session(
                session,
                user=user,
                kind=kind,
                address=TEST_CLIENT_ADDRESS,
                settings=self.settings.web,
            )

    def browser(self, user_id: int) -> tuple[TestClient, str]:
        """A browser signed in as the user, and its session's CSRF token."""
        client = self.client()
        started = self.start_session(user_id)
        client.cookies.set(COOKIE, started.token)
        return client, started.csrf_token

    def bearer(self, user_id: int) -> dict[str, str]:
        """Headers carrying a fresh API token of the user."""
        started = self.start_session(user_id, kind=accounts.API)
        return {"Authorization": f"Bearer {started.token}"}

    def audit(self) -> list[AuditEntry]:
        """The audit log, oldest first."""
        with writing(self.sessions) as session:
            return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all())

    def count(self, model: type[Any]) -> int:
        """Rows of an ORM model's table."""
        with writing(self.sessions) as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)

    def user(self, username: str) -> User:
        """A user by name (detached, attributes loaded)."""
        with writing(self.sessions) as session:
            found = accounts.find_user(session, username=username)
            assert found is not None, username
            return found


def sign_in_form(client: TestClient, username: str, password: str, next: str = "") -> Response:
    """Sign in through the page as a browser does: fetch the form, then post it."""
    page = client.get("/login")
    data = {"username": username, "password": password, "csrf_token": hidden_csrf(page.text)}
    if next:
        data["next"] = next
    answer: Response = client.post("/login", data=data)
    return answer


def page_csrf(client: TestClient) -> str:
    """The signed-in browser's CSRF token, from a page's forms."""
    page = client.get("/account/password")
    assert page.status_code == 200, page.status_code
    return hidden_csrf(page.text)
