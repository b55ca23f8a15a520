"""A real Orthanc PACS for the delivery tests, on free loopback ports with its own storage.

Orthanc is Debian's ``orthanc``; its DICOMweb plugin (for STOW-RS) is Debian's
``orthanc-dicomweb``, found in the package's plugin directory. Both skip the test,
naming the package, when absent (and fail it under CI).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import free_port, wait_until
from tests.dicom_factory import require_tool

# Where Debian's orthanc-dicomweb installs the plugin.
DEBIAN_PLUGIN_DIRECTORY = Path("/usr/share/orthanc/plugins")
DICOMWEB_PLUGIN = "libOrthancDicomWeb.so"


def require_dicomweb_plugin() -> Path:
    """The DICOMweb plugin's file; skips naming the Debian package when absent (fails under CI)."""
    path = DEBIAN_PLUGIN_DIRECTORY / DICOMWEB_PLUGIN
    if not path.is_file():
        message = (
            "Orthanc's DICOMweb plugin not found: install the Debian package 'orthanc-dicomweb'"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


class Orthanc:
    """An Orthanc server with its own storage, on free DICOM and HTTP ports.

    Args:
        root: its directory (configuration, storage, log).
        plugins: plugin files to load.
        users: user name to password; when given, the REST API (and DICOMweb) asks
            for HTTP basic authentication and this helper signs in as the first user.
        extra: more configuration (a plugin's section, say).
    """

    def __init__(
        self,
        root: Path,
        *,
        plugins: tuple[Path, ...] = (),
        users: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.dicom_port, self.http_port = free_port(), free_port()
        self.ae_title = "ORTHANC"
        self.users = dict(users or {})
        root.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "chestaid-test-pacs",
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "index"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "DicomCheckCalledAet": True,
            "Plugins": [str(p) for p in plugins],
            **(extra or {}),
        }
        self.config = root / "orthanc.json"
        self.config.write_text(json.dumps(config))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The root of its HTTP server."""
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Orthanc:
        tool = require_tool("Orthanc", "orthanc")
        log = (self.root / "orthanc.log").open("ab")
        self.process = subprocess.Popen([tool, str(self.config)], stdout=log, stderr=log)
        log.close()
        wait_until(self._alive, timeout=60, what="Orthanc's REST API")
        return self

    def _alive(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = (self.root / "orthanc.log").read_text(errors="replace")
            pytest.fail(f"Orthanc exited at start:\n{log[-3000:]}")
        try:
            self.get("/system")
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    def get(self, path: str) -> Any:
        """GET a REST resource as JSON (signed in as the first user, if any)."""
        request = urllib.request.Request(f"{self.url}{path}")
        if self.users:
            user, password = next(iter(self.users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None
