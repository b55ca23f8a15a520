"""Settings: the embedded default, TOML files, CHESTAID_ overrides, errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from chestaid.errors import ConfigurationError
from daemon.settings import DEFAULT_CONFIG, Settings, load_settings


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chestaid.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_embedded_default_is_the_documented_node() -> None:
    s = load_settings()
    assert (s.node.ae_title, s.node.host, s.node.port) == ("CHESTAID", "127.0.0.1", 11112)
    assert s.storage.url == "sqlite:///var/chestaid.db"
    assert s.storage.spool == Path("var/spool")
    assert s.model.bundle is None
    assert [b.name for b in s.priority.bands] == ["URGENT", "ROUTINE"]
    assert s.destinations == []
    assert 0 < s.node.max_pdu_bytes <= 64 * 1024 * 1024


def test_default_file_equals_built_in_defaults() -> None:
    # An installed package without config/ falls back to the built-in defaults: they
    # must be the same node as the file describes.
    assert load_settings(DEFAULT_CONFIG) == Settings()


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "[node]\nport = 2000\n")
    monkeypatch.setenv("CHESTAID_NODE__PORT", "3000")
    monkeypatch.setenv("CHESTAID_ALLOW__NETWORKS", '["10.0.0.0/8"]')
    s = load_settings(path)
    assert s.node.port == 3000
    assert s.allow.networks == ["10.0.0.0/8"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[node]\nport = 70000\n", "node.port"),
        ("[node]\nae_title = 'MUCH_TOO_LONG_AE_TITLE'\n", "node.ae_title"),
        ("[node]\nmax_pdu_bytes = 0\n", "node.max_pdu_bytes"),
        ("[node]\nprot = 1\n", "node.prot"),
        ("[allow]\nnetworks = ['10.0.0.0/33']\n", "allow.networks"),
        ("[[priority.bands]]\nname = 'URGENT'\nmin_score = 0.5\n", "priority.bands"),
        (
            "[[destinations]]\nname = 'pacs'\nae_title = 'PACS'\nhost = 'x'\n",
            "destinations[0].port",
        ),
    ],
)
def test_bad_values_fail_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigurationError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_settings(_write(tmp_path, text))


def test_bad_environment_value_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHESTAID_WORKER__COUNT", "many")
    with pytest.raises(ConfigurationError, match=r"worker\.count"):
        load_settings(_write(tmp_path, ""))


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_settings(_write(tmp_path, "[node\n"))


def test_allowlist_parses_networks() -> None:
    s = load_settings()
    assert any("127.0.0.1" in str(n) or n.prefixlen == 8 for n in s.allow.parsed_networks)
