"""The synthetic sample DX that the quick start scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from chestaid.errors import ConfigurationError
from chestaid.imaging import check_chest_radiograph, read_image
from chestaid.sample import SAMPLE_PATIENT_ID, synthetic_dx


def test_sample_is_a_readable_16_bit_dx_chest(tmp_path: Path) -> None:
    path = tmp_path / "s.dcm"
    ds = synthetic_dx(path, rows=300, cols=240, seed=1)
    back = pydicom.dcmread(path)
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    assert (back.Modality, back.BodyPartExamined, back.BitsAllocated) == ("DX", "CHEST", 16)
    assert back.PatientID == SAMPLE_PATIENT_ID
    check_chest_radiograph(back)
    image = read_image(path)
    assert image.pixels.shape == (300, 240)
    assert 0.0 <= float(image.pixels.min()) < 0.3 < 0.7 < float(image.pixels.max()) <= 1.0


def test_sample_pixels_follow_the_seed() -> None:
    a = synthetic_dx(rows=64, cols=64, seed=5).pixel_array
    b = synthetic_dx(rows=64, cols=64, seed=5).pixel_array
    c = synthetic_dx(rows=64, cols=64, seed=6).pixel_array
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sample_study_uid_can_be_chosen_and_instances_are_unique() -> None:
    one = synthetic_dx(rows=32, cols=32, study_uid="1.2.3.4")
    two = synthetic_dx(rows=32, cols=32, study_uid="1.2.3.4")
    assert one.StudyInstanceUID == two.StudyInstanceUID == "1.2.3.4"
    assert one.SOPInstanceUID != two.SOPInstanceUID


@pytest.mark.parametrize("kwargs", [{"rows": 0}, {"bits_stored": 8}, {"bits_stored": 17}])
def test_sample_refuses_impossible_sizes(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError):
        synthetic_dx(**kwargs)
