"""Evaluators and `evaluate_zoo`: metrics against hand-computed cases, end to end on a tiny scene.
Detection AP itself (COCOeval against known cases and an oracle) is in test_detection_ap.py."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from jellybean.errors import JellyBeanError
from jellybean.replay.cityflow import open_dataset
from jellybean.replay.scene import SceneConfig, write_scene
from jellybean.zoo import eval as zoo_eval
from jellybean.zoo import evaluators as ev
from jellybean.zoo.yolo import encode_yolov8, preprocess

SCENE = SceneConfig(cameras=2, seconds=2, seed=3, width=160, height=96)
DET_SIZE = (64, 128)          # H, W of the fake detector: not the frame's aspect ratio
REID_SIZE = (32, 32)
PAD = "padding"


# --- fakes -----------------------------------------------------------------------------------------


def key(image_chw: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(image_chw, np.float32).tobytes(), digest_size=16).hexdigest()


class FakeBackend:
    """`infer` looks each input image up by content; `input_specs` as a plain name -> shape mapping."""

    def __init__(self, shape, table, make):
        self.input_specs = {"images": shape}
        self.table, self.make = table, make
        self.batches: list[int] = []
        self.closed = False

    def infer(self, inputs):
        (x,) = inputs.values()
        assert x.dtype == np.float32 and x.ndim == 4
        self.batches.append(len(x))
        # an all-zero image is the padding of a fixed-size batch
        return {"output0": self.make([self.table.get(key(img), PAD if not img.any() else None) for img in x])}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True


def detector(root: Path, *, keep=lambda i: True, letterbox=False, fixed_batch=None, false_positive=False):
    """A fake YOLOv8 detector that returns each frame's gt boxes (those `keep(index)` accepts) at
    descending scores from 0.9, plus optionally a low-score false positive in the top-left corner."""
    table = {}
    for cam in open_dataset(root).cameras():
        rows = {}
        for r in cam.gt():
            rows.setdefault(r.frame, []).append((r.left, r.top, r.left + r.width, r.top + r.height))
        for k, image in cam.frames():
            batch = preprocess([image], DET_SIZE, letterbox=letterbox)
            boxes = [b for i, b in enumerate(rows.get(k, [])) if keep(i)]
            if false_positive:
                boxes.append((0, 0, 6, 6))
            b = np.array(boxes, np.float32).reshape(-1, 4)
            scores = np.linspace(0.9, 0.5, len(b)) if len(b) else np.zeros(0)
            if false_positive:
                scores[-1] = 0.1
            table[key(batch.images[0])] = (batch.transforms[0].to_input(b), scores, np.zeros(len(b), int))

    def make(found):
        assert all(f is not None for f in found), "the evaluator fed a frame the fake has never seen"
        empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
        return encode_yolov8([empty if f is PAD else f for f in found], num_classes=1, anchors=48)

    return FakeBackend((fixed_batch, 3, *DET_SIZE), table, make)


def embedder(root: Path, ids: list[int], fixed_batch=None):
    """A fake re-ID model returning a one-hot embedding of each crop's identity (it knows the crop
    of every gt box of every frame)."""
    table = {}
    for cam in open_dataset(root).cameras():
        rows = {}
        for r in cam.gt():
            rows.setdefault(r.frame, []).append(r)
        for k, image in cam.frames():
            for r in rows.get(k, []):
                box = (r.left, r.top, r.left + r.width, r.top + r.height)
                table[key(preprocess([ev.crop(image, box)], REID_SIZE).images[0])] = r.id

    def make(found):
        assert all(f is not None for f in found), "the evaluator fed a crop the fake has never seen"
        out = np.zeros((len(found), len(ids)), np.float32)
        for i, f in enumerate(found):
            if f is not PAD:
                out[i, ids.index(f)] = 3.0                                       # not unit length
        return out

    return FakeBackend((fixed_batch, 3, *REID_SIZE), table, make)


class RandomEmbedder:
    """A re-ID model blind to identity: a random vector per crop (seeded by its content)."""

    input_specs = [("images", (None, 3, *REID_SIZE))]

    def infer(self, inputs):
        (x,) = inputs.values()
        return {"emb": np.stack([np.random.default_rng(int(key(img)[:8], 16)).normal(size=16) for img in x])}


# --- the tiny scene --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scene")
    write_scene(root, SCENE)
    return root


@pytest.fixture
def copy(scene, tmp_path) -> Path:
    return Path(shutil.copytree(scene, tmp_path / "data"))


def gt_total(root: Path) -> int:
    return sum(len(c.gt()) for c in open_dataset(root).cameras())


# --- re-ID metrics -----------------------------------------------------------------------------------


def test_identity_perfect_embeddings_score_one():
    ids = np.repeat(np.arange(10), 2)
    cams = np.tile([0, 1], 10)
    emb = np.eye(10)[ids] * 5
    m = ev.reid_metrics(emb, ids, cams, emb, ids, cams)
    assert m["rank1"] == 1.0 and m["map"] == 1.0 and m["queries"] == 20


def test_same_camera_matches_are_excluded():
    q = np.array([[1.0, 0.0]])
    g = np.array([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5]])
    m = ev.reid_metrics(q, np.array([1]), np.array([0]), g, np.array([1, 2, 1]), np.array([0, 1, 1]))
    # the identical same-camera box is left out: ranking id2 (cam 1), id1 (cam 1) -> AP 1/2
    assert m["rank1"] == 0.0 and m["rank5"] == 1.0 and m["map"] == pytest.approx(0.5)


def test_random_embeddings_score_low_and_unmatchable_queries_are_not_counted():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(100), 2)
    cams = np.tile([0, 1], 100)
    m = ev.reid_metrics(rng.normal(size=(200, 64)), ids, cams, rng.normal(size=(200, 64)), ids, cams)
    assert m["rank1"] < 0.1 and m["map"] < 0.1
    m = ev.reid_metrics(np.eye(2), np.array([0, 5]), np.array([0, 0]), np.eye(2), np.array([0, 1]), np.array([1, 1]))
    assert m["queries"] == 1 and m["rank1"] == 1.0


# --- registry and backend plumbing -------------------------------------------------------------------


def test_registry():
    assert {"detection", "reid", "classification"} <= set(ev.known_tasks())
    assert ev.get_evaluator("detection") is ev.evaluate_detection
    with pytest.raises(JellyBeanError, match=r"no evaluator for task 'detections'; did you mean 'detection'\?; "
                                             r"known tasks: classification, detection, reid"):
        ev.get_evaluator("detections")

    @ev.register("test-only")
    def evaluate_nothing(backend, data, **options):
        return ev.EvalResult("test-only", 0.5, {"x": 1.0})

    try:
        assert ev.get_evaluator("test-only") is evaluate_nothing
        assert ev.load_data("test-only", "/nowhere") == Path("/nowhere")
    finally:
        ev._EVALUATORS.pop("test-only")


class _Meta:
    def __init__(self, name, shape, type):
        self.name, self.shape, self.type = name, shape, type


@pytest.mark.parametrize("specs", [
    {"x": (1, 3, 32, 48)},
    {"x": ("float16", (1, 3, 32, 48))},                                  # Polygraphy-like (dtype, shape)
    [("x", [1, 3, 32, 48])],
    [_Meta("x", [1, 3, 32, 48], "tensor(float16)")],                      # ORT NodeArg-like
    {"x": ev.InputSpec("x", (1, 3, 32, 48))},
])
def test_input_specs_in_several_shapes(specs):
    backend = type("B", (), {"input_specs": specs})()
    spec, size = ev.image_input(backend)
    assert spec.name == "x" and spec.batch == 1 and size == (32, 48)


def test_input_spec_problems():
    dynamic = type("B", (), {"input_specs": {"x": ("batch", 3, "h", "w")}})()
    with pytest.raises(JellyBeanError, match="dynamic size .* give the evaluator imgsz"):
        ev.image_input(dynamic)
    assert ev.image_input(dynamic, imgsz=64)[1] == (64, 64)
    grey = type("B", (), {"input_specs": {"x": (1, 1, 32, 32)}})()
    with pytest.raises(JellyBeanError, match=r"expected \[N, 3, H, W\]"):
        ev.image_input(grey)


# --- detection end to end ----------------------------------------------------------------------------


def test_detection_perfect_detector_scores_one(scene):
    calls = []
    backend = detector(scene, false_positive=True)
    r = ev.evaluate_detection(backend, scene, batch=8, progress=lambda d, t: calls.append((d, t)))
    assert r.task == "detection" and not r.partial and r.warnings == ()
    assert r.metric == "ap50" and r.as_dict()["accuracy_metric"] == "ap50"
    assert r.accuracy == 1.0 and r.metrics["ap50"] == 1.0 and r.metrics["ap50_95"] == pytest.approx(1.0)
    assert r.metrics["precision"] == 1.0 and r.metrics["recall"] == 1.0
    assert r.metrics["frames"] == 40 and r.metrics["cameras"] == 2 and r.metrics["gt_boxes"] == gt_total(scene)
    assert calls[-1] == (40, 40) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert max(backend.batches) == 8


def test_detection_half_the_boxes_dropped(scene):
    backend = detector(scene, keep=lambda i: i % 2 == 0)
    r = ev.evaluate_detection(backend, scene)
    kept = sum(len(range(0, n, 2)) for n in _boxes_per_frame(scene))
    recall = kept / gt_total(scene)
    # all TPs, precision 1 up to the recall reached: COCO's AP is the share of its 101 recall
    # points (0, 0.01, ..., 1) at or below that recall
    assert r.accuracy < 1.0 and r.metric == "ap50"
    assert r.accuracy == pytest.approx((np.floor(100 * recall) + 1) / 101)
    assert r.metrics["recall"] == pytest.approx(kept / gt_total(scene)) and r.metrics["precision"] == 1.0


def _boxes_per_frame(root):
    counts = []
    for cam in open_dataset(root).cameras():
        per = {}
        for row in cam.gt():
            per[row.frame] = per.get(row.frame, 0) + 1
        counts.extend(per.values())
    return counts


def test_detection_letterbox_fixed_batch_and_sampling(scene):
    backend = detector(scene, letterbox=True, fixed_batch=3)
    r = ev.evaluate_detection(backend, scene, letterbox=True, every=2, max_frames=9)
    assert r.accuracy == 1.0 and r.metrics["frames"] == 9
    assert set(backend.batches) == {3}                                    # padded to the fixed batch
    data = ev.load_cityflow(scene, every=2, max_frames=9)
    assert [len(c.frames) for c in data.cameras] == [5, 4]                # split over both cameras
    assert all(k % 2 == 1 for c in data.cameras for k in c.frames)        # frames 1, 3, 5, ...


def truncate_last_gt_line(root: Path, camera: str) -> tuple[Path, int]:
    gt = root / "train" / "S01" / camera / "gt" / "gt.txt"
    lines = gt.read_text().splitlines()
    lines[-1] = lines[-1][: len(lines[-1]) // 2]
    gt.write_text("\n".join(lines) + "\n")
    return gt, len(lines)


def test_a_camera_without_video_is_skipped_and_the_result_partial(copy):
    backend = detector(copy)
    (copy / "train" / "S01" / "c001" / "vdo.avi").unlink()
    r = ev.evaluate_detection(backend, copy)
    assert r.partial and r.accuracy == 1.0 and r.metrics["cameras"] == 1 and r.metrics["frames"] == 20
    assert any("train/S01/c001: skipped" in w and "missing video" in w for w in r.warnings)


def test_a_camera_with_truncated_gt_is_skipped_and_the_result_partial(copy):
    backend = detector(copy)
    gt, line = truncate_last_gt_line(copy, "c002")
    r = ev.evaluate_detection(backend, copy)
    assert r.partial and r.accuracy == 1.0 and r.metrics["cameras"] == 1
    assert any("train/S01/c002: skipped" in w and f"{gt}: line {line}: expected 10 comma-separated fields" in w
               for w in r.warnings)


def test_no_usable_camera_names_the_dir_and_every_problem(copy):
    (copy / "train" / "S01" / "c001" / "vdo.avi").unlink()
    gt, line = truncate_last_gt_line(copy, "c002")
    with pytest.raises(JellyBeanError) as exc:
        ev.evaluate_detection(detector_stub(), copy)
    message = str(exc.value)
    assert message.startswith(f"{copy}: no camera with a readable video and ground truth")
    assert "expected the CityFlow layout DIR/<split>/S0X/cNNN/vdo.avi with gt/gt.txt" in message
    assert "missing video" in message and f"{gt}: line {line}" in message


def test_a_video_shorter_than_its_gt_is_evaluated_up_to_where_it_ends(copy):
    cam = open_dataset(copy).scenario("S01").camera("c002")
    frames = [image for _, image in cam.frames(1, 8)]
    writer = cv2.VideoWriter(str(cam.video_path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), 10.0,
                             (SCENE.width, SCENE.height))
    for image in frames:
        writer.write(image)
    writer.release()
    r = ev.evaluate_detection(detector(copy), copy)
    assert r.partial and r.metrics["frames"] == 20 + 8
    assert any("video ends at frame 8 but gt goes on to frame 20" in w for w in r.warnings)
    assert r.accuracy == 1.0                                             # gt of unseen frames is not counted


@pytest.mark.parametrize("make, expected", [
    (lambda p: p / "nope", "not a directory"),
    (lambda p: p, "no train, validation or test directory"),
])
def test_not_a_cityflow_dir(tmp_path, make, expected):
    path = make(tmp_path)
    with pytest.raises(JellyBeanError, match=expected) as exc:
        ev.evaluate_detection(detector_stub(), path)
    assert str(path) in str(exc.value) and "DIR/<split>/S0X/cNNN/vdo.avi" in str(exc.value)


def detector_stub():
    return FakeBackend((None, 3, *DET_SIZE), {}, lambda found: np.zeros((len(found), 5, 4), np.float32))


def test_no_gt_boxes_is_an_error(copy):
    for cam in open_dataset(copy).cameras():
        cam.gt_path.write_text("")
    with pytest.raises(JellyBeanError, match=r"have no gt boxes; expected the CityFlow layout"):
        ev.evaluate_detection(detector_stub(), copy)


def test_test_split_without_gt_is_not_evaluable(copy):
    shutil.move(copy / "train", copy / "test")
    for cam in open_dataset(copy).cameras():
        shutil.rmtree(cam.gt_path.parent)
    with pytest.raises(JellyBeanError, match="no camera with a readable video and ground truth"):
        ev.load_cityflow(copy)


# --- re-ID end to end --------------------------------------------------------------------------------


def test_reid_identity_perfect_embedder(scene):
    data = ev.load_reid(scene, queries_per_id=2, gallery_per_track=3, min_side=6)
    ids = sorted({s.id for s in data.queries + data.gallery})
    q_ids = {s.id for s in data.queries}
    assert len(q_ids) >= 2                                               # ids seen by both cameras
    for s in data.queries:                                               # every query can be matched
        assert any(g.id == s.id and g.camera != s.camera for g in data.gallery)
    backend = embedder(scene, ids, fixed_batch=4)
    r = ev.evaluate_reid(backend, data, batch=4)
    assert r.task == "reid" and not r.partial
    assert r.accuracy == 1.0 and r.metrics["rank1"] == 1.0 and r.metrics["map"] == 1.0 and r.metric == "rank1"
    assert r.metrics["queries"] == len(data.queries) and r.metrics["identities"] == len(q_ids)
    assert set(backend.batches) == {4}


def test_reid_identity_blind_embedder_scores_low(scene):
    r = ev.evaluate_reid(RandomEmbedder(), scene, min_side=6)
    assert r.metrics["map"] < 0.6 and r.metrics["rank1"] < 1.0


def test_reid_needs_ids_shared_by_cameras(copy):
    gt = copy / "train" / "S01" / "c002" / "gt" / "gt.txt"
    shifted = [line.split(",") for line in gt.read_text().splitlines()]
    gt.write_text("".join(",".join([p[0], str(int(p[1]) + 1000), *p[2:]]) + "\n" for p in shifted))
    with pytest.raises(JellyBeanError, match="no vehicle id appears in two or more cameras"):
        ev.load_reid(copy)


# --- classification ----------------------------------------------------------------------------------


COLOURS = {"blue": (255, 0, 0), "green": (0, 255, 0), "red": (0, 0, 255)}       # BGR


def image_folder(root: Path, per_class=3) -> Path:
    for name, bgr in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = np.full((20 + i, 30, 3), bgr, np.uint8)
            cv2.imwrite(str(root / name / f"{i}.png"), image)
    return root


def colour_classifier(shift=0, fixed_batch=None):
    """Logits: mean R, G, B of the input reordered to the sorted class names (blue, green, red)."""
    def make(_):
        raise AssertionError

    backend = FakeBackend((fixed_batch, 3, 8, 8), {}, make)

    def infer(inputs):
        (x,) = inputs.values()
        rgb = x.mean(axis=(2, 3))
        logits = rgb[:, [2, 1, 0]]
        return {"logits": np.roll(logits, shift, axis=1)}

    backend.infer = infer
    return backend


def test_classification_top1(tmp_path):
    root = image_folder(tmp_path / "cls")
    r = ev.evaluate_classification(colour_classifier(), root)
    assert r.accuracy == 1.0 and r.metrics["images"] == 9 and r.metrics["classes"] == 3 and not r.partial
    assert r.metric == "top1"
    assert "top5" not in r.metrics                                        # only 3 outputs
    assert ev.evaluate_classification(colour_classifier(shift=1, fixed_batch=2), root).accuracy == 0.0
    assert ev.evaluate_classification(colour_classifier(), root, max_frames=4).metrics["images"] == 4


def test_classification_unreadable_image_and_bad_dirs(tmp_path):
    root = image_folder(tmp_path / "cls")
    (root / "red" / "broken.jpg").write_bytes(b"not an image")
    r = ev.evaluate_classification(colour_classifier(), root)
    assert r.partial and r.accuracy == 1.0 and any("broken.jpg: cannot be read" in w for w in r.warnings)
    with pytest.raises(JellyBeanError, match="not a directory; expected an ImageFolder"):
        ev.load_image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(JellyBeanError, match="no class folders"):
        ev.load_image_folder(tmp_path / "empty")
    (tmp_path / "empty" / "a").mkdir()
    with pytest.raises(JellyBeanError, match="hold no images"):
        ev.load_image_folder(tmp_path / "empty")
    (root / "yellow").mkdir()
    cv2.imwrite(str(root / "yellow" / "0.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(JellyBeanError, match="3 outputs but .* has 4 classes"):
        ev.evaluate_classification(colour_classifier(), root)


def tiny_onnx(path: Path) -> Path:
    """A real ONNX model: [N, 3, 8, 8] -> mean per channel [N, 3] (R, G, B), for the ORT backend."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["rgb"]),
         helper.make_node("Gather", ["rgb", "order"], ["logits"], axis=1)],
        "colours",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor("order", TensorProto.INT64, [3], [2, 1, 0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_classification_through_onnx_runtime(tmp_path):
    root = image_folder(tmp_path / "cls")
    with zoo_eval.open_model(tiny_onnx(tmp_path / "colours.onnx"), prefer="cpu", intra_op_threads=1) as backend:
        assert ev.evaluate_classification(backend, root).accuracy == 1.0


# --- evaluate_zoo ------------------------------------------------------------------------------------


def write_zoo(root: Path, models: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in models:
        (root / name).write_bytes(b"fake")
    manifest = {
        "kind": "model-zoo",
        "name": "test-zoo",
        "operators": [
            {"name": "detect", "task": "detection", "variants": [
                {"name": "good", "model": "good.onnx", "accuracy": 0.5, "memory_mb": 100,
                 "profiles": {"cam-box": {"latency_ms": 20}}},
                {"name": "half", "model": "half.onnx", "description": "keeps me"},
                {"name": "gone", "model": "gone.onnx", "accuracy": 0.3},
            ]},
            {"name": "embed", "task": "reid", "variants": [{"name": "onehot", "model": "onehot.onnx"}]},
            {"name": "track", "task": "tracking", "variants": [{"name": "sort"}]},
            {"name": "crop", "variants": [{"name": "builtin"}]},
        ],
    }
    (root / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return root


def test_evaluate_zoo_writes_metrics_and_accuracy(scene, tmp_path, monkeypatch):
    zoo = write_zoo(tmp_path / "zoo", ["good.onnx", "half.onnx", "onehot.onnx"])
    ids = sorted({r.id for c in open_dataset(scene).cameras() for r in c.gt()})
    backends = {"good.onnx": detector(scene), "half.onnx": detector(scene, keep=lambda i: i % 2 == 0),
                "onehot.onnx": embedder(scene, ids)}
    monkeypatch.setattr(zoo_eval, "open_model", lambda path, **_: backends[Path(path).name])
    events = []
    result = zoo_eval.evaluate_zoo(zoo, scene, max_frames=12, progress=lambda *e: events.append(e))

    status = {(v.operator, v.variant): v.status for v in result.variants}
    assert status == {("detect", "good"): "evaluated", ("detect", "half"): "evaluated",
                      ("detect", "gone"): "skipped", ("embed", "onehot"): "evaluated",
                      ("track", "sort"): "skipped", ("crop", "builtin"): "skipped"}
    assert result.written and not result.partial
    assert any("gone.onnx: model file missing" in w for w in result.warnings)
    assert all(b.closed for b in backends.values())
    assert {e[0] for e in events} == {"detect/good", "detect/half", "embed/onehot"}
    assert ("detect/good", 12, 12) in events

    saved = yaml.safe_load((zoo / "manifest.yaml").read_text())
    variants = {(o["name"], v["name"]): v for o in saved["operators"] for v in o["variants"]}
    good, half = variants[("detect", "good")], variants[("detect", "half")]
    assert good["accuracy"] == 1.0 and good["metrics"]["ap50"] == 1.0 and good["metrics"]["frames"] == 12
    assert good["profiles"] == {"cam-box": {"latency_ms": 20}} and good["memory_mb"] == 100
    assert 0 < half["accuracy"] < 1.0 and half["description"] == "keeps me"
    assert variants[("detect", "gone")]["accuracy"] == 0.3 and "metrics" not in variants[("detect", "gone")]
    assert variants[("embed", "onehot")]["accuracy"] == 1.0
    assert variants[("embed", "onehot")]["metrics"]["map"] == 1.0
    assert sorted(p.name for p in zoo.iterdir()) == ["good.onnx", "half.onnx", "manifest.yaml", "onehot.onnx"]
    from jellybean.spec.base import load_model
    from jellybean.spec.zoo import Zoo

    assert load_model(Zoo, zoo / "manifest.yaml").operator("detect").variant("good").accuracy == 1.0


def test_evaluate_zoo_a_failing_variant_does_not_stop_the_others(scene, tmp_path, monkeypatch):
    zoo = write_zoo(tmp_path / "zoo", ["good.onnx", "half.onnx"])

    def open_model(path, **_):
        if Path(path).name == "half.onnx":
            raise JellyBeanError(f"{path}: onnxruntime cannot load this model")
        return detector(scene)

    monkeypatch.setattr(zoo_eval, "open_model", open_model)
    result = zoo_eval.evaluate_zoo(zoo, scene, tasks=["detection"], max_frames=4)
    half = next(v for v in result.variants if v.variant == "half")
    assert half.status == "failed" and "cannot load this model" in half.reason
    assert result.partial and result.written
    assert [v.operator for v in result.variants] == ["detect"] * 3        # tasks= leaves the others out
    saved = yaml.safe_load((zoo / "manifest.yaml").read_text())
    assert saved["operators"][0]["variants"][0]["accuracy"] == 1.0
    assert "accuracy" not in saved["operators"][0]["variants"][1]


def test_evaluate_zoo_bad_data_fails_before_any_model_runs(tmp_path, monkeypatch):
    zoo = write_zoo(tmp_path / "zoo", ["good.onnx"])
    before = (zoo / "manifest.yaml").read_text()
    monkeypatch.setattr(zoo_eval, "open_model", lambda path, **_: pytest.fail("a model was opened"))
    (tmp_path / "frames").mkdir()
    with pytest.raises(JellyBeanError, match="no train, validation or test directory") as exc:
        zoo_eval.evaluate_zoo(zoo, tmp_path / "frames", tasks=["detection"])
    assert str(tmp_path / "frames") in str(exc.value)
    assert (zoo / "manifest.yaml").read_text() == before
    with pytest.raises(JellyBeanError, match="no evaluator for task 'segmentation'"):
        zoo_eval.evaluate_zoo(zoo, tmp_path / "frames", tasks=["segmentation"])
    with pytest.raises(JellyBeanError, match="no manifest.yaml here"):
        zoo_eval.evaluate_zoo(tmp_path / "frames", tmp_path / "frames")
    with pytest.raises(JellyBeanError, match="nothing to evaluate"):
        zoo_eval.evaluate_zoo(zoo, tmp_path / "frames", tasks=["classification"])


def test_evaluate_zoo_floors_a_zero_accuracy(scene, tmp_path, monkeypatch):
    zoo = write_zoo(tmp_path / "zoo", ["good.onnx"])
    monkeypatch.setattr(zoo_eval, "open_model", lambda path, **_: detector(scene, keep=lambda i: False))
    result = zoo_eval.evaluate_zoo(zoo / "manifest.yaml", scene, tasks=["detection"], max_frames=2)
    assert any("headline accuracy is 0" in w for w in result.warnings)
    saved = yaml.safe_load((zoo / "manifest.yaml").read_text())
    assert saved["operators"][0]["variants"][0]["accuracy"] == zoo_eval.MIN_ACCURACY


def test_rich_progress_gets_one_bar_per_variant():
    from rich.progress import Progress

    with Progress(disable=True) as bar:
        update = zoo_eval.rich_progress(bar)
        update("detect/good", 3, 10)
        update("detect/good", 10, 10)
        update("embed/onehot", 1, 4)
        assert [(t.description, t.completed, t.total) for t in bar.tasks] == [("detect/good", 10, 10),
                                                                              ("embed/onehot", 1, 4)]


def test_open_model_runs_a_real_onnx_model(tmp_path):
    """Through `jellybean.agents.backends.open_backend`: its input specs are read, batches run."""
    with zoo_eval.open_model(tiny_onnx(tmp_path / "colours.onnx"), prefer="cpu", intra_op_threads=1) as backend:
        spec, size = ev.image_input(backend, imgsz=8)
        x = np.zeros((2, 3, 8, 8), np.float32)
        x[1, 0] = 1.0                                                     # all red
        out = ev.run_model(backend, spec, x)
    np.testing.assert_allclose(out, [[0, 0, 0], [0, 0, 1]], atol=1e-6)


def test_evaluate_zoo_with_a_real_onnx_model(tmp_path):
    folder = image_folder(tmp_path / "cls")
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    tiny_onnx(zoo / "colours.onnx")
    (zoo / "manifest.yaml").write_text(yaml.safe_dump({
        "kind": "model-zoo", "name": "colours",
        "operators": [{"name": "colour", "task": "classification",
                       "variants": [{"name": "fp32", "model": "colours.onnx"}]}]}, sort_keys=False))
    result = zoo_eval.evaluate_zoo(zoo, folder, backend_options={"prefer": "cpu", "intra_op_threads": 1})
    (v,) = result.variants
    assert v.status == "evaluated" and v.accuracy == 1.0 and result.written
    assert result.as_dict()["variants"][0]["metrics"] == {"top1": 1.0, "images": 9.0, "classes": 3.0}
    assert result.as_dict()["variants"][0]["accuracy_metric"] == "top1"
    saved = yaml.safe_load((zoo / "manifest.yaml").read_text())
    assert saved["operators"][0]["variants"][0]["accuracy"] == 1.0
