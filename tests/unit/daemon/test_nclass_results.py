"""An N-class bundle in service: the worker keeps each class's probability with the result,
the study's SR states them, and the study (page and API) shows them; a binary bundle's
result has none."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from chestaid.bundle import load_bundle
from chestaid.dicom_outputs.read_back import read_triage_report
from chestaid.inference import Scorer
from daemon.db.models import Output, OutputKind, Result
from daemon.db.session import SessionFactory, writing
from daemon.serving import ActiveModel, PriorityBands
from daemon.settings import PrioritySettings, WorkerSettings
from daemon.spool import FileStore
from daemon.studies import study_detail
from daemon.worker import Worker
from tests.bundles import nclass_bundle
from tests.daemon_harness import record_received
from tests.dicom_factory import make_dx
from tests.multiclass_bundles import FOUR_CLASSES
from tests.scorers import active_model, tiny_net


@pytest.fixture(scope="module")
def four_class(tmp_path_factory: pytest.TempPathFactory) -> ActiveModel:
    bundle = load_bundle(nclass_bundle(tmp_path_factory.mktemp("nclass") / "b"))
    scorer = Scorer.from_bundle(bundle)
    bands = PriorityBands.resolve(PrioritySettings().bands, scorer.threshold)
    return ActiveModel(scorer=scorer, calibration_version=1, bands=bands)


def _score_one(tmp_path: Path, sessions: SessionFactory, model: ActiveModel) -> None:
    worker = Worker(
        sessions=sessions,
        spool=FileStore(tmp_path / "spool"),
        outbox=FileStore(tmp_path / "outbox"),
        model=lambda: model,
        destinations=["pacs"],
        settings=WorkerSettings(poll_seconds=0.5, max_attempts=2, study_settle_seconds=0),
        on_outputs=lambda: None,
        owner="host:1:worker:test",
    )
    ds = make_dx(rows=96, cols=80, seed=4)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    stored = worker.spool.write(buffer.getvalue())
    record_received(sessions, str(ds.SOPInstanceUID), spool_name=stored.name, size=stored.size)
    assert worker.process_next()


def test_an_nclass_result_keeps_each_class_probability_and_its_sr_states_them(
    tmp_path: Path, sessions: SessionFactory, four_class: ActiveModel
) -> None:
    _score_one(tmp_path, sessions, four_class)
    with writing(sessions) as s:
        result = s.scalars(select(Result)).one()
        study_uid = result.job.instance.study_instance_uid
        classes = result.classes
        score = result.score
        (sr,) = s.scalars(select(Output).where(Output.kind == OutputKind.STRUCTURED_REPORT))
        report = pydicom.dcmread(tmp_path / "outbox" / sr.file_name)
        detail = study_detail(s, study_instance_uid=study_uid)
    assert [name for name, _ in classes] == list(FOUR_CLASSES)
    assert sum(p for _, p in classes) == pytest.approx(1.0)
    assert score == pytest.approx(1.0 - dict(classes)["NORMAL"])
    said = read_triage_report(report)
    assert [name for name, _ in said.class_probabilities] == list(FOUR_CLASSES)
    assert [p for _, p in said.class_probabilities] == pytest.approx([p for _, p in classes])
    assert said.score == pytest.approx(score)
    assert detail is not None and detail.lead is not None
    assert detail.lead.class_probabilities == classes


def test_a_binary_result_has_no_class_probabilities(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    _score_one(tmp_path, sessions, active_model(tiny_net()))
    with writing(sessions) as s:
        result = s.scalars(select(Result)).one()
        study_uid = result.job.instance.study_instance_uid
        assert result.class_probabilities is None and result.classes == ()
        (sr,) = s.scalars(select(Output).where(Output.kind == OutputKind.STRUCTURED_REPORT))
        report = pydicom.dcmread(tmp_path / "outbox" / sr.file_name)
        detail = study_detail(s, study_instance_uid=study_uid)
    assert read_triage_report(report).class_probabilities == ()
    assert detail is not None and detail.lead is not None
    assert detail.lead.class_probabilities == ()
