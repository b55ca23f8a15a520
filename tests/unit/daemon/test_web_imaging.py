"""The web interface's images: PNGs for the browser, uploads scored in memory, HTTP statuses."""

from __future__ import annotations

import hashlib
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydicom.uid import JPEG2000Lossless

from chestaid.calibration import TemperatureScaling
from chestaid.errors import (
    ChestAidError,
    CorruptImageError,
    ImageTooLargeError,
    NotChestRadiographError,
    UnsupportedImageError,
)
from chestaid.gradcam import colormap_lut, display_image, render_overlay
from chestaid.imaging import dataset_to_grey, needed_size
from chestaid.inference import Scorer
from chestaid.models import build_model
from chestaid.preprocess import PreprocessSpec
from daemon.serving import ActiveModel, PriorityBands
from daemon.settings import PrioritySettings
from daemon.web.imaging import (
    DISPLAY_MAX_SIDE,
    Analysis,
    ChestAidOutputError,
    EmptyUploadError,
    ImagePurgedError,
    UnsupportedFormatError,
    UploadError,
    UploadTooLargeError,
    analyse_upload,
    grey_png,
    heatmap_png,
    http_status,
    study_image,
)
from tests.dicom_factory import chestaid_output_bytes, make_dx
from tests.synthetic_data import chest_like

MAX_PIXELS = 1_000_000
MAX_BYTES = 4_000_000


@pytest.fixture(scope="module")
def model() -> ActiveModel:
    torch.manual_seed(0)
    net = build_model("densenet121").eval()
    scorer = Scorer(
        net,
        TemperatureScaling(1.0),
        spec=PreprocessSpec(input_size=64),
        threshold=0.5,
        model_version="test-1",
    )
    bands = PriorityBands.resolve(PrioritySettings().bands, scorer.threshold)
    return ActiveModel(scorer=scorer, calibration_version=3, bands=bands)


def _dicom_bytes(**kwargs: object) -> bytes:
    ds = make_dx(**kwargs)  # type: ignore[arg-type]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _raster_bytes(levels: np.ndarray, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _analyse(data: bytes, model: ActiveModel, *, max_pixels: int = MAX_PIXELS) -> Analysis:
    return analyse_upload(
        data, filename="upload", model=model, max_pixels=max_pixels, max_bytes=MAX_BYTES
    )


def _decode_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image


def test_the_same_pixels_score_alike_as_dicom_png_and_jpeg(model: ActiveModel) -> None:
    ds = make_dx(rows=240, cols=200, bits_stored=8)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    # 8-bit stored values spanning the range: the min-max grey is the PNG's grey exactly.
    levels = np.round(dataset_to_grey(ds).pixels * 255).astype(np.uint8)
    dicom = _analyse(buffer.getvalue(), model)
    png = _analyse(_raster_bytes(levels, "PNG"), model)
    jpeg = _analyse(_raster_bytes(levels, "JPEG", quality=95), model)
    assert (dicom.source_format, png.source_format, jpeg.source_format) == (
        "dicom",
        "png",
        "jpeg",
    )
    assert png.score == pytest.approx(dicom.score, abs=1e-3)
    assert jpeg.score == pytest.approx(dicom.score, abs=0.02)
    np.testing.assert_allclose(png.cam, dicom.cam, atol=0.02)
    for analysis in (dicom, png, jpeg):
        assert analysis.pixels.shape == (240, 200)  # under 1024: kept at full size
        assert analysis.model_version == "test-1" and analysis.calibration_version == 3
        assert analysis.threshold == 0.5
        assert analysis.above_threshold == (analysis.score >= 0.5)
        assert 0.0 <= analysis.score <= 1.0
        assert analysis.cam.ndim == 2


def test_the_analysis_scores_full_size_pixels_and_keeps_a_display_copy(
    model: ActiveModel,
) -> None:
    levels = (chest_like(np.random.default_rng(1), 1200, opacity=True) * 255).astype(np.uint8)
    data = _raster_bytes(levels, "PNG")
    analysis = _analyse(data, model, max_pixels=2_000_000)
    assert analysis.pixels.shape == (1024, 1024)
    assert analysis.pixels.dtype == np.float32
    expected = model.scorer.score_pixels(levels.astype(np.float32) / 255.0)
    assert analysis.score == pytest.approx(expected.score, abs=1e-9)
    assert analysis.logit == pytest.approx(expected.logit, abs=1e-9)
    assert analysis.sha256 == hashlib.sha256(data).hexdigest()


def test_a_jpeg2000_upload_and_study_image_are_decoded_no_finer_than_shown(
    model: ActiveModel, tmp_path: Path
) -> None:
    # 2100 x 300: one level down (1050 x 150) still has the display's 1024 and twice the
    # model's 64; the pictures come out as from the full decode.
    path = tmp_path / "study.dcm"
    ds = make_dx(path, rows=2100, cols=300, transfer_syntax=JPEG2000Lossless, window=(2000, 3000))
    full = dataset_to_grey(ds).pixels
    need = needed_size(input_size=64, picture_side=DISPLAY_MAX_SIDE)
    reduced = dataset_to_grey(ds, need=need)
    assert reduced.reduction == 1 and reduced.pixels.shape == (1050, 150)
    analysis = _analyse(path.read_bytes(), model)
    assert analysis.logit == pytest.approx(model.scorer.score_pixels(reduced.pixels).logit)
    assert analysis.pixels.shape == display_image(full, max_side=DISPLAY_MAX_SIDE).shape
    shown = study_image(path, max_pixels=MAX_PIXELS)
    assert shown.reduction == 1 and shown.full_shape == (2100, 300)
    assert _decode_png(grey_png(shown.pixels)).size == _decode_png(grey_png(full)).size


def test_a_dicom_without_preamble_is_recognised_by_content(model: ActiveModel) -> None:
    ds = make_dx(rows=64, cols=80)
    del ds.file_meta
    ds.preamble = None
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=True, little_endian=True, enforce_file_format=False)
    data = buffer.getvalue()
    assert data[128:132] != b"DICM"
    analysis = _analyse(data, model)
    assert analysis.source_format == "dicom"
    assert analysis.pixels.shape == (64, 80)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"view_position": "LL"},
        {"body_part": "KNEE"},
        {"modality": "CT"},
        {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]},
    ],
)
def test_a_dicom_that_is_not_a_frontal_chest_radiograph_is_refused(
    model: ActiveModel, kwargs: dict[str, object]
) -> None:
    with pytest.raises(NotChestRadiographError) as caught:
        _analyse(_dicom_bytes(**kwargs), model)
    assert http_status(caught.value) == 422


def test_a_chestaid_output_sent_back_is_refused(model: ActiveModel) -> None:
    with pytest.raises(ChestAidOutputError) as caught:
        _analyse(chestaid_output_bytes(), model)
    assert http_status(caught.value) == 422


def test_size_limits_are_enforced_in_bytes_and_pixels(model: ActiveModel) -> None:
    data = _dicom_bytes(rows=64, cols=80)
    with pytest.raises(UploadTooLargeError) as too_long:
        analyse_upload(data, filename="x", model=model, max_pixels=MAX_PIXELS, max_bytes=100)
    assert http_status(too_long.value) == 413
    with pytest.raises(ImageTooLargeError):
        _analyse(data, model, max_pixels=64 * 80 - 1)
    png = _raster_bytes(np.zeros((50, 40), dtype=np.uint8), "PNG")
    with pytest.raises(ImageTooLargeError) as too_many:
        _analyse(png, model, max_pixels=50 * 40 - 1)
    assert http_status(too_many.value) == 413
    # At the limits exactly, both are accepted.
    accepted = analyse_upload(
        png, filename="x", model=model, max_pixels=50 * 40, max_bytes=len(png)
    )
    assert accepted.pixels.shape == (50, 40)


def test_a_colour_image_is_refused(model: ActiveModel) -> None:
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    with pytest.raises(UnsupportedImageError) as caught:
        _analyse(_raster_bytes(colour, "PNG"), model)
    assert http_status(caught.value) == 422


def test_unknown_formats_are_refused_as_unsupported(model: ActiveModel) -> None:
    gif = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(gif, format="GIF")
    for data in (gif.getvalue(), b"%PDF-1.7\n" + b"x" * 500, b"hello, not an image"):
        with pytest.raises(UnsupportedFormatError) as caught:
            _analyse(data, model)
        assert http_status(caught.value) == 415


def _fuzz_inputs() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    dicom = _dicom_bytes(rows=64, cols=80)
    png = _raster_bytes(np.full((30, 20), 128, dtype=np.uint8), "PNG")
    jpeg = _raster_bytes(np.full((30, 20), 128, dtype=np.uint8), "JPEG")
    noise = rng.integers(0, 256, size=4000, dtype=np.uint8).tobytes()
    return {
        "zero bytes": b"",
        "dicom cut in the header": dicom[:200],
        "dicom cut in the pixels": dicom[: len(dicom) - 1000],
        "dicom prefix then noise": dicom[:132] + noise,
        "png magic then noise": b"\x89PNG\r\n\x1a\n" + noise,
        "png cut in half": png[: len(png) // 2],
        "jpeg magic then noise": b"\xff\xd8\xff" + noise,
        "jpeg cut in half": jpeg[: len(jpeg) // 2],
        "noise": noise,
        "one zero byte": b"\x00",
    }


@pytest.mark.parametrize("name", list(_fuzz_inputs()))
def test_bad_input_raises_only_typed_errors_with_a_client_status(
    model: ActiveModel, name: str
) -> None:
    data = _fuzz_inputs()[name]
    with pytest.raises(ChestAidError) as caught:
        _analyse(data, model)
    assert isinstance(caught.value, UploadError | CorruptImageError | UnsupportedImageError)
    assert 400 <= http_status(caught.value) < 500
    if name == "zero bytes":
        assert isinstance(caught.value, EmptyUploadError)
    if name.startswith("dicom cut") or "magic then noise" in name or "cut in half" in name:
        assert isinstance(caught.value, CorruptImageError)


def test_a_one_pixel_png_is_scored_without_error(model: ActiveModel) -> None:
    analysis = _analyse(_raster_bytes(np.full((1, 1), 200, dtype=np.uint8), "PNG"), model)
    assert analysis.pixels.shape == (1, 1)
    assert np.isfinite(analysis.score) and 0.0 <= analysis.score <= 1.0
    assert _decode_png(grey_png(analysis.pixels)).size == (1, 1)
    assert _decode_png(heatmap_png(analysis.cam, size=(1, 1))).size == (1, 1)


def test_nothing_is_written_while_analysing(
    model: ActiveModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, temp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    levels = (chest_like(np.random.default_rng(2), 64, opacity=False) * 255).astype(np.uint8)
    for data in (
        _dicom_bytes(rows=64, cols=80),
        _raster_bytes(levels, "PNG"),
        _raster_bytes(levels, "JPEG"),
    ):
        assert _analyse(data, model).score >= 0.0
    with pytest.raises(CorruptImageError):
        _analyse(_dicom_bytes(rows=64, cols=80)[:-500], model)
    assert sorted(tmp_path.rglob("*")) == [work, temp]


def test_grey_png_is_8_bit_grey_shrunk_to_max_side() -> None:
    pixels = np.linspace(0.0, 1.0, 1500 * 600, dtype=np.float32).reshape(1500, 600)
    image = _decode_png(grey_png(pixels))
    assert image.mode == "L"
    assert image.size == (410, 1024)  # (width, height): 600 * 1024 / 1500 = 409.6
    small = _decode_png(grey_png(pixels[:300, :200], max_side=1024))
    assert small.size == (200, 300)
    decoded = np.asarray(small, dtype=np.float32)
    np.testing.assert_allclose(decoded, np.round(pixels[:300, :200] * 255), atol=0.5)


def test_heatmap_png_is_the_worker_colour_table_at_the_given_size() -> None:
    cam = np.zeros((7, 7), dtype=np.float32)
    cam[2:5, 2:5] = 1.0  # a plateau, so the centre stays at 1 after upsampling
    image = _decode_png(heatmap_png(cam, size=(300, 200)))
    assert image.mode == "RGB" and image.size == (200, 300)
    rgb = np.asarray(image)
    lut = colormap_lut()
    assert tuple(rgb[0, 0]) == tuple(lut[0])  # a cold corner
    assert tuple(rgb[150, 100]) == tuple(lut[255])  # the peak, in the centre


@pytest.mark.parametrize("alpha", [0.35, 0.6])
def test_the_browser_composite_equals_render_overlay(alpha: float) -> None:
    rng = np.random.default_rng(3)
    grey = chest_like(rng, 1300, opacity=True).astype(np.float32)[:, :1100]
    cam = rng.random((7, 7)).astype(np.float32)
    shown = display_image(grey, max_side=1024)
    grey_layer = np.asarray(_decode_png(grey_png(grey)), dtype=np.float64)
    assert grey_layer.shape == shown.shape
    colour_layer = np.asarray(
        _decode_png(heatmap_png(cam, size=grey_layer.shape)), dtype=np.float64
    )
    # CSS opacity composites in the stored (sRGB-encoded) values: source-over.
    browser = (1.0 - alpha) * grey_layer[..., None] + alpha * colour_layer
    expected = render_overlay(shown, cam, alpha=alpha, lut=colormap_lut()).astype(np.float64)
    assert np.abs(browser - expected).max() <= 1.0


def test_study_image_reads_a_spooled_file_and_a_purged_one_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "spool" / "study.dcm"
    path.parent.mkdir()
    make_dx(path, rows=64, cols=80)
    image = study_image(path, max_pixels=MAX_PIXELS)
    assert image.source_format == "dicom" and image.pixels.shape == (64, 80)
    with pytest.raises(ImageTooLargeError):
        study_image(path, max_pixels=100)
    path.unlink()
    with pytest.raises(ImagePurgedError) as caught:
        study_image(path, max_pixels=MAX_PIXELS)
    assert http_status(caught.value) == 410


def test_study_image_reads_pixel_data_deferred_from_the_open_file(tmp_path: Path) -> None:
    path = tmp_path / "large.dcm"
    ds = make_dx(path, rows=1100, cols=600, bits_stored=12)  # 1.3 MB of pixels: deferred
    image = study_image(path, max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(image.pixels, dataset_to_grey(ds).pixels)


def test_study_image_refuses_a_corrupt_spooled_file(tmp_path: Path) -> None:
    path = tmp_path / "study.dcm"
    path.write_bytes(_dicom_bytes(rows=64, cols=80)[:-300])
    with pytest.raises(CorruptImageError):
        study_image(path, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (UploadTooLargeError("x"), 413),
        (ImageTooLargeError("x"), 413),
        (UnsupportedFormatError("x"), 415),
        (ImagePurgedError("x"), 410),
        (EmptyUploadError("x"), 422),
        (ChestAidOutputError("x"), 422),
        (CorruptImageError("x"), 422),
        (NotChestRadiographError("x"), 422),
        (UnsupportedImageError("colour"), 422),
        (RuntimeError("a bug"), 500),
        (ChestAidError("not the client's"), 500),
    ],
)
def test_http_status_of_each_error(exc: Exception, status: int) -> None:
    assert http_status(exc) == status
