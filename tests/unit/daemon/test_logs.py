"""The daemon's log set-up: library warnings become JSON lines without patient data."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

NAME = "SECRETPATIENT"
PHYSICIAN = "SECRETREFERRER"

EMIT = textwrap.dedent(
    f"""
    import logging, warnings
    import pydicom.config
    from pydicom.valuerep import validate_value
    from highdicom.valuerep import check_person_name
    from daemon import logs

    logs.configure("INFO", "json")
    # highdicom warns with the name itself (a single-component person name).
    check_person_name("{NAME}")
    check_person_name("{PHYSICIAN}")
    # pydicom's warnings (and its logger) quote the values they find invalid.
    validate_value("LO", "{NAME}\\\\x", pydicom.config.WARN)
    validate_value("PN", "{NAME}=A=B=C", pydicom.config.WARN)
    logging.getLogger("pydicom").error("Invalid value %r", "{NAME}")
    logging.getLogger("highdicom.base").warning('patient_name "{NAME}"')
    logging.getLogger("highdicom.sc").info("narration of an object being built")
    try:
        raise ValueError("{NAME} is not valid")
    except ValueError:
        logging.getLogger("pynetdicom.dimse").exception("Failed to decode the dataset")
    warnings.warn("a warning of our own", DeprecationWarning)
    """
)


def test_library_warnings_are_json_lines_without_patient_data(tmp_path: Path) -> None:
    script = tmp_path / "emit.py"
    script.write_text(EMIT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-W", "default", str(script)], capture_output=True, text=True, check=True
    )
    lines = done.stderr.splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(entry, dict) for entry in entries)
    assert NAME not in done.stderr
    assert PHYSICIAN not in done.stderr
    warned = [e for e in entries if e.get("category") == "UserWarning"]
    assert {e["library"] for e in warned} == {"highdicom", "pydicom"}
    assert len([e for e in warned if e["library"] == "highdicom"]) == 2
    assert not [e for e in entries if e["logger"] == "highdicom.sc"]  # its INFO is not kept
    assert [e for e in entries if e["logger"] == "highdicom.base"]  # its warnings are
    decode = [e for e in entries if e["logger"] == "pynetdicom.dimse"]
    assert decode[0]["message"] == "Failed to decode the dataset"
    assert decode[0]["exception_type"] == "ValueError"
    ours = [e for e in entries if e.get("category") == "DeprecationWarning"]
    assert ours[0]["message"] == "a warning of our own"
