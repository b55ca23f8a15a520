"""The Grad-CAM panel of an N-class evaluation explains each class's own logit."""

from __future__ import annotations

import numpy as np
import torch

from chestaid.evaluation_multiclass import class_cams
from chestaid.gradcam import HookGradCAM
from chestaid.models import build_model


def test_every_class_map_is_the_hook_grad_cam_of_that_logit() -> None:
    torch.manual_seed(1)
    model = build_model("resnet50", num_outputs=4).eval()
    x = torch.randn(2, 1, 64, 64)
    logits, cams = class_cams(model, x)
    assert logits.shape == (2, 4) and cams.shape[:2] == (2, 4)
    with HookGradCAM(model, model.features) as hook:
        for k in range(4):
            reference = hook(x, class_index=k).numpy()
            scale = float(np.abs(reference).max())
            assert scale > 0, "a map of zeros would make the comparison vacuous"
            np.testing.assert_allclose(cams[:, k], reference, atol=1e-4 * scale, rtol=0)
    # The classes' maps differ: the panel does not show one map four times.
    assert not np.allclose(cams[:, 0], cams[:, 1], atol=1e-3 * float(cams.max()))
