"""Multi-camera tracking accuracy as the AI City Challenge (track 1, MTMC vehicle tracking) scores it,
and its submission file.

The official evaluator (`eval.py` of the challenge's evaluation kit, `compare_dataframes_mtmc`)
scores a whole scenario as ONE sequence with py-motmetrics:

1. the prediction is filtered: identities seen in only one camera are removed (the challenge counts
   only vehicles that pass at least two cameras; its gt holds only those), then repeated
   (camera, id, frame) rows are dropped, keeping the first;
2. the cameras are concatenated in order of camera number: camera k's frames are shifted by the sum,
   over the cameras before it, of max(that camera's largest gt frame, its largest predicted frame),
   so no two cameras share a frame number;
3. gt and prediction are matched frame by frame with distance 1 - IoU, pairs farther than 0.5 (IoU
   below 0.5) never match; IDF1, IDP and IDR come from motmetrics' global min-cost identity
   assignment over the whole concatenated sequence, so an identity must be kept across cameras.

`evaluate_mtmc` does exactly that (without the challenge's ROI filter: the replay scores what the
plan delivers, boxes outside the ROI included) and adds per-camera CLEAR-MOT figures (MOTA, IDF1, ID
switches, precision, recall) computed on each camera alone, without the single-camera filter.
Cameras whose gt cannot be used (missing, malformed or truncated gt; a camera replay could not
play) are skipped and named with the reason in `TrackingMetrics.cameras_skipped`.

The distance matrix is motmetrics' `boxiou` turned into `iou_matrix`'s distances here, because
motmetrics 1.4's `iou_matrix` calls `np.asfarray`, which NumPy 2 removed; the values are the same.

Submission format (one line per box, whitespace separated):
`<camera_id> <obj_id> <frame_id> <xmin> <ymin> <width> <height> <xworld> <yworld>`, camera_id the
number of `cNNN`, (xworld, yworld) the box's bottom centre projected to the ground plane through
the inverse of the camera's calibration homography (world -> image, see `cityflow.parse_homography`),
or `-1 -1` when there is no calibration. Real AI City calibrations map GPS to pixels, so the world
columns are then GPS coordinates; the synthetic scenes' are metres.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from jellybean.errors import JellyBeanError, SpecError
from jellybean.replay import cityflow



@dataclass(frozen=True)
class Prediction:
    """One box the sink delivered: camera key ("S01/c001"), 1-based frame, global id, box in pixels."""

    camera: str
    frame: int
    id: int
    left: float
    top: float
    width: float
    height: float


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CameraTracking(_Model):
    """One camera scored alone (no single-camera filter). `mota` is None without gt boxes."""

    mota: float | None
    idf1: float
    ids: int = Field(description="identity switches (motmetrics num_switches)")
    precision: float
    recall: float
    frames: int
    gt_boxes: int
    predicted_boxes: int


class TrackingMetrics(_Model):
    """AI City track-1 scores of one scenario (fractions 0..1) and what went into them."""

    scenario: str
    idf1: float
    idp: float
    idr: float
    idtp: int = 0
    idfp: int = 0
    idfn: int = 0
    iou: float = 0.5
    gt_boxes: int = 0
    predicted_boxes: int = Field(0, description="prediction boxes scored, after the filters")
    per_camera: dict[str, CameraTracking] = Field(default_factory=dict)
    cameras_evaluated: list[str] = Field(default_factory=list)
    cameras_skipped: dict[str, str] = Field(default_factory=dict, description="camera -> why")
    frame_offsets: dict[str, int] = Field(default_factory=dict, description="shift of each camera's frames")
    predictions_removed: dict[str, int] = Field(
        default_factory=dict,
        description="single_camera (the challenge rule), duplicate (camera, id, frame), "
                    "unknown_camera, skipped_camera, bad_frame (< 1)")
    gt_multi_camera_only: bool = False


# --- camera names ----------------------------------------------------------------------------------


def camera_number(camera: str) -> int:
    """The integer of a camera key: "S01/c001", "c001" -> 1."""
    m = re.fullmatch(r"c(\d+)", camera.rsplit("/", 1)[-1])
    if m is None:
        raise JellyBeanError(f"camera '{camera}': expected a CityFlow camera name like 'c001' or 'S01/c001'")
    return int(m.group(1))


def _camera_name(key: str, scenario: cityflow.Scenario) -> str | None:
    """The camera name a key refers to within `scenario` ("c001", "S01/c001", "train/S01/c001"), or
    None when the key names another scenario or split or an unknown camera."""
    parts = key.split("/")
    name = parts[-1]
    if len(parts) >= 2 and parts[-2] != scenario.name:
        return None
    if len(parts) >= 3 and parts[-3] != scenario.split:
        return None
    if len(parts) > 3 or not any(c.name == name for c in scenario.cameras):
        return None
    return name


# --- matching -------------------------------------------------------------------------------------


def _iou_distances(objs: np.ndarray, hyps: np.ndarray, max_d: float) -> np.ndarray:
    """motmetrics.distances.iou_matrix: 1 - IoU, NaN (do not pair) beyond `max_d`."""
    from motmetrics.distances import boxiou

    if objs.size == 0 or hyps.size == 0:
        return np.empty((0, 0))
    dist = 1.0 - boxiou(objs[:, None], hyps[None, :])
    return np.where(dist > max_d, np.nan, dist)


_Boxes = dict[int, list[tuple[int, tuple[float, float, float, float]]]]   # frame -> [(id, box)]


def _accumulate(gt: _Boxes, pred: _Boxes, max_d: float):
    """A MOTAccumulator over the union of frames, as motmetrics.utils.compare_to_groundtruth builds it."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=False)
    for frame in sorted(set(gt) | set(pred)):
        g, p = gt.get(frame, []), pred.get(frame, [])
        oids = [i for i, _ in g]
        hids = [i for i, _ in p]
        dists = _iou_distances(np.array([b for _, b in g], float).reshape(-1, 4),
                               np.array([b for _, b in p], float).reshape(-1, 4), max_d)
        acc.update(oids, hids, dists, frameid=frame)
    return acc


def _compute(acc, metrics: list[str]) -> dict[str, float]:
    import motmetrics as mm

    summary = mm.metrics.create().compute(acc, metrics=metrics, name="x")
    return {m: float(summary[m].iloc[0]) for m in metrics}


def _score(value: float) -> float:
    """A ratio with nothing to count (0/0) scores 0."""
    return value if math.isfinite(value) else 0.0


# --- evaluation -----------------------------------------------------------------------------------


def evaluate_mtmc(scenario: cityflow.Scenario, predictions: Iterable[Prediction], *, iou: float = 0.5,
                  cameras: list[str] | None = None, gt_multi_camera_only: bool = False,
                  frames: dict[str, set[int]] | None = None) -> TrackingMetrics:
    """IDF1 / IDP / IDR of `predictions` against the scenario's gt, as the AI City track-1 evaluator
    computes them (see the module docstring), and per-camera MOTA, IDF1, ID switches, precision and
    recall.

    `cameras` (names or keys) restricts evaluation to the cameras that were replayed; by default
    every camera that replay can play. `gt_multi_camera_only` also drops gt identities seen in one
    evaluated camera only, as the real AI City gt was annotated (synthetic scenes keep them, so a
    perfect tracker scores IDR below 1 on them without this). `frames` (camera -> frame numbers)
    scores only the frames that were replayed (`replay --seconds` plays a prefix)."""
    if not 0 < iou <= 1:
        raise JellyBeanError(f"iou: must be greater than 0 and at most 1 (got {iou})")
    prefix = f"{scenario.name}/"
    selected: set[str] | None = None
    if cameras is not None:
        selected = set()
        for key in cameras:
            name = _camera_name(key, scenario)
            if name is None:
                raise JellyBeanError(f"cameras: '{key}' is not a camera of {scenario.split}/{scenario.name}; "
                                     f"cameras: {', '.join(c.name for c in scenario.cameras) or 'none'}")
            selected.add(name)

    # --- which cameras can be scored, and their gt ---
    gt_rows: dict[str, list[cityflow.GtRow]] = {}
    skipped: dict[str, str] = {}
    for cam in scenario.cameras:
        key = prefix + cam.name
        blocking = [p.message for p in cam.problems if p.kind in cityflow.BLOCKS_REPLAY]
        if selected is not None and cam.name not in selected:
            skipped[key] = "not replayed (not among the cameras evaluated)"
        elif selected is None and blocking:
            skipped[key] = "not replayed: " + "; ".join(blocking)
        elif not cam.has_gt:
            skipped[key] = f"no ground truth: {cam.gt_path} is missing"
        else:
            try:
                gt_rows[cam.name] = cam.gt()
            except SpecError as exc:
                skipped[key] = "ground truth unusable: " + "; ".join(exc.problems)
    only: dict[str, set[int]] | None = None
    if frames is not None:
        only = {}
        for key, numbers in frames.items():
            name = _camera_name(key, scenario)
            if name is not None:
                only[name] = set(numbers)
        gt_rows = {name: [r for r in rows if r.frame in only.get(name, set())] for name, rows in gt_rows.items()}
    evaluated = [c.name for c in scenario.cameras if c.name in gt_rows]   # in camera order

    # --- the prediction: known cameras, frames from 1, then the challenge's filters ---
    removed = {"single_camera": 0, "duplicate": 0, "unknown_camera": 0, "skipped_camera": 0, "bad_frame": 0}
    preds: list[tuple[str, Prediction]] = []
    for p in predictions:
        name = _camera_name(p.camera, scenario)
        if name is None:
            removed["unknown_camera"] += 1
        elif p.frame < 1 or (only is not None and p.frame not in only.get(name, set())):
            removed["bad_frame"] += 1
        else:
            preds.append((name, p))
    cams_of: dict[int, set[str]] = defaultdict(set)
    for name, p in preds:
        cams_of[p.id].add(name)

    def dedupe(rows: list[tuple[str, Prediction]]) -> list[tuple[str, Prediction]]:
        seen: set[tuple[str, int, int]] = set()
        out = []
        for name, p in rows:
            if (name, p.id, p.frame) not in seen:
                seen.add((name, p.id, p.frame))
                out.append((name, p))
        return out

    multi = [(n, p) for n, p in preds if len(cams_of[p.id]) > 1]          # over every camera, as eval.py
    removed["single_camera"] = len(preds) - len(multi)
    kept = dedupe(multi)
    removed["duplicate"] = len(multi) - len(kept)
    multi = kept
    per_camera_preds = dedupe(preds)
    removed["skipped_camera"] = sum(1 for n, _ in multi if n not in gt_rows)

    if gt_multi_camera_only:
        gt_cams: dict[int, set[str]] = defaultdict(set)
        for name, rows in gt_rows.items():
            for r in rows:
                gt_cams[r.id].add(name)
        gt_rows = {name: [r for r in rows if len(gt_cams[r.id]) > 1] for name, rows in gt_rows.items()}

    def by_camera(rows: list[tuple[str, Prediction]]) -> dict[str, list[Prediction]]:
        out: dict[str, list[Prediction]] = defaultdict(list)
        for name, p in rows:
            if name in gt_rows:
                out[name].append(p)
        return out

    scored, alone = by_camera(multi), by_camera(per_camera_preds)
    max_d = 1.0 - iou

    # --- one sequence: camera k's frames shifted past every earlier camera's last frame ---
    gt_all: _Boxes = defaultdict(list)
    pred_all: _Boxes = defaultdict(list)
    offsets: dict[str, int] = {}
    offset = 0
    for name in evaluated:
        offsets[prefix + name] = offset
        for r in gt_rows[name]:
            gt_all[r.frame + offset].append((r.id, (r.left, r.top, r.width, r.height)))
        for p in scored[name]:
            pred_all[p.frame + offset].append((p.id, (p.left, p.top, p.width, p.height)))
        offset += max([r.frame for r in gt_rows[name]] + [p.frame for p in scored[name]] + [0])

    overall = {"idf1": 0.0, "idp": 0.0, "idr": 0.0, "idtp": 0.0, "idfp": 0.0, "idfn": 0.0}
    if gt_all or pred_all:
        overall = _compute(_accumulate(gt_all, pred_all, max_d), list(overall))

    # --- each camera alone ---
    per_camera: dict[str, CameraTracking] = {}
    for name in evaluated:
        cam = scenario.camera(name)
        gt_c: _Boxes = defaultdict(list)
        pred_c: _Boxes = defaultdict(list)
        for r in gt_rows[name]:
            gt_c[r.frame].append((r.id, (r.left, r.top, r.width, r.height)))
        for p in alone[name]:
            pred_c[p.frame].append((p.id, (p.left, p.top, p.width, p.height)))
        frames = cam.frame_count or max(list(gt_c) + list(pred_c) + [0])
        m = {"mota": math.nan, "idf1": 0.0, "num_switches": 0.0, "precision": 0.0, "recall": 0.0}
        if gt_c or pred_c:
            m = _compute(_accumulate(gt_c, pred_c, max_d), list(m))
        n_gt = sum(len(v) for v in gt_c.values())
        per_camera[prefix + name] = CameraTracking(
            mota=m["mota"] if n_gt and math.isfinite(m["mota"]) else None,
            idf1=_score(m["idf1"]), ids=int(m["num_switches"]), precision=_score(m["precision"]),
            recall=_score(m["recall"]), frames=int(frames), gt_boxes=n_gt,
            predicted_boxes=sum(len(v) for v in pred_c.values()))

    return TrackingMetrics(
        scenario=f"{scenario.split}/{scenario.name}",
        idf1=_score(overall["idf1"]), idp=_score(overall["idp"]), idr=_score(overall["idr"]),
        idtp=int(overall["idtp"]), idfp=int(overall["idfp"]), idfn=int(overall["idfn"]), iou=iou,
        gt_boxes=sum(len(v) for v in gt_all.values()), predicted_boxes=sum(len(v) for v in pred_all.values()),
        per_camera=per_camera, cameras_evaluated=[prefix + n for n in evaluated], cameras_skipped=skipped,
        frame_offsets=offsets, predictions_removed=removed, gt_multi_camera_only=gt_multi_camera_only)


# --- submission file ------------------------------------------------------------------------------



def _num(value: float) -> str:
    return format(float(value), ".10g")


def ground_point(h: np.ndarray, u: float, v: float) -> tuple[float, float] | None:
    """Image point (u, v) on the ground plane through the inverse of world -> image `h`, or None when
    the point maps to infinity (on or above the horizon)."""
    x, y, w = np.linalg.solve(h, np.array([u, v, 1.0]))
    if abs(w) < 1e-12:
        return None
    return float(x / w), float(y / w)


def write_submission(path: Path | str, predictions: Iterable[Prediction], *,
                     scenario: cityflow.Scenario | None = None, homographies: bool = True) -> Path:
    """Write the AI City track-1 submission: `<camera_id> <obj_id> <frame_id> <xmin> <ymin> <width>
    <height> <xworld> <yworld>` per box, sorted by camera, frame and id. World coordinates come from
    `scenario`'s calibrations (when given and `homographies`), else -1 -1."""
    path = Path(path)
    inverse: dict[str, np.ndarray | None] = {}

    def homography(camera: str) -> np.ndarray | None:
        if camera not in inverse:
            inverse[camera] = None
            name = _camera_name(camera, scenario) if scenario is not None and homographies else None
            if name is not None:
                try:
                    h = scenario.camera(name).homography()
                    if abs(np.linalg.det(h)) > 1e-12:
                        inverse[camera] = h
                except SpecError:
                    pass
        return inverse[camera]

    rows = sorted(((camera_number(p.camera), p.frame, p.id, p) for p in predictions), key=lambda r: r[:3])
    lines = []
    for cam_id, frame, ident, p in rows:
        world = None
        h = homography(p.camera)
        if h is not None:
            world = ground_point(h, p.left + p.width / 2, p.top + p.height)
        xw, yw = (_num(world[0]), _num(world[1])) if world is not None else ("-1", "-1")
        lines.append(f"{cam_id} {ident} {frame} {_num(p.left)} {_num(p.top)} {_num(p.width)} {_num(p.height)} "
                     f"{xw} {yw}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return path


SUBMISSION_FIELDS = "camera_id obj_id frame_id xmin ymin width height xworld yworld"


def read_submission(path: Path | str, *, scenario: cityflow.Scenario | str | None = None) -> list[Prediction]:
    """The boxes of a track-1 submission (fields separated by spaces, tabs or commas; the two world
    columns optional). Cameras are keyed "S01/c001" when `scenario` (or its name) is given, else
    "c001". A SpecError names the file and line of every malformed line."""
    path = Path(path)
    name = scenario.name if isinstance(scenario, cityflow.Scenario) else scenario
    prefix = f"{name}/" if name else ""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError([f"{path}: cannot be read ({exc.strerror or exc})"]) from None
    out: list[Prediction] = []
    found = cityflow.LineProblems(path)
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = [p for p in re.split(r"[\s,]+", line) if p]
        problem = None
        if len(parts) not in (7, 9):
            problem = f"expected 9 fields ({SUBMISSION_FIELDS}), got {len(parts)}: '{line}'"
        else:
            try:
                cam, ident, frame = (cityflow.parse_int(v) for v in parts[:3])
                left, top, width, height = (float(v) for v in parts[3:7])
                [float(v) for v in parts[7:]]
            except ValueError:
                problem = f"expected numbers ({SUBMISSION_FIELDS}) with integer camera, object and frame ids, " \
                          f"got '{line}'"
            else:
                if cam < 1:
                    problem = f"camera_id {cam}: camera ids are 1 or more (c001 is 1)"
                elif frame < 1:
                    problem = f"frame_id {frame}: frames are numbered from 1"
                elif not (width > 0 and height > 0):
                    problem = f"box {width:g}x{height:g}: width and height must be greater than 0"
                else:
                    out.append(Prediction(f"{prefix}c{cam:03d}", frame, ident, left, top, width, height))
        found.add(n, problem)
    if found.problems:
        raise SpecError(found.problems)
    return out
