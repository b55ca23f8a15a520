"""ONNX Runtime's CPU execution provider, in float32."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from chestaid.models import Heads
from chestaid.runtimes.base import Runtime, RuntimeUnavailableError
from chestaid.runtimes.export import INPUT_NAME, heads_from_outputs


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeUnavailableError(
            "ONNX Runtime is not installed (pip install 'chestaid[onnxruntime]')"
        ) from exc
    return onnxruntime


class OnnxRuntime(Runtime):
    """The exported network run by ONNX Runtime (its sessions are safe to share by threads).

    Args:
        onnx: the network as exported by :func:`chestaid.runtimes.export.export_onnx`.
        names: its output names, in order.
        threads: intra-operator threads (the same count PyTorch uses).

    Raises:
        RuntimeUnavailableError: ONNX Runtime is missing or cannot load the network.
    """

    name = "onnxruntime"

    def __init__(self, onnx: bytes, names: tuple[str, ...], *, threads: int) -> None:
        super().__init__("f32")
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Its threads would otherwise spin between passes, taking the cores the node's
        # other work (receiving, sending, the web pages) needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped failures
            raise RuntimeUnavailableError(f"ONNX Runtime cannot load the network: {exc}") from exc
        self._names = names

    def forward_heads(self, batch: torch.Tensor) -> Heads:
        """Every head of one forward pass, as float32 CPU tensors."""
        x = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        results = self._session.run(list(self._names), {INPUT_NAME: x})
        return heads_from_outputs(
            self._names, [torch.from_numpy(np.asarray(r, dtype=np.float32)) for r in results]
        )
