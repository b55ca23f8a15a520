"""The DICOM transport against DCMTK's storescp: an output goes as its file's bytes when
the destination took the file's transfer syntax, and converted when it took the other."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom.dsutils import split_dataset

from chestaid.dicom_outputs import OutputIdentity, TriageFinding, secondary_capture
from chestaid.imaging import read_image
from daemon.connections import BulkReadSocket
from daemon.settings import Destination, NodeSettings, SenderSettings
from daemon.transports.base import Stored
from daemon.transports.dicom import DicomTransport
from tests.daemon_harness import answers_echo, free_port, wait_until
from tests.dicom_factory import make_dx, require_tool

pytestmark = pytest.mark.integration

FINDING = TriageFinding(0.91, 0.42, True, "URGENT", "densenet121-test-1.0", 2)


def _output(tmp_path: Path) -> Path:
    """A Secondary Capture as the worker writes it (Explicit VR Little Endian)."""
    source_path = tmp_path / "source.dcm"
    source = make_dx(source_path, rows=300, cols=240)
    cam = np.random.default_rng(3).random((7, 7)).astype(np.float32)
    identity = OutputIdentity(str(generate_uid()), str(generate_uid()), 9901)
    sc = secondary_capture(
        source, read_image(source_path).pixels, cam, FINDING, identity, max_side=256
    )
    path = tmp_path / "sc.dcm"
    sc.save_as(path, enforce_file_format=True)
    assert sc.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    return path


def _send_to_storescp(tmp_path: Path, path: Path, *options: str) -> Path:
    """Deliver ``path`` through the transport to a storescp run with ``options``."""
    tool = require_tool("storescp", "dcmtk")
    received = tmp_path / "received"
    received.mkdir()
    port = free_port()
    peer = subprocess.Popen(
        [tool, "-aet", "PACS", "-od", str(received), *options, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: answers_echo("PACS", port), timeout=30, what="storescp")
        transport = DicomTransport(node=NodeSettings(), settings=SenderSettings())
        destination = Destination(name="pacs", ae_title="PACS", host="127.0.0.1", port=port)
        with transport.open(destination) as session:
            # Each PDU goes at once: the last piece of one never waits on an acknowledgement.
            sock = session.assoc.dul.socket.socket
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            # ... and reads acknowledging at once, so a peer that writes a PDU's header
            # and body apart does not wait on this side's delayed acknowledgement.
            assert isinstance(session.assoc.dul.socket, BulkReadSocket)
            assert isinstance(session.send(path), Stored)
    finally:
        peer.terminate()
        peer.wait(timeout=30)
    [stored] = list(received.iterdir())
    return stored


def test_an_output_in_a_syntax_the_destination_took_arrives_byte_for_byte(
    tmp_path: Path,
) -> None:
    path = _output(tmp_path)
    stored = _send_to_storescp(tmp_path, path)
    _, ours = split_dataset(path)
    _, theirs = split_dataset(stored)
    assert dcmread(stored).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert stored.read_bytes()[theirs:] == path.read_bytes()[ours:]


def test_a_destination_that_takes_only_implicit_vr_gets_the_output_converted(
    tmp_path: Path,
) -> None:
    path = _output(tmp_path)
    stored = _send_to_storescp(tmp_path, path, "+xi")
    theirs, ours = dcmread(stored), dcmread(path)
    assert theirs.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert theirs.SOPInstanceUID == ours.SOPInstanceUID
    assert np.array_equal(theirs.pixel_array, ours.pixel_array)
    assert theirs.PatientID == ours.PatientID
