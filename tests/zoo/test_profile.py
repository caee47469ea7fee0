"""`profile_zoo`: percentiles in order, throughput per batch size, memory, profiles of two machines kept."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from jellybean.errors import JellyBeanError
from jellybean.spec.base import load_model
from jellybean.spec.zoo import Variant, Zoo, ZooOperator
from jellybean.zoo import manifest as mf
from jellybean.zoo.profile import measure_variant, profile_zoo
from jellybean.zoo.variants import build_variants
from conftest import tiny_cnn

FAST = dict(warmup=1, runs=5, min_seconds=0.0, max_seconds=1.0, intra_op_threads=1)


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("profile")
    build_variants(tiny_cnn(root / "tiny.onnx"), "classify", root / "zoo", include=["int8-dynamic"], tensorrt=False,
                   intra_op_threads=1)
    return root / "zoo"


def check_profile(p, sizes):
    assert 0 < p.latency_ms <= p.p90_ms <= p.p99_ms
    assert sorted(p.throughput) == sorted(sizes) and all(v > 0 for v in p.throughput.values())
    assert p.execution_provider == "CPUExecutionProvider"
    assert datetime.fromisoformat(p.measured_at).tzinfo is not None


def test_profile_writes_profiles_and_keeps_other_hardware(zoo_dir):
    steps: list[tuple[str, int, int]] = []
    result = profile_zoo(zoo_dir, "x86-test", batch_sizes=[1, 2, 4], progress=lambda *a: steps.append(a), **FAST)
    assert [(m.operator, m.variant) for m in result.measured] == [("classify", "fp32"), ("classify", "int8-dynamic")]
    assert result.skipped == () and steps[-1][1] == steps[-1][2] == 6
    zoo = load_model(Zoo, zoo_dir / "manifest.yaml")  # the spec accepts the manifest
    for v in zoo.operator("classify").variants:
        p = v.profiles["x86-test"]
        check_profile(p, [1, 2, 4])
        # Measured in a fresh process: host RAM the variant takes (ORT session, arena, activations).
        assert p.peak_memory_mb is not None and 0 < p.peak_memory_mb < 500
        assert v.memory_mb >= p.peak_memory_mb
        assert min(m.runs[1] for m in result.measured) >= 5
    # A second machine adds its own entry beside the first (here in-process: no memory figure).
    profile_zoo(zoo_dir, "jetson-orin-nano-8gb", batch_sizes=[1, 8], isolate=False, **FAST)
    zoo = load_model(Zoo, zoo_dir / "manifest.yaml")
    for v in zoo.operator("classify").variants:
        assert set(v.profiles) == {"x86-test", "jetson-orin-nano-8gb"}
        check_profile(v.profiles["jetson-orin-nano-8gb"], [1, 8])
        assert v.profiles["jetson-orin-nano-8gb"].peak_memory_mb is None
    as_json = result.as_json()
    assert as_json["hardware"] == "x86-test" and as_json["profiles"][0]["throughput"].keys() == {"1", "2", "4"}


def test_measure_variant_is_time_bounded(zoo_dir):
    numbers = measure_variant(zoo_dir / "classify" / "fp32.onnx", [1], warmup=0, runs=10**9, min_seconds=0.0,
                              max_seconds=0.2, intra_op_threads=1)
    assert numbers["runs"][1] >= 3 and numbers["latency_ms"] <= numbers["p90_ms"] <= numbers["p99_ms"]
    numbers = measure_variant(zoo_dir / "classify" / "fp32.onnx", [2], warmup=0, runs=3, min_seconds=0.1,
                              max_seconds=5, intra_op_threads=1)
    assert set(numbers["throughput"]) == {1, 2}  # batch 1 is always measured for the latency


def test_variants_that_cannot_run_here_are_skipped(tmp_path):
    root = tmp_path
    zoo_dir = root / "zoo"
    build_variants(tiny_cnn(root / "tiny.onnx"), "classify", zoo_dir, include=["pruned"], tensorrt=False,
                   intra_op_threads=1)
    (zoo_dir / "classify" / "pruned-60.onnx").write_bytes(b"tampered")
    engine = Variant(name="trt-fp16", model="classify/trt-fp16.engine", precision="fp16")
    (zoo_dir / "classify" / "trt-fp16.engine").write_bytes(b"engine")
    zoo = mf.read_manifest(zoo_dir)
    op = zoo.operator("classify")
    mf.write_manifest(zoo_dir, mf.merge_operator(zoo, ZooOperator(name="classify", variants=op.variants + (engine,))))
    import jellybean.zoo.profile as zp

    result = profile_zoo(zoo_dir, "x86-test", batch_sizes=[1], isolate=False, **FAST)
    assert [m.variant for m in result.measured] == ["fp32", "pruned-30"]
    reasons = {v: r for _, v, r in result.skipped}
    assert "sha256 differs" in reasons["pruned-60"]
    if not zp.tensorrt_available():
        assert reasons["trt-fp16"].startswith("TensorRT not installed")
    zoo = load_model(Zoo, zoo_dir / "manifest.yaml")
    assert "x86-test" not in zoo.operator("classify").variant("pruned-60").profiles


def test_bad_arguments_are_clear_errors(zoo_dir, tmp_path):
    with pytest.raises(JellyBeanError, match="--hardware: 'my machine' is not a usable hardware name"):
        profile_zoo(zoo_dir, "my machine")
    with pytest.raises(JellyBeanError, match="--batch-sizes: batch sizes must be whole numbers >= 1"):
        profile_zoo(zoo_dir, "x86", batch_sizes=[0, 2])
    with pytest.raises(JellyBeanError, match="no manifest.yaml here"):
        profile_zoo(tmp_path, "x86")
    with pytest.raises(JellyBeanError, match="no operator"):
        profile_zoo(zoo_dir, "x86", operators=["detect"])
