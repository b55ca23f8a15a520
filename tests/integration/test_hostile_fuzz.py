"""An input that crashed the intake path under the fuzzer, sent by a live modality.

The pixel data of the stored crasher (tests/data/fuzz/rle-decoder-panic.bin, an RLE
frame that made pylibjpeg-rle panic) is sent in an otherwise well-formed dataset by
DCMTK's storescu over a real association: the node stores it, the worker's job ends
failed with the typed reason, and the node goes on to score the next image. (The
dataset is hostile on purpose, so dciodvfy is not asked to pass it.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_fragmented_frames
from pydicom.uid import RLELossless

from tests.daemon_harness import Daemon, answers_echo, storescu, wait_until
from tests.dicom_factory import make_dx
from tests.intake_fuzz_target import CRASHERS

pytestmark = pytest.mark.integration


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "node")
    d.start()
    yield d
    d.stop()


def _rle_panic_dataset(path: Path) -> None:
    crasher = pydicom.dcmread(CRASHERS / "rle-decoder-panic.bin")
    frame = b"".join(next(generate_fragmented_frames(crasher.PixelData)))
    ds = make_dx(rows=crasher.Rows, cols=crasher.Columns, transfer_syntax=RLELossless)
    ds.PixelData = encapsulate([frame])
    ds.save_as(path, enforce_file_format=True)


def test_a_pixel_data_decoder_panic_fails_its_job_and_the_node_scores_on(
    tmp_path: Path, daemon: Daemon
) -> None:
    hostile = tmp_path / "rle-decoder-panic.dcm"
    _rle_panic_dataset(hostile)
    sent = storescu([hostile], daemon.port)  # proposed in its own RLE Lossless syntax
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "(Success)" in sent.stdout + sent.stderr
    wait_until(daemon.terminal, timeout=60, what="the hostile image's job to end")
    state, reason = daemon.query("SELECT state, reason FROM jobs")[0]
    assert state == "failed" and "CorruptImageError" in reason, (state, reason)

    assert answers_echo("CHESTAID", daemon.port)
    good = tmp_path / "good.dcm"
    make_dx(good)
    assert storescu([good], daemon.port).returncode == 0
    wait_until(daemon.terminal, timeout=120, what="the good image's job to end")
    states = [row[0] for row in daemon.query("SELECT state FROM jobs ORDER BY id")]
    assert states == ["failed", "done"]
