"""Image analysis: score an uploaded DICOM, PNG or JPEG and return its heatmap."""

from __future__ import annotations

import base64
import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool

from chestaid.display import percent_pair_text
from chestaid.errors import ChestAidError
from daemon import analyses
from daemon.db.session import writing
from daemon.heatmaps import encode_cam
from daemon.web import imaging
from daemon.web.api.common import ERRORS, ApiUser
from daemon.web.api.schemas import AnalysisOut
from daemon.web.security import (
    Principal,
    context,
)

logger = logging.getLogger(__name__)
router = APIRouter()


ANALYSIS_WAIT_SECONDS = 30.0  # for a free analysis slot, then 503


async def _read_capped(request: Request, limit: int) -> bytes:
    """The request body, refused past ``limit`` bytes without reading the rest into memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the image is larger than {limit // 2**20} MB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the image is larger than {limit // 2**20} MB")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/analyses",
    response_model=AnalysisOut,
    responses={**ERRORS, 413: {}, 415: {}, 422: {}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def analyse(
    request: Request,
    principal: ApiUser,
    filename: Annotated[str, Query(max_length=255)] = "upload",
    keep: bool = False,
) -> AnalysisOut:
    """Score an uploaded DICOM, PNG or JPEG and return the heatmap.

    The body is the file itself. It is kept in memory only; nothing is stored unless
    ``keep=true`` (then the displayed image, without any DICOM header, and the result).
    """
    ctx = context(request)
    if not ctx.upload_admission.acquire(blocking=False):
        raise HTTPException(
            503, "too many images are being uploaded; try again shortly", {"Retry-After": "10"}
        )
    try:
        return await _analyse(request, principal, filename, keep)
    finally:
        ctx.upload_admission.release()


async def _analyse(
    request: Request, principal: Principal, filename: str, keep: bool
) -> AnalysisOut:
    """The upload admitted: receive it, wait for an analysis slot, analyse it."""
    ctx = context(request)
    limit = ctx.settings.web.upload_max_mb * 2**20
    data = await _read_capped(request, limit)

    def work() -> AnalysisOut:
        if not ctx.analysis_slots.acquire(timeout=ANALYSIS_WAIT_SECONDS):
            raise HTTPException(
                503, "other images are being analysed; try again shortly", {"Retry-After": "10"}
            )
        try:
            return analyse_now()
        finally:
            ctx.analysis_slots.release()

    def analyse_now() -> AnalysisOut:
        model = ctx.serving.model()
        try:
            result = imaging.analyse_upload(
                data,
                filename=filename,
                model=model,
                max_pixels=ctx.settings.worker.max_pixels,
                max_bytes=limit,
                max_decoded_bytes=ctx.settings.web.upload_max_decoded_mb * 2**20,
            )
        except (ChestAidError, imaging.UploadError) as exc:
            raise HTTPException(imaging.http_status(exc), str(exc)) from exc
        image_png = imaging.grey_png(result.pixels)
        height, width = result.pixels.shape
        heat_png = imaging.heatmap_png(result.cam, size=(height, width))
        saved_id = None
        if keep:
            kept = analyses.NewAnalysis(
                filename=filename,
                sha256=result.sha256,
                logit=result.logit,
                score=result.score,
                threshold=result.threshold,
                model_version=result.model_version,
                calibration_version=result.calibration_version,
                cam=encode_cam(result.cam),
                image_png=image_png,
            )
            with writing(ctx.sessions) as session:
                saved_id = analyses.keep(session, user_id=principal.user_id, analysis=kept)
        logger.info(
            "image analysed",
            extra={
                "user": principal.username,
                "sha256": result.sha256[:16],
                "score": round(result.score, 6),
                "kept": keep,
            },
        )
        score_text, threshold_text = percent_pair_text(result.score, result.threshold)
        return AnalysisOut(
            filename=filename,
            sha256=result.sha256,
            source_format=result.source_format,
            score=result.score,
            logit=result.logit,
            threshold=result.threshold,
            above_threshold=result.above_threshold,
            score_text=score_text,
            threshold_text=threshold_text,
            model_version=result.model_version,
            calibration_version=result.calibration_version,
            image_png=base64.b64encode(image_png).decode(),
            heatmap_png=base64.b64encode(heat_png).decode(),
            saved_id=saved_id,
        )

    return await run_in_threadpool(work)
