"""The reading settings: the viewer link template, the site's time zone, the undo window."""

from __future__ import annotations

from pathlib import Path

import pytest

from chestaid.errors import ConfigurationError
from daemon.settings import Settings, load_settings


def _load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "chestaid.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


def test_good_values_load(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        "[web]\ntime_zone = 'Europe/Berlin'\n"
        "viewer_url_template = 'https://pacs.example/viewer?StudyInstanceUIDs={study_instance_uid}'\n"
        "[worklist]\nundo_minutes = 30\n",
    )
    assert settings.web.time_zone == "Europe/Berlin"
    assert settings.worklist.undo_minutes == 30
    accession = _load(tmp_path, "[web]\nviewer_url_template = 'HTTP://pacs/a/{accession_number}'\n")
    assert accession.web.viewer_url_template.endswith("{accession_number}")
    assert _load(tmp_path, "[web]\nviewer_url_template = ''\n").web.viewer_url_template == ""


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[web]\ntime_zone = 'Mars/Olympus'\n", "not an IANA time zone"),
        ("[web]\ntime_zone = '../../etc/passwd'\n", "not an IANA time zone"),
        (
            "[web]\nviewer_url_template = 'javascript:alert({study_instance_uid})'\n",
            "http or https",
        ),
        ("[web]\nviewer_url_template = '//pacs/{study_instance_uid}'\n", "http or https"),
        ("[web]\nviewer_url_template = 'https://pacs/viewer'\n", "must name"),
        ("[web]\nviewer_url_template = 'https://pacs/{patient_id}'\n", "patient_id"),
        ("[web]\nviewer_url_template = 'https://pacs/{study_instance_uid'\n", "braces"),
        ("[worklist]\nundo_minutes = -1\n", "undo_minutes"),
    ],
)
def test_bad_values_are_refused_naming_the_key_and_why(tmp_path: Path, text: str, why: str) -> None:
    key = "web" if text.startswith("[web]") else "worklist"
    with pytest.raises(ConfigurationError, match=key) as refused:
        _load(tmp_path, text)
    assert why in str(refused.value)
