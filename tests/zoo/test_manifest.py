"""The zoo manifest: merge operators, merge profiles of several machines, atomic writes."""

from __future__ import annotations

import os
import threading

import pytest
import yaml

from jellybean.errors import JellyBeanError
from jellybean.spec.base import load_model
from jellybean.spec.zoo import AccuracyTable, Profile, Variant, Zoo, ZooOperator
from jellybean.zoo import manifest as mf


def op(name: str, *variants: str, sha: str = "a" * 64) -> ZooOperator:
    return ZooOperator(name=name, task="detection", variants=tuple(
        Variant(name=v, model=f"{name}/{v}.onnx", precision="fp32", sha256=sha, memory_mb=1.0) for v in variants))


X86 = Profile(latency_ms=5.0, p90_ms=6.0, p99_ms=7.0, throughput={1: 200.0, 4: 500.0}, peak_memory_mb=40.0,
              execution_provider="CPUExecutionProvider", measured_at="2024-05-01T00:00:00+00:00")
JETSON = Profile(latency_ms=9.0, throughput={1: 110.0}, peak_memory_mb=90.0, execution_provider="CUDAExecutionProvider")


def test_merge_operator_adds_then_replaces(tmp_path):
    zoo = mf.merge_operator(None, op("detect", "fp32", "int8"), zoo_name="city")
    assert zoo.name == "city" and [o.name for o in zoo.operators] == ["detect"]
    zoo = mf.merge_operator(zoo, op("reid", "fp32"))
    assert [o.name for o in zoo.operators] == ["detect", "reid"]
    zoo = mf.set_profile(zoo, "detect", "fp32", "x86", X86)
    # Rebuilding detect replaces its variants; the byte-identical fp32 keeps its profile, int8 is gone.
    zoo = mf.merge_operator(zoo, op("detect", "fp32", "fp16"))
    det = zoo.operator("detect")
    assert [v.name for v in det.variants] == ["fp32", "fp16"]
    assert det.variant("fp32").profiles == {"x86": X86}
    # A different file (sha256) drops the stale measurements.
    zoo = mf.merge_operator(zoo, op("detect", "fp32", sha="b" * 64))
    assert zoo.operator("detect").variant("fp32").profiles == {}
    assert [o.name for o in zoo.operators] == ["detect", "reid"]


def test_profiles_of_two_machines_merge_and_round_trip(tmp_path):
    zoo = mf.merge_operator(None, op("detect", "fp32"), zoo_name="city")
    mf.write_manifest(tmp_path, zoo)
    mf.update_manifest(tmp_path, lambda z: mf.set_profile(z, "detect", "fp32", "x86-hub", X86, memory_mb=40.0))
    mf.update_manifest(tmp_path, lambda z: mf.set_profile(z, "detect", "fp32", "jetson-orin-nano-8gb", JETSON,
                                                          memory_mb=90.0))
    loaded = load_model(Zoo, tmp_path / "manifest.yaml")  # the spec accepts what we write
    var = loaded.operator("detect").variant("fp32")
    assert var.profiles == {"x86-hub": X86, "jetson-orin-nano-8gb": JETSON}
    assert var.memory_mb == 90.0
    raw = yaml.safe_load((tmp_path / "manifest.yaml").read_text())
    assert raw["operators"][0]["variants"][0]["profiles"]["x86-hub"]["throughput"] == {1: 200.0, 4: 500.0}
    # Re-profiling one machine replaces only its entry.
    faster = X86.model_copy(update={"latency_ms": 4.0})
    again = mf.set_profile(loaded, "detect", "fp32", "x86-hub", faster)
    assert again.operator("detect").variant("fp32").profiles["x86-hub"].latency_ms == 4.0
    assert "jetson-orin-nano-8gb" in again.operator("detect").variant("fp32").profiles


def test_merge_zoos_from_another_machine():
    base = mf.set_profile(mf.merge_operator(None, op("detect", "fp32", "int8")), "detect", "fp32", "x86", X86)
    other = mf.set_profile(mf.merge_operator(None, op("detect", "fp32", "int8")), "detect", "fp32", "jetson", JETSON)
    other = mf.merge_operator(other, op("track", "sort"))
    merged = mf.merge_zoos(base, other)
    assert set(merged.operator("detect").variant("fp32").profiles) == {"x86", "jetson"}
    assert [o.name for o in merged.operators] == ["detect", "track"]
    changed = mf.merge_operator(None, op("detect", "fp32", sha="c" * 64))
    with pytest.raises(JellyBeanError, match="detect/fp32: the two manifests describe different files"):
        mf.merge_zoos(base, changed)


def test_set_metrics_and_accuracy_and_unknown_names():
    zoo = mf.merge_operator(None, op("detect", "fp32"))
    zoo = mf.set_metrics(zoo, "detect", "fp32", {"mAP50": 0.61}, accuracy=0.9)
    zoo = mf.set_metrics(zoo, "detect", "fp32", {"recall": 0.7})
    var = zoo.operator("detect").variant("fp32")
    assert var.metrics == {"mAP50": 0.61, "recall": 0.7} and var.accuracy == 0.9
    with pytest.raises(JellyBeanError, match="unknown operator 'detcet'; did you mean 'detect'"):
        mf.set_profile(zoo, "detcet", "fp32", "x86", X86)
    with pytest.raises(JellyBeanError, match="unknown variant 'fp23'"):
        mf.set_metrics(zoo, "detect", "fp23", accuracy=0.5)
    with pytest.raises(JellyBeanError, match="accuracy must be > 0"):
        mf.set_metrics(zoo, "detect", "fp32", accuracy=0)


def test_accuracy_table_rows_of_removed_variants_are_dropped():
    zoo = mf.merge_operator(mf.merge_operator(None, op("detect", "fp32", "int8")), op("reid", "fp32"))
    data = zoo.model_dump()
    data["accuracy_table"] = AccuracyTable(operators=("detect", "reid"), rows=(
        {"variants": ("fp32", "fp32"), "accuracy": 0.8}, {"variants": ("int8", "fp32"), "accuracy": 0.7})).model_dump()
    zoo = Zoo.model_validate(data)
    rebuilt = mf.merge_operator(zoo, op("detect", "fp32"))
    assert [r.variants for r in rebuilt.accuracy_table.rows] == [("fp32", "fp32")]


def test_atomic_write_keeps_the_old_manifest_on_failure(tmp_path, monkeypatch):
    zoo = mf.merge_operator(None, op("detect", "fp32"))
    mf.write_manifest(tmp_path, zoo)
    before = (tmp_path / "manifest.yaml").read_bytes()

    def fail(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(mf.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        mf.write_manifest(tmp_path, mf.set_profile(zoo, "detect", "fp32", "x86", X86))
    assert (tmp_path / "manifest.yaml").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["manifest.yaml"]  # no temp file left


def test_concurrent_updates_lose_nothing(tmp_path):
    mf.write_manifest(tmp_path, mf.merge_operator(None, op("detect", "fp32")))
    names = [f"hw-{i}" for i in range(6)]

    def add(hw: str) -> None:
        mf.update_manifest(tmp_path, lambda z: mf.set_profile(z, "detect", "fp32", hw, X86))

    threads = [threading.Thread(target=add, args=(hw,)) for hw in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(mf.load_zoo(tmp_path).operator("detect").variant("fp32").profiles) == set(names)


def test_load_zoo_errors(tmp_path):
    with pytest.raises(JellyBeanError, match="not a directory"):
        mf.load_zoo(tmp_path / "missing")
    with pytest.raises(JellyBeanError, match="no manifest.yaml here; build the zoo first"):
        mf.load_zoo(tmp_path)
    assert mf.read_manifest(tmp_path) is None
