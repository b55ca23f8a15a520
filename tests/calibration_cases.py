"""Labelled, scored studies for recalibration tests, and stored calibration versions.

The studies are made the way the daemon makes them (a received instance, a completed
job, a result, feedback), on a real database; the logits are chosen by the test.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from chestaid.calibration import sigmoid
from daemon.db import queue
from daemon.db.models import CalibrationState, CalibrationVersion, FeedbackLabel, utcnow
from daemon.db.session import SessionFactory, writing
from daemon.feedback import record_feedback
from tests.daemon_harness import record_instance_in


def label_studies(
    sessions: SessionFactory,
    logits: Sequence[float],
    labels: Sequence[int],
    *,
    model_version: str,
    prefix: str,
) -> None:
    """One scored study per logit (scored with the plain sigmoid), labelled as given.

    All in one unit of work (received, claimed, completed, labelled per study), so a
    few hundred studies take a second, not a minute.
    """
    with writing(sessions) as s:
        for i, (z, y) in enumerate(zip(logits, labels, strict=True)):
            score = float(sigmoid(float(z)))
            uid = f"{prefix}.{i}"
            job = record_instance_in(s, uid, study=f"s{uid}")
            claim = queue.claim_job(s, owner="w", lease_seconds=60, max_attempts=3)
            assert claim is not None and claim.job_id == job.id
            queue.complete_job(
                s,
                job_id=job.id,
                owner="w",
                logit=float(z),
                score=score,
                threshold=0.5,
                above_threshold=score >= 0.5,
                priority="URGENT" if score >= 0.5 else "ROUTINE",
                model_version=model_version,
                calibration_version=1,
                outputs=[],
                destinations=[],
            )
            label = FeedbackLabel.PNEUMONIA if y else FeedbackLabel.NO_PNEUMONIA
            record_feedback(s, study_instance_uid=f"s{uid}", label=label, user="dr")


def informative(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A site whose logits tell the classes apart, shifted by +3 (a Platt fit passes)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return (2 * labels - 1) * 2.0 + rng.normal(0, 1.2, n) + 3.0, labels


def separable(n_pos: int, n_neg: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pneumonia at logit 45, far apart from the normals: every calibrated positive is 1.0."""
    rng = np.random.default_rng(seed)
    logits = np.concatenate([45 + rng.normal(0, 1, n_pos), -2 + rng.normal(0, 1, n_neg)])
    return logits, np.array([1] * n_pos + [0] * n_neg)


def uninformative(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels that have nothing to do with the logits: the fitted slope is near zero."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, 12, n), rng.integers(0, 2, n)


def facts(threshold: float, **changes: Any) -> dict[str, Any]:
    """A passing record of a fit's cases (a report's ``guardrail_facts``), with changes."""
    record: dict[str, Any] = {
        "cases": 200,
        "positives": 60,
        "negatives": 140,
        "threshold": threshold,
        "target_sensitivity": 0.9,
        "lowest_score": 0.01,
        "highest_score": 0.99,
        "oof_true_positives": 56,
        "oof_false_negatives": 4,
    }
    record.update(changes)
    return record


def stored_version(
    sessions: SessionFactory,
    *,
    version: int,
    model_version: str,
    calibrator: dict[str, Any],
    threshold: float,
    report: dict[str, Any] | None = None,
    fitted_at: datetime | None = None,
) -> int:
    """A pending calibration version row, as a fit stores one (or as another way makes it)."""
    record = {"guardrail_facts": facts(threshold)} if report is None else report
    with writing(sessions) as s:
        s.add(
            CalibrationVersion(
                version=version,
                model_version=model_version,
                method=str(calibrator["name"]),
                calibrator=json.dumps(calibrator),
                threshold=threshold,
                target_sensitivity=float(
                    record.get("guardrail_facts", {}).get("target_sensitivity", 0.9)
                ),
                n_cases=int(record.get("guardrail_facts", {}).get("cases", 200)),
                report=json.dumps(record),
                state=CalibrationState.PENDING,
                fitted_by="admin",
                fitted_at=fitted_at or utcnow(),
            )
        )
    return version
