"""Alembic's migrations against the ORM models, on a real SQLite file and a real
PostgreSQL database."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from daemon.db.migrate import current_revision, downgrade, head_revision, upgrade
from daemon.db.models import Base
from daemon.errors import SchemaError


def test_the_migrated_schema_is_the_models_schema(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_every_migration_goes_down_to_the_start_and_up_again(engine: Engine) -> None:
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert upgrade(engine)[1] == head_revision()
    assert {"users", "web_sessions", "login_attempts", "saved_analyses"} <= set(
        inspect(engine).get_table_names()
    )


def _downgrade(engine: Engine, revision: str) -> None:
    downgrade(engine, revision)


def _scored_row_at_0005(engine: Engine) -> None:
    """One received, scored instance, written as a 0005 ChestAid wrote it."""
    now = "2026-11-24 12:00:00"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO instances (id, sop_instance_uid, sop_class_uid, study_instance_uid,"
                " series_instance_uid, transfer_syntax_uid, modality, spool_name, size_bytes,"
                " calling_ae_title, peer_address, requested_priority, received_at) VALUES"
                " (1, '1.2.3.1', '1.2.840.10008.5.1.4.1.1.1.1', '1.2.3', '1.2.3.4',"
                " '1.2.840.10008.1.2.1', 'DX', 'x/1.dcm', 10, 'MODALITY', '127.0.0.1',"
                " 'MEDIUM', :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO jobs (id, instance_id, state, attempts, created_at, updated_at)"
                " VALUES (1, 1, 'done', 1, :now, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO results (id, job_id, logit, score, threshold, above_threshold,"
                " priority, model_version, calibration_version, scored_at) VALUES"
                " (1, 1, 2.0, 0.9, 0.5, TRUE, 'URGENT', 'm', 1, :now)"
            ),
            {"now": now},
        )


def test_0006_keeps_earlier_results_assessable_and_refuses_a_band_without_an_outcome(
    engine: Engine,
) -> None:
    _downgrade(engine, "0005")
    _scored_row_at_0005(engine)
    upgrade(engine)
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT assessable, not_assessable_reason, quarter_turns, priority FROM results")
        ).one()
    assert tuple(row) == (1, None, 0, "URGENT")

    not_assessed = (
        "INSERT INTO results (id, job_id, logit, score, threshold, above_threshold, priority,"
        " assessable, not_assessable_reason, model_version, calibration_version, scored_at)"
        " VALUES (2, 1, 0.1, 0.5, 0.5, :above, :priority, FALSE, :reason, 'm', 1, '2026-11-24')"
    )
    # A not-assessable result with a band, without a reason, or flagged: refused.
    for values in (
        {"above": False, "priority": "ROUTINE", "reason": "noise"},
        {"above": False, "priority": None, "reason": None},
        {"above": True, "priority": None, "reason": "noise"},
    ):
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(text("DELETE FROM results WHERE id = 1"))
            connection.execute(text(not_assessed), values)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM results WHERE id = 1"))
        connection.execute(
            text(not_assessed), {"above": False, "priority": None, "reason": "noise"}
        )


def test_0006_will_not_go_down_while_not_assessable_results_exist(engine: Engine) -> None:
    _downgrade(engine, "0005")
    _scored_row_at_0005(engine)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE results SET assessable = FALSE, priority = NULL, above_threshold = FALSE,"
                " not_assessable_reason = 'featureless', not_assessable_detail = 'blank'"
            )
        )
    with pytest.raises(SchemaError, match="1 results are 'not assessable'"):
        _downgrade(engine, "0005")
    assert current_revision(engine) == head_revision()

    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE results SET assessable = TRUE, priority = 'ROUTINE',"
                " not_assessable_reason = NULL, not_assessable_detail = NULL"
            )
        )
    _downgrade(engine, "0005")
    columns = {c["name"]: c for c in inspect(engine).get_columns("results")}
    assert "assessable" not in columns and "quarter_turns" not in columns
    assert columns["priority"]["nullable"] is False


def test_0010_keeps_earlier_labels_as_readers_and_will_not_drop_report_labels(
    engine: Engine,
) -> None:
    upgrade(engine)
    _scored_row_at_0005(engine)
    _downgrade(engine, "0009")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO feedback (id, study_instance_uid, result_id, label, given_by,"
                " created_at, updated_at) VALUES (1, '1.2.3', 1, 'pneumonia', 'dr',"
                " '2026-11-24 12:00:00', '2026-11-24 12:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO feedback_changes (id, feedback_id, changed_by, changed_at, new_label)"
                " VALUES (1, 1, 'dr', '2026-11-24 12:00:00', 'pneumonia')"
            )
        )
    upgrade(engine)  # feedback's rows are referred to by feedback_changes
    with engine.connect() as connection:
        row = connection.execute(text("SELECT source, evidence FROM feedback")).one()
    assert tuple(row) == ("reader", None)
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text("UPDATE feedback SET source = 'hearsay'"))
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE feedback SET source = 'report', evidence = 'RLL pneumonia'")
        )
    with pytest.raises(SchemaError, match="1 labels came from final reports"):
        _downgrade(engine, "0009")
    with engine.begin() as connection:
        connection.execute(text("UPDATE feedback SET source = 'reader'"))
    _downgrade(engine, "0009")
    assert "source" not in {c["name"] for c in inspect(engine).get_columns("feedback")}


def test_0011_makes_earlier_results_live_and_goes_down_only_without_shadow_results(
    engine: Engine,
) -> None:
    _downgrade(engine, "0005")
    _scored_row_at_0005(engine)
    upgrade(engine)
    columns = {c["name"]: c for c in inspect(engine).get_columns("results")}
    assert columns["shadow"]["nullable"] is False
    with engine.connect() as connection:
        # A result made before 0011 was made live (SQLite answers 0, PostgreSQL false).
        assert bool(connection.execute(text("SELECT shadow FROM results")).scalar_one()) is False

    with engine.begin() as connection:
        connection.execute(text("UPDATE results SET shadow = TRUE"))
    with pytest.raises(SchemaError, match="1 results were made in shadow mode"):
        _downgrade(engine, "0010")
    assert current_revision(engine) == head_revision()

    with engine.begin() as connection:
        connection.execute(text("UPDATE results SET shadow = FALSE"))
    _downgrade(engine, "0010")
    assert "shadow" not in {c["name"] for c in inspect(engine).get_columns("results")}
    assert current_revision(engine) == "0010"
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_0013_leaves_earlier_results_without_class_probabilities_and_goes_down_again(
    engine: Engine,
) -> None:
    _downgrade(engine, "0005")
    _scored_row_at_0005(engine)
    upgrade(engine)
    assert current_revision(engine) == "0013" == head_revision()
    columns = {c["name"]: c for c in inspect(engine).get_columns("results")}
    assert columns["class_probabilities"]["nullable"] is True
    with engine.begin() as connection:
        assert connection.execute(text("SELECT class_probabilities FROM results")).scalar() is None
        connection.execute(
            text("UPDATE results SET class_probabilities = :c"),
            {"c": '[["NORMAL", 0.1], ["VIRAL", 0.5], ["BACTERIAL", 0.4]]'},
        )
    _downgrade(engine, "0012")
    assert "class_probabilities" not in {c["name"] for c in inspect(engine).get_columns("results")}
    with engine.connect() as connection:
        # The result itself stays, with its score.
        assert connection.execute(text("SELECT score FROM results")).scalar_one() == 0.9
    upgrade(engine)
    assert current_revision(engine) == head_revision()
