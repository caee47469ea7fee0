"""Train the congestion classifier the analytics query ships (model_zoo/analytics/congestion.onnx).

    .venv/bin/python model_zoo/recipes/train_congestion.py [--out model_zoo/analytics]

Data: histories from jellybean.analytics.generate (4 intersections × 21 days at 0.1 observations per
vehicle per second for training, 2 × 7 days of another seed held out), features and labels from
jellybean.analytics.features.grid every 5 minutes: exactly what the query computes. Model:
scikit-learn's gradient boosting (80 trees of depth 3), exported with skl2onnx (no ZipMap: outputs
`label` int64 [n] and `probabilities` float [n, 2]), checked in ONNX Runtime against scikit-learn.
Writes congestion.onnx and congestion.yaml (features, label, held-out figures, test vectors).
Needs scikit-learn and skl2onnx (dependencies of the project); a CPU, about a minute.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jellybean.analytics import features, generate, store  # noqa: E402

TRAIN = dict(intersections=4, days=21, hz=0.1, seed=101)
HELD_OUT = dict(intersections=2, days=7, hz=0.1, seed=202)


def dataset(spec: dict, workdir: Path) -> dict:
    cfg = generate.config(**spec)
    columns, hz = generate.generate(cfg)
    con = store.create(workdir / f"history-{cfg.seed}.duckdb", hz, overwrite=True)
    try:
        store.insert(con, columns, shuffled=True)
        return features.grid(con)
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "model_zoo" / "analytics")
    args = parser.parse_args(argv)

    import onnxruntime as ort
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    with tempfile.TemporaryDirectory() as tmp:
        train, held = dataset(TRAIN, Path(tmp)), dataset(HELD_OUT, Path(tmp))
    x, y = train["features"].astype(np.float32), train["label"]
    xh, yh = held["features"].astype(np.float32), held["label"]
    clf = GradientBoostingClassifier(n_estimators=80, max_depth=3, learning_rate=0.1, random_state=0).fit(x, y)
    sk_pred = clf.predict(xh)
    baseline = float(max(yh.mean(), 1 - yh.mean()))

    onx = to_onnx(clf, initial_types=[("features", FloatTensorType([None, len(features.NAMES)]))],
                  options={id(clf): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    onx.graph.doc_string = "JellyBean congestion classifier: next 5 minutes congested (mean speed < 4 m/s)"
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "congestion.onnx"
    path.write_bytes(onx.SerializeToString())

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    label, proba = sess.run(["label", "probabilities"], {"features": xh})
    agree = float(np.mean(label == sk_pred))
    if agree < 0.999:
        raise SystemExit(f"ONNX Runtime and scikit-learn disagree on {1 - agree:.2%} of the held-out rows")
    rng = np.random.default_rng(0)
    pick = np.concatenate([rng.choice(np.flatnonzero(yh == k), 8, replace=False) for k in (0, 1)])
    manifest = {
        "kind": "analytics-model",
        "name": "congestion",
        "file": "congestion.onnx",
        "task": "classification",
        "input": {"name": "features", "features": list(features.NAMES)},
        "outputs": {"label": "int64 [n]: 1 = congested in the next 5 minutes",
                    "probabilities": "float [n, 2]: P(not congested), P(congested)"},
        "label": f"mean speed over the next {features.HORIZON_S:g} s below {features.CONGESTED_SPEED:g} m/s",
        "trained_on": {**TRAIN, "rows": int(len(y)), "congested_share": round(float(y.mean()), 4)},
        "held_out": {**HELD_OUT, "rows": int(len(yh)), "congested_share": round(float(yh.mean()), 4),
                     "accuracy": round(float(accuracy_score(yh, label)), 4),
                     "balanced_accuracy": round(float(balanced_accuracy_score(yh, label)), 4),
                     "majority_class_accuracy": round(baseline, 4)},
        "test_vectors": [{"features": [float(v) for v in xh[k]], "label": int(label[k]),
                          "p_congested": round(float(proba[k, 1]), 6)} for k in pick],
    }
    (args.out / "congestion.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False, width=120))
    print(f"wrote {path} ({path.stat().st_size} bytes); held-out accuracy {manifest['held_out']['accuracy']} "
          f"(balanced {manifest['held_out']['balanced_accuracy']}, majority class {baseline:.4f}) on {len(yh)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
