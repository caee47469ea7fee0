"""The shipped congestion classifier (model_zoo/analytics/congestion.onnx): it loads in ONNX Runtime,
predicts the recipe's test vectors as the recipe reported, and beats the majority class on a fresh
history. No scikit-learn here: the runtime path is ONNX Runtime only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

from jellybean.analytics import features, generate, store
from jellybean.analytics.model import DEFAULT, CongestionModel

MANIFEST = yaml.safe_load(DEFAULT.read_text())


def test_the_file_is_a_small_valid_onnx_model_with_the_manifests_input():
    path = DEFAULT.parent / MANIFEST["file"]
    assert path.stat().st_size < 200_000
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    (inp,) = model.graph.input
    assert inp.name == MANIFEST["input"]["name"] == "features"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim][1:] == [len(features.NAMES)]
    assert {o.name for o in model.graph.output} == {"label", "probabilities"}
    assert tuple(MANIFEST["input"]["features"]) == features.NAMES


def test_it_predicts_the_recipes_test_vectors_as_the_recipe_reported():
    model = CongestionModel()
    vectors = MANIFEST["test_vectors"]
    x = np.array([v["features"] for v in vectors], dtype=np.float32)
    assert {v["label"] for v in vectors} == {0, 1}
    assert model.classify(x).tolist() == [v["label"] for v in vectors]
    assert model.probability(x) == pytest.approx([v["p_congested"] for v in vectors], abs=1e-5)


def test_it_beats_the_majority_class_on_a_history_it_never_saw(tmp_path):
    columns, hz = generate.generate(generate.config(intersections=1, days=2.0, hz=0.05, seed=909))
    con = store.create(tmp_path / "h.duckdb", hz)
    store.insert(con, columns, shuffled=True)
    grid = features.grid(con)
    con.close()
    label = CongestionModel().classify(grid["features"])
    accuracy = np.mean(label == grid["label"])
    majority = max(grid["label"].mean(), 1 - grid["label"].mean())
    assert grid["label"].sum() >= 20                     # the two days have rush hours to predict
    assert accuracy >= majority + 0.5 * (1 - majority), (accuracy, majority)
    held = MANIFEST["held_out"]
    assert held["accuracy"] > held["majority_class_accuracy"]


def test_a_broken_manifest_or_model_is_named(tmp_path):
    from jellybean.analytics.errors import AnalyticsError

    bad = tmp_path / "m.yaml"
    bad.write_text("kind: [unclosed")
    with pytest.raises(AnalyticsError, match="m.yaml: not a model manifest"):
        CongestionModel(bad)
    other = dict(MANIFEST, input={"name": "features", "features": ["a", "b"]})
    bad.write_text(yaml.safe_dump(other))
    with pytest.raises(AnalyticsError, match="differ from the query's"):
        CongestionModel(bad)
    (tmp_path / "congestion.onnx").write_bytes(b"junk")
    bad.write_text(yaml.safe_dump(MANIFEST))
    with pytest.raises(AnalyticsError, match="congestion.onnx: ONNX Runtime cannot load it"):
        CongestionModel(bad)
    with pytest.raises(AnalyticsError, match="cannot be read"):
        CongestionModel(Path(tmp_path / "none.yaml"))
