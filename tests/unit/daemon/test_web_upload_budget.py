"""Uploads within the decoded-byte budget are scored as before; beyond it, refused with 413.

Issue 14 item 6. 16-bit RGBA PNGs (a grey radiograph saved with four 16-bit channels)
are made here row by row; a small model with random weights scores them.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from chestaid.calibration import TemperatureScaling
from chestaid.errors import DecodedSizeError, UnsupportedImageError
from chestaid.inference import Scorer
from chestaid.models import build_model
from chestaid.preprocess import PreprocessSpec
from daemon.db.models import UserRole
from daemon.db.session import SessionFactory
from daemon.serving import ActiveModel, PriorityBands
from daemon.settings import PrioritySettings, WebSettings
from daemon.web.imaging import analyse_upload, http_status
from tests.synthetic_data import chest_like
from tests.unit.chestaid.test_decoded_budget import png_header_only
from tests.web_fixtures import Site

MIB = 1 << 20


def png_rgba16(samples: np.ndarray) -> bytes:
    """A 16-bit RGBA PNG of ``samples`` (uint16, shape (H, W, 4))."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    height, width, _ = samples.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in samples)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def model() -> ActiveModel:
    torch.manual_seed(0)
    scorer = Scorer(
        build_model("densenet121").eval(),
        TemperatureScaling(1.0),
        spec=PreprocessSpec(input_size=64),
        threshold=0.5,
        model_version="test-1",
    )
    bands = PriorityBands.resolve(PrioritySettings().bands, scorer.threshold)
    return ActiveModel(scorer=scorer, calibration_version=1, bands=bands)


def test_a_16_bit_rgba_grey_image_within_the_budget_scores_as_its_grey_pixels(
    model: ActiveModel,
) -> None:
    grey = (chest_like(np.random.default_rng(3), 240, True)[:, :200] * 65535).astype(np.uint16)
    samples = np.stack([grey, grey, grey, np.full_like(grey, 65535)], axis=2)
    data = png_rgba16(samples)
    declared = 240 * 200 * 8
    analysis = analyse_upload(
        data,
        filename="rgba16.png",
        model=model,
        max_pixels=40_000_000,
        max_bytes=len(data),
        max_decoded_bytes=declared,  # exactly at the budget: accepted
    )
    # The decoder keeps each sample's high byte; grey is then the 8-bit level itself.
    expected = model.scorer.score_pixels((grey >> 8).astype(np.float32) / 255.0)
    assert analysis.source_format == "png"
    assert analysis.score == pytest.approx(expected.score, abs=1e-9)
    assert analysis.logit == pytest.approx(expected.logit, abs=1e-6)
    np.testing.assert_allclose(analysis.cam, expected.cam, atol=1e-6)
    with pytest.raises(DecodedSizeError) as refused:
        analyse_upload(
            data,
            filename="rgba16.png",
            model=model,
            max_pixels=40_000_000,
            max_bytes=len(data),
            max_decoded_bytes=declared - 1,
        )
    assert http_status(refused.value) == 413


def test_a_16_bit_rgba_colour_image_is_still_refused_as_colour(model: ActiveModel) -> None:
    rng = np.random.default_rng(0)
    samples = rng.integers(0, 65536, size=(64, 64, 4), dtype=np.uint16)
    data = png_rgba16(samples)
    with pytest.raises(UnsupportedImageError, match="colour image") as refused:
        analyse_upload(data, filename="c.png", model=model, max_pixels=10**6, max_bytes=len(data))
    assert http_status(refused.value) == 422


def test_the_default_budget_refuses_the_issues_file_and_takes_a_40_megapixel_rgba_8_bit() -> None:
    budget = WebSettings().upload_max_decoded_mb * MIB
    assert budget < 6324 * 6324 * 4 * 2  # 16-bit RGBA, just under 40 megapixels
    assert budget >= 6324 * 6324 * 4  # 8-bit RGBA of the same size
    assert budget >= 6324 * 6324 * 2  # 16-bit grey of the same size


def test_the_api_answers_413_naming_the_budget_before_decoding(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site = Site.build(tmp_path, sessions, upload_max_decoded_mb=16)
    reader = site.bearer(site.add_user("reader", UserRole.RADIOLOGIST))
    data = png_header_only(2048, 2048, bit_depth=16, colour_type=6)  # 32 MiB declared
    answer = site.client().post(
        "/api/v1/analyses?filename=declared.png", content=data, headers=reader
    )
    assert answer.status_code == 413, answer.text
    assert "2048 x 2048 pixels x 4 channel(s) x 16 bits = 32 MiB" in answer.json()["detail"]
    assert "at most 16 MiB" in answer.json()["detail"]


def test_uploads_beyond_the_admitted_ones_are_refused_before_their_body_is_read(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site = Site.build(tmp_path, sessions)
    reader = site.bearer(site.add_user("reader", UserRole.RADIOLOGIST))
    admission = site.context.upload_admission
    held = 0
    while admission.acquire(blocking=False):  # as if six uploads were being received
        held += 1
    assert held == 6
    try:
        answer = site.client().post(
            "/api/v1/analyses?filename=x.png", content=b"\x89PNG", headers=reader
        )
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "10"
        assert "too many images are being uploaded" in answer.json()["detail"]
    finally:
        for _ in range(held):
            admission.release()
    answer = site.client().post("/api/v1/analyses?filename=x.png", content=b"", headers=reader)
    assert answer.status_code == 422  # admitted: the (empty) upload itself is judged
    assert admission.acquire(blocking=False)  # and its admission was given back
    admission.release()
