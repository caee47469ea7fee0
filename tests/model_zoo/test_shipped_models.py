"""The small real models that model_zoo/ ships: their ONNX contract, and that they work on a scene.

No torch here: the models run in ONNX Runtime, frames come from the repo's synthetic scene writer.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from jellybean.replay.cityflow import open_dataset
from jellybean.replay.scene import SceneConfig, write_scene

ZOO = Path(__file__).resolve().parents[2] / "model_zoo" / "aicity"
DETECTORS = ["detector_w050.onnx", "detector_w100.onnx"]
REIDS = ["reid_w050.onnx", "reid_w100.onnx"]
DET_H, DET_W = 192, 320
ANCHORS = sum((DET_H // s) * (DET_W // s) for s in (8, 16, 32))   # 1260
REID_SIDE, REID_DIM = 96, 128


def session(name: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(ZOO / name), opts, providers=["CPUExecutionProvider"])


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A tiny synthetic scene, one camera, 2 s at 640x360 (10 fps): (BGR frames by number, gt rows)."""
    root = tmp_path_factory.mktemp("scene")
    write_scene(root, SceneConfig(cameras=1, seconds=2, seed=11, width=640, height=360))
    cam = open_dataset(root, strict=True).cameras()[0]
    return dict(cam.frames()), cam.gt()


# --- the ONNX contract ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DETECTORS + REIDS)
def test_file_exists_is_small_and_valid(name):
    path = ZOO / name
    assert path.is_file(), f"{path} is missing; train it with model_zoo/recipes (see model_zoo/README.md)"
    assert path.stat().st_size <= 2_500_000
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert any(o.domain in ("", "ai.onnx") and o.version == 17 for o in model.opset_import)


def test_total_size():
    assert sum((ZOO / n).stat().st_size for n in DETECTORS + REIDS) <= 5_500_000


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_layout(name):
    model = onnx.load(str(ZOO / name))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, dims(inp)) == ("images", ["batch", 3, DET_H, DET_W])
    assert (out.name, dims(out)) == ("output0", ["batch", 5, ANCHORS])
    assert inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["names"] == "{0: 'vehicle'}" and meta["imgsz"] == f"[{DET_H}, {DET_W}]"
    sess = session(name)
    rng = np.random.default_rng(0)
    for n in (1, 3):
        y = sess.run(["output0"], {"images": rng.random((n, 3, DET_H, DET_W), dtype=np.float32)})[0]
        assert y.shape == (n, 5, ANCHORS) and y.dtype == np.float32
        assert np.all((y[:, 4] >= 0) & (y[:, 4] <= 1))          # sigmoid scores
        assert np.all(y[:, 2:4] >= 0)                            # widths and heights


@pytest.mark.parametrize("name", REIDS)
def test_reid_layout_and_unit_norm(name):
    model = onnx.load(str(ZOO / name))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, dims(inp)) == ("images", ["batch", 3, REID_SIDE, REID_SIDE])
    assert (out.name, dims(out)) == ("embeddings", ["batch", REID_DIM])
    sess = session(name)
    rng = np.random.default_rng(0)
    for n in (1, 3):
        y = sess.run(["embeddings"], {"images": rng.random((n, 3, REID_SIDE, REID_SIDE), dtype=np.float32)})[0]
        assert y.shape == (n, REID_DIM) and y.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-4)


# --- they work on a rendered synthetic scene ---------------------------------------------------------


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_finds_the_vehicles(name, scene):
    frames, gt = scene
    picked = [1, 10, 20]
    batch = np.stack([cv2.cvtColor(cv2.resize(frames[k], (DET_W, DET_H), interpolation=cv2.INTER_LINEAR),
                                   cv2.COLOR_BGR2RGB) for k in picked]).astype(np.float32).transpose(0, 3, 1, 2) / 255
    out = session(name).run(["output0"], {"images": batch})[0]
    fh, fw = frames[1].shape[:2]
    scale = np.array([fw / DET_W, fh / DET_H] * 2, np.float32)
    matched = total = 0
    for k, y in zip(picked, out):
        truth = np.array([[r.left, r.top, r.left + r.width, r.top + r.height] for r in gt if r.frame == k], np.float32)
        keep = y[4] > 0.5
        cx, cy, w, h = y[:4, keep]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1) * scale
        total += len(truth)
        if len(truth) and len(boxes):
            matched += int((iou(truth, boxes).max(1) > 0.5).sum())
    assert total > 0
    assert matched >= 1
    assert matched >= 0.8 * total, f"{name}: only {matched} of {total} gt boxes found with score > 0.5"


def crop(frame: np.ndarray, left, top, width, height) -> np.ndarray:
    """The re-ID input: the box's pixels (rounded outwards, clipped), bilinear resize to 96x96, RGB,
    0..1, CHW."""
    fh, fw = frame.shape[:2]
    x0, y0 = min(max(int(np.floor(left)), 0), fw - 1), min(max(int(np.floor(top)), 0), fh - 1)
    x1 = max(min(int(np.ceil(left + width)), fw), x0 + 1)
    y1 = max(min(int(np.ceil(top + height)), fh), y0 + 1)
    rgb = cv2.cvtColor(cv2.resize(frame[y0:y1, x0:x1], (REID_SIDE, REID_SIDE), interpolation=cv2.INTER_LINEAR),
                       cv2.COLOR_BGR2RGB)
    return rgb.astype(np.float32).transpose(2, 0, 1) / 255


@pytest.mark.parametrize("name", REIDS)
def test_reid_same_vehicle_is_closer(name, scene):
    frames, gt = scene
    # vehicles fully in view (not touching the frame's edge) and large enough, in two frames >= 8 apart
    fh, fw = frames[1].shape[:2]
    seen: dict[int, list] = {}
    for r in gt:
        inside = r.left > 0 and r.top > 0 and r.left + r.width < fw and r.top + r.height < fh
        if min(r.width, r.height) >= 20 and inside:
            seen.setdefault(r.id, []).append(r)
    pairs = [(rows[0], rows[-1]) for rows in seen.values() if rows[-1].frame - rows[0].frame >= 8][:6]
    assert len(pairs) >= 3, "the test scene should show a few vehicles twice"
    images = np.stack([crop(frames[r.frame], r.left, r.top, r.width, r.height) for pair in pairs for r in pair])
    emb = session(name).run(["embeddings"], {"images": images})[0]
    a, b = emb[0::2], emb[1::2]                 # a[i], b[i]: vehicle i in two frames
    sims = a @ b.T
    same = np.diag(sims)
    other = (sims.sum(1) - same) / (len(pairs) - 1)
    assert same.mean() > other.mean() + 0.1
    assert np.mean(same > other) >= 0.8
