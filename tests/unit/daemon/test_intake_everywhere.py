"""A bad file ends with the same typed error in every place that reads one to score it.

The worker (a spooled file), the web (an upload, and a stored study's page) and
``chestaid predict`` all read through ``chestaid.imaging.read_for_scoring``; each bad
input here is fed to all of them and the error each reports is compared.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from chestaid import cli
from chestaid.bundle import Manifest, save_bundle
from chestaid.errors import ChestAidError
from chestaid.imaging import read_for_scoring
from chestaid.models import build_model
from chestaid.preprocess import PreprocessSpec
from daemon.db.models import Job, JobState
from daemon.db.session import SessionFactory, writing
from daemon.serving import ActiveModel
from daemon.settings import WorkerSettings
from daemon.spool import FileStore
from daemon.web.imaging import analyse_upload, study_image
from daemon.worker import Worker
from tests.daemon_harness import record_received
from tests.dicom_factory import make_dx
from tests.scorers import active_model, tiny_net

MAX_PIXELS = 100 * 100


def _dicom(ds: object) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)  # type: ignore[attr-defined]
    return buffer.getvalue()


def _png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((side, side), 90, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _short_pixels() -> bytes:
    ds = make_dx(rows=64, cols=80)
    ds.PixelData = ds.PixelData[:100]
    return _dicom(ds)


def _bad_inputs() -> dict[str, tuple[bytes, str]]:
    """Each input and the error every reader must end it with."""
    dicom = _dicom(make_dx(rows=64, cols=80))
    png = _png(40)
    noise = np.random.default_rng(3).bytes(4000)
    return {
        "dicom cut in the header": (dicom[:200], "CorruptImageError"),
        "dicom cut in the pixels": (dicom[: len(dicom) - 1000], "CorruptImageError"),
        "dicom prefix then noise": (dicom[:132] + noise, "CorruptImageError"),
        "dicom with too little pixel data": (_short_pixels(), "CorruptImageError"),
        "png cut in half": (png[: len(png) // 2], "CorruptImageError"),
        "jpeg magic then noise": (b"\xff\xd8\xff" + noise, "CorruptImageError"),
        "noise": (noise, "UnknownFormatError"),
        "dicom over the pixel budget": (_dicom(make_dx(rows=120, cols=100)), "ImageTooLargeError"),
        "png over the pixel budget": (_png(101), "ImageTooLargeError"),
    }


BAD = _bad_inputs()


@pytest.fixture(scope="module")
def model() -> ActiveModel:
    return active_model(tiny_net())


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bundle") / "b"
    manifest = Manifest(
        version="t-1",
        architecture="densenet121",
        classes=("NORMAL", "PNEUMONIA"),
        preprocessing=PreprocessSpec(input_size=64),
    )
    save_bundle(path, build_model("densenet121"), manifest)
    return path


def _by_the_core(path: Path) -> str:
    with pytest.raises(ChestAidError) as caught:
        read_for_scoring(path, max_pixels=MAX_PIXELS)
    return type(caught.value).__name__


def _by_the_worker(
    data: bytes, tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> str:
    worker = Worker(
        sessions=sessions,
        spool=FileStore(tmp_path / "spool"),
        outbox=FileStore(tmp_path / "outbox"),
        model=lambda: model,
        destinations=[],
        settings=WorkerSettings(max_pixels=MAX_PIXELS, max_attempts=1),
        on_outputs=lambda: None,
        owner="host:1:worker:test",
    )
    stored = worker.spool.write(data)
    job_id = record_received(sessions, "1.2.3.4.5", spool_name=stored.name, size=stored.size)
    assert worker.process_next()
    with writing(sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.state == JobState.FAILED
        return (job.reason or "").split(":")[0]


def _by_the_upload(data: bytes, model: ActiveModel) -> str:
    with pytest.raises(ChestAidError) as caught:
        analyse_upload(
            data, filename="upload", model=model, max_pixels=MAX_PIXELS, max_bytes=1 << 20
        )
    return type(caught.value).__name__


def _by_the_study_page(path: Path) -> str:
    with pytest.raises(ChestAidError) as caught:
        study_image(path, max_pixels=MAX_PIXELS)
    return type(caught.value).__name__


def _by_predict(path: Path, bundle: Path, capsys: pytest.CaptureFixture[str]) -> str:
    argv = ["predict", "--bundle", str(bundle), "--json", "--max-pixels", str(MAX_PIXELS)]
    status = cli.main([*argv, str(path)])
    assert status == cli.EXIT_SOME_REFUSED
    record = json.loads(capsys.readouterr().out)
    return str(record["error_type"])


@pytest.mark.parametrize("name", list(BAD))
def test_every_reader_ends_a_bad_file_with_the_same_typed_error(
    name: str,
    tmp_path: Path,
    sessions: SessionFactory,
    model: ActiveModel,
    bundle: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, expected = BAD[name]
    path = tmp_path / "received"  # no suffix: every reader tells the format by content
    path.write_bytes(data)
    seen = {
        "core": _by_the_core(path),
        "worker": _by_the_worker(data, tmp_path, sessions, model),
        "upload": _by_the_upload(data, model),
        "study page": _by_the_study_page(path),
        "predict": _by_predict(path, bundle, capsys),
    }
    assert seen == dict.fromkeys(seen, expected)
