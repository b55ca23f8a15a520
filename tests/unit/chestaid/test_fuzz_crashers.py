"""Every input the intake fuzzer crashed on ends in a typed error (tests/data/fuzz/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chestaid.errors import ChestAidError, CorruptImageError
from chestaid.imaging import read_for_scoring
from tests.intake_fuzz_target import CRASHERS, FUZZ_MAX_PIXELS, Target, worker_screen

CRASHER_FILES = sorted(CRASHERS.glob("*.bin"))


def test_the_crashers_are_stored() -> None:
    assert {p.name for p in CRASHER_FILES} >= {
        "file-meta-group-length-odd-bytes.bin",
        "rle-decoder-panic.bin",
    }


@pytest.mark.parametrize("crasher", CRASHER_FILES, ids=lambda p: p.stem)
def test_a_crasher_ends_in_a_typed_error_from_bytes(crasher: Path) -> None:
    data = crasher.read_bytes()
    with pytest.raises(ChestAidError):
        read_for_scoring(data, max_pixels=FUZZ_MAX_PIXELS, screen=worker_screen)
    # The whole fuzzed path, to the model input, gives the name of a typed error.
    assert Target.default().score_bytes(data) != "model-input"


@pytest.mark.parametrize("crasher", CRASHER_FILES, ids=lambda p: p.stem)
def test_a_crasher_ends_in_a_typed_error_from_a_spooled_file(crasher: Path, tmp_path: Path) -> None:
    # The worker reads the spooled file by its path.
    spooled = tmp_path / "spooled.dcm"
    spooled.write_bytes(crasher.read_bytes())
    with pytest.raises(ChestAidError):
        read_for_scoring(spooled, max_pixels=FUZZ_MAX_PIXELS, screen=worker_screen)


@pytest.mark.parametrize("name", ["file-meta-group-length-odd-bytes.bin", "rle-decoder-panic.bin"])
def test_corrupt_headers_and_pixel_data_are_corrupt_images(name: str) -> None:
    with pytest.raises(CorruptImageError):
        read_for_scoring((CRASHERS / name).read_bytes(), max_pixels=FUZZ_MAX_PIXELS)
