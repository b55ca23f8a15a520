"""The HL7 pieces on their own: MLLP framing, the ORU^R01's values, reading acknowledgements."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from chestaid.dicom_outputs.read_back import ReportedTriage
from chestaid.errors import ConfigurationError
from daemon.hl7.messages import (
    Addressing,
    MessageError,
    control_id,
    read_acknowledgement,
    triage_result,
)
from daemon.hl7.mllp import END, START, FrameReader, MllpError, frame
from daemon.settings import Hl7Destination, load_settings

REPORT = ReportedTriage(
    study_instance_uid="1.2.826.0.1.3680043.8.498.1",
    accession_number="ACC-1",
    patient_id="P-7",
    issuer_of_patient_id="HOSP",
    patient_name="Doe^Jane",
    image_sop_instance_uid="1.2.826.0.1.3680043.8.498.2",
    report_sop_instance_uid="1.2.826.0.1.3680043.8.498.3",
    content_datetime="20261201101010",
    score=0.8734,
    suspected=True,
    band="URGENT",
    not_assessable_reason=None,
    algorithm_name="ChestAid",
    algorithm_version="densenet121-test-1.0",
    calibration_version=3,
)


def _message(report: ReportedTriage = REPORT, **kwargs: object) -> str:
    return triage_result(
        report,
        addressing=Addressing(),
        destination="ris",
        raising_bands=kwargs.pop("raising_bands", {"URGENT"}),  # type: ignore[arg-type]
    )


def test_frames_are_read_whole_however_the_bytes_arrive() -> None:
    stream = frame("MSH|a\r") + frame("MSH|b\r")
    reader = FrameReader()
    found = [m for i in range(len(stream)) for m in reader.feed(stream[i : i + 1])]
    assert found == ["MSH|a\r", "MSH|b\r"]


def test_bytes_outside_a_frame_and_an_endless_frame_are_refused() -> None:
    with pytest.raises(MllpError, match="outside"):
        FrameReader().feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(MllpError, match="longer than 100"):
        FrameReader(limit=100).feed(START + b"x" * 200)
    with pytest.raises(ValueError, match="framing"):
        frame("MSH|\x1c|")
    assert frame("é") == START + "é".encode() + END


def test_values_carrying_hl7_delimiters_cannot_add_fields_or_segments() -> None:
    hostile = replace(
        REPORT,
        accession_number="A|B^C~D\\E&F",
        patient_id="P|1",
        patient_name="Doe|X^Jane",
        algorithm_version="v|OBX^1",
    )
    text = _message(hostile)
    parsed = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT)
    assert parsed.validate()
    segments = text.split("\r")
    assert [s.split("|")[0] for s in segments if s] == [
        "MSH", "PID", "ORC", "OBR", "NTE", "TQ1", "OBX", "OBX", "OBX", "OBX", "OBX", "OBX", "OBX",
    ]  # fmt: skip
    obr = next(s for s in segments if s.startswith("OBR|")).split("|")
    assert obr[18] == "A\\F\\B\\S\\C\\R\\D\\E\\E\\T\\F"
    pid = next(s for s in segments if s.startswith("PID|")).split("|")
    assert pid[3].startswith("P\\F\\1")


def test_the_control_id_is_stable_per_report_and_destination_and_fits_twenty_characters() -> None:
    same = control_id(REPORT, "ris")
    assert same == control_id(REPORT, "ris") and len(same) == 20
    assert control_id(REPORT, "other-ris") != same
    assert control_id(replace(REPORT, report_sop_instance_uid="1.2.3"), "ris") != same


def test_stat_is_asked_only_for_the_raising_bands() -> None:
    assert "\rTQ1|1||||||||S^STAT^HL70485\r" in _message()
    assert "\rTQ1|" not in _message(raising_bands=set())
    assert "\rTQ1|" not in _message(replace(REPORT, band="ROUTINE"))


def test_a_value_hl7_cannot_carry_is_a_message_error_that_does_not_repeat_it() -> None:
    for hostile in (
        replace(REPORT, patient_id="P" * 300),
        replace(REPORT, accession_number="A" * 300),
        replace(REPORT, content_datetime="not a date"),
    ):
        with pytest.raises(MessageError, match="cannot be built") as caught:
            _message(hostile)
        assert "PPPP" not in str(caught.value) and "AAAA" not in str(caught.value)


@pytest.mark.parametrize(
    ("answer", "code", "accepted", "rejected"),
    [
        ("MSA|AA|ID1", "AA", True, False),
        ("MSA|CA|ID1", "CA", True, False),
        ("MSA|AE|ID1|bad field", "AE", False, False),
        ("MSA|AR|ID1|unsupported", "AR", False, True),
    ],
)
def test_acknowledgements_are_read(answer: str, code: str, accepted: bool, rejected: bool) -> None:
    ack = read_acknowledgement(
        f"MSH|^~\\&|RIS||CHESTAID||20261201||ACK^R01^ACK|9|P|2.5.1\r{answer}"
    )
    assert (ack.code, ack.control_id, ack.accepted, ack.rejected) == (
        code,
        "ID1",
        accepted,
        rejected,
    )


@pytest.mark.parametrize(
    "answer",
    [
        "MSH|^~\\&|RIS||CHESTAID||20261201||ACK^R01^ACK|9|P|2.5.1\r",  # no MSA
        "MSH|^~\\&|RIS||CHESTAID||20261201||ACK^R01^ACK|9|P|2.5.1\rMSA|OK|ID1",
        "HELLO",
    ],
)
def test_an_answer_that_is_no_acknowledgement_is_a_message_error(answer: str) -> None:
    with pytest.raises(MessageError):
        read_acknowledgement(answer)


def test_an_hl7_destination_is_configured_and_checked_against_the_bands(tmp_path: Path) -> None:
    config = tmp_path / "chestaid.toml"
    config.write_text(
        '[[destinations]]\nname = "pacs"\nae_title = "PACS"\nhost = "pacs"\nport = 104\n\n'
        '[[destinations]]\nkind = "hl7"\nname = "ris"\nhost = "ris"\nport = 2575\n'
        'receiving_application = "RIS"\n'
    )
    settings = load_settings(config)
    dicom, hl7 = settings.destinations
    assert dicom.output_kinds == {"sc", "sr"}
    assert isinstance(hl7, Hl7Destination) and hl7.output_kinds == {"sr"}
    assert hl7.raising_bands == ["URGENT"] and hl7.receiving_application == "RIS"
    config.write_text(
        '[[destinations]]\nkind = "hl7"\nname = "ris"\nhost = "ris"\nport = 2575\n'
        'raising_bands = ["CRITICAL"]\n'
    )
    with pytest.raises(ConfigurationError, match="raising_bands names no priority band: CRITICAL"):
        load_settings(config)
    config.write_text('[[destinations]]\nkind = "hl7"\nname = "ris"\nhost = "ris"\n')
    with pytest.raises(ConfigurationError, match=r"destinations\[0\]\.port"):
        load_settings(config)
    config.write_text('[[destinations]]\nkind = "fax"\nname = "ris"\n')
    with pytest.raises(ConfigurationError, match=r"destinations\[0\]\.kind"):
        load_settings(config)


def test_an_nclass_report_adds_each_class_probability_as_a_ratio() -> None:
    classes = (("NORMAL", 0.1266), ("BACTERIAL", 0.5), ("VIRAL", 0.3), ("COVID-19", 0.0734))
    message = _message(replace(REPORT, class_probabilities=classes))
    obx = [s.split("|") for s in message.split("\r") if s.startswith("OBX|")]
    by_code = {fields[3].split("^")[0]: fields for fields in obx}
    assert [fields[3] for fields in obx[2:6]] == [
        "PROB-NORMAL^Probability of class NORMAL^99CHESTAID",
        "PROB-BACTERIAL^Probability of class BACTERIAL^99CHESTAID",
        "PROB-VIRAL^Probability of class VIRAL^99CHESTAID",
        "PROB-COVID-19^Probability of class COVID-19^99CHESTAID",
    ]
    for name, p in classes:
        fields = by_code[f"PROB-{name}"]
        assert (fields[2], fields[5], fields[6]) == ("NM", f"{p:.4f}", "{ratio}^ratio^UCUM")
    assert [int(fields[1]) for fields in obx] == list(range(1, len(obx) + 1))
    assert "PROB-" not in _message()  # a binary report has none


def test_a_class_name_with_hl7_delimiters_stays_in_its_component() -> None:
    classes = (("NORMAL", 0.5), ("VIRAL|^X", 0.25), ("BACTERIAL", 0.25))
    message = _message(replace(REPORT, class_probabilities=classes))
    (line,) = [s for s in message.split("\r") if "Probability of class VIRAL" in s]
    fields = line.split("|")
    assert fields[3] == "PROB-VIRAL--X^Probability of class VIRAL\\F\\\\S\\X^99CHESTAID"
    assert (fields[5], fields[6]) == ("0.2500", "{ratio}^ratio^UCUM")
