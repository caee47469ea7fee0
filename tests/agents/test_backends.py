"""Inference backends: one interface, the best provider, errors that name the file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from jellybean.agents.backends import (
    Backend,
    OrtBackend,
    TensorRTBackend,
    best_provider,
    concrete_shape,
    open_backend,
    random_inputs,
    tensorrt_available,
)
from jellybean.errors import JellyBeanError, NotSupportedError
from conftest import tiny_cnn

TRT_MISSING = not tensorrt_available()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_cnn(tmp_path_factory.mktemp("backends") / "tiny.onnx")


def test_ort_backend_loads_infers_and_closes(model):
    with OrtBackend(intra_op_threads=1).load(model) as backend:
        assert isinstance(backend, Backend)
        assert backend.provider == "CPUExecutionProvider" or backend.provider.endswith("ExecutionProvider")
        (spec,) = backend.input_specs
        assert (spec.name, spec.shape, spec.dtype, spec.dim_params[0]) == ("input", (None, 3, 32, 32), np.float32, "batch")
        assert spec.batch_dynamic
        out = backend.infer({"input": np.zeros((3, 3, 32, 32), np.float32)})
        assert list(out) == ["logits"] and out["logits"].shape == (3, 10)
        # float64 input is cast within its kind
        assert backend.infer({"input": np.zeros((1, 3, 32, 32))})["logits"].shape == (1, 10)
    assert backend.path is None
    with pytest.raises(JellyBeanError, match="no model loaded"):
        backend.infer({"input": np.zeros((1, 3, 32, 32), np.float32)})


def test_provider_order_prefers_tensorrt_then_cuda_then_cpu():
    assert best_provider(["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]) == \
        "TensorrtExecutionProvider"
    assert best_provider(["CPUExecutionProvider", "CUDAExecutionProvider"]) == "CUDAExecutionProvider"
    assert best_provider(["AzureExecutionProvider", "CPUExecutionProvider"]) == "CPUExecutionProvider"


def test_explicit_provider(model):
    import onnxruntime as ort

    with OrtBackend("cpu", intra_op_threads=1).load(model) as backend:
        assert backend.provider == "CPUExecutionProvider"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(NotSupportedError, match="'cuda' is not available.*available: "):
            OrtBackend("cuda").load(model)


def test_missing_unknown_and_misshapen_inputs_name_the_file(model):
    with open_backend(model, intra_op_threads=1) as backend:
        with pytest.raises(JellyBeanError, match=rf"{model.name}: missing input\(s\) 'input'"):
            backend.infer({})
        with pytest.raises(JellyBeanError, match="unknown input"):
            backend.infer({"input": np.zeros((1, 3, 32, 32), np.float32), "extra": np.zeros(1)})
        with pytest.raises(JellyBeanError, match=r"dimension 2 must be 32"):
            backend.infer({"input": np.zeros((1, 3, 16, 32), np.float32)})
        with pytest.raises(JellyBeanError, match="expects rank 4"):
            backend.infer({"input": np.zeros((3, 32, 32), np.float32)})


def test_bad_files_are_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    with pytest.raises(JellyBeanError, match=rf"{garbage}: onnxruntime cannot load this model"):
        OrtBackend().load(garbage)
    with pytest.raises(JellyBeanError, match="file not found"):
        open_backend(tmp_path / "nope.onnx")
    text = tmp_path / "model.txt"
    text.write_text("x")
    with pytest.raises(JellyBeanError, match=r"model.txt: not a model file \(suffix '.txt'\)"):
        open_backend(text)


def test_open_backend_picks_by_file_type(model, tmp_path, monkeypatch):
    backend = open_backend(model, prefer="cpu", intra_op_threads=1)
    assert isinstance(backend, OrtBackend)
    backend.close()
    backend.close()  # twice is fine
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not really an engine")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on a machine without TensorRT
    with pytest.raises(NotSupportedError, match="^TensorRT not installed: "):
        open_backend(engine)
    with pytest.raises(NotSupportedError, match="^TensorRT not installed: "):
        TensorRTBackend().load(engine)


def test_random_inputs_and_dynamic_dims(model):
    with open_backend(model, intra_op_threads=1) as backend:
        feed = random_inputs(backend.input_specs, 4, seed=1)
        assert feed["input"].shape == (4, 3, 32, 32) and feed["input"].dtype == np.float32
        assert np.array_equal(feed["input"], random_inputs(backend.input_specs, 4, seed=1)["input"])
    from jellybean.agents.backends import TensorSpec

    spec = TensorSpec("images", (None, 3, None, None), np.dtype(np.float32), ("batch", None, "height", "width"))
    assert concrete_shape(spec, 2, {"height": 64, "width": 48}) == (2, 3, 64, 48)
    with pytest.raises(JellyBeanError, match=r"dynamic dimension 'height' at axis 2; give its size \(--dim height=N\)"):
        concrete_shape(spec, 1, {}, source="m.onnx")
    fixed = TensorSpec("x", (1, 3), np.dtype(np.float32))
    with pytest.raises(JellyBeanError, match="fixed batch dimension of 1"):
        concrete_shape(fixed, 2)


@pytest.mark.skipif(TRT_MISSING, reason="TensorRT not installed")
def test_tensorrt_engine_runs_like_onnx(model, tmp_path):  # pragma: no cover - needs a GPU with TensorRT
    from jellybean.zoo.manifest import sha256_file
    from jellybean.zoo.tensorrt import build_engine

    built = build_engine(model, tmp_path / "tiny.engine", "fp16", input_shapes={"input": (None, 3, 32, 32)},
                         model_sha256=sha256_file(model), max_batch=4, cache_dir=tmp_path / "cache")
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    with open_backend(built.path) as trt_backend, open_backend(model) as ort_backend:
        assert trt_backend.provider.startswith("TensorRT")
        got, want = trt_backend.infer({"input": x})["logits"], ort_backend.infer({"input": x})["logits"]
    assert got.shape == want.shape and np.allclose(got, want, atol=0.05 * np.abs(want).max())
