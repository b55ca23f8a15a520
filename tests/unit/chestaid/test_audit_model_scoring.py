"""Scoring masked variants with a tiny random 4-class network: the figures match by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chestaid.audit.cam_share import inside_fraction, outside_share
from chestaid.audit.masks import lung_prior_mask
from chestaid.audit.model_scoring import AuditModel, score_cases
from chestaid.audit.variants import BORDER, OUTSIDE_LUNGS, UNMASKED, VARIANTS, make_variants
from chestaid.errors import ConfigurationError
from chestaid.gradcam import class_activation_map
from chestaid.models import build_model
from chestaid.preprocess import PreprocessSpec, preprocess
from tests.synthetic_data import chest_like

CLASSES = ("NORMAL", "BACTERIAL", "VIRAL", "COVID-19")


@pytest.fixture(scope="module")
def audit_model() -> AuditModel:
    torch.manual_seed(3)
    model = build_model("densenet121", num_outputs=4, weights_follow=True).eval()
    return AuditModel(model, CLASSES, PreprocessSpec(input_size=64))


def test_scores_and_cam_shares_are_those_of_the_network_by_hand(audit_model: AuditModel) -> None:
    rng = np.random.default_rng(0)
    images = [chest_like(rng, 80, opacity=bool(i % 2)).astype(np.float32) for i in range(5)]
    labels = [0, 1, 2, 3, 3]
    scored = score_cases(audit_model, zip(images, labels, strict=True), batch_size=2)
    assert scored.labels == labels
    assert {v: scored.logit_array(v).shape for v in VARIANTS} == dict.fromkeys(VARIANTS, (5, 4))

    x = torch.stack([preprocess(img, audit_model.spec) for img in images])
    masked = torch.stack(
        [preprocess(make_variants(img).images[OUTSIDE_LUNGS], audit_model.spec) for img in images]
    )
    with torch.no_grad():
        logits, fmap = audit_model.model.forward_with_features(x)
        hidden_logits = audit_model.model(masked)
    assert np.allclose(scored.logit_array(UNMASKED), logits.numpy(), atol=1e-5)
    assert np.allclose(scored.logit_array(OUTSIDE_LUNGS), hidden_logits.numpy(), atol=1e-5)
    assert not np.allclose(scored.logit_array(BORDER), logits.numpy(), atol=1e-5)

    inside = inside_fraction(lung_prior_mask(64), *fmap.shape[-2:])
    assert not np.isnan(scored.true_share).all(), "some map must be non-zero to compare"
    weight = audit_model.model.classifier.weight.detach()
    for i, label in enumerate(labels):
        predicted = int(logits[i].argmax())
        cam_pred = class_activation_map(fmap[i : i + 1], weight, predicted).numpy()
        cam_true = class_activation_map(fmap[i : i + 1], weight, label).numpy()
        assert scored.predicted_share[i] == pytest.approx(
            outside_share(cam_pred, inside)[0], nan_ok=True
        )
        assert scored.true_share[i] == pytest.approx(
            outside_share(cam_true, inside)[0], nan_ok=True
        )


def test_a_label_outside_the_classes_is_refused(audit_model: AuditModel) -> None:
    with pytest.raises(ConfigurationError, match="label 4"):
        score_cases(audit_model, [(np.full((32, 32), 0.5, np.float32), 4)])


def test_a_one_logit_model_is_not_an_n_class_model() -> None:
    model = build_model("densenet121", num_outputs=1, weights_follow=True)
    with pytest.raises(ConfigurationError, match="N-class"):
        AuditModel(model, ("NORMAL", "PNEUMONIA"), PreprocessSpec(input_size=64))
