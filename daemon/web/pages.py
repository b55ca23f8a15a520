"""Pages for every signed-in user: sign-in, password, worklist, study, image analysis."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse

from chestaid.errors import ChestAidError
from daemon import accounts, analyses, feedback
from daemon.db.models import FeedbackLabel, SavedAnalysis, UserRole, utcnow
from daemon.db.session import reading, writing
from daemon.errors import DaemonError
from daemon.heatmaps import CamError, decode_cam
from daemon.studies import StudyDetail, image_source, study_detail
from daemon.web import imaging, views
from daemon.web.rendering import render, url_part
from daemon.web.security import (
    COOKIE,
    LOGIN_CSRF_COOKIE,
    Principal,
    client_address,
    context,
    csrf_form,
    csrf_form_pending,
    find_principal,
    require_user,
    signed_in,
)
from daemon.web.views import Id

logger = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

User_ = Annotated[Principal, Depends(require_user)]
Posted = Annotated[Principal, Depends(csrf_form)]
PostedPending = Annotated[Principal, Depends(csrf_form_pending)]


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, no protocol-relative URL)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/worklist"


def _set_session_cookie(request: Request, response: Response, token: str) -> None:
    web = context(request).settings.web
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(timedelta(hours=web.session_max_hours).total_seconds()),
        httponly=True,
        secure=web.secure_cookies,
        samesite="strict",
        path="/",
    )


@router.get("/")
def home() -> Response:
    """The start page is the worklist."""
    return RedirectResponse("/worklist", status_code=303)


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    """The sign-in form (or straight on, when already signed in)."""
    if find_principal(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_form(request, next=next)


def _login_form(
    request: Request, *, next: str | None, error: str | None = None, status_code: int = 200
) -> Response:
    # Before sign-in there is no session: the form's token is a double-submit cookie.
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        status_code=status_code,
        login_csrf=token,
        next=_safe_next(next),
        error=error,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        secure=context(request).settings.web.secure_cookies,
        samesite="strict",
        path="/login",
    )
    return response


@router.post("/login")
def login(
    request: Request,
    username: Annotated[str, Form(max_length=256)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/worklist",
) -> Response:
    """Sign in: a session cookie on success; 401 or 429 with the form again otherwise."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not secrets.compare_digest(cookie, csrf_token):
        return _login_form(
            request, next=next, error="The sign-in form expired; try again.", status_code=403
        )
    ctx = context(request)
    address = client_address(request)
    try:
        user = accounts.sign_in(
            ctx.sessions,
            username=username,
            password=password,
            address=address,
            settings=ctx.settings.web,
        )
    except accounts.SignInRateLimitedError as exc:
        retry_after = int(exc.retry_after.total_seconds()) + 1
        minutes = max(1, round(retry_after / 60))
        response = _login_form(
            request,
            next=next,
            error=f"Too many failed sign-ins. Try again in about {minutes} minute(s).",
            status_code=429,
        )
        response.headers["Retry-After"] = str(retry_after)
        return response
    except accounts.SignInError:
        return _login_form(
            request, next=next, error="Unknown user name or wrong password.", status_code=401
        )
    with writing(ctx.sessions) as session:
        previous = request.cookies.get(COOKIE)
        if previous:
            # A new sign-in in this browser ends the session it had, if any.
            accounts.end_session_by_token(session, token=previous)
        started = accounts.start_session(
            session, user=user, kind=accounts.BROWSER, address=address, settings=ctx.settings.web
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    _set_session_cookie(request, response, started.token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, principal: PostedPending) -> Response:
    """Sign out: the session ends at once."""
    ctx = context(request)
    with writing(ctx.sessions) as session:
        web_session = accounts.web_session(session, principal.session_id)
        if web_session is not None:
            accounts.end_session(session, web_session=web_session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/account/password")
def password_page(request: Request) -> Response:
    """The form to choose a new password."""
    principal = signed_in(request, allow_password_change=True)
    return render(request, "password.html", forced=principal.must_change_password, error=None)


@router.post("/account/password")
def change_password(
    request: Request,
    principal: PostedPending,
    current: Annotated[str, Form(max_length=1024)] = "",
    new: Annotated[str, Form(max_length=1024)] = "",
    again: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    """Choose a new password (required after a one-time password)."""
    ctx = context(request)
    error = None
    if new != again:
        error = "The two new passwords differ."
    else:
        try:
            accounts.change_password(
                ctx.sessions,
                user_id=principal.user_id,
                current=current,
                new=new,
                settings=ctx.settings.web,
                keep_session_id=principal.session_id,
            )
        except accounts.AccountError as exc:
            error = str(exc)
    if error:
        return render(
            request,
            "password.html",
            status_code=422,
            forced=principal.must_change_password,
            error=error,
        )
    return RedirectResponse("/worklist", status_code=303)


@router.get("/worklist")
def worklist_page(request: Request, principal: User_) -> Response:
    """The worklist, most urgent first."""
    ctx = context(request)
    with writing(ctx.sessions) as session:
        rows = views.worklist_rows(session, ctx)
    shown = ctx.settings.web.worklist_rows
    return render(
        request,
        "worklist.html",
        rows=rows[:shown],
        total=len(rows),
        bands=ctx.serving.current().bands.cutoffs,
    )


@router.get("/worklist/rows")
def worklist_rows(request: Request, principal: User_) -> Response:
    """The table body alone, for the page's periodic refresh."""
    ctx = context(request)
    with writing(ctx.sessions) as session:
        rows = views.worklist_rows(session, ctx)
    return render(
        request,
        "_worklist_rows.html",
        rows=rows[: ctx.settings.web.worklist_rows],
        total=len(rows),
    )


def _study(request: Request, uid: str) -> StudyDetail | None:
    ctx = context(request)
    with writing(ctx.sessions) as session:
        return study_detail(session, study_instance_uid=uid)


def _no_such_study(request: Request) -> Response:
    return render(
        request,
        "error.html",
        status_code=404,
        title="No such study",
        message="ChestAid has not received this study.",
    )


@router.get("/studies/{uid}")
def study_page(request: Request, uid: str, principal: User_) -> Response:
    """A study: its images with the heatmap, the score, the feedback form and history."""
    detail = _study(request, uid)
    if detail is None:
        return _no_such_study(request)
    return render(
        request,
        "study.html",
        study=detail,
        labels=[(label.value, views.LABEL_TEXT[label]) for label in FeedbackLabel],
        label_text={label.value: text for label, text in views.LABEL_TEXT.items()},
        overlay_alpha=context(request).settings.worker.overlay_alpha,
        max_comment=feedback.MAX_COMMENT,
    )


@router.post("/studies/{uid}/feedback")
def give_feedback(
    request: Request,
    uid: str,
    principal: Posted,
    label: Annotated[str, Form(max_length=32)] = "",
    comment: Annotated[str, Form(max_length=feedback.MAX_COMMENT)] = "",
) -> Response:
    """Give or change the study's finding; the study is marked read."""
    ctx = context(request)
    try:
        finding = FeedbackLabel(label)
    except ValueError:
        return render(
            request,
            "error.html",
            status_code=422,
            title="Not accepted",
            message="Choose a finding.",
        )
    try:
        with writing(ctx.sessions) as session:
            feedback.record_feedback(
                session,
                study_instance_uid=uid,
                label=finding,
                user=principal.username,
                comment=comment.strip() or None,
            )
    except feedback.UnknownStudyError:
        return render(
            request,
            "error.html",
            status_code=404,
            title="No such study",
            message="ChestAid has not scored this study.",
        )
    except feedback.FeedbackError as exc:
        return render(
            request, "error.html", status_code=422, title="Not accepted", message=str(exc)
        )
    return RedirectResponse(f"/studies/{url_part(uid)}?saved=1", status_code=303)


@router.post("/studies/{uid}/read")
def mark_read(request: Request, uid: str, principal: Posted) -> Response:
    """Mark a study read without feedback; it leaves the worklist."""
    ctx = context(request)
    try:
        with writing(ctx.sessions) as session:
            feedback.mark_read(session, study_instance_uid=uid, user=principal.username)
    except feedback.UnknownStudyError:
        return _no_such_study(request)
    return RedirectResponse("/worklist", status_code=303)


@router.get("/studies/{uid}/images/{result_id}/source.png")
def source_png(request: Request, uid: str, result_id: Id, principal: User_) -> Response:
    """A scored image of the study as shown (8-bit grey PNG)."""
    ctx = context(request)
    with writing(ctx.sessions) as session:
        spool_name, _ = image_source(session, study_instance_uid=uid, result_id=result_id)
    if spool_name is None:
        return Response(status_code=404)
    try:
        image = imaging.study_image(
            ctx.settings.storage.spool / spool_name, max_pixels=ctx.settings.worker.max_pixels
        )
    except (ChestAidError, DaemonError) as exc:
        # Purged by retention (410), or a file that no longer decodes (a typed 4xx).
        logger.warning("study image not shown", extra={"result_id": result_id, "reason": str(exc)})
        return Response(status_code=imaging.http_status(exc))
    return Response(imaging.grey_png(image.pixels), media_type="image/png")


def _heatmap(cam: str, size: tuple[int, int], *, what: str) -> Response:
    """A stored map as a colour PNG; 404 (and a log line) when the stored map is unusable."""
    try:
        return Response(imaging.heatmap_png(decode_cam(cam), size=size), media_type="image/png")
    except CamError as exc:
        logger.error("stored heatmap unusable", extra={"of": what, "reason": str(exc)})
        return Response(status_code=404)


@router.get("/studies/{uid}/images/{result_id}/heatmap.png")
def heatmap_png(
    request: Request,
    uid: str,
    result_id: Id,
    principal: User_,
    width: int = 512,
    height: int = 512,
) -> Response:
    """The image's stored Grad-CAM map as a colour PNG of the requested size."""
    ctx = context(request)
    with writing(ctx.sessions) as session:
        _, cam = image_source(session, study_instance_uid=uid, result_id=result_id)
    if cam is None:
        return Response(status_code=404)
    size = (min(max(height, 8), 2048), min(max(width, 8), 2048))
    return _heatmap(cam, size, what=f"result {result_id}")


@router.get("/analyse")
def analyse_page(request: Request, principal: User_) -> Response:
    """The upload form and the analyses this user kept."""
    ctx = context(request)
    with reading(ctx.sessions) as session:
        saved = analyses.listed(
            session, user_id=principal.user_id, everyone=principal.role == UserRole.ADMIN
        )
    return render(
        request,
        "analyse.html",
        saved=saved,
        max_mb=ctx.settings.web.upload_max_mb,
        overlay_alpha=ctx.settings.worker.overlay_alpha,
        now=utcnow(),
    )


def _saved(request: Request, principal: Principal, analysis_id: int) -> SavedAnalysis | None:
    """A kept analysis its user (or an admin) may see."""
    ctx = context(request)
    with reading(ctx.sessions) as session:
        return analyses.visible(
            session,
            analysis_id=analysis_id,
            user_id=principal.user_id,
            everyone=principal.is_admin,
        )


@router.get("/analyses/{analysis_id}")
def saved_analysis_page(request: Request, analysis_id: Id, principal: User_) -> Response:
    """A kept analysis."""
    row = _saved(request, principal, analysis_id)
    if row is None:
        return render(
            request, "error.html", status_code=404, title="Not found", message="No such analysis."
        )
    return render(
        request,
        "saved_analysis.html",
        analysis=row,
        source_src=f"/analyses/{row.id}/image.png",
        heatmap_src=f"/analyses/{row.id}/heatmap.png",
        overlay_alpha=context(request).settings.worker.overlay_alpha,
    )


@router.get("/analyses/{analysis_id}/image.png")
def saved_analysis_image(request: Request, analysis_id: Id, principal: User_) -> Response:
    """A kept analysis's image."""
    row = _saved(request, principal, analysis_id)
    if row is None:
        return Response(status_code=404)
    return Response(row.image_png, media_type="image/png")


@router.get("/analyses/{analysis_id}/heatmap.png")
def saved_analysis_heatmap(request: Request, analysis_id: Id, principal: User_) -> Response:
    """A kept analysis's heatmap."""
    row = _saved(request, principal, analysis_id)
    if row is None:
        return Response(status_code=404)
    return _heatmap(row.cam, (512, 512), what=f"analysis {analysis_id}")


@router.post("/analyses/{analysis_id}/delete")
def delete_saved_analysis(request: Request, analysis_id: Id, principal: Posted) -> Response:
    """Delete a kept analysis (its owner or an admin)."""
    ctx = context(request)
    with writing(ctx.sessions) as session:
        analyses.delete(
            session,
            analysis_id=analysis_id,
            user_id=principal.user_id,
            everyone=principal.is_admin,
            actor=principal.username,
        )
    return RedirectResponse("/analyse", status_code=303)
