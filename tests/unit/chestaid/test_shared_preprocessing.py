"""Training, evaluation and serving feed the model identical tensors for the same file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from chestaid.bundle import Manifest, load_bundle, save_bundle
from chestaid.data import Example
from chestaid.evaluation import logits_for
from chestaid.imaging import dataset_to_grey, read_image
from chestaid.inference import Scorer
from chestaid.models import build_model
from chestaid.preprocess import PreprocessSpec, preprocess
from chestaid.training.dataset import ImageDataset
from tests.dicom_factory import make_dx

SPEC = PreprocessSpec(input_size=64)


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    (tmp_path / "NORMAL").mkdir()
    dicom = make_dx(
        tmp_path / "NORMAL" / "a.dcm", rows=120, cols=96, bits_stored=12, photometric="MONOCHROME1"
    )
    png = tmp_path / "NORMAL" / "b.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((70, 90)) * 65535).astype(np.uint16)).save(png)
    jpeg = tmp_path / "NORMAL" / "c.jpeg"
    grey = (rng.random((50, 40)) * 255).astype(np.uint8)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(jpeg)  # grey stored as RGB
    assert dicom is not None
    return [tmp_path / "NORMAL" / "a.dcm", png, jpeg]


def test_three_paths_give_identical_tensors(files: list[Path], tmp_path: Path) -> None:
    examples = [Example(relpath=f"NORMAL/{f.name}", label=0, patient=f.stem) for f in files]
    training = ImageDataset(tmp_path, examples, SPEC, cache=True)
    for i, path in enumerate(files):
        train_tensor = training[i][0]
        serving_tensor = preprocess(read_image(path).pixels, SPEC)
        assert train_tensor.shape == (1, 64, 64)
        assert torch.equal(train_tensor, serving_tensor), path.name
        if path.suffix == ".dcm":
            # The daemon decodes a dataset it already holds: same tensor again.
            daemon_tensor = preprocess(dataset_to_grey(pydicom.dcmread(path)).pixels, SPEC)
            assert torch.equal(train_tensor, daemon_tensor)


def test_evaluation_and_serving_give_identical_logits(files: list[Path], tmp_path: Path) -> None:
    torch.manual_seed(0)
    save_bundle(
        tmp_path / "bundle",
        build_model("resnet50").eval(),
        Manifest(
            version="t",
            architecture="resnet50",
            classes=("NORMAL", "PNEUMONIA"),
            preprocessing=SPEC,
        ),
    )
    bundle = load_bundle(tmp_path / "bundle")
    examples = [Example(relpath=f"NORMAL/{f.name}", label=0, patient=f.stem) for f in files]
    evaluation_logits, _ = logits_for(bundle, tmp_path, examples, batch_size=1)
    scorer = Scorer.from_bundle(bundle)
    serving_logits = [scorer.score_file(f)[1].logit for f in files]
    np.testing.assert_allclose(evaluation_logits, serving_logits, rtol=1e-5, atol=1e-5)
