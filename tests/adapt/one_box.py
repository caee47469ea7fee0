"""Specs of one crossing: its cameras, a detector box and a tracker device (the adapt tests')."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def write_one_box(root: Path, name: str, detectors: list[dict], *, track_accuracy: float, accuracy: float,
                  min_accuracy: float = 0.3, latency_ms: float = 1000.0, cameras: int = 4) -> Path:
    """workflow, hardware and infrastructure YAML in ``root``, and a zoo of the shipped detectors
    (``detectors``: the detect variants) and SORT; returns the zoo's directory."""
    zoo = root / "zoo"
    zoo.mkdir()
    for model in ("detector_w100.onnx", "detector_w050.onnx"):
        shutil.copy(REPO / "model_zoo" / "aicity" / model, zoo / model)
    (zoo / "manifest.yaml").write_text(yaml.safe_dump({"kind": "model-zoo", "name": name, "operators": [
        {"name": "detect", "task": "detection", "variants": detectors},
        {"name": "track", "task": "tracking", "variants": [
            {"name": "sort", "runtime": "sort-tracker", "accuracy": track_accuracy, "memory_mb": 50,
             "profiles": {"tracker": {"latency_ms": 1}}}]}]}))
    (root / "hardware.yaml").write_text(yaml.safe_dump({"kind": "hardware", "hardware": [
        {"name": "box", "tier": "edge", "price_per_hour": 0.05, "memory_mb": 4000},
        {"name": "tracker", "tier": "edge", "price_per_hour": 0.01, "memory_mb": 1000}]}))
    (root / "workflow.yaml").write_text(yaml.safe_dump({
        "kind": "workflow", "name": name, "sources": [{"name": "camera", "rate": 10, "item_kb": 20}],
        "operators": [{"name": "detect", "inputs": ["camera"]}, {"name": "track", "inputs": ["detect"]}],
        "edges": [{"from": "detect", "to": "track", "ratio": 1, "item_kb": 1}],
        "slo": {"accuracy": accuracy, "min_accuracy": min_accuracy, "latency_ms": latency_ms}}))
    (root / "infrastructure.yaml").write_text(yaml.safe_dump({
        "kind": "infrastructure", "name": "one-crossing", "hardware_catalog": ["hardware.yaml"],
        "sites": [{"name": "crossing", "tier": "edge", "hardware": {"box": 1, "tracker": 1},
                   "sources": {"camera": cameras}}],
        "links": []}))
    return zoo
