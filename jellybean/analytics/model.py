"""The congestion model as the query runs it: the shipped ONNX file in ONNX Runtime, its manifest
(model_zoo/analytics/congestion.yaml) checked against the query's features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from jellybean.analytics.errors import AnalyticsError
from jellybean.analytics.features import NAMES

DEFAULT = Path(__file__).resolve().parents[2] / "model_zoo" / "analytics" / "congestion.yaml"


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    features: tuple[str, ...]


class Manifest(BaseModel):
    """What the recipe wrote beside the ONNX file (unknown keys are allowed: figures and test vectors)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    kind: str
    name: str
    file: str
    task: str
    input: _Input
    label: str


class CongestionModel:
    """``classify`` (0/1 per row) and ``probability`` (of congestion) on [rows, 7] feature arrays."""

    def __init__(self, manifest_path: Path | str = DEFAULT) -> None:
        import onnxruntime as ort

        path = Path(manifest_path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            self.manifest = Manifest.model_validate(raw)
        except OSError as exc:
            raise AnalyticsError(f"{path}: cannot be read ({exc.strerror or exc}); give the model's manifest "
                                 "(model_zoo/analytics/congestion.yaml)") from None
        except (yaml.YAMLError, ValidationError) as exc:
            first = str(exc).splitlines()[0]
            raise AnalyticsError(f"{path}: not a model manifest ({first}); retrain with "
                                 "model_zoo/recipes/train_congestion.py") from None
        if self.manifest.input.features != NAMES:
            raise AnalyticsError(f"{path}: input.features {list(self.manifest.input.features)} differ from the "
                                 f"query's {list(NAMES)}; retrain with model_zoo/recipes/train_congestion.py")
        onnx_path = path.parent / self.manifest.file
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1      # small batches: threads cost more than they save
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types for a missing or broken file
            raise AnalyticsError(f"{onnx_path}: ONNX Runtime cannot load it ({type(exc).__name__}); retrain with "
                                 "model_zoo/recipes/train_congestion.py") from None
        self.input = self.manifest.input.name

    def _run(self, rows: np.ndarray, output: str) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(rows, dtype=np.float32).reshape(-1, len(NAMES)))
        return self.session.run([output], {self.input: x})[0]

    def classify(self, rows: np.ndarray) -> np.ndarray:
        return self._run(rows, "label").astype(np.int64)

    def probability(self, rows: np.ndarray) -> np.ndarray:
        return self._run(rows, "probabilities")[:, 1].astype(float)
