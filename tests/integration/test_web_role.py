"""The web role as a process of its own: beside a receiving and scoring process on one
database, from the first start's admin account to a study sent by storescu."""

from __future__ import annotations

import json
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.daemon_harness import DAEMON, Daemon, free_port, storescu, wait_until, write_config
from tests.dicom_factory import make_dx, require_tool

pytestmark = pytest.mark.integration


def _one_time_passwords(daemon: Daemon) -> list[str]:
    found = []
    for line in daemon.logs().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "one_time_password" in record:
            found.append(record["one_time_password"])
    return found


def _sign_in(client: httpx.Client, username: str, password: str) -> dict[str, str]:
    answer = client.post("/api/v1/tokens", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def _change_password(client: httpx.Client, auth: dict[str, str], current: str, new: str) -> None:
    answer = client.post("/api/v1/me/password", json={"current": current, "new": new}, headers=auth)
    assert answer.status_code == 204, answer.text


def test_a_web_process_serves_what_another_process_received(tmp_path: Path) -> None:
    node = Daemon(tmp_path / "node")
    node.start(roles="scp,worker,sender,scheduler")
    web = Daemon(
        tmp_path / "web",
        sections={"storage": {"var_dir": str(node.root / "var")}, "web": {"secure_cookies": False}},
    )
    try:
        web.start(roles="web")
        assert _one_time_passwords(node) == []  # the node has no web role
        (password,) = _one_time_passwords(web)
        ds = make_dx(tmp_path / "cxr.dcm", rows=128, cols=112, seed=3)
        assert storescu([tmp_path / "cxr.dcm"], node.port).returncode == 0
        wait_until(node.terminal, timeout=60, what="the study scored")

        base = f"http://127.0.0.1:{web.web_port}"
        with httpx.Client(base_url=base) as client:
            admin = _sign_in(client, "admin", password)
            # A one-time password must be changed first: the API says so.
            refused = client.get("/api/v1/worklist", headers=admin)
            assert refused.status_code == 403 and "password" in refused.json()["detail"]
            assert client.get("/api/v1/me", headers=admin).json()["username"] == "admin"
            _change_password(client, admin, password, "a harbour lamp at dusk")

            added = web.cli("users", "add", "reader", "--role", "radiologist", "--by", "test")
            reader_once = added.stdout.strip().rsplit(" ", 1)[-1]
            reader = _sign_in(client, "reader", reader_once)
            _change_password(client, reader, reader_once, "violet kettles hum softly")

            listed = client.get("/api/v1/worklist", headers=reader).json()["items"]
            assert [item["study_instance_uid"] for item in listed] == [str(ds.StudyInstanceUID)]
            study = client.get(f"/api/v1/studies/{ds.StudyInstanceUID}", headers=reader).json()
            (image,) = study["images"]
            assert image["has_heatmap"] and image["has_pixels"]
            for kind in ("source", "heatmap"):
                png = client.get(
                    f"/studies/{ds.StudyInstanceUID}/images/{image['result_id']}/{kind}.png",
                    headers=reader,
                )
                assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
            assert client.get("/api/v1/report", headers=reader).status_code == 403
            assert client.get("/api/v1/report", headers=admin).status_code == 200
    finally:
        web.stop()
        node.stop()
    # A restart creates no second admin and prints no password again.
    web.start(roles="web")
    try:
        assert len(_one_time_passwords(web)) == 1
    finally:
        web.stop()


def test_a_web_port_in_use_stops_the_start_with_the_address(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = write_config(
            tmp_path / "chestaid.toml",
            {
                "node": {"port": free_port()},
                "storage": {"var_dir": str(tmp_path / "var"), "min_free_mb": 0},
                "web": {"port": port},
            },
        )
        subprocess.run([*DAEMON, "db", "upgrade", "--config", str(config)], check=True)
        result = subprocess.run(
            [*DAEMON, "serve", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode != 0
    assert f"web interface cannot listen on 127.0.0.1:{port}" in result.stderr


def test_the_web_role_serves_https_with_a_configured_certificate(tmp_path: Path) -> None:
    openssl = require_tool("openssl", "openssl")
    cert, key = tmp_path / "web.pem", tmp_path / "web.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    web = Daemon(
        tmp_path / "web",
        sections={"web": {"tls_certificate": str(cert), "tls_key": str(key)}},
    )
    web.start(roles="web")
    try:
        with httpx.Client(
            base_url=f"https://127.0.0.1:{web.web_port}",
            verify=ssl.create_default_context(cafile=str(cert)),
        ) as client:
            page = client.get("/login")
            assert page.status_code == 200
            assert page.headers["Strict-Transport-Security"].startswith("max-age=")
            login_cookie = page.headers["set-cookie"]
            assert "Secure" in login_cookie and "HttpOnly" in login_cookie
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{web.web_port}/login", timeout=5).raise_for_status()
    finally:
        web.stop()
