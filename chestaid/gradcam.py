"""Grad-CAM: exact from the forward pass for pooled-linear heads, hook-based as reference.

For a head that is global average pooling followed by a linear layer, the gradient
of logit k with respect to feature ``A[c, i, j]`` is ``W[k, c] / (h * w)`` at every
position. Grad-CAM's channel weight (the spatial mean of that gradient) is therefore
``W[k, c] / (h * w)`` and the map is ``relu(sum_c W[k, c] A[c] / (h * w))``: no
backward pass is needed. :class:`HookGradCAM` computes the same map the textbook
way (hooks and a backward pass) for heads of any shape, and serves as the reference
the exact form is tested against.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

# Showing a map lives in chestaid.overlay; these names stay importable from here.
from chestaid.overlay import colormap_lut, display_image, render_overlay, upsample_map

__all__ = [
    "HookGradCAM",
    "class_activation_map",
    "colormap_lut",
    "display_image",
    "normalise_map",
    "render_overlay",
    "upsample_map",
    "weighted_activation_map",
]


def class_activation_map(
    feature_map: torch.Tensor, head_weight: torch.Tensor, class_index: int = 0
) -> torch.Tensor:
    """Grad-CAM of a pooled-linear head, computed from the forward pass alone.

    Args:
        feature_map: the last feature map as the pool sees it, shape (N, C, h, w).
        head_weight: the linear head's weight, shape (K, C).
        class_index: which logit to explain.

    Returns:
        The unnormalised map, shape (N, h, w), float32, non-negative.
    """
    fmap = feature_map.float()
    h, w = fmap.shape[-2:]
    weights = head_weight[class_index].float() / (h * w)
    cam = torch.einsum("nchw,c->nhw", fmap, weights)
    return torch.relu(cam)


def weighted_activation_map(
    feature_map: torch.Tensor, channel_weights: torch.Tensor
) -> torch.Tensor:
    """Grad-CAM of a pooled-linear head for a score whose gradient differs by image.

    Args:
        feature_map: the last feature map as the pool sees it, shape (N, C, h, w).
        channel_weights: d(score)/d(pooled feature c) of each image, shape (N, C);
            for logit k of the head it is ``W[k]`` for every image.

    Returns:
        The unnormalised map, shape (N, h, w), float32, non-negative.
    """
    fmap = feature_map.float()
    h, w = fmap.shape[-2:]
    weights = channel_weights.float().to(fmap.device) / (h * w)
    cam = torch.einsum("nchw,nc->nhw", fmap, weights)
    return torch.relu(cam)


def normalise_map(cam: torch.Tensor) -> torch.Tensor:
    """Scale each map of a (N, h, w) batch to 0..1; a flat map becomes all zeros."""
    flat = cam.reshape(cam.shape[0], -1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = (flat.max(dim=1).values.view(-1, 1, 1) - low).clamp_min(0)
    safe = torch.where(span > 1e-12, span, torch.ones_like(span))
    return torch.where(span > 1e-12, (cam - low) / safe, torch.zeros_like(cam))


class HookGradCAM:
    """Textbook Grad-CAM with forward and backward hooks on ``target_layer``.

    Use as a context manager so the hooks are always released::

        with HookGradCAM(model, model.features) as cam:
            maps = cam(x, class_index=0)
    """

    def __init__(self, model: nn.Module, target_layer: nn.Module) -> None:
        self.model = model
        self.target_layer = target_layer
        self._activation: torch.Tensor | None = None
        self._gradient: torch.Tensor | None = None
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> Self:
        self._handles = [
            self.target_layer.register_forward_hook(self._save_activation),
            self.target_layer.register_full_backward_hook(self._save_gradient),
        ]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _save_activation(self, _m: nn.Module, _inp: object, output: torch.Tensor) -> None:
        self._activation = output.detach()

    def _save_gradient(
        self, _m: nn.Module, _gin: object, grad_output: tuple[torch.Tensor, ...]
    ) -> None:
        self._gradient = grad_output[0].detach()

    def __call__(
        self,
        x: torch.Tensor,
        class_index: int = 0,
        *,
        target: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Return unnormalised Grad-CAM maps of shape (N, h, w) for one score per image.

        Args:
            x: the inputs.
            class_index: which logit to explain, when no ``target`` is given.
            target: maps the logits (N, K) to the score of each image (N,) to explain
                (e.g. the log-odds of "not normal" of an N-class head); each image's
                score must depend on its own logits only.
        """
        if not self._handles:
            raise RuntimeError("HookGradCAM must be used inside a 'with' block")
        self.model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            logits = self.model(x)
            score = logits[:, class_index] if target is None else target(logits)
            score.sum().backward()
        assert self._activation is not None and self._gradient is not None
        weights = self._gradient.float().mean(dim=(2, 3), keepdim=True)
        return torch.relu((weights * self._activation.float()).sum(dim=1))
