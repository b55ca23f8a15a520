"""ChestAid's DenseNet-121 layout against torchvision's: the same weights in the same
places give the same outputs, and loading a bundle does not import torchvision."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
import torchvision

from chestaid.bundle import default_bundle_path
from chestaid.densenet import densenet121_features
from chestaid.models import build_model
from chestaid.sample import synthetic_dx

ROOT = Path(__file__).resolve().parents[3]


def test_the_layout_is_torchvisions_name_for_name_and_shape_for_shape() -> None:
    theirs = torchvision.models.densenet121(weights=None).features.state_dict()
    ours = densenet121_features(in_channels=3).state_dict()
    assert [(k, tuple(v.shape)) for k, v in ours.items()] == [
        (k, tuple(v.shape)) for k, v in theirs.items()
    ]


def test_the_same_weights_give_the_same_outputs_and_grad_cam_maps() -> None:
    torch.manual_seed(3)
    reference = build_model("densenet121", orientation_outputs=8).eval()
    loaded = build_model("densenet121", orientation_outputs=8, weights_follow=True).eval()
    assert loaded.state_dict().keys() == reference.state_dict().keys()
    loaded.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 1, 96, 80, requires_grad=True)
    theirs, ours = reference.forward_heads(x), loaded.forward_heads(x)
    assert torch.equal(ours.logits, theirs.logits)
    assert ours.orientation is not None and theirs.orientation is not None
    assert torch.equal(ours.orientation, theirs.orientation)
    assert torch.equal(ours.feature_map, theirs.feature_map)
    # Gradients through the body (Grad-CAM's) too.
    (g_theirs,) = torch.autograd.grad(theirs.logits.sum(), x)
    (g_ours,) = torch.autograd.grad(ours.logits.sum(), x)
    assert torch.equal(g_ours, g_theirs)


def test_other_backbones_and_random_starts_are_still_torchvisions() -> None:
    net = build_model("densenet121")  # training's random start: torchvision's initialisation
    assert type(net.features.body.denseblock1).__module__.startswith("torchvision")
    loaded = build_model("densenet121", weights_follow=True)
    assert type(loaded.features.body.denseblock1).__module__ == "chestaid.densenet"
    resnet = build_model("resnet50", weights_follow=True)
    assert type(resnet.features.layer1[0]).__module__.startswith("torchvision")


def test_loading_the_bundled_model_and_scoring_do_not_import_torchvision(tmp_path: Path) -> None:
    synthetic_dx(tmp_path / "dx.dcm", rows=512, cols=400)
    code = (
        "import sys\n"
        "from chestaid.bundle import load_bundle\n"
        "from chestaid.inference import Scorer\n"
        f"scorer = Scorer.from_bundle(load_bundle({str(default_bundle_path())!r}))\n"
        f"scorer.score_file({str(tmp_path / 'dx.dcm')!r})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'"
        " or m.startswith('torch._dynamo')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
