"""Backbone registry and Grad-CAM: the exact forward-only map equals hook-based Grad-CAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from chestaid.errors import ConfigurationError, ModelError
from chestaid.gradcam import (
    HookGradCAM,
    class_activation_map,
    display_image,
    normalise_map,
    render_overlay,
    upsample_map,
)
from chestaid.models import available_architectures, build_model, reinitialise

ARCHES = [
    "densenet121",
    "resnet50",
    "efficientnet_b0",
    "vgg16",
    "vgg16_bn",
    "inception_v3",
    "xception",
    "small_cnn",
]


def test_registry_lists_the_required_backbones() -> None:
    assert set(ARCHES) <= set(available_architectures())


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("outputs", [1, 3])
def test_one_grey_channel_in_and_one_logit_per_output(arch: str, outputs: int) -> None:
    torch.manual_seed(0)
    model = build_model(arch, num_outputs=outputs).eval()
    with torch.inference_mode():
        # 96 px: Inception-v3 needs at least 75.
        logits, fmap = model.forward_with_features(torch.randn(2, 1, 96, 96))
    assert logits.shape == (2, outputs)
    assert fmap.ndim == 4 and fmap.shape[0] == 2
    assert fmap.shape[1] == model.classifier.in_features


def test_unknown_architecture_is_refused_with_the_choices() -> None:
    with pytest.raises(ModelError, match="densenet121"):
        build_model("vgg11")


@pytest.mark.parametrize("arch", ARCHES)
def test_exact_gradcam_equals_hook_gradcam_on_random_weights(arch: str) -> None:
    torch.manual_seed(1)
    model = build_model(arch).eval()
    x = torch.randn(3, 1, 96, 96)
    with torch.no_grad():
        _, fmap = model.forward_with_features(x)
    exact = class_activation_map(fmap, model.classifier.weight, 0)
    with HookGradCAM(model, model.features) as cam:
        reference = cam(x, class_index=0)
    assert exact.shape == reference.shape
    assert float(reference.max()) > 0, "a map of zeros would make the comparison vacuous"
    scale = float(reference.abs().max())
    assert torch.allclose(exact, reference, atol=1e-4 * scale, rtol=0)
    assert torch.allclose(normalise_map(exact), normalise_map(reference), atol=1e-4)


def test_densenet_map_must_be_post_relu_not_norm5() -> None:
    # A hook on features.norm5 (pre-ReLU) sees another map: the exact form uses the
    # map the pool sees, and the two differ on random weights.
    torch.manual_seed(2)
    model = build_model("densenet121").eval()
    x = torch.randn(2, 1, 96, 96)
    with torch.no_grad():
        _, fmap = model.forward_with_features(x)
    exact = class_activation_map(fmap, model.classifier.weight, 0)
    norm5 = model.features.body.norm5  # type: ignore[union-attr]
    with HookGradCAM(model, norm5) as cam:
        pre_relu = cam(x)
    assert not torch.allclose(normalise_map(exact), normalise_map(pre_relu), atol=1e-3)


def test_hooks_are_released_after_the_block() -> None:
    model = build_model("resnet50").eval()
    with HookGradCAM(model, model.features) as cam:
        cam(torch.randn(1, 1, 64, 64))
    assert not model.features._forward_hooks
    assert not model.features._backward_hooks
    with pytest.raises(RuntimeError):
        cam(torch.randn(1, 1, 64, 64))


def test_normalise_and_upsample() -> None:
    cam = torch.tensor([[[0.0, 2.0], [4.0, 8.0]], [[3.0, 3.0], [3.0, 3.0]]])
    norm = normalise_map(cam)
    assert torch.allclose(norm[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.equal(norm[1], torch.zeros(2, 2)), "a flat map normalises to zeros, no NaN"
    up = upsample_map(norm, (16, 20))
    assert up.shape == (2, 16, 20)
    assert float(up.min()) >= 0.0 and float(up.max()) <= 1.0


def test_overlay_blends_colour_over_grey() -> None:
    grey = np.linspace(0, 1, 40 * 50, dtype=np.float32).reshape(40, 50)
    cam = np.zeros((7, 7), dtype=np.float32)
    cam[3, 3] = 1.0
    out = render_overlay(grey, cam, alpha=0.5)
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    plain = render_overlay(grey, cam, alpha=0.0)
    assert np.array_equal(plain[..., 0], plain[..., 1]), "alpha 0 leaves the grey image"
    assert np.abs(plain[..., 0].astype(int) - np.round(grey * 255)).max() <= 1
    centre, corner = out[20, 25].astype(int), out[0, 0].astype(int)
    assert centre[0] > centre[2], "the hot spot is red in jet"
    assert corner[2] > corner[0] or grey[0, 0] > 0.9, "cold areas lean blue"
    with pytest.raises(ConfigurationError):
        render_overlay(grey, cam, alpha=1.5)


def test_display_image_shrinks_large_images_only() -> None:
    big = np.random.default_rng(0).random((2500, 2048), dtype=np.float32)
    small = display_image(big, max_side=1024)
    assert small.shape == (1024, 839)
    assert display_image(big[:100, :80]).shape == (100, 80)


def test_pretrained_file_is_loaded_and_stem_summed(tmp_path: Path) -> None:
    torch.manual_seed(3)
    reference = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50_imagenet.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet50", pretrained_path=path)
    stem = model.features.conv1  # type: ignore[union-attr]
    assert stem.weight.shape[1] == 1
    assert torch.allclose(stem.weight, reference.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(model.features.layer4[0].conv1.weight, reference.layer4[0].conv1.weight)  # type: ignore[union-attr,index]
    # A grey image through the summed stem equals the RGB stem on R = G = B.
    x = torch.randn(1, 1, 32, 32)
    assert torch.allclose(stem(x), reference.conv1(x.repeat(1, 3, 1, 1)), atol=1e-5)


def test_pretrained_file_of_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wrong.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ModelError, match="does not fit"):
        build_model("densenet121", pretrained_path=path)
    with pytest.raises(ModelError, match="not found"):
        build_model("densenet121", pretrained_path=tmp_path / "missing.pth")


def test_reinitialise_changes_weights_deterministically() -> None:
    a = build_model("efficientnet_b0")
    before = a.classifier.weight.detach().clone()
    reinitialise(a, seed=5)
    b = reinitialise(build_model("efficientnet_b0"), seed=5)
    assert not torch.equal(before, a.classifier.weight)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
