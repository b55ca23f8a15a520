"""Where a run's weights start: another bundle's body, and a body kept frozen.

Without ImageNet weights on this network, "a frozen pretrained backbone" means a
body trained by ChestAid on another task (the pneumonia bundle's DenseNet-121) with
only a new linear head trained on top.
"""

from __future__ import annotations

import logging
import os

from chestaid.errors import ModelError
from chestaid.models import ChestNet

logger = logging.getLogger(__name__)


def start_from_bundle(model: ChestNet, bundle_path: str | os.PathLike[str]) -> None:
    """Copy a bundle's body weights into ``model``; its head (and orientation head) are not taken.

    Raises:
        BundleError: an unreadable bundle.
        ModelError: a bundle of another architecture.
    """
    from chestaid.bundle import load_bundle

    source = load_bundle(bundle_path)
    body = {
        k.removeprefix("features."): v
        for k, v in source.model.state_dict().items()
        if k.startswith("features.")
    }
    try:
        model.features.load_state_dict(body, strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"bundle {bundle_path} ({source.manifest.architecture}) does not fit this body: {exc}"
        ) from exc
    logger.info("body weights from bundle %s (%s)", bundle_path, source.manifest.version)


def freeze_body(model: ChestNet) -> None:
    """Train only the heads: the body's parameters take no gradient."""
    for p in model.features.parameters():
        p.requires_grad_(False)
