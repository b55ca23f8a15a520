"""Inference runtimes: each installed one gives PyTorch's logits, orientation and Grad-CAM;
a runtime that disagrees or is missing is refused and PyTorch scores; bfloat16 is never
tried on a CPU without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from chestaid.calibration import TemperatureScaling
from chestaid.gradcam import class_activation_map
from chestaid.inference import Scorer
from chestaid.models import ChestNet, Heads
from chestaid.preprocess import PreprocessSpec
from chestaid.runtimes import (
    LOGIT_TOLERANCE,
    TorchRuntime,
    openvino_bf16_native,
    parse_cpu_flags,
    parse_cpu_name,
    select_runtime,
    torch_bf16_native,
)
from chestaid.runtimes.agreement import agreement_inputs, compare_heads
from chestaid.runtimes.export import export_onnx, output_names

SPEC = PreprocessSpec(input_size=32)
EPYC_AVX2 = frozenset({"fpu", "sse4_2", "avx", "avx2", "fma", "f16c"})
XEON_AMX = EPYC_AVX2 | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}


def tiny_net(*, orientation: int = 8, seed: int = 0) -> ChestNet:
    """A ChestNet with a two-convolution body: exported and compiled in a moment."""
    torch.manual_seed(seed)
    body = nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
    )
    return ChestNet(body, 16, 1, 0.0, orientation_outputs=orientation).eval()


def never(logits: np.ndarray) -> np.ndarray:
    return np.zeros(len(logits), dtype=bool)


class Shifted(TorchRuntime):
    """PyTorch with every logit moved by ``shift``: a runtime that disagrees on purpose."""

    shift = 0.5

    def forward_heads(self, batch: torch.Tensor) -> Heads:
        heads = super().forward_heads(batch)
        return Heads(heads.logits + self.shift, heads.orientation, heads.feature_map, heads.pooled)

    @property
    def label(self) -> str:
        return f"shifted-{self.shift}"


# -- bfloat16 only where native --------------------------------------------------------


def test_cpu_flags_are_read_from_cpuinfo_text() -> None:
    text = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 fma\n\nprocessor\t: 1\n"
    assert parse_cpu_flags(text) == {"fpu", "sse", "avx2", "fma"}
    assert parse_cpu_flags("no flags here") == frozenset()
    assert parse_cpu_name(text) == "AMD EPYC"
    assert parse_cpu_name("processor\t: 0\nmodel name\t:  \n") is None


def test_bf16_is_native_only_with_avx512_bf16_or_amx() -> None:
    assert not torch_bf16_native(EPYC_AVX2)
    assert not torch_bf16_native(EPYC_AVX2 | {"avx512f", "avx512bw"})  # AVX-512 alone emulates
    assert torch_bf16_native(EPYC_AVX2 | {"avx512_bf16"})
    assert torch_bf16_native(XEON_AMX)
    assert not openvino_bf16_native(["FP32", "INT8", "BIN", "EXPORT_IMPORT"])
    assert openvino_bf16_native(["FP32", "BF16", "INT8"])


def test_no_bf16_runtime_is_tried_on_a_cpu_without_it() -> None:
    for precision in ("auto", "bf16"):
        chosen = select_runtime(
            tiny_net(), SPEC, decide=never, runtime="torch", precision=precision, cpu=EPYC_AVX2
        )
        assert chosen.runtime.precision == "f32"
        assert not [t for t in chosen.trials if "bf16" in t.label]


def test_bf16_is_tried_where_the_cpu_has_it() -> None:
    chosen = select_runtime(
        tiny_net(), SPEC, decide=never, runtime="torch", precision="auto", cpu=XEON_AMX, repeats=1
    )
    assert "torch-cl-bf16" in [t.label for t in chosen.trials]


# -- every installed runtime agrees with PyTorch float32 -------------------------------


def _engine(name: str, net: ChestNet) -> TorchRuntime:
    pytest.importorskip(name)
    onnx = export_onnx(net, SPEC.input_size)
    if name == "openvino":
        from chestaid.runtimes.openvino_cpu import OpenVinoRuntime

        return OpenVinoRuntime(onnx, output_names(net), threads=1)  # type: ignore[return-value]
    from chestaid.runtimes.onnx_runtime import OnnxRuntime

    return OnnxRuntime(onnx, output_names(net), threads=1)  # type: ignore[return-value]


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
@pytest.mark.parametrize("orientation", [8, 0])
def test_each_installed_runtime_gives_pytorchs_heads(engine: str, orientation: int) -> None:
    net = tiny_net(orientation=orientation)
    runtime = _engine(engine, net)
    inputs = agreement_inputs(SPEC)
    expected = TorchRuntime(net).forward_heads(inputs)
    got = runtime.forward_heads(inputs)
    assert got.logits.shape == expected.logits.shape
    assert got.feature_map.shape == expected.feature_map.shape
    assert (got.orientation is None) == (orientation == 0)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.pooled, expected.pooled, atol=1e-4, rtol=1e-4)
    weight = net.classifier.weight.detach()
    torch.testing.assert_close(
        class_activation_map(got.feature_map, weight),
        class_activation_map(expected.feature_map, weight),
        atol=1e-4,
        rtol=1e-4,
    )
    assert compare_heads(expected, got, weight, never).agrees
    one = runtime.forward_heads(inputs[:1])  # any batch size
    torch.testing.assert_close(one.logits, expected.logits[:1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_a_scorer_on_another_runtime_scores_and_explains_as_pytorch(engine: str) -> None:
    net = tiny_net()
    plain = Scorer(net, TemperatureScaling(1.0), spec=SPEC, threshold=0.5, model_version="t")
    other = Scorer(
        net,
        TemperatureScaling(1.0),
        spec=SPEC,
        threshold=0.5,
        model_version="t",
        runtime=_engine(engine, net),
    )
    assert other.runtime_name == f"{engine}-f32"
    assert plain.runtime_name == "torch-f32"
    batch = agreement_inputs(SPEC)
    for a, b in zip(plain.score_batch(batch), other.score_batch(batch), strict=True):
        assert b.logit == pytest.approx(a.logit, abs=1e-4)
        assert b.above_threshold == a.above_threshold
        np.testing.assert_allclose(b.cam, a.cam, atol=1e-3)
    assert other.with_calibration(TemperatureScaling(2.0), 0.4).runtime is other.runtime


# -- choosing, refusing, falling back --------------------------------------------------


def test_auto_uses_the_fastest_runtime_that_agrees() -> None:
    chosen = select_runtime(tiny_net(), SPEC, decide=never, runtime="auto", precision="f32")
    timed = [t for t in chosen.trials if t.refused is None]
    assert {"torch-f32", "torch-cl-f32"} <= {t.label for t in timed}
    assert all(t.forward_ms is not None for t in timed)
    fastest = min(timed, key=lambda t: t.forward_ms or 0.0)
    assert chosen.runtime.label == fastest.label
    assert not [t for t in chosen.trials if t.refused and "disagrees" in t.refused]


def test_a_runtime_that_disagrees_is_refused_and_pytorch_scores() -> None:
    net = tiny_net()
    chosen = select_runtime(
        net,
        SPEC,
        decide=never,
        runtime="torch",
        precision="auto",
        cpu=EPYC_AVX2,
        extra=(("shifted-0.5", lambda: Shifted(net)),),
    )
    assert chosen.runtime.label == "torch-f32"
    (refused,) = [t for t in chosen.trials if t.label == "shifted-0.5"]
    assert refused.refused is not None and "logits differ" in refused.refused
    assert refused.agreement is not None
    assert refused.agreement.max_logit_difference == pytest.approx(0.5, abs=1e-5)


def test_a_runtime_within_tolerance_that_flips_a_decision_is_refused() -> None:
    net = tiny_net()

    class Nudged(Shifted):
        shift = LOGIT_TOLERANCE / 2

    inputs = agreement_inputs(SPEC)
    logits = TorchRuntime(net).forward_heads(inputs).logits[:, 0].numpy()
    cut = float(logits[0]) + Nudged.shift / 2  # between case 0's logit and its nudged one

    def at_cut(z: np.ndarray) -> np.ndarray:
        return np.asarray(z >= cut)

    chosen = select_runtime(
        net,
        SPEC,
        decide=at_cut,
        runtime="torch",
        precision="auto",
        cpu=EPYC_AVX2,
        extra=(("nudged", lambda: Nudged(net)),),
    )
    (trial,) = [t for t in chosen.trials if t.label == "nudged"]
    assert trial.agreement is not None
    assert trial.agreement.max_logit_difference <= LOGIT_TOLERANCE
    assert trial.refused is not None and "decisions differ" in trial.refused
    assert chosen.runtime.label == "torch-f32"


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_a_runtime_not_installed_falls_back_to_pytorch(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, engine, None)  # import fails as if not installed
    chosen = select_runtime(tiny_net(), SPEC, decide=never, runtime=engine, precision="f32")
    assert chosen.runtime.label == "torch-f32"
    assert isinstance(chosen.runtime, TorchRuntime)
    (missing,) = [t for t in chosen.trials if t.label.startswith(engine)]
    assert missing.refused is not None and "not installed" in missing.refused


def test_a_named_installed_runtime_is_used() -> None:
    pytest.importorskip("onnxruntime")
    chosen = select_runtime(tiny_net(), SPEC, decide=never, runtime="onnxruntime", precision="f32")
    assert chosen.runtime.label == "onnxruntime-f32"
    (trial,) = chosen.trials
    assert trial.agreement is not None and trial.agreement.agrees


def test_pytorch_in_float32_asked_for_is_the_reference_without_checks() -> None:
    chosen = select_runtime(tiny_net(), SPEC, decide=never, runtime="torch", precision="f32")
    assert chosen.runtime.label == "torch-f32"
    assert [t.label for t in chosen.trials] == ["torch-f32"]


def test_onnx_runtime_writes_no_telemetry_under_the_home_directory(tmp_path: Path) -> None:
    # The PyPI build wrote a device ID and an event store to ~/.cache/Microsoft/... when
    # its first session ran; a fresh process is needed, the switch is read at import.
    pytest.importorskip("onnxruntime")
    script = (
        "from tests.unit.chestaid.test_runtimes import _engine, tiny_net, SPEC\n"
        "from chestaid.runtimes.agreement import agreement_inputs\n"
        "net = tiny_net()\n"
        "print(_engine('onnxruntime', net).forward_heads(agreement_inputs(SPEC)).logits.shape)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORT_", "XDG_"))}
    env["HOME"] = str(tmp_path)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[3])
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "torch.Size" in done.stdout
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == []
