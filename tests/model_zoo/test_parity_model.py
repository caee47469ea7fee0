"""The shipped parity model (ParM, model_zoo/recipes/train_parity.py), without torch: its ONNX
contract, and that the agents' own encoder, parity worker and decoder rebuild re-ID embeddings from
it on a scene it never saw (seed 11; training used seeds 1-5)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from jellybean.agents.items import Item
from jellybean.agents.operators.base import OperatorConfig, create
from jellybean.parity.groups import GroupDecoder, GroupEncoder
from jellybean.parity.wire import wire_encoder
from jellybean.replay.cityflow import open_dataset
from jellybean.replay.scene import SceneConfig, write_scene

ZOO = Path(__file__).resolve().parents[2] / "model_zoo" / "aicity"
PARITY = ZOO / "reid_w100_parity_k2.onnx"
# Measured on this scene when the model was shipped: mean cosine 0.89 rebuilt vs original, the
# nearest original of the same vehicle for all of 28 crops; the bars leave room for another CPU.
MIN_COSINE, MIN_OWN_NEAREST = 0.80, 0.80


def test_file_contract():
    assert PARITY.is_file(), f"{PARITY} is missing; train it with model_zoo/recipes/train_parity.py"
    assert PARITY.stat().st_size <= 2_500_000
    model = onnx.load(str(PARITY))
    onnx.checker.check_model(model, full_check=True)
    (inp,), (out,) = model.graph.input, model.graph.output
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert (inp.name, dims(inp)) == ("images", ["batch", 3, 96, 96])
    assert (out.name, dims(out)) == ("parity", ["batch", 128])
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["k"]) == 2 and meta["encoder"] == "concat" and meta["base"] == "reid_w100.onnx"


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> tuple[list[bytes], list[int]]:
    """Crops (JPEG, as the detector sends them) of the vehicles in full view, and whose they are."""
    root = tmp_path_factory.mktemp("scene")
    write_scene(root, SceneConfig(cameras=1, seconds=2, seed=11, width=640, height=360))
    cam = open_dataset(root, strict=True).cameras()[0]
    frames = dict(cam.frames())
    out, ids = [], []
    for r in cam.gt():
        if min(r.width, r.height) >= 20 and r.frame % 4 == 1:
            box = frames[r.frame][int(r.top):int(r.top + r.height), int(r.left):int(r.left + r.width)]
            out.append(cv2.imencode(".jpg", cv2.resize(box, (96, 96)), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
            ids.append(r.id)
    assert len(out) >= 12 and len(set(ids)) >= 4, "the test scene should show a dozen crops of a few vehicles"
    return out, ids


def test_the_agents_rebuild_a_missing_embedding_from_the_parity_output(crops):
    crops, ids = crops
    reid = create("reid-embedder", OperatorConfig("reid", "reid-w100", model=ZOO / "reid_w100.onnx", threads=1))
    worker = create("parity-embedder", OperatorConfig("reid.parity", "p", model=PARITY, threads=1))
    items = [Item("cam", n + 1, 1.0, kind="detections", meta={"boxes": [[0, 0, 1, 1, 1]]}, blobs=[b])
             for n, b in enumerate(crops)]
    originals = np.concatenate([o.arrays["embeddings"] for o in reid.process(items)]).astype(np.float32)
    rebuilt = np.zeros_like(originals)
    for a in range(0, len(items) - 1, 2):
        for lost in (a, a + 1):          # each member of the pair missing in turn
            enc, dec = GroupEncoder(2, wire_encoder("concat", 2), source="t"), GroupDecoder("reid", wait_s=0.0)
            enc.add(items[a])
            query = enc.add(items[a + 1])
            other = a + 1 if lost == a else a
            dec.data(items[other].derive("features", arrays={"embeddings": originals[other:other + 1].astype(np.float16)}))
            dec.parity(worker.process([query])[0])
            (back,) = dec.due(now=float("inf"))
            assert back.key == items[lost].key and back.meta["reconstructed"] == ["reid"]
            rebuilt[lost] = back.arrays["embeddings"][0]
    n = len(items) // 2 * 2
    cos = np.sum(rebuilt[:n] * originals[:n], axis=1)
    vehicle = np.array(ids[:n])
    own = np.mean(vehicle[np.argmax(rebuilt[:n] @ originals[:n].T, axis=1)] == vehicle)
    shuffled = np.sum(rebuilt[:n] * np.roll(originals[:n], 3, axis=0), axis=1)
    print(f"\nrebuilt vs original: mean cosine {cos.mean():.4f} (min {cos.min():.4f}; against another crop's "
          f"{shuffled.mean():.4f}); the nearest original is of the same vehicle for {own:.1%} of {n} crops")
    assert cos.mean() >= MIN_COSINE and own >= MIN_OWN_NEAREST
    assert cos.mean() > shuffled.mean() + 0.2
