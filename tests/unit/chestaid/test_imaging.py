"""Reading radiographs: every DICOM variant gives the expected image; bad input a typed error."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from chestaid.errors import (
    ChestAidError,
    CorruptImageError,
    ImageTooLargeError,
    NotChestRadiographError,
    UnknownFormatError,
    UnsupportedImageError,
)
from chestaid.imaging import dataset_to_grey, read_dicom, read_for_scoring, read_image, read_raster
from tests.dicom_factory import LOSSY, expected_grey, make_dx

CASES: dict[str, dict[str, Any]] = {
    "mono2-8bit": {"bits_stored": 8},
    "mono2-10bit": {"bits_stored": 10},
    "mono2-12bit": {"bits_stored": 12},
    "mono2-14bit": {"bits_stored": 14},
    "mono2-16bit": {"bits_stored": 16},
    "mono1-12bit": {"bits_stored": 12, "photometric": "MONOCHROME1"},
    "mono1-16bit-window": {
        "bits_stored": 16,
        "photometric": "MONOCHROME1",
        "window": (30000, 40000),
    },
    "signed-12bit": {"bits_stored": 12, "signed": True},
    "signed-16bit-rescale-window": {
        "bits_stored": 16,
        "signed": True,
        "rescale": (0.5, 1024.0),
        "window": (1000.0, 9000.0),
    },
    "rescale-no-window": {"rescale": (2.0, -1000.0)},
    "window-linear": {"window": (2000, 2500)},
    "window-several-first-wins": {"window": [(1500, 1000), (3000, 6000)]},
    "window-linear-exact": {"window": (2000, 2500), "voi_function": "LINEAR_EXACT"},
    "window-sigmoid": {"window": (2000, 2500), "voi_function": "SIGMOID"},
    "window-width-1": {"window": (2000, 1)},
    "modality-lut-sequence": {"modality_lut": True},
    "modality-lut-and-window": {"modality_lut": True, "window": (2000, 3000)},
    "voi-lut-sequence": {"voi_lut": True},
    "cr": {"modality": "CR"},
    "secondary-capture": {"modality": "OT", "bits_stored": 8},
    "high-bits-set-in-12bit": {"pixels": None, "bits_stored": 12, "dirty_high_bits": True},
}


@pytest.mark.parametrize("name", CASES)
def test_each_photometric_bit_depth_and_lut_case(name: str) -> None:
    kwargs = dict(CASES[name])
    dirty = kwargs.pop("dirty_high_bits", False)
    ds = make_dx(**kwargs)
    expected = expected_grey(ds)
    if dirty:
        # Bits above Bits Stored (an old overlay) must be ignored.
        raw = np.frombuffer(ds.PixelData, dtype=np.uint16) | np.uint16(0xF000)
        ds.PixelData = raw.tobytes()
    image = dataset_to_grey(ds)
    assert image.pixels.dtype == np.float32
    assert image.pixels.shape == (64, 80)
    assert image.pixels.min() >= 0.0 and image.pixels.max() <= 1.0
    assert image.pixels.std() > 0.05, "the image must have content for the check to mean anything"
    np.testing.assert_allclose(image.pixels, expected, atol=2e-5)


def test_monochrome1_is_the_inverse_of_monochrome2() -> None:
    m1 = dataset_to_grey(make_dx(photometric="MONOCHROME1", window=(2000, 3000))).pixels
    m2 = dataset_to_grey(make_dx(photometric="MONOCHROME2", window=(2000, 3000))).pixels
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)


def test_lungs_are_dark_as_displayed() -> None:
    for photometric in ("MONOCHROME1", "MONOCHROME2"):
        ds = make_dx(photometric=photometric)
        if photometric == "MONOCHROME1":
            ds.PixelData = (
                (4095 - np.frombuffer(ds.PixelData, dtype=np.uint16)).astype(np.uint16).tobytes()
            )
        grey = dataset_to_grey(ds).pixels
        lung, mediastinum = grey[32, 24], grey[32, 40]
        assert lung < mediastinum, photometric


TRANSFER_SYNTAXES = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGLSLossless,
    JPEG2000Lossless,
    JPEG2000,
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGBaseline8Bit,
]


@pytest.mark.parametrize("syntax", TRANSFER_SYNTAXES, ids=lambda u: u.name)
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_every_transfer_syntax_round_trips_through_a_file(
    syntax: pydicom.uid.UID, photometric: str, tmp_path: Path
) -> None:
    bits = 8 if syntax == JPEGBaseline8Bit else 12
    reference = make_dx(
        bits_stored=bits, photometric=photometric, window=(2 ** (bits - 1), 2**bits * 0.8)
    )
    expected = expected_grey(reference)
    path = tmp_path / "image.dcm"
    make_dx(
        path,
        bits_stored=bits,
        photometric=photometric,
        window=(2 ** (bits - 1), 2**bits * 0.8),
        transfer_syntax=syntax,
    )
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    image = read_image(path)
    assert image.source_format == "dicom"
    if syntax in LOSSY:
        error = np.abs(image.pixels - expected)
        # Lossy: small errors on average; a wrong LUT or inversion would be off by far more.
        assert error.mean() < 0.03 and error.max() < 0.2, (error.mean(), error.max())
    else:
        np.testing.assert_allclose(image.pixels, expected, atol=2e-5)


def test_bytes_and_streams_are_read_like_files(tmp_path: Path) -> None:
    path = tmp_path / "a.dcm"
    make_dx(path)
    data = path.read_bytes()
    a = read_dicom(path).pixels
    assert np.array_equal(a, read_dicom(data).pixels)
    assert np.array_equal(a, read_dicom(io.BytesIO(data)).pixels)


def _refused(ds: pydicom.Dataset, error: type[ChestAidError], match: str, **kwargs: Any) -> None:
    with pytest.raises(error, match=match):
        dataset_to_grey(ds, **kwargs)


def test_refusals_say_why() -> None:
    no_pixels = make_dx()
    del no_pixels.PixelData
    _refused(no_pixels, CorruptImageError, "no pixel data")
    _refused(make_dx(NumberOfFrames=3), UnsupportedImageError, "multi-frame")
    colour = make_dx()
    colour.PhotometricInterpretation = "RGB"
    colour.SamplesPerPixel = 3
    _refused(colour, UnsupportedImageError, "colour")
    zero = make_dx()
    zero.Rows = 0
    _refused(zero, CorruptImageError, "zero-size")
    _refused(make_dx(body_part="KNEE"), NotChestRadiographError, "Body Part Examined")
    _refused(
        make_dx(modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2"),
        NotChestRadiographError,
        "Modality",
    )
    _refused(
        make_dx(modality="MG", sop_class="1.2.840.10008.5.1.4.1.1.1.2"),
        NotChestRadiographError,
        "Modality",
    )
    truncated = make_dx()
    truncated.PixelData = truncated.PixelData[:1000]
    _refused(truncated, CorruptImageError, "cannot be decoded")


def _with_raw_value(keyword: str, vr: str, raw: bytes) -> bytes:
    """A DX file whose ``keyword`` holds ``raw`` bytes as written by a faulty sender."""
    ds = make_dx(rescale=(1.0, 0.0), window=(2000, 3000))
    tag = pydicom.datadict.tag_for_keyword(keyword)
    assert tag is not None
    ds[tag] = RawDataElement(Tag(tag), vr, len(raw), raw, 0, False, True)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore:Invalid value:UserWarning")
@pytest.mark.parametrize(
    ("keyword", "vr", "raw", "says"),
    [
        ("RescaleSlope", "DS", b"abc ", "RescaleSlope is not a number"),
        ("RescaleIntercept", "DS", b"nan ", "RescaleIntercept is not a finite number"),
        ("NumberOfFrames", "IS", b"x ", "NumberOfFrames is not a number"),
    ],
)
def test_unparsable_numbers_are_typed_errors(keyword: str, vr: str, raw: bytes, says: str) -> None:
    with pytest.raises(CorruptImageError, match=says):
        read_dicom(_with_raw_value(keyword, vr, raw))


@pytest.mark.filterwarnings("ignore:Invalid value:UserWarning")
def test_a_window_that_is_not_finite_is_ignored() -> None:
    image = read_dicom(_with_raw_value("WindowWidth", "DS", b"nan "))
    assert np.isfinite(image.pixels).all()
    assert float(image.pixels.min()) == 0.0
    assert float(image.pixels.max()) == 1.0


def test_missing_attributes_are_not_held_against_an_image() -> None:
    ds = make_dx(body_part=None, view_position=None)
    del ds.Modality
    assert dataset_to_grey(ds).pixels.shape == (64, 80)
    assert dataset_to_grey(make_dx(body_part="thorax")).pixels.shape == (64, 80)


def test_pixel_budget_is_checked_before_decoding() -> None:
    ds = make_dx()
    ds.Rows, ds.Columns = 60_000, 60_000  # pixel data stays tiny: decoding would fail otherwise
    _refused(ds, ImageTooLargeError, "exceeds the budget")
    _refused(make_dx(), ImageTooLargeError, "budget of 1000", max_pixels=1000)


class CountingStream(io.BytesIO):
    """A stream that counts the bytes read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def test_an_image_over_the_budget_is_refused_without_reading_its_pixels() -> None:
    buffer = io.BytesIO()
    make_dx(rows=1200, cols=1000).save_as(buffer, enforce_file_format=True)
    stream = CountingStream(buffer.getvalue())
    with pytest.raises(ImageTooLargeError):
        read_dicom(stream, max_pixels=1000)
    assert stream.bytes_read < 100_000 < len(buffer.getvalue())
    assert read_dicom(CountingStream(buffer.getvalue())).pixels.shape == (1200, 1000)


def test_broken_files_are_typed_errors(tmp_path: Path) -> None:
    path = tmp_path / "a.dcm"
    make_dx(path)
    data = path.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError):
        read_image(cut)
    header_only = tmp_path / "header.dcm"
    header_only.write_bytes(data[:200])
    with pytest.raises(CorruptImageError):
        read_image(header_only)
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    # Told by content, not by name: no DICM prefix and no dataset is no DICOM file.
    with pytest.raises(UnknownFormatError):
        read_image(garbage)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(CorruptImageError, match="empty"):
        read_image(empty)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(UnsupportedImageError, match="not a DICOM, PNG or JPEG"):
        read_image(text)
    with pytest.raises(CorruptImageError):
        read_image(tmp_path / "missing.png")


def test_png_8_and_16_bit_and_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    eight = (rng.random((30, 40)) * 255).astype(np.uint8)
    Image.fromarray(eight).save(tmp_path / "a.png")
    np.testing.assert_allclose(read_image(tmp_path / "a.png").pixels, eight / 255.0, atol=1e-6)
    sixteen = (rng.random((30, 40)) * 65535).astype(np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "b.png")
    got = read_image(tmp_path / "b.png")
    assert got.source_format == "png"
    np.testing.assert_allclose(got.pixels, sixteen / 65535.0, atol=1e-6)
    smooth = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1))
    Image.fromarray(smooth).save(tmp_path / "c.jpeg", quality=95)
    jpeg = read_image(tmp_path / "c.jpeg")
    assert jpeg.source_format == "jpeg"
    np.testing.assert_allclose(jpeg.pixels, smooth / 255.0, atol=0.03)


def test_rgb_jpeg_becomes_grey(tmp_path: Path) -> None:
    grey = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1))
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "rgb.jpg", quality=95)
    image = read_image(tmp_path / "rgb.jpg")
    assert image.pixels.ndim == 2
    np.testing.assert_allclose(image.pixels, grey / 255.0, atol=0.03)


def test_a_colour_image_is_refused_saying_why(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    with pytest.raises(UnsupportedImageError, match="colour"):
        read_image(tmp_path / "photo.png")
    grey = np.tile(np.linspace(0, 255, 50, dtype=np.uint8), (40, 1))
    annotated = np.stack([grey] * 3, axis=-1)
    annotated[5:35, 5:45] = (255, 0, 0)  # a large red annotation over a grey image
    Image.fromarray(annotated).save(tmp_path / "annotated.jpg", quality=95)
    with pytest.raises(UnsupportedImageError, match="colour"):
        read_image(tmp_path / "annotated.jpg")


def test_raster_refusals(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((50, 60), dtype=np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ImageTooLargeError):
        read_image(tmp_path / "a.png", max_pixels=100)
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError):
        read_image(tmp_path / "cut.png")
    Image.fromarray(np.zeros((5, 6), dtype=np.uint8)).save(tmp_path / "a.gif")
    with pytest.raises(UnsupportedImageError):
        read_raster(tmp_path / "a.gif")


@pytest.mark.parametrize(("implicit", "little"), [(True, True), (False, True), (False, False)])
def test_a_dataset_without_file_meta_is_read(tmp_path: Path, implicit: bool, little: bool) -> None:
    ds = make_dx(rows=40, cols=30, bits_stored=12)
    expected = expected_grey(ds)
    del ds.file_meta
    ds.preamble = None
    if not little:  # pydicom writes OW pixel bytes as given: swap them for big endian
        ds.PixelData = np.frombuffer(ds.PixelData, dtype="<u2").byteswap().tobytes()
    path = tmp_path / "bare.dcm"
    ds.save_as(path, implicit_vr=implicit, little_endian=little, enforce_file_format=False)
    assert path.read_bytes()[128:132] != b"DICM"
    np.testing.assert_allclose(read_image(path).pixels, expected, atol=1e-5)


def test_a_file_named_dcm_that_is_no_dataset_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.dcm"
    path.write_bytes(b"hello, this is not DICOM at all" * 10)
    # The name does not make it DICOM: by its content it is no known format.
    with pytest.raises(UnknownFormatError, match="not a DICOM"):
        read_image(path)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("which", ["voi_lut", "modality_lut"])
def test_lut_data_written_as_ow_bytes_reads_like_the_list_form(
    tmp_path: Path, syntax: str, which: str
) -> None:
    ds = make_dx(rows=40, cols=30, bits_stored=12, **{which: True})
    expected = expected_grey(ds)
    sequence = ds.VOILUTSequence if which == "voi_lut" else ds.ModalityLUTSequence
    item = sequence[0]
    words = np.asarray(item.LUTData, dtype="<u2")
    del item.LUTData
    item.add_new(0x00283006, "OW", words.tobytes())  # LUT Data as a modality writes it
    ds.file_meta.TransferSyntaxUID = syntax
    path = tmp_path / "ow.dcm"
    ds.save_as(path, enforce_file_format=True)
    np.testing.assert_allclose(read_image(path).pixels, expected, atol=1e-5)


@pytest.mark.parametrize("view", ["LL", "RL", "LLD", "RLO"])
def test_lateral_and_oblique_views_are_not_scored(view: str) -> None:
    ds = make_dx(view_position=view)
    with pytest.raises(NotChestRadiographError, match="View Position"):
        dataset_to_grey(ds)


@pytest.mark.parametrize("view", ["PA", "AP", "", None])
def test_frontal_or_unstated_views_are_scored(view: str | None) -> None:
    ds = make_dx(view_position=view)
    assert dataset_to_grey(ds).pixels.shape == (64, 80)


def test_localizer_image_type_is_not_scored() -> None:
    ds = make_dx(ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    with pytest.raises(NotChestRadiographError, match="localizer"):
        dataset_to_grey(ds)
    ok = make_dx(ImageType=["ORIGINAL", "PRIMARY"])
    dataset_to_grey(ok)


@pytest.mark.parametrize(
    ("sop_class", "modality", "intent"),
    [
        ("1.2.840.10008.5.1.4.1.1.1.1.1", "DX", None),  # DX For Processing
        ("1.2.840.10008.5.1.4.1.1.1.2.1", "DX", None),  # MG For Processing
        ("1.2.840.10008.5.1.4.1.1.1.3.1", "DX", None),  # IO For Processing
        ("1.2.840.10008.5.1.4.1.1.1.1", "DX", "FOR PROCESSING"),  # stated in the image
    ],
)
def test_images_for_processing_are_not_scored(
    sop_class: str, modality: str, intent: str | None
) -> None:
    extra = {} if intent is None else {"PresentationIntentType": intent}
    ds = make_dx(sop_class=sop_class, modality=modality, **extra)
    with pytest.raises(NotChestRadiographError, match="For Processing"):
        dataset_to_grey(ds)
    presented = make_dx(PresentationIntentType="FOR PRESENTATION")
    assert dataset_to_grey(presented).pixels.shape == (64, 80)


MARKER = "PLANTED-VALUE-7f3a"


@pytest.mark.parametrize(
    ("changes", "attribute"),
    [
        ({"RescaleSlope": MARKER}, "RescaleSlope"),
        ({"RescaleIntercept": MARKER}, "RescaleIntercept"),
        ({"WindowCenter": MARKER}, "Window Center"),
        ({"VOILUTFunction": MARKER}, "VOI LUT Function"),
        ({"PhotometricInterpretation": MARKER}, "Photometric Interpretation"),
        ({"Modality": MARKER}, "Modality"),
        ({"BodyPartExamined": MARKER}, "Body Part Examined"),
        ({"ViewPosition": MARKER}, "View Position"),
    ],
)
def test_a_reason_names_the_attribute_never_its_value(
    changes: dict[str, str], attribute: str
) -> None:
    """A value a sender planted must not reach the log or the jobs table through a
    reason: reasons name the attribute and the rule."""
    ds = make_dx(rescale=(1.0, 0.0), window=(2000, 3000))
    for keyword, value in changes.items():
        tag = pydicom.datadict.tag_for_keyword(keyword)
        assert tag is not None
        raw = value.encode("ascii")
        raw += b" " * (len(raw) % 2)
        ds[tag] = RawDataElement(Tag(tag), "LO", len(raw), raw, 0, False, True)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(ChestAidError) as caught:
        read_for_scoring(buffer.getvalue())
    message = str(caught.value)
    assert MARKER not in message and MARKER.lower() not in message.lower()
    assert attribute in message
