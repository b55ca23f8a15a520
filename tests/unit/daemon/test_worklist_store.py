"""The study table and the worklist's indexed query (real SQLite file): the same order
as :func:`order_worklist`, pages and totals, filters and search, studies leaving the
list by the site's rule, retention blanking the identifying fields, the migration's
backfill."""

from __future__ import annotations

import random
import re
import traceback
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.exc import IntegrityError

from daemon import audit, worklist
from daemon.closing import (
    ClosingNotAllowedError,
    UnknownStudyToCloseError,
    close_aged_studies,
    close_study,
)
from daemon.db.migrate import upgrade
from daemon.db.models import Study
from daemon.db.session import SessionFactory, make_engine, reading, writing
from daemon.feedback import mark_read
from daemon.retention import blank_old_identities
from daemon.serving import PriorityBands
from daemon.settings import PrioritySettings
from daemon.worklist import (
    WorklistFilters,
    WorklistQueryError,
    order_worklist,
    study_entries,
    worklist_page,
)
from tests.daemon_harness import record_scored

NOW = datetime.now(UTC).replace(microsecond=0)
BANDS = PriorityBands.resolve(PrioritySettings().bands, 0.5)
MAX_WAIT = timedelta(minutes=120)
REASONS = ("featureless", "noise", "inverted")


def _mixed_site(sessions: SessionFactory, count: int, seed: int = 3) -> None:
    """Studies of every kind: urgent and routine, saturated scores told apart by the
    logit, sender HIGH, overdue, not assessed alone and beside a scored image."""
    rng = random.Random(seed)
    for i in range(count):
        study = f"2.25.{i}"
        when = NOW - timedelta(minutes=rng.uniform(0, 300))
        kind = rng.random()
        saturated = kind < 0.1
        score = 1.0 if saturated else rng.uniform(0.0, 0.999)
        logit = rng.uniform(8, 14) if saturated else rng.uniform(-5, 5)
        record_scored(
            sessions,
            f"{study}.1",
            logit=logit,
            score=score,
            above=score >= 0.5,
            study_uid=study,
            when=when,
            requested_priority="HIGH" if rng.random() < 0.1 else "MEDIUM",
            not_assessable=rng.choice(REASONS) if 0.1 <= kind < 0.2 else None,
        )
        if 0.2 <= kind < 0.3:  # a second image, not assessed
            record_scored(
                sessions,
                f"{study}.2",
                logit=0.0,
                score=0.99,
                above=False,
                study_uid=study,
                when=when + timedelta(seconds=rng.uniform(1, 60)),
                not_assessable=rng.choice(REASONS),
            )


def _page(sessions: SessionFactory, **kwargs: object) -> tuple[list[str], int]:
    with reading(sessions) as s:
        page = worklist_page(s, BANDS, max_wait=MAX_WAIT, now=NOW, **kwargs)  # type: ignore[arg-type]
        return [i.entry.study_instance_uid for i in page.items], page.total


def test_the_indexed_query_orders_open_studies_as_order_worklist_does(
    sessions: SessionFactory,
) -> None:
    _mixed_site(sessions, 80)
    with reading(sessions) as s:
        expected = order_worklist(study_entries(s), BANDS, now=NOW, max_wait=MAX_WAIT)
        got = worklist_page(s, BANDS, max_wait=MAX_WAIT, now=NOW, limit=500).items
    assert len(got) == len(expected) == 80
    assert any(i.overdue for i in got) and any(not i.overdue for i in got)
    assert any(i.not_assessed for i in got) and any(i.raised_by_sender for i in got)
    assert [i.entry.study_instance_uid for i in got] == [
        i.entry.study_instance_uid for i in expected
    ]
    for mine, theirs in zip(got, expected, strict=True):
        assert (mine.band, mine.overdue, mine.raised_by_sender, mine.not_assessed) == (
            theirs.band,
            theirs.overdue,
            theirs.raised_by_sender,
            theirs.not_assessed,
        )
        assert mine.entry.images == theirs.entry.images
        assert mine.entry.result_id == theirs.entry.result_id
        assert mine.entry.not_assessed == theirs.entry.not_assessed


def test_pages_join_into_the_whole_list_across_the_overdue_boundary(
    sessions: SessionFactory,
) -> None:
    _mixed_site(sessions, 30, seed=11)
    whole, total = _page(sessions, limit=500)
    assert total == 30
    for size in (1, 4, 7):
        joined: list[str] = []
        for offset in range(0, 35, size):
            uids, page_total = _page(sessions, offset=offset, limit=size)
            assert page_total == 30
            joined += uids
        assert joined == whole, size
    assert _page(sessions, offset=30, limit=5) == ([], 30)
    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}):
        with pytest.raises(WorklistQueryError), reading(sessions) as s:
            worklist_page(s, BANDS, max_wait=MAX_WAIT, now=NOW, **bad)  # type: ignore[arg-type]


def _identify(sessions: SessionFactory, uid: str, **values: str) -> None:
    with writing(sessions) as s:
        study = s.scalars(select(Study).where(Study.study_instance_uid == uid)).one()
        for name, value in values.items():
            setattr(study, name, value)


@pytest.mark.parametrize("narrowing", [2000, 1], ids=["few-matches", "many-matches"])
def test_filters_and_search_narrow_the_list_and_the_total(
    sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch, narrowing: int
) -> None:
    # Few matches are narrowed to their ids first; many are searched within the list.
    monkeypatch.setattr(worklist, "SEARCH_NARROWING", narrowing)

    def scored(uid: str, score: float, minutes: float, **kw: object) -> str:
        return record_scored(
            sessions,
            uid,
            logit=score,
            score=score,
            above=score >= 0.5,
            when=NOW - timedelta(minutes=minutes),
            **kw,  # type: ignore[arg-type]
        )

    urgent = scored("1", 0.9, 10)
    routine = scored("2", 0.2, 30)
    unjudged = scored("3", 0.9, 50, not_assessable="noise")
    old = scored("4", 0.1, 200)
    _identify(sessions, urgent, accession_number="ACC100", patient_id="P-7", study_date="20261101")
    _identify(sessions, routine, accession_number="ACC1001", patient_id="Q-1", modality="CR")
    _identify(sessions, unjudged, accession_number="B%", patient_id="ACC9", study_date="20261115")
    _identify(sessions, old, study_date="20261120", modality="DX")

    def only(**filters: object) -> list[str]:
        uids, total = _page(sessions, filters=WorklistFilters(**filters))  # type: ignore[arg-type]
        assert total == len(uids)
        return uids

    assert only(band="URGENT") == [urgent]
    assert only(band="ROUTINE") == [old, routine]  # by its own band, overdue or not
    assert only(band="NOT_ASSESSED") == [unjudged]
    assert only(waiting_minutes=40) == [old, unjudged]
    assert only(modality="cr") == [routine]
    assert only(study_date_from=date(2026, 11, 10)) == [old, unjudged]
    assert only(study_date_from=date(2026, 11, 1), study_date_to=date(2026, 11, 15)) == [
        urgent,
        unjudged,
    ]
    assert only(search="ACC100") == [urgent, routine]  # exact, and the prefix of another
    assert only(search="ACC1001") == [routine]
    assert only(search="ACC") == [urgent, unjudged, routine]  # accession or patient ID
    assert only(search="P-7") == [urgent]
    assert only(search="%") == []  # a pattern character is a character, not a wildcard
    assert only(search="' OR 1=1 --") == []
    with pytest.raises(WorklistQueryError, match="band must be one of"), reading(sessions) as s:
        worklist_page(s, BANDS, max_wait=MAX_WAIT, now=NOW, filters=WorklistFilters(band="SOON"))


def test_studies_leave_the_list_read_here_reported_elsewhere_or_aged_out(
    sessions: SessionFactory,
) -> None:
    here = record_scored(sessions, "1", logit=1, score=0.9, above=True)
    elsewhere = record_scored(sessions, "2", logit=1, score=0.8, above=True)
    aged = record_scored(
        sessions, "3", logit=1, score=0.7, above=True, when=NOW - timedelta(hours=30)
    )
    fresh = record_scored(sessions, "4", logit=1, score=0.6, above=True)
    assert _page(sessions)[1] == 4
    # Over 24 hours open: cut at query time, before the scheduled job runs.
    assert _page(sessions, close_after=timedelta(hours=24)) == ([here, elsewhere, fresh], 3)
    with writing(sessions) as s:
        assert mark_read(s, study_instance_uid=here, user="dr.a")
        assert close_study(
            s, study_instance_uid=elsewhere, reason="reported-elsewhere", actor="pacs-feed"
        )
        assert not close_study(
            s, study_instance_uid=elsewhere, reason="reported-elsewhere", actor="pacs-feed"
        )
        assert close_aged_studies(s, older_than=timedelta(hours=24), now=NOW) == {"closed": 1}
    assert _page(sessions) == ([fresh], 1)
    with reading(sessions) as s:
        why = {
            st.study_instance_uid: (st.closed_reason, st.closed_by, st.listed)
            for st in s.scalars(select(Study))
        }
        actions = [(e.actor, e.action, e.subject) for e in audit.entries(s)]
    assert why[here] == ("read", "dr.a", False)
    assert why[elsewhere] == ("reported-elsewhere", "pacs-feed", False)
    assert why[aged] == ("aged-out", "scheduler", False)
    assert ("pacs-feed", "study.closed", elsewhere) in actions
    # A new image of a closed study does not bring it back.
    record_scored(sessions, "2.9", logit=3, score=0.99, above=True, study_uid=elsewhere)
    assert _page(sessions) == ([fresh], 1)
    with pytest.raises(ClosingNotAllowedError), writing(sessions) as s:
        close_study(
            s, study_instance_uid=fresh, reason="reported-elsewhere", actor="x", allowed=False
        )
    with pytest.raises(UnknownStudyToCloseError), writing(sessions) as s:
        close_study(s, study_instance_uid="9.9.9", reason="reported-elsewhere", actor="x")
    with pytest.raises(WorklistQueryError), writing(sessions) as s:
        close_study(s, study_instance_uid=fresh, reason="because", actor="x")


def test_retention_blanks_identifying_fields_of_old_studies_and_keeps_the_row(
    sessions: SessionFactory,
) -> None:
    old = record_scored(
        sessions, "1", logit=1, score=0.9, above=True, when=NOW - timedelta(days=40)
    )
    new = record_scored(sessions, "2", logit=1, score=0.9, above=True, when=NOW - timedelta(days=2))
    who = {
        "patient_name": "Doe^Jane",
        "patient_id": "P1",
        "accession_number": "A1",
        "study_date": "20261001",
        "patient_age": "050Y",
        "patient_sex": "F",
        "study_description": "CHEST",
        "modality": "DX",
    }
    _identify(sessions, old, **who)
    _identify(sessions, new, **who)
    assert blank_old_identities(sessions, older_than_days=30, now=NOW) == {"identities": 1}
    assert blank_old_identities(sessions, older_than_days=30, now=NOW) == {"identities": 0}
    assert blank_old_identities(sessions, older_than_days=0, now=NOW) == {"identities": 0}
    with reading(sessions) as s:
        rows = {st.study_instance_uid: st for st in s.scalars(select(Study))}
        kept = {name: getattr(rows[new], name) for name in who}
        gone = {name: getattr(rows[old], name) for name in who}
        assert rows[old].identity_blanked_at is not None and rows[old].score == 0.9
    assert kept == who
    assert gone == {**dict.fromkeys(who), "modality": "DX"}


def test_the_migration_fills_the_study_table_from_scored_images(tmp_path: Path) -> None:
    engine: Engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}", busy_timeout=2.0)
    try:
        upgrade(engine, "0006")
        at = "2026-11-24 12:00:00.000000"
        rows = [
            # study A: an urgent image and a not-assessed one; read already
            (1, "A", "MEDIUM", 2.0, 0.9, 1, "URGENT", None),
            (2, "A", "MEDIUM", 0.0, 0.5, 0, None, "noise"),
            # study B: routine, sent HIGH
            (3, "B", "HIGH", -2.0, 0.1, 1, "ROUTINE", None),
            # study C: routine beside a not-assessed image: stands as not assessed
            (4, "C", "MEDIUM", -1.0, 0.3, 1, "ROUTINE", None),
            (5, "C", "MEDIUM", 0.0, 0.4, 0, None, "inverted"),
        ]
        with engine.begin() as c:
            for i, study, prio, logit, score, ok, band, reason in rows:
                c.execute(
                    text(
                        "INSERT INTO instances (id, sop_instance_uid, sop_class_uid,"
                        " study_instance_uid, series_instance_uid, transfer_syntax_uid, modality,"
                        " spool_name, size_bytes, calling_ae_title, peer_address,"
                        " requested_priority, received_at) VALUES (:i, :sop, '1.2', :study,"
                        " '1.3', '1.2.840.10008.1.2.1', 'DX', NULL, 1, 'M', '127.0.0.1', :prio,"
                        " :at)"
                    ),
                    {"i": i, "sop": f"{study}.{i}", "study": study, "prio": prio, "at": at},
                )
                c.execute(
                    text(
                        "INSERT INTO jobs (id, instance_id, state, attempts, created_at,"
                        " updated_at) VALUES (:i, :i, 'done', 1, :at, :at)"
                    ),
                    {"i": i, "at": at},
                )
                c.execute(
                    text(
                        "INSERT INTO results (id, job_id, logit, score, threshold,"
                        " above_threshold, priority, assessable, not_assessable_reason,"
                        " not_assessable_detail, model_version, calibration_version, scored_at)"
                        " VALUES (:i, :i, :logit, :score, 0.5, :above, :band, :ok, :reason,"
                        " :detail, 'm', 1, :at)"
                    ),
                    {
                        "i": i,
                        "logit": logit,
                        "score": score,
                        "above": int(bool(ok) and score >= 0.5),
                        "band": band,
                        "ok": ok,
                        "reason": reason,
                        "detail": reason and f"{reason} detail",
                        "at": at,
                    },
                )
            c.execute(
                text(
                    "INSERT INTO study_reads (study_instance_uid, read_by, read_at, via)"
                    " VALUES ('A', 'dr.a', :at, 'explicit')"
                ),
                {"at": at},
            )
        upgrade(engine)
        with engine.connect() as c:
            got = {
                r.study_instance_uid: r
                for r in c.execute(
                    text(
                        "SELECT study_instance_uid, images, band, band_rank, not_assessed,"
                        " raised_by_sender, score, not_assessed_count, not_assessed_reason,"
                        " listed, closed_reason, closed_by, modality, patient_name FROM studies"
                    )
                )
            }
        a, b, c_ = got["A"], got["B"], got["C"]
        assert (a.images, a.band, a.band_rank, a.not_assessed, a.not_assessed_count) == (
            2,
            "URGENT",
            0.0,
            0,
            1,
        )
        assert (a.listed, a.closed_reason, a.closed_by) == (0, "read", "dr.a")
        assert (b.band, b.band_rank, b.raised_by_sender, b.listed) == ("ROUTINE", 0.0, 1, 1)
        assert (c_.band_rank, c_.not_assessed, c_.not_assessed_reason, c_.score) == (
            0.5,
            1,
            "inverted",
            0.3,
        )
        assert (c_.modality, c_.patient_name) == ("DX", None)
    finally:
        engine.dispose()


def test_a_database_error_never_quotes_an_identifying_field(sessions: SessionFactory) -> None:
    # The SCP and the worker log a failed write's error text: SQLAlchemy's would carry
    # the statement's parameters, the patient's name among them.
    with writing(sessions) as s:
        s.add(Study(study_instance_uid="1.2.3", patient_name="Vantongeren^Wilhelmina"))
    with pytest.raises(IntegrityError) as raised, writing(sessions) as s:
        s.add(Study(study_instance_uid="1.2.3", patient_name="Vantongeren^Wilhelmina"))
    assert re.search(r"UNIQUE constraint failed|violates unique constraint", str(raised.value))
    assert "Vantongeren" not in str(raised.value)
    # PostgreSQL's detail line quotes a failing row's values: the name among them.
    with pytest.raises(IntegrityError) as raised, writing(sessions) as s:
        s.execute(update(Study).values(band_rank=None))
    assert re.search(r"NOT NULL constraint failed|violates not-null", str(raised.value))
    logged = "".join(traceback.format_exception(raised.value))
    assert "Vantongeren" not in logged


def test_the_scheduler_closes_aged_studies_only_where_the_site_chose_so(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    from daemon import maintenance
    from daemon.serving import Serving
    from daemon.settings import WorklistSettings
    from tests.web_fixtures import web_settings

    settings = web_settings(tmp_path)
    serving = Serving(settings.model, settings.priority.bands, sessions)
    assert "close-aged-studies" not in {job.name for job in maintenance.registry(settings, serving)}
    chosen = settings.model_copy(update={"worklist": WorklistSettings(close_after_hours=24)})
    jobs = {job.name: job for job in maintenance.registry(chosen, serving)}
    assert jobs["close-aged-studies"].seconds == 300.0
    record_scored(sessions, "1", logit=1, score=0.9, above=True, when=NOW - timedelta(hours=25))
    fresh = record_scored(sessions, "2", logit=1, score=0.9, above=True)
    assert jobs["close-aged-studies"].function(sessions) == {"closed": 1}
    assert _page(sessions) == ([fresh], 1)
