"""Throwaway TLS certificates for tests, made by openssl (skipped without it, failed under CI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.dicom_factory import require_tool


def self_signed(directory: Path, name: str, *names: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``names`` (``DNS:...``, ``IP:...``) and its key."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            require_tool("openssl", "openssl"), "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-noenc", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
            "-addext", "subjectAltName=" + ",".join(names),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
