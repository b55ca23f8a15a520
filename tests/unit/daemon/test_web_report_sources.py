"""The feedback report shows where each label came from: a reader's click or a final report."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from daemon.db.models import FeedbackLabel, Study, UserRole
from daemon.db.session import SessionFactory, writing
from daemon.feedback import record_feedback
from daemon.final_reports import take_final_report
from daemon.hl7.reports import FinalReport
from tests.daemon_harness import record_scored
from tests.web_fixtures import Site

EVIDENCE = "Right lower lobe pneumonia."


def test_labels_from_readers_and_from_reports_are_counted_and_shown_apart(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site = Site.build(tmp_path, sessions)
    admin = site.add_user("admin", UserRole.ADMIN)
    clicked = record_scored(sessions, "1.1", logit=2.0, score=0.9, above=True)
    reported = record_scored(sessions, "1.2", logit=-2.0, score=0.1, above=False)
    with writing(sessions) as s:
        s.execute(
            update(Study).where(Study.study_instance_uid == reported).values(accession_number="A1")
        )
        record_feedback(s, study_instance_uid=clicked, label=FeedbackLabel.PNEUMONIA, user="dr")
        take_final_report(
            s,
            FinalReport("M1", "RIS", "H", "A1", "", "F", f"IMPRESSION: {EVIDENCE}"),
        )
    client = site.client()
    overall, *_ = client.get("/api/v1/report", headers=site.bearer(admin)).json()
    assert overall["by_source"] == {"reader": 1, "report": 1}
    assert (overall["tp"], overall["fn"]) == (1, 1)  # the report's label counts like a click

    browser, _ = site.browser(admin)
    page = browser.get("/admin/feedback?period=all").text
    assert 'data-field="by_reader">1<' in page and 'data-field="by_report">1<' in page
    assert 'data-field="source">final report<' in page
    assert f'<q class="evidence">{EVIDENCE}</q>' in page


def test_the_dashboard_says_where_the_labels_came_from(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    site = Site.build(tmp_path, sessions)
    admin = site.add_user("admin", UserRole.ADMIN)
    served = site.context.serving.current().model_version  # the dashboard's model
    reported = record_scored(
        sessions, "2.1", logit=2.0, score=0.9, above=True, model_version=served
    )
    with writing(sessions) as s:
        s.execute(
            update(Study).where(Study.study_instance_uid == reported).values(accession_number="A2")
        )
        take_final_report(s, FinalReport("M2", "RIS", "H", "A2", "", "F", EVIDENCE))
    browser, _ = site.browser(admin)
    page = browser.get("/admin?period=all").text
    assert '<p class="muted" id="dash-sources">0 from readers, 1 from final reports</p>' in page
