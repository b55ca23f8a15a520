"""The report labeller's labels and the feedback log's are one set of strings.

``chestaid`` may not import the service, so it defines its own enum; a label it reads
from a report is stored as a :class:`daemon.db.models.FeedbackLabel`.
"""

from __future__ import annotations

from chestaid.report_labels import PneumoniaLabel
from daemon.db.models import FeedbackLabel


def test_the_two_label_enums_have_the_same_members_and_values() -> None:
    assert {m.name: m.value for m in PneumoniaLabel} == {m.name: m.value for m in FeedbackLabel}


def test_a_report_label_converts_to_a_feedback_label() -> None:
    assert [FeedbackLabel(label) for label in PneumoniaLabel] == list(FeedbackLabel)
