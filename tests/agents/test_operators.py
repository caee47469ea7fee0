"""The built-in operators on the shipped models and a small synthetic scene.

Real ONNX models in ONNX Runtime on the CPU; frames come from the repo's scene writer (3 cameras,
6 s, 10 fps). Between stages, items go through the wire format, as they do between agents.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import cv2
import motmetrics as mm
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from jellybean.agents.items import Item, decode_item, encode_item
from jellybean.agents.operators import DEFAULT_RUNTIME, OperatorConfig, create, known_runtimes
from jellybean.agents.operators.models import chunks
from jellybean.agents.operators.tracking import KalmanBox
from jellybean.errors import JellyBeanError, NotSupportedError
from jellybean.replay.cityflow import open_dataset
from jellybean.replay.driver import encode_frame
from jellybean.replay.scene import SceneConfig, write_scene
from jellybean.zoo.evaluators import crop
from jellybean.zoo.yolo import box_iou, fit_image

ZOO = Path(__file__).resolve().parents[2] / "model_zoo" / "aicity"
DETECTOR = ZOO / "detector_w100.onnx"
REID = ZOO / "reid_w100.onnx"
BATCH = 8

GtBox = tuple[int, float, float, float, float]      # id, left, top, width, height


# --- fixtures and helpers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    """{"frames": {stream: [frame items in order]}, "gt": {stream: {frame: [GtBox]}},
    "cameras": {stream: Camera}}. The frame items carry no calibration (see `calibrated`)."""
    root = tmp_path_factory.mktemp("operators_scene")
    write_scene(root, SceneConfig(cameras=3, seconds=6, seed=1, width=640, height=360))
    frames: dict[str, list[Item]] = {}
    gt: dict[str, dict[int, list[GtBox]]] = {}
    cameras = {}
    for cam in open_dataset(root, strict=True).cameras():
        stream = f"{cam.scenario}/{cam.name}"
        cameras[stream] = cam
        frames[stream] = [frame_item(stream, k, cam.timestamp(k), image) for k, image in cam.frames()]
        gt[stream] = defaultdict(list)
        for r in cam.gt():
            gt[stream][r.frame].append((r.id, r.left, r.top, r.width, r.height))
    return {"frames": frames, "gt": gt, "cameras": cameras}


@pytest.fixture(scope="module")
def detector():
    with create("yolov8-detector", config("detect", DETECTOR)) as op:
        yield op


@pytest.fixture(scope="module")
def embedder():
    with create("reid-embedder", config("reid", REID)) as op:
        yield op


def config(operator: str, model: Path | None = None, **params) -> OperatorConfig:
    return OperatorConfig(operator=operator, variant=f"{operator}-test", model=model, provider="cpu",
                          threads=1, batch=BATCH, params=params)


def frame_item(stream: str, frame: int, ts: float, image: np.ndarray) -> Item:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return Item(stream=stream, frame=frame, capture_ts=ts, blobs=[buf.tobytes()],
                trace=[["edge", "source", ts, ts]])


def wire(items: list[Item]) -> list[Item]:
    """Items as the next agent receives them."""
    return [decode_item(encode_item(i)) for i in items]


def ltwh_to_xyxy(boxes) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def match_gt(gt_boxes: list[GtBox], boxes: list[list[float]], min_iou: float = 0.5) -> list[tuple[int, int]]:
    """(gt index, box index) pairs of a one-to-one matching at IoU >= min_iou."""
    if not gt_boxes or not boxes:
        return []
    iou = box_iou(ltwh_to_xyxy([g[1:] for g in gt_boxes]), ltwh_to_xyxy([b[:4] for b in boxes]))
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]


def by_time(frames: dict[str, list[Item]]) -> list[Item]:
    """All streams merged in capture order, as replay publishes them (each stream in frame order)."""
    return sorted(itertools.chain.from_iterable(frames.values()), key=lambda i: (i.capture_ts, i.stream))


def run_pipeline(camera_frames: dict[str, list[Item]], detector, embedder, tracker: str = "sort-tracker",
                 tracker_params: dict | None = None, associator_params: dict | None = None) -> dict[str, list[Item]]:
    """detect -> re-ID -> track -> associate over all cameras in capture order, `BATCH` items at a
    time, every hop through the wire format. Returns each stage's outputs by kind."""
    out: dict[str, list[Item]] = defaultdict(list)
    items = by_time(camera_frames)
    with create(tracker, config("track", **(tracker_params or {}))) as track, \
            create("mtmc-associator", config("associate", **(associator_params or {}))) as associate:
        for start in range(0, len(items), BATCH):
            batch = items[start:start + BATCH]
            for op in (detector, embedder, track, associate):
                batch = wire(op.process(wire(batch)))
                out[op.produces].extend(batch)
    return out


def calibrated(items: list[Item], cameras: dict) -> list[Item]:
    """The items with their camera's calibration and frame time in meta, as replay sends them."""
    return [replace(i, meta={**i.meta, "t": cameras[i.stream].timestamp(i.frame),
                             "calibration": cameras[i.stream].homography().tolist()}) for i in items]


def association_figures(scene: dict, identities: list[Item]) -> tuple[int, int, int, int]:
    """(camera pairs of one vehicle that share its global id, such pairs, global ids that stand for
    more than one vehicle, global ids) over the outputs of an associator; a vehicle's global id in
    a camera is the one most of its matched boxes there carry."""
    majority: dict[tuple[int, str], Counter] = defaultdict(Counter)
    for item in identities:
        ids = item.meta["ids"]
        assert len(set(ids)) == len(ids), f"{item.stream} frame {item.frame}: a global id twice: {ids}"
        gt = scene["gt"][item.stream].get(item.frame, [])
        for g, k in match_gt(gt, item.meta["boxes"]):
            majority[(gt[g][0], item.stream)][ids[k]] += 1
    global_id = {key: c.most_common(1)[0][0] for key, c in majority.items()}
    by_vehicle: dict[int, dict[str, int]] = defaultdict(dict)
    for (vehicle, stream), gid in global_id.items():
        by_vehicle[vehicle][stream] = gid
    pairs = [(cams[a], cams[b]) for cams in by_vehicle.values() for a, b in itertools.combinations(sorted(cams), 2)]
    vehicles_of: dict[int, set[int]] = defaultdict(set)
    for (vehicle, _), gid in global_id.items():
        vehicles_of[gid].add(vehicle)
    return (sum(a == b for a, b in pairs), len(pairs), sum(len(v) > 1 for v in vehicles_of.values()),
            len(vehicles_of))


def associate(items: list[Item], **params) -> list[Item]:
    """One associator over `items` in order, `BATCH` at a time, through the wire format."""
    out: list[Item] = []
    with create("mtmc-associator", config("associate", **params)) as op:
        for start in range(0, len(items), BATCH):
            out.extend(wire(op.process(wire(items[start:start + BATCH]))))
    return out


def idf1(gt: dict[int, list[GtBox]], outputs: list[Item]) -> dict[str, float]:
    """IDF1, IDP, IDR (py-motmetrics) of one stream's outputs with boxes and ids, at IoU 0.5."""
    acc = mm.MOTAccumulator(auto_id=False)
    for item in outputs:
        g = gt.get(item.frame, [])
        iou = box_iou(ltwh_to_xyxy([r[1:] for r in g]), ltwh_to_xyxy([b[:4] for b in item.meta["boxes"]]))
        # motmetrics' own iou_matrix uses np.asfarray, which numpy 2 removed: build the distances here.
        dist = np.where(iou >= 0.5, 1.0 - iou, np.nan)
        acc.update([r[0] for r in g], item.meta["ids"], dist, frameid=item.frame)
    summary = mm.metrics.create().compute(acc, metrics=["idf1", "idp", "idr"], name="stream")
    return {k: float(v) for k, v in summary.iloc[0].items()}


def gt_features(frames: list[Item], gt: dict[int, list[GtBox]], embedder, rng: np.random.Generator,
                jitter: float = 0.05, miss: float = 0.05) -> list[Item]:
    """Features items from gt boxes, as a noisy detector would give them: each box's corners moved
    by `jitter` x its size (Gaussian), `miss` of the boxes lost; crops embedded by the real model."""
    detections = []
    for item in frames:
        image = cv2.imdecode(np.frombuffer(item.blobs[0], np.uint8), cv2.IMREAD_COLOR)
        h, w = image.shape[:2]
        boxes, crops = [], []
        for _, left, top, bw, bh in gt.get(item.frame, []):
            if rng.random() < miss:
                continue
            x1, y1, x2, y2 = np.array([left, top, left + bw, top + bh]) + rng.normal(0, jitter, 4) * [bw, bh, bw, bh]
            x1, x2 = np.clip([x1, x2], 0, w)
            y1, y2 = np.clip([y1, y2], 0, h)
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            boxes.append([float(x1), float(y1), float(x2 - x1), float(y2 - y1), float(rng.uniform(0.6, 0.95))])
            fitted, _ = fit_image(crop(image, (x1, y1, x2, y2)), 96)
            crops.append(cv2.imencode(".jpg", fitted, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
        detections.append(item.derive("detections", meta={"boxes": boxes, "size": [w, h]}, blobs=crops))
    return embedder.process(detections)


# --- registry ------------------------------------------------------------------------------------------


def test_registry_creates_builtins_and_rejects_unknown_names():
    assert {"yolov8-detector", "reid-embedder", "sort-tracker", "bytetrack-tracker",
            "mtmc-associator", "sampled-reid"} <= set(known_runtimes())
    assert set(DEFAULT_RUNTIME.values()) <= set(known_runtimes())
    with create("sort-tracker", OperatorConfig(operator="track", variant="sort", params={"max_age": 3})) as op:
        assert (op.name, op.kind, op.keyed, op.accepts, op.produces) == \
            ("sort-tracker", "builtin", "stream", ("features", "detections"), "tracks")
        assert op.max_age == 3
    with create("mtmc-associator", OperatorConfig(operator="associate", variant="mtmc")) as op:
        assert (op.keyed, op.accepts, op.produces) == ("global", ("tracks",), "identities")
    with pytest.raises(NotSupportedError, match="no operator implementation named 'deepsort'"):
        create("deepsort", OperatorConfig(operator="track", variant="x"))


def test_model_operator_without_a_model_names_the_variant():
    with pytest.raises(JellyBeanError, match="variant 'detect-test': no model file"):
        create("yolov8-detector", config("detect"))


def test_chunks_cover_the_batch():
    assert chunks(5, None) == [slice(0, 5)]
    assert chunks(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert chunks(0, 4) == []


# --- detector ------------------------------------------------------------------------------------------


def test_detector_finds_the_gt_boxes(scene, detector):
    stream = "S01/c001"
    frames = scene["frames"][stream][::3]
    out = detector.process(frames)
    assert [(o.stream, o.frame, o.capture_ts, o.kind) for o in out] == \
        [(i.stream, i.frame, i.capture_ts, "detections") for i in frames]
    found = total = 0
    for item, source in zip(out, frames):
        assert item.trace == source.trace and item.dropped is None
        assert item.meta["size"] == [640, 360]
        boxes = item.meta["boxes"]
        assert len(item.blobs) == len(boxes) and all(len(b) == 5 for b in boxes)
        for left, top, w, h, score in boxes:
            assert 0 <= left and 0 <= top and left + w <= 640.01 and top + h <= 360.01 and 0.25 < score <= 1
        gt = scene["gt"][stream].get(item.frame, [])
        found += len(match_gt(gt, boxes))
        total += len(gt)
    crops = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in out[0].blobs]
    assert crops and all(c.shape == (96, 96, 3) for c in crops)
    assert total > 100
    assert found / total >= 0.9, f"recall {found / total:.3f} over {total} gt boxes"


def test_a_corrupt_frame_becomes_a_tombstone_and_the_batch_goes_on(scene, detector, caplog):
    good = scene["frames"]["S01/c002"][10:13]
    corrupt = replace(good[1], blobs=[b"\xff\xd8 not really a jpeg"])
    empty = replace(good[2], frame=99, blobs=[])
    out = detector.process([good[0], corrupt, good[2], empty])
    assert [o.frame for o in out] == [good[0].frame, corrupt.frame, good[2].frame, 99]
    assert out[1].dropped == "undecodable frame" and out[1].blobs == [] and out[1].meta == {}
    assert out[3].dropped == "undecodable frame"
    assert out[0].dropped is None and out[0].kind == "detections" and out[0].meta["boxes"]
    assert out[2].dropped is None and out[2].meta["boxes"]
    assert "undecodable frame" in caplog.text


def test_a_fixed_batch_model_runs_in_chunks(scene, detector, tmp_path):
    """The same detector exported with a fixed batch of 2 gives the same boxes on 5 frames."""
    import onnx

    model = onnx.load(str(DETECTOR))
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 2          # replaces the `batch` dim_param
    fixed = tmp_path / "detector_b2.onnx"
    onnx.save(model, str(fixed))
    frames = scene["frames"]["S01/c003"][20:25]
    with create("yolov8-detector", config("detect", fixed)) as op:
        assert op.spec.batch == 2
        chunked = op.process(frames)
    for a, b in zip(chunked, detector.process(frames)):
        np.testing.assert_allclose(np.array(a.meta["boxes"]).reshape(-1, 5), np.array(b.meta["boxes"]).reshape(-1, 5),
                                   atol=0.02)


# --- re-ID ---------------------------------------------------------------------------------------------


def test_reid_embeddings_are_unit_norm_one_per_box(scene, detector, embedder):
    dets = wire(detector.process(scene["frames"]["S01/c001"][:4]))
    empty = dets[0].derive("detections", meta={"boxes": [], "size": [640, 360]})
    bad = dets[1].derive("detections", meta=dets[1].meta, blobs=[b"junk"] * len(dets[1].blobs))
    out = embedder.process(dets + [empty, bad])
    assert len(out) == 6
    for item, source in zip(out[:4], dets):
        emb = item.arrays["embeddings"]
        assert item.kind == "features" and item.meta["boxes"] == source.meta["boxes"] and item.blobs == []
        assert emb.dtype == np.float16 and emb.shape == (len(source.meta["boxes"]), 128)
        np.testing.assert_allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert out[4].arrays["embeddings"].shape == (0, 128) and out[4].dropped is None
    assert out[5].dropped == "undecodable crop"
    # Two sightings of one vehicle are closer than two different vehicles of one frame.
    a, b = out[0].arrays["embeddings"].astype(np.float32), out[3].arrays["embeddings"].astype(np.float32)
    pairs = match_gt([(0, *box[:4]) for box in out[0].meta["boxes"]], out[3].meta["boxes"])
    same = np.mean([a[i] @ b[j] for i, j in pairs])
    different = np.mean([a[i] @ a[j] for i in range(len(a)) for j in range(len(a)) if i != j])
    assert same > different + 0.2


# --- trackers ------------------------------------------------------------------------------------------


def test_kalman_box_follows_constant_velocity():
    kf = KalmanBox(np.array([0.0, 0.0, 40.0, 20.0]))
    for k in range(1, 8):
        kf.predict()
        kf.update(np.array([5.0 * k, 0.0, 40.0 + 5.0 * k, 20.0]))
    kf.predict()
    np.testing.assert_allclose(kf.box(), [40.0, 0.0, 80.0, 20.0], atol=1.5)


@pytest.mark.parametrize("tracker", ["sort-tracker", "bytetrack-tracker"])
def test_tracker_keeps_ids_on_noisy_gt_boxes(scene, embedder, tracker):
    stream = "S01/c001"
    features = gt_features(scene["frames"][stream], scene["gt"][stream], embedder, np.random.default_rng(0))
    with create(tracker, config("track")) as op:
        tracks = wire(op.process(wire(features)))
    for item in tracks:
        assert item.kind == "tracks" and len(set(item.meta["ids"])) == len(item.meta["ids"])
        assert item.arrays["embeddings"].shape == (len(item.meta["ids"]), 128)
    scores = idf1(scene["gt"][stream], tracks)
    assert scores["idf1"] > 0.85, scores


def test_a_dropped_item_advances_the_clock_and_ids_survive_it(scene, embedder):
    streams = ["S01/c001", "S01/c002"]
    features = {s: gt_features(scene["frames"][s][:20], scene["gt"][s], embedder, np.random.default_rng(1),
                               jitter=0.02, miss=0.0) for s in streams}
    gap = 10
    features["S01/c001"][gap - 1] = features["S01/c001"][gap - 1].tombstone("late")
    with create("sort-tracker", config("track")) as op:
        out = {s: [] for s in streams}
        for a, b in zip(*(features[s] for s in streams)):        # the two streams interleaved
            for item in op.process([a, b]):
                out[item.stream].append(item)
        assert set(op.streams) == set(streams)
    dropped = out["S01/c001"][gap - 1]
    assert dropped.dropped == "late" and dropped.kind == "features"
    before, after = out["S01/c001"][gap - 2], out["S01/c001"][gap]
    gt = scene["gt"]["S01/c001"]

    def ids_by_vehicle(item: Item) -> dict[int, int]:
        rows = gt[item.frame]
        return {rows[g][0]: item.meta["ids"][k] for g, k in match_gt(rows, item.meta["boxes"])}

    ids_before, ids_after = ids_by_vehicle(before), ids_by_vehicle(after)
    common = set(ids_before) & set(ids_after)
    assert len(common) >= 3
    assert all(ids_before[v] == ids_after[v] for v in common)
    # ids are per stream: both cameras number their tracks from 1
    assert min(min(i.meta["ids"], default=99) for i in out["S01/c002"]) == 1


# --- the whole pipeline and multi-camera association ---------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(scene, detector, embedder) -> dict[str, list[Item]]:
    return run_pipeline(scene["frames"], detector, embedder)


def test_pipeline_keeps_one_output_per_frame(scene, pipeline):
    n = sum(len(f) for f in scene["frames"].values())
    for kind in ("detections", "features", "tracks", "identities"):
        assert len(pipeline[kind]) == n
        assert len({i.key for i in pipeline[kind]}) == n
    for item in pipeline["identities"]:
        assert set(item.meta) == {"boxes", "ids", "size"} and len(item.meta["boxes"]) == len(item.meta["ids"])
        assert item.trace == [["edge", "source", item.capture_ts, item.capture_ts]]


def test_tracker_on_detector_output(scene, pipeline):
    stream = "S01/c001"
    tracks = [i for i in pipeline["tracks"] if i.stream == stream]
    scores = idf1(scene["gt"][stream], tracks)
    assert scores["idf1"] > 0.85, scores


def test_association_links_cameras_and_never_doubles_an_id_in_a_frame(scene, pipeline):
    same, pairs, merged, gids = association_figures(scene, pipeline["identities"])
    assert pairs >= 10
    assert same / pairs > 0.5, f"{same} of {pairs} camera pairs of one vehicle share its global id"
    # and global ids are not one big merge: most stand for one vehicle
    assert merged <= 0.2 * gids


def test_calibration_links_more_vehicles_across_cameras_and_merges_fewer(scene, pipeline):
    """The same tracks associated twice: by appearance alone, and with each camera's calibration
    and frame times in meta, as replay sends them."""
    tracks = pipeline["tracks"]
    same0, pairs0, merged0, gids0 = association_figures(scene, associate(tracks))
    same1, pairs1, merged1, gids1 = association_figures(scene, associate(calibrated(tracks, scene["cameras"])))
    print(f"\nwithout calibration: {same0}/{pairs0} = {same0 / pairs0:.2f} of a vehicle's camera pairs share its "
          f"global id; {merged0} of {gids0} global ids merge vehicles")
    print(f"with calibration:    {same1}/{pairs1} = {same1 / pairs1:.2f} of a vehicle's camera pairs share its "
          f"global id; {merged1} of {gids1} global ids merge vehicles")
    assert pairs0 == pairs1 >= 10
    assert same1 > same0 and same1 / pairs1 >= 0.9
    assert merged1 < merged0


def test_associator_relinks_only_young_tracklets():
    """A tracklet that matches nothing gets its own id; once past `decide_frames` its id is frozen."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, 16)).astype(np.float32)
    a /= np.linalg.norm(a)
    b /= np.linalg.norm(b)

    def tracks(stream: str, frame: int, ids: list[int], embeddings: list[np.ndarray]) -> Item:
        boxes = [[100.0 + 50 * k, 100.0, 40.0, 30.0] for k in range(len(ids))]
        return Item(stream, frame, float(frame), kind="tracks", meta={"boxes": boxes, "ids": ids, "size": [640, 360]},
                    arrays={"embeddings": np.array(embeddings, np.float16).reshape(len(ids), 16)})

    with create("mtmc-associator", config("associate", decide_frames=2, threshold=0.8)) as op:
        first = op.process([tracks("S01/c001", f, [1, 2], [a, b]) for f in (1, 2, 3)])
        assert [i.meta["ids"] for i in first] == [[1, 2]] * 3            # two vehicles, two ids
        other = op.process([tracks("S01/c002", 1, [7], [b])])[0]
        assert other.meta["ids"] == [2]                                  # same look, other camera: linked
        frozen = op.process([tracks("S01/c001", 4, [1, 2], [b, b])])[0]
        assert frozen.meta["ids"] == [1, 2]                              # frozen ids, never one id twice
        dropped = Item("S01/c001", 5, 5.0, kind="tracks", dropped="lost")
        assert op.process([dropped]) == [dropped]


# --- association with calibration: synthetic boxes on a known ground plane ------------------------------

# Two cameras of one straight road (world metres, y across the road): image = 20 px per metre, A
# sees x from 0 to 32 m, B from 20 to 52 m (they share x = 20-32 m). Calibrations map world -> image.
CAM_A = np.array([[20.0, 0.0, 0.0], [0.0, -20.0, 200.0], [0.0, 0.0, 1.0]])
CAM_B = np.array([[20.0, 0.0, -400.0], [0.0, -20.0, 200.0], [0.0, 0.0, 1.0]])
LAT0, LON0 = 42.4977, -90.6744                  # a GPS origin, for calibrations in degrees


def gps_calibration(h: np.ndarray) -> np.ndarray:
    """`h` for a world in degrees (latitude, longitude) instead of metres (x east, y north)."""
    m = 111_320.0
    to_metres = np.array([[0.0, m * np.cos(np.radians(LAT0)), -LON0 * m * np.cos(np.radians(LAT0))],
                          [m, 0.0, -LAT0 * m], [0.0, 0.0, 1.0]])
    return h @ to_metres


def ground_tracks(stream: str, frame: int, h: np.ndarray, vehicles: list[tuple[int, float, float, np.ndarray]],
                  calibration: np.ndarray | None) -> Item:
    """A tracks item of vehicles (local id, x, y, embedding) 4.5 m long and 1.8 m wide, seen from
    the south (the box's bottom is the vehicle's south edge), at 10 fps."""
    boxes = []
    for _, x, y, _ in vehicles:
        corners = h @ np.array([[x - 2.25, x + 2.25], [y - 0.9, y - 0.9], [1.0, 1.0]])
        (u0, u1), (v, _) = corners[:2] / corners[2]
        boxes.append([float(u0), float(v) - 40.0, float(u1 - u0), 40.0])
    meta = {"boxes": boxes, "ids": [v[0] for v in vehicles], "size": [640, 360], "t": frame / 10}
    if calibration is not None:
        meta["calibration"] = calibration.tolist()
    return Item(stream, frame, frame / 10, kind="tracks", meta=meta,
                arrays={"embeddings": np.array([v[3] for v in vehicles], np.float32).reshape(len(vehicles), -1)})


@pytest.mark.parametrize("world", ["metres", "degrees"])
def test_with_calibration_place_keeps_lookalikes_apart_and_links_what_looks_different(world):
    """Camera A sees a car at x = 5 m while B sees its twin (the same embedding) at x = 40 m: by
    appearance one vehicle, by place two. Both cameras see a third car at x = 24 m whose
    embeddings in the two differ (cosine 0.4): by appearance two vehicles, by place one."""
    rng = np.random.default_rng(5)
    twin, a, noise = (v / np.linalg.norm(v) for v in rng.normal(size=(3, 16)))
    b = 0.4 * a + np.sqrt(1 - 0.4 ** 2) * (noise - (noise @ a) * a) / np.linalg.norm(noise - (noise @ a) * a)
    assert abs(float(a @ b) - 0.4) < 1e-6

    def run(calibrate: bool) -> tuple[list[int], list[int]]:
        cal_a = cal_b = None
        if calibrate:
            cal_a, cal_b = (gps_calibration(h) if world == "degrees" else h for h in (CAM_A, CAM_B))
        items = []
        for f in range(1, 11):
            x = 0.5 * f
            items.append(ground_tracks("S01/c001", f, CAM_A, [(1, 5 + x, -1.75, twin), (2, 24 + x, 1.75, a)], cal_a))
            items.append(ground_tracks("S01/c002", f, CAM_B, [(1, 40 + x, -1.75, twin), (2, 24 + x, 1.75, b)], cal_b))
        out = associate(items)
        return out[-2].meta["ids"], out[-1].meta["ids"]

    (twin_a, third_a), (twin_b, third_b) = run(calibrate=False)
    assert twin_a == twin_b and third_a != third_b                      # appearance alone: wrong twice
    (twin_a, third_a), (twin_b, third_b) = run(calibrate=True)
    assert twin_a != twin_b and third_a == third_b                      # with place: right twice


def test_frame_meta_from_replay_survives_every_stage(scene, detector, embedder):
    """encode_frame puts the frame's time and its camera's calibration in meta; detect, re-ID,
    track and associate carry them on."""
    cam = scene["cameras"]["S01/c001"]
    frames = [encode_frame(cam, k, image, 1000.0 + k) for k, image in cam.frames(1, 6)]
    h = cam.homography()
    for k, item in enumerate(frames, start=1):
        assert item.meta["t"] == pytest.approx(cam.timestamp(k))
        assert np.allclose(item.meta["calibration"], h) and np.shape(item.meta["calibration"]) == (3, 3)
    items = wire(frames)
    with create("sort-tracker", config("track")) as track, \
            create("mtmc-associator", config("associate")) as association:
        for op in (detector, embedder, track, association):
            items = wire(op.process(items))
            for k, item in enumerate(items, start=1):
                assert item.kind == op.produces and item.meta["t"] == pytest.approx(cam.timestamp(k))
                assert np.allclose(item.meta["calibration"], h)
    assert any(item.meta["ids"] for item in items)

