"""The web interface in a real browser: headless Debian Chromium driven by Playwright.

One story against a real ``chestaid-daemon serve`` (all roles, the web role included):
the first admin signs in with the one-time password from the daemon's log and chooses
a new one; a study sent by DCMTK's storescu appears on the open worklist through its
periodic refresh; the study page shows the radiograph and its heatmap, whose opacity
follows the slider; feedback takes the study off the worklist and shows in the admin
report; the admin creates a radiologist, who signs in with the issued one-time password,
has no admin pages, and analyses an uploaded PNG. No page logs a console error (a
Content-Security-Policy violation would).

With ``CHESTAID_SCREENSHOTS`` naming a directory, the test sends more studies, gives
them feedback, fits a local calibration, and saves full-page screenshots of each page
there (for the README). Without it no screenshot is taken.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, expect
from sqlalchemy import select

from chestaid.bundle import read_manifest
from daemon.db.models import Study, User, UserRole
from daemon.db.session import SessionFactory, make_engine, make_session_factory, writing
from daemon.web.server import WebServer
from tests.bundles import unchecked_default_bundle
from tests.calibration_cases import informative, label_studies, uninformative
from tests.daemon_harness import Daemon, free_port, record_scored, storescu
from tests.dicom_factory import chest_pixels, make_dx, require_tool
from tests.web_fixtures import PASSWORD, password_hash, web_settings

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "site-chief-picks-this-one"
READER = "dr.reader"
READER_PASSWORD = "reader-chooses-this-one"
COMMENT = "right lower lobe consolidation"
FLAGGED = "At this threshold: flagged for priority reading"
BELOW = "At this threshold: below the threshold"
SCREENSHOTS = (
    "login",
    "worklist",
    "study",
    "analyse",
    "dashboard",
    "feedback-report",
    "calibration",
    "users",
    "audit",
    "recently-read",
    "calibration-review",
)
WAIT_MS = 60_000  # scoring plus a worklist refresh, with room for a slow machine


@dataclass
class Screenshots:
    """Full-page screenshots into a directory, or nothing when there is none."""

    directory: Path | None
    taken: list[str] = field(default_factory=list)

    @property
    def wanted(self) -> bool:
        return self.directory is not None

    def take(self, page: Page, name: str) -> None:
        if self.directory is not None:
            page.screenshot(path=self.directory / f"{name}.png", full_page=True)
            self.taken.append(name)


@dataclass
class ConsoleErrors:
    """Console errors and uncaught exceptions of a page; expected HTTP refusals aside."""

    expected: set[tuple[str, int]] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.seen.append(f"page error: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = str(message.location.get("url", ""))
        # Chromium logs every 4xx document as a failed resource; some are the point.
        for path, status in self.expected:
            if url.endswith(path) and f"status of {status}" in message.text:
                return
        self.seen.append(f"{message.text} ({url})")


@pytest.fixture
def daemon(tmp_path: Path, browser: Browser) -> Iterator[Daemon]:
    # After the browser: a missing Debian package skips before the daemon starts.
    require_tool("storescu", "dcmtk")
    node = Daemon(tmp_path / "node", sections={"web": {"worklist_refresh_seconds": 5}})
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def page(browser: Browser, daemon: Daemon) -> Iterator[Page]:
    context = browser.new_context(
        base_url=f"http://127.0.0.1:{daemon.web_port}", viewport={"width": 1280, "height": 800}
    )
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def one_time_password(daemon: Daemon) -> str:
    """The first admin's one-time password, from the daemon's JSON log."""
    for line in daemon.logs().splitlines():
        if '"one_time_password"' in line:
            return str(json.loads(line)["one_time_password"])
    pytest.fail(f"no one-time password in the daemon's log:\n{daemon.logs()[-3000:]}")


def sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/login")
    form = page.locator("#login-form")
    form.locator("input[name=username]").fill(username)
    form.locator("input[name=password]").fill(password)
    form.locator("button[type=submit]").click()


def choose_password(page: Page, current: str, new: str) -> None:
    """On the forced password page after a one-time sign-in: choose one, land on the worklist."""
    expect(page).to_have_url(re.compile(r"/account/password$"))
    expect(page.locator(".notice")).to_contain_text("one-time password")
    form = page.locator("#password-form")
    form.locator("input[name=current]").fill(current)
    form.locator("input[name=new]").fill(new)
    form.locator("input[name=again]").fill(new)
    form.locator("button[type=submit]").click()
    expect(page.locator("#worklist")).to_be_visible()


def csrf_token(page: Page) -> str:
    return page.locator("input[name=csrf_token]").first.input_value()


def daemon_sessions(daemon: Daemon) -> SessionFactory:
    """Units of work on the running daemon's database (to make labelled studies)."""
    return make_session_factory(make_engine(daemon.db_url))


def served_model() -> str:
    """The version of the model the test daemon serves."""
    return read_manifest(unchecked_default_bundle()).version


def chest_png(seed: int) -> bytes:
    pixels = chest_pixels(256, 208, low=0, high=255, seed=seed).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def send_high_priority(path: Path, port: int) -> None:
    """C-STORE with DIMSE priority HIGH (storescu 3.6 has no option for it)."""
    import pydicom
    from pynetdicom import AE

    ds = pydicom.dcmread(path)
    ae = AE(ae_title="WARD")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="CHESTAID")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(ds, priority=1)
        assert status.Status == 0x0000
    finally:
        assoc.release()


class Extra(NamedTuple):
    path: Path
    study_uid: str
    label: str
    high_priority: bool


def extra_studies(directory: Path) -> list[Extra]:
    """Studies for the screenshots, each with the label to give it.

    The phantoms score on both sides of the served model's threshold (the bundled model
    without its not-assessable checks, which would refuse phantoms); labels of both kinds
    give a calibration to fit. One study is sent with priority HIGH, which puts it in the
    top band.
    """
    plan = [
        ("MONOCHROME1", (256, 208), "pneumonia"),
        ("MONOCHROME1", (240, 200), "pneumonia"),
        ("MONOCHROME1", (256, 256), "pneumonia"),
        ("MONOCHROME1", (224, 192), "no_pneumonia"),
        ("MONOCHROME1", (200, 160), "pneumonia"),
        ("MONOCHROME2", (256, 208), "no_pneumonia"),
        ("MONOCHROME2", (128, 128), "no_pneumonia"),
        ("MONOCHROME2", (512, 512), "no_pneumonia"),
        ("MONOCHROME2", (300, 300), "pneumonia"),
        ("MONOCHROME2", (64, 80), "no_pneumonia"),
        ("MONOCHROME2", (256, 256), "no_pneumonia"),
        ("MONOCHROME2", (200, 160), "indeterminate"),
    ]
    studies = []
    for seed, (photometric, (rows, cols), label) in enumerate(plan, start=1):
        path = directory / f"extra-{seed}.dcm"
        ds = make_dx(path, rows=rows, cols=cols, seed=seed, photometric=photometric)
        studies.append(Extra(path, str(ds.StudyInstanceUID), label, high_priority=seed == 7))
    return studies


def test_reading_and_administering_in_a_browser(tmp_path: Path, daemon: Daemon, page: Page) -> None:
    target = os.environ.get("CHESTAID_SCREENSHOTS")
    shots = Screenshots(Path(target) if target else None)
    if shots.directory is not None:
        shots.directory.mkdir(parents=True, exist_ok=True)
    main_file = tmp_path / "main.dcm"
    main_uid = str(
        make_dx(main_file, rows=256, cols=208, seed=0, photometric="MONOCHROME1").StudyInstanceUID
    )
    extras = extra_studies(tmp_path) if shots.wanted else []
    errors = ConsoleErrors()
    errors.watch(page)

    # The first admin: one-time password from the log, then a password of their own.
    page.goto("/worklist")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fworklist$"))
    shots.take(page, "login")
    first_password = one_time_password(daemon)
    sign_in(page, "admin", first_password)
    choose_password(page, first_password, ADMIN_PASSWORD)
    expect(page.locator("#signed-in-as")).to_have_text("admin (admin)")
    expect(page.locator("#worklist-rows tr.empty")).to_be_visible()

    # A study sent now appears through the page's own refresh, not a reload.
    normal = [main_file, *(e.path for e in extras if not e.high_priority)]
    sent = storescu(normal, daemon.port)
    assert sent.returncode == 0, sent.stderr
    for extra in extras:
        if extra.high_priority:
            send_high_priority(extra.path, daemon.port)
    row = page.locator(f'#worklist-rows tr[data-study="{main_uid}"]')
    expect(row).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#worklist-updated")).to_contain_text("Updated")
    if shots.wanted:
        expect(page.locator("#worklist-rows tr.row")).to_have_count(
            1 + len(extras), timeout=WAIT_MS
        )
        expect(page.locator("#worklist-rows [data-reason=sender_high]")).to_have_count(1)
        shots.take(page, "worklist")

    # The study: radiograph and heatmap loaded; the slider sets the heatmap's opacity.
    row.locator("a.open-study").click()
    expect(page.locator("#study-uid")).to_have_text(main_uid)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.viewer img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    widths = page.eval_on_selector_all(
        ".viewer img", "images => images.map(i => [i.className, i.naturalWidth])"
    )
    assert sorted(name for name, _ in widths) == ["heatmap", "source"]
    assert all(width > 0 for _, width in widths), widths
    heatmap = page.locator("img.heatmap")
    opacity = "e => getComputedStyle(e).opacity"
    assert heatmap.evaluate(opacity) == "0.35"  # worker.overlay_alpha
    shots.take(page, "study")
    page.locator("[data-alpha-slider]").fill("0.8")
    assert heatmap.evaluate(opacity) == "0.8"
    expect(page.locator("[data-alpha-value]")).to_have_text("0.80")
    flagged = "flagged for priority reading" in page.locator(".facts dl").inner_text()

    # Feedback: recorded, in the history, and the study leaves the worklist.
    form = page.locator("#feedback-form")
    form.locator("input[name=label][value=pneumonia]").check()
    form.locator("textarea[name=comment]").fill(COMMENT)
    form.locator("button[type=submit]").click()
    expect(page.locator("#feedback-saved")).to_be_visible()
    expect(page.locator("#current-feedback")).to_contain_text("Pneumonia confirmed")
    expect(page.locator("#current-feedback")).to_contain_text(COMMENT)
    expect(page.locator("#feedback-history tbody tr")).to_have_count(1)
    page.goto("/worklist")
    expect(page.locator(f'#worklist-rows tr[data-study="{main_uid}"]')).to_have_count(0)

    # The admin report counts it as a true positive or a false negative, per the call.
    page.goto("/admin/feedback")
    overall = page.locator("#report tbody tr.overall")
    expect(overall.locator("td[data-field=feedback]")).to_have_text("1")
    expect(overall.locator("td[data-field=labelled]")).to_have_text("1")
    expect(overall.locator("td[data-field=tp]")).to_have_text("1" if flagged else "0")
    expect(overall.locator("td[data-field=fn]")).to_have_text("0" if flagged else "1")
    expect(page.locator("#latest-feedback")).to_contain_text(COMMENT)

    if shots.wanted:
        # More feedback, through the JSON API with the browser's session.
        token = csrf_token(page)
        for extra in extras:
            answer = page.request.put(
                f"/api/v1/studies/{extra.study_uid}/feedback",
                data={"label": extra.label, "comment": None},
                headers={"X-CSRF-Token": token},
            )
            assert answer.ok, answer.text()
        page.reload()
        expect(overall.locator("td[data-field=feedback]")).to_have_text(str(1 + len(extras)))

    page.goto("/admin")
    page.locator("#run-monitoring").click()
    expect(page.locator("#monitoring-windows")).to_be_visible()
    expect(page.locator("#dash-feedback")).to_have_text(str(1 + len(extras)))
    shots.take(page, "dashboard")
    page.goto("/admin/feedback")
    shots.take(page, "feedback-report")

    page.goto("/admin/calibration")
    if shots.wanted:
        # A fit needs 100 labelled studies: the rest are made up beside the phantoms.
        logits, labels = informative(160)
        label_studies(
            daemon_sessions(daemon), logits, labels, model_version=served_model(), prefix="8"
        )
        page.locator("#fit-form button[type=submit]").click()
        expect(page.locator("#calibration-message")).to_contain_text("fitted")
        expect(page.locator("#calibration-versions tbody tr")).to_have_count(1)
        shots.take(page, "calibration")
        page.locator("#calibration-versions tbody tr[data-state=pending] a.review").click()
        expect(page.locator("#preview-changed")).to_be_visible()
        shots.take(page, "calibration-review")
        page.goto("/reads")
        shots.take(page, "recently-read")
    else:
        errors.expected.add(("/admin/calibration/fit", 422))
        page.locator("#fit-form button[type=submit]").click()
        expect(page.locator("#error-message")).to_contain_text(
            "1 labelled studies; at least 100 are needed"
        )

    # A radiologist account, with a one-time password shown once.
    page.goto("/admin/users")
    new_user = page.locator("#new-user-form")
    new_user.locator("input[name=username]").fill(READER)
    new_user.locator("select[name=role]").select_option("radiologist")
    new_user.locator("button[type=submit]").click()
    issued = page.locator("#issued-password")
    expect(issued).to_contain_text(READER)
    reader_otp = issued.locator("code").inner_text()
    expect(page.locator(f'#users tr[data-user="{READER}"]')).to_contain_text("radiologist")
    shots.take(page, "users")

    trail = page.locator("#audit")
    # Each action by its filter: with the screenshots' labelled studies, feedback alone
    # fills the first page.
    for action in (
        "login.succeeded",
        "user.password_changed",
        "feedback.given",
        "user.created",
    ):
        page.goto(f"/admin/audit?action={action}")
        expect(trail).to_contain_text(action)
    page.goto("/admin/audit")
    shots.take(page, "audit")

    # The radiologist: own password, no admin pages.
    page.locator("form[action='/logout'] button").click()
    expect(page.locator("#login-form")).to_be_visible()
    sign_in(page, READER, reader_otp)
    choose_password(page, reader_otp, READER_PASSWORD)
    expect(page.locator("#signed-in-as")).to_have_text(f"{READER} (radiologist)")
    expect(page.locator("header nav")).to_contain_text("Worklist")
    expect(page.locator("header nav a", has_text="Dashboard")).to_have_count(0)
    errors.expected.add(("/admin", 403))
    refused = page.goto("/admin")
    assert refused is not None and refused.status == 403
    expect(page.locator("#error-message")).to_contain_text("admin role")

    # Analyse an uploaded PNG; the threshold slider changes the call shown.
    page.goto("/analyse")
    page.locator("#analyse-file").set_input_files(
        {"name": "chest.png", "mimeType": "image/png", "buffer": chest_png(seed=7)}
    )
    page.locator("#analyse-submit").click()
    expect(page.locator("#analyse-result")).to_be_visible(timeout=WAIT_MS)
    score = float(page.locator("#result-score").get_attribute("data-score") or "nan")
    assert 0.0 <= score <= 1.0
    expect(page.locator("#result-score")).to_contain_text("%")
    expect(page.locator("#result-file")).to_have_text("chest.png (png)")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#analyse-result img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    # The slider starts at the governed threshold (not snapped to a step) and agrees.
    call = page.locator("#threshold-call")
    slider = page.locator("#threshold-slider")
    governed = float(slider.input_value())
    expect(page.locator("#threshold-value")).to_have_text(
        page.locator("#result-governed").inner_text()
    )
    expect(call).to_have_text(FLAGGED if score >= governed else BELOW)
    slider.fill("0")
    expect(call).to_have_text(FLAGGED)
    slider.fill("1")
    expect(call).to_have_text(FLAGGED if score >= 1.0 else BELOW)
    slider.fill(str(round(score - 0.05, 3)) if score >= 0.05 else "0")
    shots.take(page, "analyse")

    assert errors.seen == [], errors.seen
    if shots.wanted:
        assert sorted(shots.taken) == sorted(SCREENSHOTS)


@pytest.fixture
def seeded_web(tmp_path: Path, sessions: SessionFactory) -> Iterator[str]:
    """The real web role (uvicorn on loopback) over 13 open studies with identifying
    fields, ten rows a page; yields its base URL. A reader signs in with PASSWORD."""
    settings = web_settings(
        tmp_path,
        port=free_port(),
        secure_cookies=False,
        worklist_rows=10,
        worklist_refresh_seconds=5,
    )
    for i in range(13):
        uid = record_scored(sessions, f"7.{i}", logit=i / 10, score=0.3 + i / 100, above=False)
        with writing(sessions) as s:
            study = s.scalars(select(Study).where(Study.study_instance_uid == uid)).one()
            study.patient_name, study.patient_id = f"Brightwater^Imogen{i:02d}", f"PID{i:03d}"
            study.accession_number, study.study_date = f"ACC{i:03d}", "20261130"
    with writing(sessions) as s:
        s.add(
            User(
                username="reader",
                password_hash=password_hash(),
                role=UserRole.RADIOLOGIST,
                active=True,
                must_change_password=False,
                created_by="test",
            )
        )
    server = WebServer(settings, sessions)
    server.start()
    host, port = server.address
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_the_worklist_shows_patients_filters_by_accession_and_pages(
    browser: Browser, seeded_web: str
) -> None:
    context = browser.new_context(base_url=seeded_web, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors = ConsoleErrors()
    errors.watch(page)
    try:
        sign_in(page, "reader", PASSWORD)
        rows = page.locator("#worklist-rows tr.row")
        expect(rows).to_have_count(10)
        expect(page.locator("#worklist thead")).to_contain_text("Patient")
        expect(page.locator("#worklist thead")).to_contain_text("Accession")
        first = rows.first
        expect(first.locator("td.patient")).to_contain_text("Brightwater, Imogen12")
        expect(first.locator("td.patient")).to_contain_text("PID012")
        expect(first.locator("td.accession")).to_have_text("ACC012")
        expect(page.locator("#worklist-paging")).to_contain_text("Rows 1–10 of 13")

        # Paging: next, then previous.
        page.locator("#worklist-next").click()
        expect(page).to_have_url(re.compile(r"/worklist\?page=2$"))
        expect(rows).to_have_count(3)
        expect(page.locator("#worklist-paging")).to_contain_text("Rows 11–13 of 13")
        expect(rows.last.locator("td.accession")).to_have_text("ACC000")
        page.locator("#worklist-previous").click()
        expect(rows).to_have_count(10)

        # Search by accession (the GET form); the periodic refresh keeps the filter.
        form = page.locator("#worklist-filters")
        form.locator("input[name=q]").fill("ACC01")
        form.locator("button[type=submit]").click()
        expect(page).to_have_url(re.compile(r"[?&]q=ACC01(&|$)"))
        expect(rows).to_have_count(3)
        expect(page.locator("#worklist-paging")).to_contain_text("Rows 1–3 of 3 (filtered)")
        expect(page.locator("#worklist-updated")).to_contain_text("Updated", timeout=20_000)
        expect(rows).to_have_count(3)
        accessions = rows.locator("td.accession").all_inner_texts()
        assert accessions == ["ACC012", "ACC011", "ACC010"]
        expect(form.locator("input[name=q]")).to_have_value("ACC01")
        form.locator("input[name=q]").fill("ACC007")
        form.locator("button[type=submit]").click()
        expect(rows).to_have_count(1)
        expect(rows.first.locator("td.patient")).to_contain_text("Brightwater, Imogen07")
        assert errors.seen == [], errors.seen
    finally:
        context.close()


def test_an_admin_activates_only_a_sound_calibration_confirming_its_changes(
    daemon: Daemon, page: Page
) -> None:
    """Issue 14, item 1: a degenerate fit is refused with its reason on the page; a
    sound one shows how many recent studies would change band, activation needs that
    number typed in (a wrong one is refused), and the audit page shows the activation."""
    errors = ConsoleErrors()
    errors.watch(page)
    sessions = daemon_sessions(daemon)
    logits, labels = uninformative(120)
    label_studies(sessions, logits, labels, model_version=served_model(), prefix="7")
    first_password = one_time_password(daemon)
    sign_in(page, "admin", first_password)
    choose_password(page, first_password, ADMIN_PASSWORD)

    page.goto("/admin/calibration")
    expect(page.locator("#calibration-floors")).to_contain_text("at least 100 labelled studies")
    errors.expected.add(("/admin/calibration/fit", 422))
    page.locator("#fit-form button[type=submit]").click()
    expect(page.locator("#error-message")).to_contain_text("refused")
    expect(page.locator("#error-message")).to_contain_text("Platt slope")

    # More studies whose scores tell pneumonia apart: the fit now holds.
    logits, labels = informative(200)
    label_studies(sessions, logits, labels, model_version=served_model(), prefix="8")
    page.goto("/admin/calibration")
    page.locator("#fit-form button[type=submit]").click()
    expect(page.locator("#calibration-message")).to_contain_text("fitted")
    pending = page.locator("#calibration-versions tbody tr[data-state=pending]")
    expect(pending).to_have_count(1)
    version = pending.get_attribute("data-version")
    pending.locator("a.review").click()
    changed = int(page.locator("#preview-changed").inner_text())
    assert changed > 0  # the studies were banded on the bundle's threshold
    expect(page.locator("#preview")).to_contain_text("320 studies scored in the last 30 days")

    errors.expected.add((f"/admin/calibration/{version}/activate", 422))
    page.locator("#activate-form input[name=confirm_changes]").fill(str(changed + 1))
    page.locator("#activate-form button[type=submit]").click()
    expect(page.locator("#error-message")).to_contain_text(f"confirm {changed}")
    page.goto(f"/admin/calibration/{version}/review")
    page.locator("#activate-form input[name=confirm_changes]").fill(str(changed))
    page.locator("#activate-form button[type=submit]").click()
    expect(page.locator("#calibration-message")).to_have_text(
        f"Version {version} is in use for the next study scored."
    )
    expect(page.locator("#calibration-in-use")).to_contain_text(f"local v{version}")

    # The labelled studies' reads fill the first page; the action filter finds these.
    page.goto("/admin/audit?action=calibration.")
    trail = page.locator("#audit")
    expect(trail).to_contain_text("calibration.refused")
    expect(trail).to_contain_text("calibration.activated")
    assert errors.seen == [], errors.seen


def colour_png() -> bytes:
    """A colour picture (red and blue halves): a PNG the analysis refuses (422)."""
    pixels = np.zeros((128, 128, 3), dtype=np.uint8)
    pixels[:, :64, 0] = 220
    pixels[:, 64:, 2] = 220
    out = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(out, format="PNG")
    return out.getvalue()


def test_refusals_say_why_and_leave_nothing_stale(daemon: Daemon, page: Page) -> None:
    """Issue 14 items 5 and 8 in a browser: a weak password's refusal says why, an unknown
    address is the error page, and a refused upload shows its error and no earlier result."""
    errors = ConsoleErrors()
    errors.watch(page)

    first_password = one_time_password(daemon)
    sign_in(page, "admin", first_password)
    expect(page).to_have_url(re.compile(r"/account/password$"))
    form = page.locator("#password-form")
    form.locator("input[name=current]").fill(first_password)
    form.locator("input[name=new]").fill("password1234")
    form.locator("input[name=again]").fill("password1234")
    errors.expected.add(("/account/password", 422))
    form.locator("button[type=submit]").click()
    expect(page.locator("#password-error")).to_contain_text("too easy to guess")
    expect(page.locator("#password-error")).to_contain_text("very common password")
    choose_password(page, first_password, ADMIN_PASSWORD)

    errors.expected.add(("/no/such/page", 404))
    missing = page.goto("/no/such/page")
    assert missing is not None and missing.status == 404
    assert missing.headers["content-type"].startswith("text/html")
    expect(page.locator("#error-message")).to_have_text("There is no page at this address.")
    expect(page.locator("#signed-in-as")).to_have_text("admin (admin)")

    page.goto("/analyse")
    page.locator("#analyse-file").set_input_files(
        {"name": "chest.png", "mimeType": "image/png", "buffer": chest_png(seed=3)}
    )
    page.locator("#analyse-submit").click()
    expect(page.locator("#analyse-result")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#result-file")).to_have_text("chest.png (png)")

    errors.expected.add(("/api/v1/analyses?filename=colour.png&keep=false", 422))
    page.locator("#analyse-file").set_input_files(
        {"name": "colour.png", "mimeType": "image/png", "buffer": colour_png()}
    )
    page.locator("#analyse-submit").click()
    expect(page.locator("#analyse-error")).to_contain_text("colour image", timeout=WAIT_MS)
    expect(page.locator("#analyse-result")).to_be_hidden()
    expect(page.locator("#result-file")).to_have_text("")
    assert page.locator("#result-score").get_attribute("data-score") is None
    assert errors.seen == [], errors.seen
