"""Reading final reports out of HL7 v2 messages as RIS vendors send them."""

from __future__ import annotations

import pytest

from daemon.hl7.reports import ReportMessageError, acknowledgement, read_final_report, split

MSH = "MSH|^~\\&|RIS|HOSP|CHESTAID||20261201||ORU^R01|M1|P|2.3"


def _obr(**fields: str) -> str:
    values = ["OBR"] + [""] * 25
    for number, value in fields.items():
        values[int(number.lstrip("f"))] = value
    return "|".join(values)


def test_the_accession_number_is_taken_from_obr3_then_obr18_then_orc3() -> None:
    def accession(*segments: str) -> str:
        return read_final_report(split("\r".join([MSH, *segments]))).accession_number

    assert accession(_obr(f3="A3^RIS", f18="A18"), "ORC|RE||C3") == "A3"
    assert accession(_obr(f18="A18"), "ORC|RE||C3") == "A18"
    assert accession("ORC|RE||C3^RIS", _obr()) == "C3"
    assert accession(_obr()) == ""


def test_the_study_uid_comes_from_an_obx_or_a_zds_segment() -> None:
    with_obx = "\r".join([MSH, _obr(f3="A"), "OBX|1|ST|113014^Study^DCM||1.2.3.4||||||F"])
    assert read_final_report(split(with_obx)).study_instance_uid == "1.2.3.4"
    with_zds = "\r".join([MSH, _obr(f3="A"), "ZDS|1.2.3.5^100^Application^DICOM"])
    assert read_final_report(split(with_zds)).study_instance_uid == "1.2.3.5"


def test_the_text_is_every_text_line_unescaped_in_order() -> None:
    message = "\r".join(
        [
            MSH,
            _obr(f3="A", f25="F"),
            "OBX|1|TX|&GDT||FINDINGS: Consolidation\\.br\\in the RLL.~Heart normal.||||||F",
            "OBX|2|NM|X||3||||||F",
            "OBX|3|FT|&IMP||IMPRESSION: Pneumonia \\T\\ effusion; a\\F\\b a\\S\\b.||||||F",
            "NTE|1||Dictated by a radiologist",
        ]
    )
    report = read_final_report(split(message))
    assert report.text == (
        "FINDINGS: Consolidation\nin the RLL.\nHeart normal.\n"
        "IMPRESSION: Pneumonia & effusion; a|b a^b.\nDictated by a radiologist"
    )
    assert report.status == "F" and report.labels
    assert (report.control_id, report.sending_application, report.sending_facility) == (
        "M1",
        "RIS",
        "HOSP",
    )


def test_a_message_with_its_own_delimiters_is_read_by_them() -> None:
    message = "MSH#@!$%#RIS#H#C##2026##ORU@R01#X1#P#2.3\rOBR#1##A@1\rOBX#1#TX#x##one$.br$two!three"
    report = read_final_report(split(message))
    assert (report.accession_number, report.text) == ("A", "one\ntwo\nthree")


@pytest.mark.parametrize("status", ["P", "I", "", "X"])
def test_reports_that_are_not_final_give_no_label(status: str) -> None:
    assert not read_final_report(split("\r".join([MSH, _obr(f25=status)]))).labels


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "does not start with MSH"),
        ("PID|1", "does not start with MSH"),
        ("MSH|aaaa|X", "declares no delimiters"),
        ("MSH|^~\\&|RIS||||||ADT^A08|M|P|2.3", "not ADT^A08"),
        (MSH, "no OBR"),
    ],
)
def test_what_is_not_a_final_report_is_refused(text: str, said: str) -> None:
    with pytest.raises(ReportMessageError, match=said.replace("^", r"\^")):
        read_final_report(split(text))


def test_the_acknowledgement_answers_the_message_and_echoes_no_delimiters() -> None:
    ack = acknowledgement(split(MSH.replace("M1", "M|1")), "AE", "db down | retry")
    segments = ack.split("\r")
    assert segments[0].split("|")[8] == "ACK^R01^ACK"
    assert segments[1] == "MSA|AE|M|db down   retry"
    assert acknowledgement(None, "AR", "x").split("\r")[1] == "MSA|AR||x"
