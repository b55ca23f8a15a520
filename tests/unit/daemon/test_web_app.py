"""The web application end to end: CSRF, roles, headers, worklist, feedback, images, API.

The real app (``create_app``) on a migrated SQLite file, driven with the test client;
the route tables are enumerated, so a route added without CSRF or role checks fails
here. The image analysis tests share one module-scoped site that loads the bundled
model once.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from sqlalchemy import select

from chestaid.bundle import default_bundle_path, read_manifest
from chestaid.display import percent_pair_text
from daemon.db.migrate import upgrade
from daemon.db.models import (
    CalibrationState,
    CalibrationVersion,
    Feedback,
    SavedAnalysis,
    StudyRead,
    User,
    UserRole,
    WebSession,
    utcnow,
)
from daemon.db.session import SessionFactory, make_engine, make_session_factory, writing
from daemon.heatmaps import encode_cam
from daemon.web import security
from tests.daemon_harness import record_scored
from tests.dicom_factory import chest_pixels, make_dx
from tests.web_fixtures import (
    BASE_URL,
    PASSWORD,
    RouteInfo,
    Site,
    app_routes,
    fill_path,
    hidden_csrf,
    page_csrf,
    sign_in_form,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
API = "/api/v1"


@pytest.fixture
def site(tmp_path: Path, sessions: SessionFactory) -> Site:
    return Site.build(tmp_path, sessions)


@dataclass(frozen=True)
class People:
    admin: int
    reader: int


@pytest.fixture
def people(site: Site) -> People:
    return People(
        admin=site.add_user("admin", UserRole.ADMIN),
        reader=site.add_user("reader", UserRole.RADIOLOGIST),
    )


def _png(image: Image.Image, **info: str) -> bytes:
    meta = PngInfo()
    for key, value in info.items():
        meta.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=meta)
    return buffer.getvalue()


def _open_png(data: bytes) -> Image.Image:
    assert data.startswith(PNG_MAGIC)
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _cam() -> str:
    return encode_cam(np.linspace(0.0, 1.0, 20, dtype=np.float32).reshape(4, 5))


def _result_id(site: Site, uid: str) -> int:
    client = site.client()
    study = client.get(f"{API}/studies/{uid}", headers=site.bearer(_any_admin(site)))
    assert study.status_code == 200
    result_id = study.json()["images"][0]["result_id"]
    assert isinstance(result_id, int)
    return result_id


def _any_admin(site: Site) -> int:
    with writing(site.sessions) as session:
        found = session.scalar(select(User.id).where(User.role == UserRole.ADMIN))
    assert found is not None
    return found


def _state(site: Site) -> dict[str, Any]:
    """What a refused change must leave as it was."""
    with writing(site.sessions) as session:
        users = [
            (u.username, u.role, u.active, u.password_hash)
            for u in session.scalars(select(User).order_by(User.id)).all()
        ]
        ended = sorted(
            s.id for s in session.scalars(select(WebSession)).all() if s.ended_at is not None
        )
    return {
        "audit": len(site.audit()),
        "users": users,
        "sessions_ended": ended,
        "feedback": site.count(Feedback),
        "reads": site.count(StudyRead),
        "analyses": site.count(SavedAnalysis),
    }


def _path_values(site: Site, people: People, uid: str) -> dict[str, str]:
    return {
        "uid": uid,
        "result_id": str(_result_id(site, uid)),
        "version": "1",
        "user_id": str(people.reader),
        "analysis_id": "1",
        "job_id": "1",
        "delivery_id": "1",
    }


# Form fields that would make each page's change happen, were the CSRF check missing.
PLAUSIBLE_FORM = {
    "username": "mallory",
    "role": "admin",
    "action": "disable",
    "label": "pneumonia",
    "comment": "forged",
    "current": PASSWORD,
    "new": "a forged new password",
    "again": "a forged new password",
    "min_cases": "100",
    "target_sensitivity": "0.9",
    "confirm_changes": "0",
}


# One JSON body every API change accepts (extra fields are ignored), so a refusal is
# the CSRF or role check's and not the body's validation.
PLAUSIBLE_JSON = {
    "label": "pneumonia",
    "comment": "forged",
    "username": "admin",
    "password": PASSWORD,
    "current": PASSWORD,
    "new": "a forged new password",
    "confirm_changes": 0,
}


def _page_posts(routes: list[RouteInfo]) -> list[RouteInfo]:
    return [
        r
        for r in routes
        if r.methods & security.UNSAFE_METHODS
        and not r.path.startswith(f"{API}/")
        and r.path != "/login"  # before sign-in: the double-submit cookie, tested below
    ]


def _api_changes(routes: list[RouteInfo]) -> list[RouteInfo]:
    return [
        r
        for r in routes
        if r.methods & security.UNSAFE_METHODS
        and r.path.startswith(f"{API}/")
        and r.path != f"{API}/tokens"  # sign-in itself
    ]


# --- CSRF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("presented", ["missing", "another session's"])
def test_every_page_form_post_needs_the_sessions_csrf_token(
    site: Site, people: People, presented: str
) -> None:
    uid = record_scored(site.sessions, "1.2.1", logit=2.0, score=0.88, above=True)
    admin, _ = site.browser(people.admin)
    _, other_token = site.browser(people.reader)
    values = _path_values(site, people, uid)
    posts = _page_posts(app_routes(site.app))
    paths = {r.path for r in posts}
    assert {
        "/logout",
        "/account/password",
        "/studies/{uid}/feedback",
        "/studies/{uid}/read",
        "/admin/users",
        "/admin/users/{user_id}",
        "/admin/calibration/fit",
        "/admin/images/retry",
        "/admin/images/{job_id}/retry",
        "/admin/deliveries/retry",
        "/admin/deliveries/{delivery_id}/retry",
        "/admin/calibration/{version}/activate",
    } <= paths
    before = _state(site)
    for route in posts:
        data = dict(PLAUSIBLE_FORM)
        if presented != "missing":
            data["csrf_token"] = other_token
        for method in sorted(route.methods & security.UNSAFE_METHODS):
            answer = admin.request(method, fill_path(route.path, values), data=data)
            assert answer.status_code == 403, (method, route.path, answer.status_code)
    assert _state(site) == before
    assert admin.get("/worklist").status_code == 200  # the forged logout did not sign out


def test_sign_in_needs_the_double_submit_cookie(site: Site, people: People) -> None:
    client = site.client()
    token = hidden_csrf(client.get("/login").text)
    form = {"username": "admin", "password": PASSWORD, "csrf_token": token}

    client.cookies.clear()  # a cross-site form post: the browser sends no login cookie
    refused = client.post("/login", data=form)
    assert refused.status_code == 403
    client.cookies.set(security.LOGIN_CSRF_COOKIE, "another value", path="/login")
    assert client.post("/login", data=form).status_code == 403
    fresh = site.client()
    fresh.get("/login")
    assert fresh.post("/login", data={**form, "csrf_token": ""}).status_code == 403
    assert site.count(WebSession) == 0
    assert [e.action for e in site.audit()] == []  # the password was not even checked

    assert sign_in_form(site.client(), "admin", PASSWORD).status_code == 303


def test_cookie_authenticated_api_changes_need_the_csrf_header(site: Site, people: People) -> None:
    uid = record_scored(site.sessions, "1.2.1", logit=2.0, score=0.88, above=True)
    browser, csrf = site.browser(people.admin)
    values = _path_values(site, people, uid)
    changes = _api_changes(app_routes(site.app))
    assert {f"{API}/studies/{{uid}}/feedback", f"{API}/studies/{{uid}}/read"} <= {
        r.path for r in changes
    }
    before = _state(site)
    for route in changes:
        for method in sorted(route.methods & security.UNSAFE_METHODS):
            path = fill_path(route.path, values)
            for headers in ({}, {security.CSRF_HEADER: "not the token"}):
                answer = browser.request(method, path, json=PLAUSIBLE_JSON, headers=headers)
                assert answer.status_code == 403, (method, route.path, headers)
    assert _state(site) == before

    put = browser.put(
        f"{API}/studies/{uid}/feedback",
        json={"label": "pneumonia"},
        headers={security.CSRF_HEADER: csrf},
    )
    assert put.status_code == 200 and put.json()["feedback_label"] == "pneumonia"
    bearer = site.bearer(people.reader)  # no browser sends it on its own: no CSRF needed
    other = record_scored(site.sessions, "1.2.2", logit=-2.0, score=0.1, above=False)
    read = site.client().post(f"{API}/studies/{other}/read", headers=bearer)
    assert read.status_code == 200 and read.json()["newly_read"] is True


def test_a_session_token_works_only_the_way_it_was_issued(site: Site, people: People) -> None:
    browser_session = site.start_session(people.admin)
    api_session = site.start_session(people.admin, kind="api")
    client = site.client()
    # A browser cookie replayed as a bearer token would skip the CSRF check.
    as_bearer = {"Authorization": f"Bearer {browser_session.token}"}
    assert client.get(f"{API}/worklist", headers=as_bearer).status_code == 401
    client.cookies.set(security.COOKIE, api_session.token)
    assert client.get("/worklist").status_code == 303
    assert client.get(f"{API}/worklist").status_code == 401


# --- roles and signing in ----------------------------------------------------------------------


def test_a_radiologist_reads_but_cannot_administer(site: Site, people: People) -> None:
    uid = record_scored(site.sessions, "1.2.1", logit=2.0, score=0.88, above=True)
    reader, csrf = site.browser(people.reader)
    bearer = site.bearer(people.reader)
    for path in ("/worklist", "/worklist/rows", f"/studies/{uid}", "/analyse"):
        assert reader.get(path).status_code == 200, path
    for path in ("/worklist", f"/studies/{uid}", "/alerts", "/me"):
        assert reader.get(f"{API}{path}", headers=bearer).status_code == 200, path

    routes = app_routes(site.app)
    values = _path_values(site, people, uid)
    before = _state(site)
    admin_pages = [r for r in routes if r.path == "/admin" or r.path.startswith("/admin/")]
    assert {
        "/admin",
        "/admin/users",
        "/admin/audit",
        "/admin/audit.csv",
        "/admin/audit.json",
        "/admin/calibration",
        "/admin/images",
        "/admin/images/{job_id}/retry",
        "/admin/deliveries",
        "/admin/deliveries/{delivery_id}/retry",
    } <= {r.path for r in admin_pages}
    for route in admin_pages:
        for method in sorted(route.methods):
            data = {**PLAUSIBLE_FORM, "csrf_token": csrf} if method != "GET" else None
            answer = reader.request(method, fill_path(route.path, values), data=data)
            assert answer.status_code == 403, (method, route.path, answer.status_code)

    admin_api = [r for r in routes if security.api_admin in r.dependencies]
    assert {
        f"{API}/report",
        f"{API}/feedback",
        f"{API}/calibrations",
        f"{API}/calibrations/{{version}}/activate",
        f"{API}/images",
        f"{API}/images/retry",
        f"{API}/deliveries",
        f"{API}/deliveries/retry",
        f"{API}/audit",
        f"{API}/calibrations/{{version}}/review",
    } <= {r.path for r in admin_api}
    for route in admin_api:
        for method in sorted(route.methods):
            answer = reader.request(
                method, fill_path(route.path, values), json=PLAUSIBLE_JSON, headers=bearer
            )
            assert answer.status_code == 403, (method, route.path, answer.status_code)
    assert _state(site) == before


def test_signed_out_pages_go_to_sign_in_and_the_api_answers_401(site: Site, people: People) -> None:
    uid = record_scored(site.sessions, "1.2.1", logit=2.0, score=0.88, above=True)
    values = _path_values(site, people, uid)
    client = site.client()
    routes = app_routes(site.app)
    pages = [
        r
        for r in routes
        # /metrics answers 401 to a scraper, not a redirect (tests/unit/daemon/test_metrics.py).
        if "GET" in r.methods
        and not r.path.startswith(f"{API}/")
        and r.path not in ("/", "/login", "/metrics")
    ]
    assert len(pages) >= 10
    for route in pages:
        path = fill_path(route.path, values)
        answer = client.get(path)
        assert answer.status_code == 303, route.path
        assert answer.headers["location"] == f"/login?next={quote(path, safe='')}"
    with_query = client.get("/admin/feedback?period=7d")
    assert with_query.headers["location"] == "/login?next=%2Fadmin%2Ffeedback%3Fperiod%3D7d"

    apis = [r for r in routes if r.path.startswith(f"{API}/") and r.path != f"{API}/tokens"]
    assert len(apis) >= 10
    for route in apis:
        for method in sorted(route.methods):
            path = fill_path(route.path, values)
            answer = client.request(method, path, json=PLAUSIBLE_JSON)
            assert answer.status_code == 401, (method, route.path, answer.status_code)
            assert answer.headers["www-authenticate"] == "Bearer"
    assert client.get(f"{API}/me").status_code == 401
    wrong = {"Authorization": "Bearer not-a-token"}
    assert client.get(f"{API}/worklist", headers=wrong).status_code == 401


def test_after_sign_in_the_reader_returns_to_the_page_asked_for(site: Site, people: People) -> None:
    uid = record_scored(site.sessions, "1.2.1", logit=2.0, score=0.88, above=True)
    client = site.client()
    to_login = client.get(f"/studies/{uid}?tab=history").headers["location"]
    login_page = client.get(to_login)
    assert f'name="next" value="/studies/{uid}?tab=history"' in login_page.text
    signed = sign_in_form(client, "reader", PASSWORD, next=f"/studies/{uid}?tab=history")
    assert signed.headers["location"] == f"/studies/{uid}?tab=history"


OFF_SITE = [
    "//evil.example/steal",
    "https://evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "javascript:alert(1)",
    "evil.example",
    "http:evil.example",
]


def _lands_on_site(location: str) -> bool:
    # urlsplit drops tabs and newlines as browsers do, so "/\t/x" is seen as "//x".
    target = urlsplit(urljoin(f"{BASE_URL}/login", location))
    return target.scheme == "https" and target.netloc == "localhost"


def test_next_cannot_send_the_reader_off_site(site: Site, people: People) -> None:
    client = site.client()
    signed = sign_in_form(client, "reader", PASSWORD, next="//evil.example/steal")
    assert signed.headers["location"] == "/worklist"
    for target in OFF_SITE:  # signed in, /login redirects to next at once
        answer = client.get("/login", params={"next": target})
        assert answer.status_code == 303
        assert _lands_on_site(answer.headers["location"]), (target, answer.headers["location"])
    assert client.get("/login", params={"next": "/admin"}).headers["location"] == "/admin"
    # Reflected into the sign-in form, a crafted next stays text.
    form = site.client().get("/login", params={"next": '/"><script>alert(1)</script>'})
    assert "<script>alert(1)" not in form.text


# --- headers and cookies -------------------------------------------------------------------------


def test_every_answer_carries_the_security_headers(site: Site, people: People) -> None:
    uid = record_scored(site.sessions, "1.2.1", logit=2.0, score=0.88, above=True, cam=_cam())
    admin, _ = site.browser(people.admin)
    reader, _ = site.browser(people.reader)
    answers = [
        site.client().get("/login"),
        site.client().get("/worklist"),  # a redirect
        admin.get("/worklist"),
        admin.get(f"/studies/{uid}"),
        admin.get("/studies/unknown"),  # 404 page
        reader.get("/admin/users"),  # 403 page
        admin.get(f"{API}/worklist"),
        site.client().get(f"{API}/worklist"),  # 401
        admin.get(f"/studies/{uid}/images/{_result_id(site, uid)}/heatmap.png"),
    ]
    for answer in answers:
        where = (answer.request.url.path, answer.status_code)
        csp = answer.headers["content-security-policy"]
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, where
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, where
        assert answer.headers["x-frame-options"] == "DENY", where
        assert answer.headers["cache-control"] == "no-store", where
        assert answer.headers["x-content-type-options"] == "nosniff", where
        assert "strict-transport-security" not in answer.headers  # served over plain HTTP


INLINE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\sstyle=|<style\b|\son[a-z]+=|javascript:", re.I)


def test_pages_need_no_inline_script_or_style_under_the_policy(site: Site, people: People) -> None:
    uid = record_scored(site.sessions, "1.2.1", logit=2.0, score=0.88, above=True, cam=_cam())
    admin, csrf = site.browser(people.admin)
    admin.post(f"/studies/{uid}/feedback", data={"csrf_token": csrf, "label": "pneumonia"})
    record_scored(site.sessions, "1.2.2", logit=-2.0, score=0.1, above=False, cam=_cam())
    pages = [
        "/worklist",
        "/worklist/rows",
        f"/studies/{uid}",
        "/analyse",
        "/account/password",
        "/admin",
        "/admin/feedback",
        "/admin/calibration",
        "/admin/users",
        "/admin/audit",
        "/admin/images",
        "/admin/deliveries",
    ]
    for path in pages:
        answer = admin.get(path)
        assert answer.status_code == 200, path
        found = INLINE.search(answer.text)
        assert found is None, (path, found.group(0) if found else None)
    assert INLINE.search(site.client().get("/login").text) is None


def _set_cookie(answer: Any, name: str) -> str:
    for header in answer.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return str(header)
    raise AssertionError(f"no Set-Cookie for {name}")


def test_the_session_cookie_is_httponly_samesite_strict_and_secure(
    site: Site, people: People
) -> None:
    client = site.client()
    login_cookie = _set_cookie(client.get("/login"), security.LOGIN_CSRF_COOKIE)
    signed = sign_in_form(client, "reader", PASSWORD)
    cookie = _set_cookie(signed, security.COOKIE)
    for header in (login_cookie, cookie):
        attributes = {part.strip().split("=")[0].lower(): part for part in header.split(";")}
        assert "httponly" in attributes and "secure" in attributes, header
        assert attributes["samesite"].strip().lower() == "samesite=strict", header
    assert "path=/" in cookie.lower()


def test_cookies_are_not_secure_when_configured_off(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site = Site.build(tmp_path, sessions, secure_cookies=False)
    site.add_user("reader", UserRole.RADIOLOGIST)
    client = TestClient(site.app, base_url="http://localhost", follow_redirects=False)
    signed = sign_in_form(client, "reader", PASSWORD)
    assert signed.status_code == 303
    cookie = _set_cookie(signed, security.COOKIE).lower()
    assert "secure" not in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/worklist").status_code == 200  # sent back over plain HTTP


# --- the worklist, studies and feedback ---------------------------------------------------------


def test_the_worklist_lists_open_studies_most_urgent_first(site: Site, people: People) -> None:
    low = record_scored(site.sessions, "1.2.1", logit=-1.5, score=0.18, above=False)
    high = record_scored(site.sessions, "1.2.2", logit=2.5, score=0.92, above=True)
    middle = record_scored(site.sessions, "1.2.3", logit=-0.5, score=0.38, above=False)
    bearer = site.bearer(people.reader)
    items = site.client().get(f"{API}/worklist", headers=bearer).json()["items"]
    assert [i["study_instance_uid"] for i in items] == [high, middle, low]
    assert [i["position"] for i in items] == [1, 2, 3]
    assert [i["above_threshold"] for i in items] == [True, False, False]
    assert items[0]["band"] != items[1]["band"]
    assert items[0]["score"] == pytest.approx(0.92)

    reader, _ = site.browser(people.reader)
    for path in ("/worklist", "/worklist/rows"):
        html = reader.get(path).text
        shown = re.findall(r'data-study="([^"]+)"', html)
        assert shown == [high, middle, low], path


def test_pages_show_a_saturated_score_apart_from_its_threshold(site: Site, people: People) -> None:
    # Scores of this model sit near 1: one digit too few printed both as the same number.
    uid = record_scored(
        site.sessions, "1.2.1", logit=10.1, score=0.999961, threshold=0.999964, above=False
    )
    reader, _ = site.browser(people.reader)
    study = reader.get(f"/studies/{uid}").text
    score = re.search(r'id="study-score"[^>]*>([^<]+)<', study)
    threshold = re.search(r'id="study-threshold"[^>]*>([^<]+)<', study)
    assert score is not None and threshold is not None
    assert score.group(1) != threshold.group(1)
    assert float(score.group(1).rstrip(" %")) < float(threshold.group(1).rstrip(" %"))
    row = reader.get("/worklist/rows").text
    shown = re.search(r'data-score="[^"]*"[^>]*>([^<]+)<span class="muted"> / ([^<]+)</span>', row)
    assert shown is not None, row
    assert float(shown.group(1).rstrip(" %")) < float(shown.group(2).rstrip(" %"))


def test_the_calibration_page_shows_thresholds_with_their_intervals(
    site: Site, people: People
) -> None:
    report = {
        "ece_before": 0.1,
        "ece_after_cross_validated": 0.05,
        "sensitivity_estimate": 0.9,
        "sensitivity_ci95": [0.85, 0.94],
        "specificity_estimate": 0.5,
        "specificity_ci95": [0.4, 0.6],
        "threshold_ci95": [0.99991, 0.999972],
    }
    with writing(site.sessions) as session:
        session.add(
            CalibrationVersion(
                version=2,
                model_version=site.context.serving.current().model_version,
                method="platt",
                calibrator=json.dumps({"name": "platt", "a": 1.0, "b": 0.0}),
                threshold=0.99996,
                target_sensitivity=0.9,
                n_cases=120,
                report=json.dumps(report),
                state=CalibrationState.PENDING,
                fitted_by="admin",
                fitted_at=utcnow(),
            )
        )
    admin, _ = site.browser(people.admin)
    page = admin.get("/admin/calibration").text
    row = re.search(r'<tr data-version="2".*?</tr>', page, re.S)
    assert row is not None
    assert "99.996 %" in row.group(0) and "[99.99 %, 99.997 %]" in row.group(0)
    # The served bundle's own record, with the intervals it was governed with.
    bundle = re.search(r'id="bundle-threshold">(.*?)</p>', page, re.S)
    assert bundle is not None
    record = read_manifest(site.settings.model.bundle or default_bundle_path()).threshold or {}
    for name, value in (
        ("sensitivity", record["achieved_sensitivity"]),
        ("specificity", record["specificity"]),
    ):
        low, high = record[f"{name}_ci95"]
        assert f"{name} {value:.3f} [{low:.3f}, {high:.3f}]" in bundle.group(1)


def test_a_long_worklist_is_paged_and_says_how_many_are_open(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site = Site.build(tmp_path, sessions, worklist_rows=10)
    reader = site.add_user("reader", UserRole.RADIOLOGIST)
    uids = [
        record_scored(sessions, f"1.2.{i}", logit=i / 10, score=0.3 + i / 100, above=False)
        for i in range(12)
    ]
    client, _ = site.browser(reader)
    for path in ("/worklist", "/worklist/rows"):
        html = client.get(path).text
        assert re.findall(r'data-study="([^"]+)"', html) == uids[::-1][:10], path
        assert "Rows 1–10 of 12." in html and 'href="/worklist?page=2"' in html
        second = client.get(f"{path}?page=2").text
        assert re.findall(r'data-study="([^"]+)"', second) == uids[::-1][10:], path
        assert "Rows 11–12 of 12." in second and 'href="/worklist?page=1"' in second
    bearer = site.bearer(reader)
    api = site.client().get(f"{API}/worklist?offset=10&limit=5", headers=bearer).json()
    assert [i["study_instance_uid"] for i in api["items"]] == uids[::-1][10:]
    assert (api["total"], api["offset"], api["limit"], api["page"]) == (12, 10, 5, 3)
    paged = site.client().get(f"{API}/worklist?page=2&per_page=5", headers=bearer).json()
    assert [i["study_instance_uid"] for i in paged["items"]] == uids[::-1][5:10]
    assert (paged["total"], paged["pages"]) == (12, 3)
    # Beyond the bound is refused, never cut short silently.
    for query in ("limit=501", "per_page=501", "page=0", "offset=-1", "band=NOPE", "from=x"):
        refused = site.client().get(f"{API}/worklist?{query}", headers=bearer)
        assert refused.status_code == 422, query


def test_feedback_on_the_study_page_is_kept_with_its_history(site: Site, people: People) -> None:
    uid = record_scored(site.sessions, "1.2.1", logit=2.0, score=0.88, above=True)
    other = record_scored(site.sessions, "1.2.2", logit=-2.0, score=0.1, above=False)
    reader, _ = site.browser(people.reader)
    page = reader.get(f"/studies/{uid}")
    assert page.status_code == 200 and 'id="feedback-form"' in page.text
    csrf = hidden_csrf(page.text)

    given = reader.post(
        f"/studies/{uid}/feedback",
        data={"csrf_token": csrf, "label": "pneumonia", "comment": " left lower lobe <b>x</b> "},
    )
    assert (given.status_code, given.headers["location"]) == (303, f"/studies/{uid}?saved=1")
    shown = reader.get(given.headers["location"]).text
    assert 'id="feedback-saved"' in shown and "Pneumonia confirmed" in shown
    assert "left lower lobe &lt;b&gt;x&lt;/b&gt;" in shown and "<b>x</b>" not in shown
    bearer = site.bearer(people.reader)
    open_studies = site.client().get(f"{API}/worklist", headers=bearer).json()["items"]
    assert [i["study_instance_uid"] for i in open_studies] == [other]

    changed = reader.post(
        f"/studies/{uid}/feedback", data={"csrf_token": csrf, "label": "no_pneumonia"}
    )
    assert changed.status_code == 303
    reader.post(f"/studies/{uid}/feedback", data={"csrf_token": csrf, "label": "no_pneumonia"})
    study = site.client().get(f"{API}/studies/{uid}", headers=bearer).json()
    assert study["feedback_label"] == "no_pneumonia" and study["feedback_by"] == "reader"
    assert study["read_by"] == "reader"
    history = [(h["old_label"], h["new_label"], h["new_comment"]) for h in study["history"]]
    assert history == [
        (None, "pneumonia", "left lower lobe <b>x</b>"),
        ("pneumonia", "no_pneumonia", None),
    ]
    assert {h["changed_by"] for h in study["history"]} == {"reader"}
    assert 'id="feedback-history"' in reader.get(f"/studies/{uid}").text


def test_feedback_through_the_api_is_counted_in_the_report(site: Site, people: People) -> None:
    # (above the threshold, label) -> the cell of the confusion matrix it belongs to
    cases = [
        (True, "pneumonia"),  # tp
        (True, "no_pneumonia"),  # fp
        (False, "no_pneumonia"),  # tn
        (False, "pneumonia"),  # fn
        (True, "indeterminate"),  # not counted in the matrix
    ]
    bearer = site.bearer(people.reader)
    client = site.client()
    for n, (above, label) in enumerate(cases):
        uid = record_scored(
            site.sessions,
            f"1.2.{n}",
            logit=2.0 if above else -2.0,
            score=0.9 if above else 0.1,
            above=above,
        )
        put = client.put(f"{API}/studies/{uid}/feedback", json={"label": label}, headers=bearer)
        assert put.status_code == 200 and put.json()["feedback_label"] == label
    assert client.get(f"{API}/worklist", headers=bearer).json()["items"] == []

    admin = site.bearer(people.admin)
    overall, *groups = client.get(f"{API}/report", headers=admin).json()
    assert {k: overall[k] for k in ("tp", "fp", "tn", "fn", "indeterminate", "feedback")} == {
        "tp": 1,
        "fp": 1,
        "tn": 1,
        "fn": 1,
        "indeterminate": 1,
        "feedback": 5,
    }
    assert overall["sensitivity"]["value"] == pytest.approx(0.5)
    assert [(g["model_version"], g["feedback"]) for g in groups] == [("m", 5)]
    exported = client.get(f"{API}/feedback", headers=admin).json()
    assert [(row["above_threshold"], row["label"]) for row in exported] == cases
    assert {row["given_by"] for row in exported} == {"reader"}

    # The same export as CSV from the admin pages, audited.
    browser, _ = site.browser(people.admin)
    csv_page = browser.get("/admin/feedback.csv?period=all")
    assert csv_page.status_code == 200 and csv_page.headers["content-type"].startswith("text/csv")
    lines = csv_page.text.strip().splitlines()
    assert len(lines) == 1 + len(cases) and "study_instance_uid" in lines[0]
    assert [e.action for e in site.audit()].count("feedback.exported") == 1


def test_unknown_studies_and_bad_findings_are_refused(site: Site, people: People) -> None:
    uid = record_scored(site.sessions, "1.2.1", logit=2.0, score=0.88, above=True)
    bearer = site.bearer(people.reader)
    client = site.client()
    reader, csrf = site.browser(people.reader)
    assert client.get(f"{API}/studies/9.9.9", headers=bearer).status_code == 404
    unknown = client.put(
        f"{API}/studies/9.9.9/feedback", json={"label": "pneumonia"}, headers=bearer
    )
    assert unknown.status_code == 404
    assert reader.get("/studies/9.9.9").status_code == 404
    page_unknown = reader.post(
        "/studies/9.9.9/feedback", data={"csrf_token": csrf, "label": "pneumonia"}
    )
    assert page_unknown.status_code == 404  # as the API and the study page answer

    for body in ({"label": "maybe"}, {}, {"label": "pneumonia", "comment": "x" * 2001}):
        answer = client.put(f"{API}/studies/{uid}/feedback", json=body, headers=bearer)
        assert answer.status_code == 422, body
        assert "detail" in answer.json()
    page_bad = reader.post(f"/studies/{uid}/feedback", data={"csrf_token": csrf, "label": "maybe"})
    assert page_bad.status_code == 422
    assert site.count(Feedback) == 0 and site.count(StudyRead) == 0


def test_an_unknown_study_cannot_be_marked_read_ahead_of_its_arrival(
    site: Site, people: People
) -> None:
    bearer = site.bearer(people.reader)
    client = site.client()
    reader, csrf = site.browser(people.reader)
    by_api = client.post(f"{API}/studies/9.9.9/read", headers=bearer)
    by_page = reader.post("/studies/9.9.8/read", data={"csrf_token": csrf})
    # Had the UIDs been recorded as read, these studies would never reach the worklist.
    record_scored(site.sessions, "1.2.1", logit=2.0, score=0.9, above=True, study_uid="9.9.9")
    record_scored(site.sessions, "1.2.2", logit=2.0, score=0.8, above=True, study_uid="9.9.8")
    listed = client.get(f"{API}/worklist", headers=bearer).json()["items"]
    assert [i["study_instance_uid"] for i in listed] == ["9.9.9", "9.9.8"]
    assert (by_api.status_code, by_page.status_code) == (404, 404)
    assert not [e for e in site.audit() if e.action == "study.read"]


def test_the_api_checks_who_is_asking_before_the_body(site: Site, people: People) -> None:
    client = site.client()
    browser, _ = site.browser(people.admin)
    changes = _api_changes(app_routes(site.app))
    values = _path_values(
        site, people, record_scored(site.sessions, "1.2.1", logit=2.0, score=0.9, above=True)
    )
    for route in changes:
        for method in sorted(route.methods & security.UNSAFE_METHODS):
            path = fill_path(route.path, values)
            anonymous = client.request(method, path, json={})
            assert anonymous.status_code == 401, (method, route.path, anonymous.status_code)
            no_csrf = browser.request(method, path, json={})
            assert no_csrf.status_code == 403, (method, route.path, no_csrf.status_code)


# --- images of stored studies ----------------------------------------------------------------------


def test_study_images_heatmap_source_and_purged_source(site: Site, people: People) -> None:
    purged = record_scored(site.sessions, "1.2.1", logit=2.0, score=0.88, above=True, cam=_cam())
    kept = record_scored(
        site.sessions, "1.2.2", logit=-2.0, score=0.1, above=False, spool_name="x/kept.dcm"
    )
    spooled = site.settings.storage.spool / "x" / "kept.dcm"
    spooled.parent.mkdir(parents=True)
    make_dx(spooled, rows=64, cols=80)
    reader, _ = site.browser(people.reader)
    purged_id, kept_id = _result_id(site, purged), _result_id(site, kept)

    heat = reader.get(f"/studies/{purged}/images/{purged_id}/heatmap.png?width=40&height=30")
    assert heat.status_code == 200 and heat.headers["content-type"] == "image/png"
    assert _open_png(heat.content).size == (40, 30)
    assert _open_png(heat.content).mode == "RGB"
    assert reader.get(f"/studies/{purged}/images/{purged_id}/source.png").status_code == 410

    source = reader.get(f"/studies/{kept}/images/{kept_id}/source.png")
    assert source.status_code == 200 and source.headers["content-type"] == "image/png"
    image = _open_png(source.content)
    assert (image.mode, image.size) == ("L", (80, 64))
    assert reader.get(f"/studies/{kept}/images/{kept_id}/heatmap.png").status_code == 404
    # A result is only served under its own study.
    assert reader.get(f"/studies/{kept}/images/{purged_id}/heatmap.png").status_code == 404
    assert reader.get(f"/studies/{purged}/images/{kept_id}/source.png").status_code == 404


# --- OpenAPI ---------------------------------------------------------------------------------------


def test_the_openapi_document_describes_the_api_and_no_pages(site: Site) -> None:
    answer = site.client().get(f"{API}/openapi.json")
    assert answer.status_code == 200
    paths = answer.json()["paths"]
    assert {
        f"{API}/worklist",
        f"{API}/studies/{{uid}}",
        f"{API}/studies/{{uid}}/feedback",
        f"{API}/report",
        f"{API}/tokens",
        f"{API}/analyses",
    } <= set(paths)
    assert all(path.startswith(f"{API}/") for path in paths), sorted(paths)
    assert "put" in paths[f"{API}/studies/{{uid}}/feedback"]
    body = paths[f"{API}/analyses"]["post"]["requestBody"]["content"]
    assert "application/octet-stream" in body
    document = answer.json()
    assert document["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    # Every call but signing in names the bearer scheme; the report's figures are typed.
    for path, methods in paths.items():
        for method, operation in methods.items():
            secured = any("token" in entry for entry in operation.get("security", []))
            assert secured == (path != f"{API}/tokens" or method == "delete"), (method, path)
    report = paths[f"{API}/report"]["get"]["responses"]["200"]["content"]["application/json"]
    assert report["schema"]["items"]["$ref"].endswith("/ReportGroupOut")


# --- the audit trail ---------------------------------------------------------------------------------


def test_sign_ins_account_changes_feedback_and_sign_outs_are_audited(
    site: Site, people: People
) -> None:
    uid = record_scored(site.sessions, "1.2.1", logit=2.0, score=0.88, above=True)
    assert sign_in_form(site.client(), "admin", "wrong password").status_code == 401
    admin = site.client()
    assert sign_in_form(admin, "admin", PASSWORD).status_code == 303
    csrf = page_csrf(admin)
    created = admin.post(
        "/admin/users", data={"csrf_token": csrf, "username": "reader2", "role": "radiologist"}
    )
    assert created.status_code == 200 and 'id="issued-password"' in created.text
    new_id = site.user("reader2").id
    role = admin.post(
        f"/admin/users/{new_id}", data={"csrf_token": csrf, "action": "role", "role": "admin"}
    )
    assert role.status_code == 200 and site.user("reader2").role == UserRole.ADMIN
    put = site.client().put(
        f"{API}/studies/{uid}/feedback",
        json={"label": "pneumonia"},
        headers=site.bearer(people.reader),
    )
    assert put.status_code == 200
    audit_page = admin.get("/admin/audit")
    assert audit_page.status_code == 200 and "user.role_changed" in audit_page.text
    token = admin.cookies[security.COOKIE]
    out = admin.post("/logout", data={"csrf_token": csrf})
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    replay = site.client()
    replay.cookies.set(security.COOKIE, token)
    assert replay.get("/worklist").status_code == 303  # the session ended on the server

    entries = [(e.action, e.actor, e.subject, json.loads(e.detail or "{}")) for e in site.audit()]
    assert ("login.failed", "admin", None, {"address": "testclient"}) in entries
    assert ("login.succeeded", "admin", None, {"address": "testclient"}) in entries
    assert ("user.created", "admin", "reader2", {"role": "radiologist"}) in entries
    assert (
        "user.role_changed",
        "admin",
        "reader2",
        {"old": "radiologist", "new": "admin"},
    ) in entries
    given = [e for e in entries if e[0] == "feedback.given"]
    assert [(e[1], e[2], e[3]["new"]) for e in given] == [("reader", uid, "pneumonia")]
    assert ("logout", "admin", None, {"kind": "browser"}) in entries
    assert [e[0] for e in entries].index("logout") == len(entries) - 1


# --- image analysis (the real bundled model, loaded once) ----------------------------------------


@dataclass(frozen=True)
class Analyser:
    site: Site
    bearer: dict[str, str]
    admin: int
    reader: int


@pytest.fixture(scope="module")
def analyser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Analyser]:
    tmp_path = tmp_path_factory.mktemp("analyse")
    engine = make_engine(f"sqlite:///{tmp_path / 'chestaid.db'}", busy_timeout=2.0)
    upgrade(engine)
    site = Site.build(tmp_path, make_session_factory(engine), upload_max_mb=1)
    admin = site.add_user("admin", UserRole.ADMIN)
    reader = site.add_user("reader", UserRole.RADIOLOGIST)
    site.context.serving.model()  # load the bundled model here, once
    yield Analyser(site=site, bearer=site.bearer(admin), admin=admin, reader=reader)
    engine.dispose()


SECRET = "PATIENT^SECRET^9931"


def _chest_png() -> bytes:
    pixels = chest_pixels(200, 160, low=0, high=255, seed=3).astype(np.uint8)
    return _png(Image.fromarray(pixels, mode="L"), Comment=SECRET)


def test_an_uploaded_png_is_scored_in_memory_and_nothing_is_kept(analyser: Analyser) -> None:
    site = analyser.site
    before = site.count(SavedAnalysis)
    upload = _chest_png()
    answer = site.client().post(
        f"{API}/analyses?filename=chest.png", content=upload, headers=analyser.bearer
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["source_format"] == "png" and result["filename"] == "chest.png"
    assert result["sha256"] == hashlib.sha256(upload).hexdigest()
    assert 0.0 <= result["score"] <= 1.0
    assert result["above_threshold"] == (result["score"] >= result["threshold"])
    texts = (result["score_text"], result["threshold_text"])
    assert texts == percent_pair_text(result["score"], result["threshold"])
    assert result["model_version"] == site.context.serving.current().model_version
    grey = _open_png(base64.b64decode(result["image_png"]))
    heat = _open_png(base64.b64decode(result["heatmap_png"]))
    assert (grey.mode, heat.mode) == ("L", "RGB")
    assert grey.size == heat.size == (160, 200)
    assert result["saved_id"] is None
    assert site.count(SavedAnalysis) == before


def test_a_kept_analysis_stores_the_shown_image_not_the_upload(analyser: Analyser) -> None:
    site = analyser.site
    before = site.count(SavedAnalysis)
    upload = _chest_png()
    answer = site.client().post(
        f"{API}/analyses", params={"keep": "true"}, content=upload, headers=analyser.bearer
    )
    assert answer.status_code == 200, answer.text
    saved_id = answer.json()["saved_id"]
    assert isinstance(saved_id, int)
    assert site.count(SavedAnalysis) == before + 1
    with writing(site.sessions) as session:
        row = session.get(SavedAnalysis, saved_id)
        assert row is not None
        stored, digest = row.image_png, row.sha256
    assert digest == hashlib.sha256(upload).hexdigest()
    assert stored != upload and SECRET.encode() not in stored
    assert _open_png(stored).size == (160, 200)
    owner, _ = site.browser(analyser.admin)
    shown = owner.get(f"/analyses/{saved_id}/image.png")
    assert shown.status_code == 200 and shown.content == stored
    reader, _ = site.browser(analyser.reader)  # not the owner, not an admin
    assert reader.get(f"/analyses/{saved_id}/image.png").status_code == 404


def test_uploads_that_are_too_large_unknown_or_empty_are_refused(analyser: Analyser) -> None:
    site = analyser.site
    before = site.count(SavedAnalysis)
    client = site.client()
    url = f"{API}/analyses?keep=true"
    big = b"\0" * (3 * 2**19)  # 1.5 MB, over upload_max_mb = 1
    assert client.post(url, content=big, headers=analyser.bearer).status_code == 413
    streamed = client.post(
        url, content=iter([big[: 2**19]] * 3), headers=analyser.bearer
    )  # no Content-Length: counted while read
    assert streamed.status_code == 413
    noise = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert client.post(url, content=noise, headers=analyser.bearer).status_code == 415
    empty = client.post(url, content=b"", headers=analyser.bearer)
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]
    assert site.count(SavedAnalysis) == before
