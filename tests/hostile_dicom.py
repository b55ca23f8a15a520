"""Hostile C-STORE requests for tests and benchmarks: deflate bombs and crafted requests.

``deflate_bomb`` writes a Part-10 DX whose deflated body is small on disk and inflates
to as many bytes as asked; ``send_file`` sends a file's bytes as they are (no decoding,
so the bomb is never inflated by the sender) with the file meta's UIDs in the request;
``send_on_context`` sends a dataset on the presentation context of another SOP class,
as a broken or hostile SCU would.
"""

from __future__ import annotations

import io
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.association import Association

from tests.dicom_factory import make_dx

DX = "1.2.840.10008.5.1.4.1.1.1.1"
MB = 1 << 20
_CHUNKED = threading.Lock()  # the pynetdicom switch below is process-wide


def meta_end(data: bytes) -> int:
    """Where a Part-10 file's dataset starts (after its file meta group)."""
    if data[128:132] != b"DICM":
        raise ValueError("not a Part-10 file")
    (length,) = struct.unpack_from("<I", data, 140)
    return 144 + int(length)


def deflate_bomb(path: Path, inflated_pixel_bytes: int, **attributes: Any) -> Dataset:
    """Write a deflated DX whose Pixel Data inflates to that many zero bytes.

    The zeros go to the compressor a megabyte at a time, so building the bomb never
    holds what it inflates to. Returns the header (without its Pixel Data).
    """
    ds = make_dx(transfer_syntax=DeflatedExplicitVRLittleEndian, **attributes)
    del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    head = buffer.getvalue()
    end = meta_end(head)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(MB)
    with path.open("wb") as out:
        out.write(head[:end])
        out.write(deflater.compress(zlib.decompress(head[end:], -zlib.MAX_WBITS)))
        # (7FE0,0010) OB, explicit VR little endian: tag, VR, 2 reserved bytes, length.
        out.write(
            deflater.compress(
                struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, inflated_pixel_bytes)
            )
        )
        left = inflated_pixel_bytes
        while left:
            piece = zeros[: min(MB, left)]
            out.write(deflater.compress(piece))
            left -= len(piece)
        out.write(deflater.flush())
    return ds


def write_with_meta(path: Path, ds: Dataset) -> None:
    """Write ``ds`` as a Part-10 file with its file meta as it is (pydicom would
    otherwise make the meta agree with the dataset), explicit VR little endian."""
    out = DicomBytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, ds.file_meta, enforce_standard=False)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    path.write_bytes(out.getvalue() + body.getvalue())


def associate(
    port: int, contexts: list[tuple[str, str]], *, calling: str = "MODALITY"
) -> Association:
    """An established association to the node on loopback ``port``."""
    ae = AE(ae_title=calling)
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title="CHESTAID")
    if not assoc.is_established:
        raise RuntimeError("association not established")
    return assoc


def send_file(port: int, path: Path, *, sop_class: str = DX, syntax: str | None = None) -> Dataset:
    """Send a file's dataset bytes as they are; the request's UIDs come from its file meta.

    Returns the response's status dataset.
    """
    with _CHUNKED:
        _config.STORE_SEND_CHUNKED_DATASET = True
        try:
            assoc = associate(port, [(sop_class, syntax or DeflatedExplicitVRLittleEndian)])
            try:
                status: Dataset = assoc.send_c_store(path)
                return status
            finally:
                assoc.release()
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = False


def send_on_context(port: int, ds: Dataset, *, context_class: str) -> Dataset:
    """Send ``ds`` (its own SOP class in the request) on ``context_class``'s context.

    Returns the response's status dataset.
    """
    assoc = associate(port, [(context_class, ExplicitVRLittleEndian)])
    try:
        (context,) = assoc.accepted_contexts
        # pynetdicom picks the context by the dataset's SOP class; a hostile SCU does not.
        assoc._get_valid_context = lambda *args, **kwargs: context  # type: ignore[method-assign]
        status: Dataset = assoc.send_c_store(ds)
        return status
    finally:
        assoc.release()
