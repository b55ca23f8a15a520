"""OpenVINO on the CPU: float32, or bfloat16 where the CPU plugin offers it natively."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chestaid.models import Heads
from chestaid.runtimes.base import Precision, Runtime, RuntimeUnavailableError
from chestaid.runtimes.export import heads_from_outputs

logger = logging.getLogger(__name__)


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise RuntimeUnavailableError(
            "OpenVINO is not installed (pip install 'chestaid[openvino]')"
        ) from exc
    return openvino


def openvino_capabilities() -> tuple[str, ...]:
    """The CPU plugin's OPTIMIZATION_CAPABILITIES (e.g. FP32, BF16, INT8).

    Raises:
        RuntimeUnavailableError: OpenVINO is not installed.
    """
    core = _openvino().Core()
    return tuple(str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVinoRuntime(Runtime):
    """The exported network compiled by OpenVINO's CPU plugin for latency.

    Args:
        onnx: the network as exported by :func:`chestaid.runtimes.export.export_onnx`.
        names: its output names, in order.
        precision: the inference precision hint (``bf16`` only where native).
        threads: inference threads (the same count PyTorch uses).
        cache_dir: where OpenVINO may keep compiled blobs between starts (None: none kept).

    Raises:
        RuntimeUnavailableError: OpenVINO is missing or cannot compile the network.
    """

    name = "openvino"

    def __init__(
        self,
        onnx: bytes,
        names: tuple[str, ...],
        *,
        precision: Precision = "f32",
        threads: int,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(precision)
        ov = _openvino()
        core = ov.Core()
        if cache_dir is not None:
            core.set_property({"CACHE_DIR": str(cache_dir)})
        config = {
            "INFERENCE_PRECISION_HINT": precision,
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
        }
        try:
            network = core.read_model(onnx, b"")
            self._compiled = core.compile_model(network, "CPU", config)
        except RuntimeError as exc:
            raise RuntimeUnavailableError(f"OpenVINO cannot compile the network: {exc}") from exc
        self._names = names
        # An infer request is not to be shared between threads: one per thread.
        self._local = threading.local()

    def forward_heads(self, batch: torch.Tensor) -> Heads:
        """Every head of one forward pass, as float32 CPU tensors."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._compiled.create_infer_request()
            self._local.request = request
        x = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        results = request.infer([x])
        outputs = [
            torch.from_numpy(np.array(results[i], dtype=np.float32, copy=True))
            for i in range(len(self._names))
        ]
        return heads_from_outputs(self._names, outputs)
