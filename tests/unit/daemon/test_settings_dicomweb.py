"""Settings of dicomweb destinations: the union by kind, its defaults, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from chestaid.errors import ConfigurationError
from daemon.settings import (
    BasicAuth,
    BearerAuth,
    Destination,
    DicomWebDestination,
    Settings,
    load_settings,
)

DICOM = "[[destinations]]\nname = 'pacs'\nae_title = 'PACS'\nhost = 'x'\nport = 104\n"
WEB = "[[destinations]]\nkind = 'dicomweb'\nname = 'vna'\n"


def _load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "chestaid.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


def _refused(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ConfigurationError, match=pattern):
        _load(tmp_path, text)


def _secret(tmp_path: Path, text: str = "s3cret\n") -> Path:
    path = tmp_path / "secret"
    path.write_text(text, encoding="utf-8")
    return path


def test_destinations_of_both_kinds_side_by_side(tmp_path: Path) -> None:
    pacs, vna = _load(
        tmp_path, DICOM + WEB + "url = 'https://vna.example.org/dicom-web/'\n"
    ).destinations
    assert isinstance(pacs, Destination) and pacs.kind == "dicom"
    assert isinstance(vna, DicomWebDestination) and vna.kind == "dicomweb"
    # The root without its trailing slash; no credentials, system CAs, node timeouts.
    assert vna.url == "https://vna.example.org/dicom-web" and vna.https
    assert vna.auth is None and vna.tls is None and vna.timeout_seconds is None
    assert not vna.allow_plain_http


def test_a_table_without_kind_is_still_a_dicom_node(tmp_path: Path) -> None:
    [pacs] = _load(tmp_path, DICOM).destinations
    assert isinstance(pacs, Destination) and pacs.kind == "dicom"


def test_names_are_unique_across_kinds(tmp_path: Path) -> None:
    text = DICOM + WEB.replace("'vna'", "'pacs'") + "url = 'https://vna.example.org/'\n"
    _refused(tmp_path, text, "destination names must be unique")


def test_errors_name_the_key_in_the_file(tmp_path: Path) -> None:
    _refused(tmp_path, WEB, r"destinations\[0\]\.url: Field required")
    # A key of the other kind is refused as unknown, not taken silently.
    _refused(tmp_path, WEB + "url = 'https://v/'\nport = 104\n", r"destinations\[0\]\.port: Extra")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://vna.example.org/dicom-web", "must be http or https, not 'ftp'"),
        ("vna.example.org/dicom-web", "must be http or https, not 'relative'"),
        ("https:///dicom-web", "names no host"),
        ("https://user:pw@vna.example.org/", "credentials do not go in the URL"),
        ("https://vna.example.org/dicom-web?x=1", "no query or fragment"),
        ("https://vna.example.org:99999/", "not a valid URL"),
    ],
)
def test_urls_that_are_not_a_service_root_are_refused(tmp_path: Path, url: str, why: str) -> None:
    _refused(tmp_path, WEB + f"url = '{url}'\n", rf"destinations\[0\]\.url: .*{why}")


def test_plain_http_is_for_loopback_unless_the_site_allows_it(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "localhost", "[::1]"):
        [vna] = _load(tmp_path, WEB + f"url = 'http://{host}:8042/dicom-web'\n").destinations
        assert isinstance(vna, DicomWebDestination) and not vna.https
    remote = WEB + "url = 'http://10.0.0.7:8042/dicom-web'\n"
    _refused(tmp_path, remote, r"destinations\[0\]: .*url is plain http to 10\.0\.0\.7.*https")
    [vna] = _load(tmp_path, remote + "allow_plain_http = true\n").destinations
    assert isinstance(vna, DicomWebDestination) and vna.allow_plain_http


def test_a_tls_table_needs_https(tmp_path: Path) -> None:
    text = WEB + "url = 'http://127.0.0.1/dicom-web'\ntls = { check_hostname = false }\n"
    _refused(tmp_path, text, "tls needs an https url")


def test_basic_and_bearer_credentials_come_from_files(tmp_path: Path) -> None:
    secret = _secret(tmp_path)
    basic = f"auth = {{ type = 'basic', username = 'chestaid', password_file = '{secret}' }}\n"
    [vna] = _load(tmp_path, WEB + "url = 'https://v/'\n" + basic).destinations
    assert isinstance(vna, DicomWebDestination) and isinstance(vna.auth, BasicAuth)
    assert vna.auth.username == "chestaid" and vna.auth.password_file == secret
    # Only the path is kept, never the secret itself.
    assert "s3cret" not in repr(vna)
    bearer = f"auth = {{ type = 'bearer', token_file = '{secret}' }}\n"
    [vna] = _load(tmp_path, WEB + "url = 'https://v/'\n" + bearer).destinations
    assert isinstance(vna, DicomWebDestination) and isinstance(vna.auth, BearerAuth)


@pytest.mark.parametrize(
    ("auth", "pattern"),
    [
        ("{ type = 'basic', username = 'u', password = 'x' }", r"auth\.password: Extra inputs"),
        ("{ type = 'basic', username = 'u', password_file = 'nowhere' }", r"auth\.password_file"),
        ("{ type = 'bearer', token_file = 'DIRECTORY' }", r"auth\.token_file: Path does not"),
        ("{ type = 'basic', username = 'a:b', password_file = 'SECRET' }", r"auth\.username"),
        ("{ type = 'oauth' }", r"auth\.type: .*'oauth'"),
    ],
)
def test_bad_credentials_are_refused_naming_the_key(
    tmp_path: Path, auth: str, pattern: str
) -> None:
    secret = _secret(tmp_path)
    auth = auth.replace("SECRET", str(secret)).replace("DIRECTORY", str(tmp_path))
    text = WEB + f"url = 'https://v/'\nauth = {auth}\n"
    _refused(tmp_path, text, rf"destinations\[0\]\.{pattern}")
