"""Evaluators: how accurate a model variant is on labelled data, one evaluator per operator task.

An evaluator is a function `(backend, data, **options) -> EvalResult`. `backend` is anything with
`infer(dict[str, np.ndarray]) -> dict[str, np.ndarray]` and `input_specs` (an ORT backend of
`jellybean.agents.backends`, or a fake in tests); `data` is a data directory, or what the task's
loader made of it (`load_data`), so that a zoo's variants share one validated, sampled view of the
data. The result carries the task's metrics, the one headline `accuracy` the zoo manifest
keeps, and `metric`, the name of the metric that headline is (one of the metrics' keys):

    detection        ap50: COCO AP@0.5 on CityFlow-layout frames (DIR/<split>/S0X/cNNN/vdo.avi + gt/gt.txt)
    reid             rank1: cross-camera rank-1 on crops cut from the same data's gt boxes
    classification   top1: top-1 on an ImageFolder directory (DIR/<class name>/*.jpg|png, classes sorted)

Metric definitions.

Detection. Frames: of every camera with a video and gt, frames 1, 1 + every, ... (at most
`max_frames` over all cameras, split in proportion and spread evenly); a frame without gt rows
has no vehicles (so, on the real AI City data, which labels only vehicles seen by two or more
cameras, detections of the others count as false positives). Predictions come from
`decode_yolov8` at a low threshold (conf 0.001, NMS IoU 0.6, 300 per frame). CityFlow gt has
one class, vehicle, so every predicted class (or those picked by `classes=`, e.g. the vehicle ids
of a COCO model) counts as a vehicle and NMS is class-agnostic.
AP is COCO's, computed by the COCO API itself (pycocotools `COCOeval`, iouType "bbox", default
parameters; the ground truth and the detections are built in memory, boxes in frame pixels): in
each frame the 100 highest-scoring detections are matched, highest score first, to the unmatched
gt box with the highest IoU >= t; AP at t is the mean of the interpolated precision (made
monotone from the right) at the 101 recall points 0, 0.01, ..., 1 (0 for a recall never reached).
`ap50_95` (COCO's "AP") is the mean over t = 0.50, 0.55, ..., 0.95, `ap50` (the headline) and
`ap75` are at one threshold, `ar100` is COCO's AR@100; all are means over the classes with gt.
`precision` and `recall` are at t = 0.5 among the detections scoring >= 0.25, from COCOeval's
matching. A prediction with a non-finite or inverted box or a non-finite score is an error.

Re-ID (the AI City / VeRi protocol). From every (identity, camera) track of the gt in the frames
selected as for detection, `gallery_per_track` boxes spread over the track are the gallery; for every identity seen by two or more cameras, one of
its cameras (picked at random with `seed`) gives `queries_per_id` query boxes. Boxes narrower or
lower than `min_side` pixels are not used. Each query is ranked against the gallery boxes of the
other cameras only (same-camera matches are excluded), by cosine similarity of L2-normalised
embeddings. `rank1` (headline) / `rank5` / `rank10`: the share of queries whose first true match
is within the first k; `map`: mean over queries of the average precision of that ranking
(precision at the rank of each true match, averaged over the matches).

Classification. `top1` (headline): the share of images whose highest output (logit or
probability) is their class, classes numbered by their sorted directory names; `top5` when the
model has 5 or more outputs.

Bad data. A directory that is not the expected layout, or that has nothing labelled to evaluate,
raises a JellyBeanError naming it and what is expected. A camera whose video is missing or
undecodable, or whose gt is malformed (e.g. a truncated line), is skipped with a warning, and a
video that ends before its gt does is evaluated up to where it ends, with a warning; such results
are marked `partial`.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from jellybean.errors import JellyBeanError, SpecError
from jellybean.zoo.yolo import Detections, decode_yolov8, preprocess

Progress = Callable[[int, int], None]          # (done, total), after every batch

REPORT_CONF = 0.25
DEFAULT_BATCH = 8
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
BLOCKS_EVAL = frozenset({"video", "gt", "layout"})


@dataclass(frozen=True)
class EvalResult:
    """What an evaluator measured: the headline `accuracy` (the metric named `metric`), every
    metric, and what went wrong (`warnings`; `partial` when part of the data could not be used)."""

    task: str
    accuracy: float
    metrics: dict[str, float]
    warnings: tuple[str, ...] = ()
    partial: bool = False
    metric: str = ""            # the key in `metrics` that `accuracy` is, e.g. "ap50"

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "accuracy": self.accuracy, "accuracy_metric": self.metric,
                "metrics": dict(self.metrics), "warnings": list(self.warnings), "partial": self.partial}


# --- the registry --------------------------------------------------------------------------------

Evaluator = Callable[..., EvalResult]
_EVALUATORS: dict[str, Evaluator] = {}
_LOADERS: dict[str, Callable[..., Any]] = {}


def register(task: str, *, load: Callable[..., Any] | None = None) -> Callable[[Evaluator], Evaluator]:
    """Register the decorated function as the evaluator of `task`; `load(data_dir, **options)`
    validates and samples a data directory once for all the variants evaluated on it."""

    def decorate(fn: Evaluator) -> Evaluator:
        _EVALUATORS[task] = fn
        if load is not None:
            _LOADERS[task] = load
        return fn

    return decorate


def known_tasks() -> list[str]:
    return sorted(_EVALUATORS)


def has_evaluator(task: str) -> bool:
    return task in _EVALUATORS


def get_evaluator(task: str) -> Evaluator:
    try:
        return _EVALUATORS[task]
    except KeyError:
        from jellybean.spec.base import did_you_mean

        raise JellyBeanError(f"no evaluator for task '{task}'{did_you_mean(task, _EVALUATORS)}; "
                             f"known tasks: {', '.join(known_tasks())}") from None


def accepted_options(fn: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of `options` that `fn` takes as keywords."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def load_data(task: str, data_dir: Path | str, **options: Any) -> Any:
    """The task's view of `data_dir` (validated and sampled), or the path when it has no loader.
    Options the loader does not take are ignored."""
    get_evaluator(task)
    loader = _LOADERS.get(task)
    if loader is None:
        return Path(data_dir)
    return loader(data_dir, **accepted_options(loader, options))


# --- talking to a backend ------------------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """A model input: its name, shape (None for a dynamic dimension) and numpy dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))

    @property
    def batch(self) -> int | None:
        """The fixed batch size, or None when the batch dimension is dynamic."""
        return self.shape[0] if self.shape else None


def _dim(d: Any) -> int | None:
    try:
        v = int(d)
    except (TypeError, ValueError):
        return None
    return v if v > 0 else None


def _dtype(d: Any) -> np.dtype:
    if d is None:
        return np.dtype(np.float32)
    text = str(d)
    if text.startswith("tensor(") and text.endswith(")"):
        text = text[7:-1]
        text = {"float": "float32", "double": "float64"}.get(text, text)
    try:
        return np.dtype(text if isinstance(d, str) else d)
    except TypeError:
        try:
            return np.dtype(text)
        except TypeError:
            return np.dtype(np.float32)


def _is_shape(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(d, (int, np.integer, str)) or d is None for d in v)


def _one_spec(name: str | None, v: Any) -> InputSpec:
    shape = dtype = None
    if hasattr(v, "shape") and not isinstance(v, np.ndarray):
        shape, name = v.shape, getattr(v, "name", None) or name
        dtype = getattr(v, "dtype", None)
        if dtype is None:
            dtype = getattr(v, "type", None)        # ORT NodeArg: .type = "tensor(float)"
    elif isinstance(v, np.ndarray):
        shape, dtype = v.shape, v.dtype
    elif isinstance(v, (list, tuple)):
        nested = [x for x in v if isinstance(x, (list, tuple))]
        if nested:                          # (dtype, shape), (name, shape), (name, shape, dtype)
            shape = nested[0]
            rest = [x for x in v if not isinstance(x, (list, tuple))]
            if name is None and rest and isinstance(rest[0], str) and not rest[0].startswith("tensor("):
                name, rest = rest[0], rest[1:]
            dtype = rest[0] if rest else None
        elif _is_shape(v):
            shape = v
    if shape is None or name is None:
        raise JellyBeanError(f"backend input spec {v!r}: cannot read a name and a shape from it")
    return InputSpec(str(name), tuple(_dim(d) for d in shape), _dtype(dtype))


def input_specs(backend: Any) -> list[InputSpec]:
    """The backend's inputs, from `input_specs` as a mapping (name -> shape, (dtype, shape) or an
    object with .shape) or as a list (objects with .name and .shape, or (name, shape) tuples)."""
    raw = getattr(backend, "input_specs", None)
    if callable(raw):
        raw = raw()
    if isinstance(raw, Mapping):
        specs = [_one_spec(str(k), v) for k, v in raw.items()]
    elif isinstance(raw, (list, tuple)):
        specs = [_one_spec(None, v) for v in raw]
    else:
        raise JellyBeanError(f"{type(backend).__name__}: has no readable `input_specs` "
                             f"(expected a mapping of input name to shape)")
    if not specs:
        raise JellyBeanError(f"{type(backend).__name__}: the model has no inputs")
    return specs


def image_input(backend: Any, imgsz: int | Sequence[int] | None = None, what: str = "model") -> tuple[InputSpec, tuple[int, int]]:
    """The image input [N, 3, H, W] and its (H, W) (from `imgsz` when the model's is dynamic)."""
    specs = input_specs(backend)
    if len(specs) != 1:
        raise JellyBeanError(f"{what}: takes {len(specs)} inputs ({', '.join(s.name for s in specs)}); "
                             f"an image model takes one, [N, 3, H, W]")
    spec = specs[0]
    if len(spec.shape) != 4 or spec.shape[1] not in (3, None):
        raise JellyBeanError(f"{what}: input '{spec.name}' has shape {_show(spec.shape)}; "
                             f"expected [N, 3, H, W] (RGB images)")
    h, w = spec.shape[2], spec.shape[3]
    if imgsz is not None:
        size = (int(imgsz), int(imgsz)) if isinstance(imgsz, (int, np.integer)) else tuple(int(v) for v in imgsz)
        if (h is not None and h != size[0]) or (w is not None and w != size[1]):
            raise JellyBeanError(f"{what}: imgsz {size[0]}x{size[1]} does not match the model's fixed "
                                 f"input {h}x{w}; leave imgsz unset")
        return spec, (size[0], size[1])
    if h is None or w is None:
        raise JellyBeanError(f"{what}: input '{spec.name}' has a dynamic size {_show(spec.shape)}; "
                             f"give the evaluator imgsz=(H, W)")
    return spec, (h, w)


def _show(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def run_model(backend: Any, spec: InputSpec, images: np.ndarray, what: str = "model") -> np.ndarray:
    """One forward pass of a batch (padded to the model's fixed batch size if it has one);
    returns the first output, one row per image."""
    n = len(images)
    feed = images.astype(spec.dtype, copy=False)
    if spec.batch is not None and spec.batch != n:
        if n > spec.batch:
            raise JellyBeanError(f"{what}: batch of {n} for a model with a fixed batch of {spec.batch}")
        pad = np.zeros((spec.batch - n,) + feed.shape[1:], feed.dtype)
        feed = np.concatenate([feed, pad])
    try:
        outputs = backend.infer({spec.name: feed})
    except JellyBeanError:
        raise
    except Exception as exc:  # a backend's own error type: name the model and the input
        raise JellyBeanError(f"{what}: inference failed on a batch of shape {list(feed.shape)} "
                             f"({type(exc).__name__}: {exc})") from exc
    values = list(outputs.values()) if isinstance(outputs, Mapping) else list(outputs)
    if not values:
        raise JellyBeanError(f"{what}: the model returned no outputs")
    out = np.asarray(values[0])
    if out.ndim == 0 or out.shape[0] < n:
        raise JellyBeanError(f"{what}: output of shape {list(out.shape)} for a batch of {len(feed)}; "
                             f"expected one row per image")
    return out[:n]


def _batch_size(spec: InputSpec, batch: int | None) -> int:
    if spec.batch is not None:
        return spec.batch
    return max(1, int(batch or DEFAULT_BATCH))


def _name(backend: Any) -> str:
    for attr in ("path", "model_path", "name"):
        v = getattr(backend, attr, None)
        if v:
            return str(v)
    return "model"


# --- detection metrics ---------------------------------------------------------------------------


def _boxes(values: Any, what: str) -> np.ndarray:
    """x1, y1, x2, y2 boxes as float64 [K, 4]; a non-finite coordinate or an inverted box is an error."""
    arr = np.asarray(values, np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise JellyBeanError(f"{what}: boxes of shape {list(arr.shape)}; expected [K, 4] (x1, y1, x2, y2)")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise JellyBeanError(f"{what}: {int(bad.sum())} box(es) with a non-finite coordinate, the first "
                             f"#{i} = {arr[i].tolist()}; boxes must be finite x1, y1, x2, y2")
    inverted = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if inverted.any():
        i = int(np.flatnonzero(inverted)[0])
        raise JellyBeanError(f"{what}: {int(inverted.sum())} box(es) with x2 < x1 or y2 < y1, the first "
                             f"#{i} = {arr[i].tolist()}; boxes must be x1, y1, x2, y2 corners")
    return arr


def _column(values: Any, n: int, dtype: Any, what: str, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype).reshape(-1)
    if len(arr) != n:
        raise JellyBeanError(f"{what}: {len(arr)} {name} for {n} boxes; expected one per box")
    return arr


class DetectionAccumulator:
    """Collects detections and ground truth image by image; `compute()` scores them with the
    COCO API's evaluator (pycocotools `COCOeval`, bbox, its default parameters), so that AP means
    what COCO means. Boxes are x1, y1, x2, y2 in any one pixel frame; classes are integer ids."""

    def __init__(self) -> None:
        self._images: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._gt: dict[int, int] = defaultdict(int)
        self._detections = 0

    def add(self, pred_boxes: np.ndarray, pred_scores: np.ndarray, pred_classes: np.ndarray,
            gt_boxes: np.ndarray, gt_classes: np.ndarray | None = None) -> None:
        """One image: its predictions (boxes [P, 4], scores [P], classes [P]) and gt (boxes [G, 4],
        classes [G], class 0 when not given). Non-finite boxes or scores raise a JellyBeanError."""
        what = f"detection metrics, image #{len(self._images)}"
        boxes = _boxes(pred_boxes, f"{what}: predictions")
        scores = _column(pred_scores, len(boxes), np.float64, what, "scores")
        if not np.isfinite(scores).all():
            raise JellyBeanError(f"{what}: {int((~np.isfinite(scores)).sum())} non-finite score(s); "
                                 f"scores must be finite numbers")
        classes = _column(pred_classes, len(boxes), np.int64, what, "classes")
        gt = _boxes(gt_boxes, f"{what}: ground truth")
        gt_cls = (np.zeros(len(gt), np.int64) if gt_classes is None
                  else _column(gt_classes, len(gt), np.int64, what, "gt classes"))
        self._images.append((boxes, scores, classes, gt, gt_cls))
        for c, k in zip(*np.unique(gt_cls, return_counts=True)):
            self._gt[int(c)] += int(k)
        self._detections += len(boxes)

    def add_detections(self, det: Detections, gt_boxes: np.ndarray, gt_classes: np.ndarray | None = None) -> None:
        self.add(det.boxes, det.scores, det.classes, gt_boxes, gt_classes)

    @property
    def images(self) -> int:
        return len(self._images)

    @property
    def gt_count(self) -> int:
        return sum(self._gt.values())

    def coco(self) -> tuple[Any, Any]:
        """The ground truth and the detections as pycocotools `COCO` objects, built in memory:
        image ids 1.., category id = class + 1, bbox [x, y, w, h], area w * h, no crowd boxes."""
        from pycocotools.coco import COCO

        classes = sorted(set(self._gt) | {int(c) for _, _, cls, _, _ in self._images for c in cls})
        annotations, results = [], []
        for image_id, (boxes, scores, cls, gt, gt_cls) in enumerate(self._images, start=1):
            for b, c in zip(gt.tolist(), gt_cls.tolist()):
                w, h = b[2] - b[0], b[3] - b[1]
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": c + 1,
                                    "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
            for b, s, c in zip(boxes.tolist(), scores.tolist(), cls.tolist()):
                results.append({"image_id": image_id, "category_id": c + 1,
                                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s})
        dataset = {"images": [{"id": i} for i in range(1, self.images + 1)],
                   "categories": [{"id": c + 1, "name": str(c)} for c in classes],
                   "annotations": annotations}
        with _quiet():                     # the COCO API prints its progress on stdout
            gt = COCO()
            gt.dataset = dataset
            gt.createIndex()
            if results:
                dt = gt.loadRes(results)
            else:                          # loadRes cannot take an empty list: an empty result set
                dt = COCO()
                dt.dataset = {**dataset, "annotations": []}
                dt.createIndex()
        return gt, dt

    def compute(self, conf: float = REPORT_CONF) -> dict[str, float]:
        """COCOeval's bbox figures (area "all", at most 100 detections an image): `ap50_95`
        (stats[0]), `ap50` (stats[1]), `ap75` (stats[2]), `ar100` (stats[8]); `precision` and
        `recall` among the detections scoring >= `conf` at IoU 0.5 with COCOeval's matching;
        `ap50_c<k>` per class when there are several; and the counts. Means over the classes
        with gt. No gt box at all: AP is undefined, a JellyBeanError."""
        from pycocotools.cocoeval import COCOeval

        if self.gt_count == 0:
            raise JellyBeanError(f"detection metrics: none of the {self.images} image(s) has a ground-truth box; "
                                 f"AP is undefined without ground truth")
        gt, dt = self.coco()
        coco_eval = COCOeval(gt, dt, "bbox")
        with _quiet():
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        stats = coco_eval.stats
        metrics: dict[str, float] = {"ap50": float(stats[1]), "ap50_95": float(stats[0]),
                                     "ap75": float(stats[2]), "ar100": float(stats[8])}
        metrics.update(_precision_recall(coco_eval, conf))
        if len(self._gt) > 1:
            params = coco_eval.params
            t50 = int(np.flatnonzero(np.isclose(params.iouThrs, 0.5))[0])
            precision = coco_eval.eval["precision"][t50, :, :, 0, -1]      # [R, K], area all, 100 dets
            for k, cat in enumerate(params.catIds):
                if cat - 1 in self._gt:
                    metrics[f"ap50_c{cat - 1}"] = float(precision[:, k].mean())
        metrics.update({"images": float(self.images), "gt_boxes": float(self.gt_count),
                        "detections": float(sum(int((s >= conf).sum()) for _, s, _, _, _ in self._images))})
        return metrics


def _quiet() -> contextlib.redirect_stdout:
    """Keeps the COCO API's progress prints out of our stdout (where `--json` output goes)."""
    return contextlib.redirect_stdout(io.StringIO())


def _precision_recall(coco_eval: Any, conf: float) -> dict[str, float]:
    """Precision and recall at IoU 0.5 among the detections scoring >= `conf`, from COCOeval's own
    per-image matching (area "all", its largest maxDets), mean over the classes with gt."""
    params = coco_eval.params
    t50 = int(np.flatnonzero(np.isclose(params.iouThrs, 0.5))[0])
    n_images = len(params.imgIds)
    precisions, recalls = [], []
    for k in range(len(params.catIds)):
        tp = fp = npos = 0
        for e in coco_eval.evalImgs[k * len(params.areaRng) * n_images:][:n_images]:   # area index 0: "all"
            if e is None:
                continue
            npos += int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
            keep = (np.asarray(e["dtScores"], np.float64) >= conf) & ~np.asarray(e["dtIgnore"][t50], bool)
            matched = np.asarray(e["dtMatches"][t50]) > 0
            tp += int((keep & matched).sum())
            fp += int((keep & ~matched).sum())
        if npos == 0:
            continue
        precisions.append(tp / (tp + fp) if tp + fp else 0.0)
        recalls.append(tp / npos)
    return {"precision": float(np.mean(precisions)) if precisions else 0.0,
            "recall": float(np.mean(recalls)) if recalls else 0.0}


# --- CityFlow data -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CameraFrames:
    """The frames of one camera to evaluate and their gt: frame -> (ids [K], boxes x1,y1,x2,y2 [K, 4])."""

    camera: Any                                  # jellybean.replay.cityflow.Camera
    frames: tuple[int, ...]
    gt: Mapping[int, tuple[np.ndarray, np.ndarray]]

    @property
    def key(self) -> str:
        return self.camera.key

    def boxes(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        return self.gt.get(frame, (np.zeros(0, np.int64), np.zeros((0, 4), np.float64)))


@dataclass(frozen=True, eq=False)
class CityFlowData:
    """Validated, sampled CityFlow frames with gt, shared by the detection and re-ID evaluators."""

    root: Path
    cameras: tuple[CameraFrames, ...]
    warnings: tuple[str, ...] = ()
    partial: bool = False

    @property
    def frames(self) -> int:
        return sum(len(c.frames) for c in self.cameras)

    @property
    def gt_boxes(self) -> int:
        return sum(len(c.boxes(k)[0]) for c in self.cameras for k in c.frames)


EXPECTED_CITYFLOW = "the CityFlow layout DIR/<split>/S0X/cNNN/vdo.avi with gt/gt.txt"


def _spread(items: Sequence[int], n: int) -> list[int]:
    """`n` items evenly spread over `items` (all of them when n >= len)."""
    if n >= len(items):
        return list(items)
    if n <= 0:
        return []
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, n)).astype(int))
    return [items[i] for i in idx]


def _quotas(sizes: Sequence[int], total: int) -> list[int]:
    """Split `total` over groups of `sizes` in proportion (largest remainders), at most each size."""
    whole = sum(sizes)
    if whole <= total:
        return list(sizes)
    raw = [total * s / whole for s in sizes]
    out = [int(math.floor(r)) for r in raw]
    for i in sorted(range(len(sizes)), key=lambda i: raw[i] - out[i], reverse=True)[: total - sum(out)]:
        out[i] += 1
    return [min(o, s) for o, s in zip(out, sizes)]


def load_cityflow(data_dir: Path | str, *, every: int = 1, max_frames: int | None = None) -> CityFlowData:
    """The cameras of a CityFlow-layout directory that can be evaluated and, of each, every
    `every`-th frame (frames 1, 1 + every, ...), at most `max_frames` over all cameras (split in
    proportion, spread evenly). Broken cameras are skipped with a warning."""
    from jellybean.replay.cityflow import open_dataset

    root = Path(data_dir)
    if every < 1:
        raise JellyBeanError(f"every: must be 1 or more (got {every})")
    if max_frames is not None and max_frames < 1:
        raise JellyBeanError(f"max_frames: must be 1 or more (got {max_frames})")
    try:
        ds = open_dataset(root)
    except SpecError as exc:
        raise JellyBeanError(f"{root}: not a CityFlow-layout data directory ({exc}); expected {EXPECTED_CITYFLOW}") from None
    warnings: list[str] = []
    partial = False
    for sc in ds.scenarios:
        for p in sc.problems:
            if p.kind in BLOCKS_EVAL:
                warnings.append(p.message)
                partial = True
    usable = []
    for cam in ds.cameras():
        blocking = [p.message for p in cam.problems if p.kind in BLOCKS_EVAL]
        if blocking:
            warnings.append(f"{cam.key}: skipped: " + "; ".join(blocking))
            partial = True
            continue
        if not cam.has_gt:
            if cam.split != "test":
                warnings.append(f"{cam.key}: skipped: no ground truth ({cam.gt_path} is missing)")
                partial = True
            continue
        if not cam.frame_count:
            warnings.append(f"{cam.key}: skipped: its number of frames is unknown")
            partial = True
            continue
        try:
            rows = cam.gt()
        except SpecError as exc:
            warnings.append(f"{cam.key}: skipped: {exc}")
            partial = True
            continue
        usable.append((cam, rows, list(range(1, cam.frame_count + 1, every))))
    if not usable:
        problems = "".join(f"\n  {w}" for w in warnings)
        raise JellyBeanError(f"{root}: no camera with a readable video and ground truth to evaluate; "
                             f"expected {EXPECTED_CITYFLOW}" + (f"; problems:{problems}" if problems else ""))
    quotas = _quotas([len(f) for _, _, f in usable], max_frames) if max_frames else [len(f) for _, _, f in usable]
    cameras = []
    for (cam, rows, candidates), quota in zip(usable, quotas):
        frames = tuple(_spread(candidates, quota))
        wanted = set(frames)
        per_frame: dict[int, list] = defaultdict(list)
        for r in rows:
            if r.frame in wanted:
                per_frame[r.frame].append((r.id, r.left, r.top, r.left + r.width, r.top + r.height))
        gt = {k: (np.array([v[0] for v in vs], np.int64), np.array([v[1:] for v in vs], np.float64))
              for k, vs in per_frame.items()}
        if frames:
            cameras.append(CameraFrames(cam, frames, gt))
    data = CityFlowData(root, tuple(cameras), tuple(warnings), partial)
    if data.gt_boxes == 0:
        raise JellyBeanError(f"{root}: the {data.frames} frame(s) selected have no gt boxes; expected "
                             f"{EXPECTED_CITYFLOW} listing boxes as {'frame,id,left,top,width,height,1,-1,-1,-1'}")
    return data


def _as_cityflow(data: Any, every: int, max_frames: int | None) -> CityFlowData:
    return data if isinstance(data, CityFlowData) else load_cityflow(data, every=every, max_frames=max_frames)


def _camera_frames(cf: CameraFrames, wanted: Iterable[int], warnings: list[str]):
    """(frame, image) for the wanted frames of one camera, decoded in order; warns when the video
    ends early or cannot be read."""
    wanted = sorted(set(wanted))
    if not wanted:
        return
    want = set(wanted)
    last = 0
    try:
        for k, image in cf.camera.frames(wanted[0], wanted[-1]):
            last = k
            if k in want:
                yield k, image
    except SpecError as exc:
        warnings.append(f"{cf.key}: skipped: {exc}")
        return
    if last < wanted[-1]:
        missing = sum(1 for k in wanted if k > last)
        warnings.append(f"{cf.key}: video ends at frame {last} but gt goes on to frame {wanted[-1]}; "
                        f"{missing} selected frame(s) not evaluated ({cf.camera.video_path})")


# --- detection -----------------------------------------------------------------------------------


@register("detection", load=load_cityflow)
def evaluate_detection(backend: Any, data: CityFlowData | Path | str, *, every: int = 1,
                       max_frames: int | None = None, conf: float = 0.001, iou: float = 0.6,
                       max_det: int = 300, letterbox: bool = False, classes: Sequence[int] | None = None,
                       imgsz: int | Sequence[int] | None = None, batch: int | None = None,
                       progress: Progress | None = None) -> EvalResult:
    """COCO AP@0.5 (headline, `ap50`), AP@0.5:0.95, AP@0.75 and AR@100 (pycocotools' COCOeval),
    and P/R at conf 0.25, of a YOLOv8-layout detector on CityFlow frames.

    `letterbox=True` for Ultralytics exports; `classes` keeps only these predicted class ids
    (e.g. 2, 3, 5, 7 for the vehicles of a COCO model); all kept classes count as vehicles."""
    data = _as_cityflow(data, every, max_frames)
    what = _name(backend)
    spec, size = image_input(backend, imgsz, what)
    bs = _batch_size(spec, batch)
    acc = DetectionAccumulator()
    warnings = list(data.warnings)
    n_warn = len(warnings)
    total, done = data.frames, 0

    def flush(frames: list[int], images: list[np.ndarray], cf: CameraFrames) -> None:
        prepared = preprocess(images, size, letterbox=letterbox)
        out = run_model(backend, spec, prepared.images, what)
        dets = decode_yolov8(out, conf=conf, iou=iou, max_det=max_det, class_agnostic=True,
                             transforms=prepared, classes=classes)
        for k, det in zip(frames, dets):
            _, boxes = cf.boxes(k)
            acc.add(det.boxes, det.scores, np.zeros(len(det), np.int64), boxes)

    cameras = 0
    for cf in data.cameras:
        frames: list[int] = []
        images: list[np.ndarray] = []
        seen = 0
        for k, image in _camera_frames(cf, cf.frames, warnings):
            frames.append(k)
            images.append(image)
            seen += 1
            if len(frames) == bs:
                flush(frames, images, cf)
                done += len(frames)
                frames, images = [], []
                if progress:
                    progress(done, total)
        if frames:
            flush(frames, images, cf)
            done += len(frames)
            if progress:
                progress(done, total)
        cameras += seen > 0
        total -= len(cf.frames) - seen
    if acc.images == 0 or acc.gt_count == 0:
        raise JellyBeanError(f"{data.root}: no frame with gt could be decoded and evaluated"
                             + "".join(f"\n  {w}" for w in warnings[n_warn:]))
    metrics = acc.compute(REPORT_CONF)
    metrics["frames"] = metrics.pop("images")
    metrics["cameras"] = float(cameras)
    return EvalResult("detection", metrics["ap50"], metrics, tuple(warnings),
                      data.partial or len(warnings) > n_warn, metric="ap50")


# --- re-identification ---------------------------------------------------------------------------


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def reid_metrics(query: np.ndarray, query_ids: np.ndarray, query_cams: np.ndarray,
                 gallery: np.ndarray, gallery_ids: np.ndarray, gallery_cams: np.ndarray,
                 ranks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Cross-camera CMC (`rank<k>`) and `map` of query embeddings against a gallery, by cosine
    similarity of L2-normalised embeddings; gallery items from the query's camera are left out;
    queries without a true match in another camera are not counted (`queries` says how many were)."""
    q, g = _normalise(query), _normalise(gallery)
    q_ids, q_cams = np.asarray(query_ids), np.asarray(query_cams)
    g_ids, g_cams = np.asarray(gallery_ids), np.asarray(gallery_cams)
    if q.shape[1] != g.shape[1]:
        raise JellyBeanError(f"re-ID: query embeddings have {q.shape[1]} dims, gallery {g.shape[1]}")
    sim = q @ g.T
    valid = q_cams[:, None] != g_cams[None, :]
    sim = np.where(valid, sim, -np.inf)
    order = np.argsort(-sim, axis=1, kind="stable")
    match = ((q_ids[:, None] == g_ids[None, :]) & valid)
    ranked = np.take_along_axis(match, order, axis=1)
    has = ranked.any(axis=1)
    ranked = ranked[has]
    out: dict[str, float] = {}
    if len(ranked) == 0:
        out.update({f"rank{k}": 0.0 for k in ranks})
        out.update({"map": 0.0, "queries": 0.0})
        return out
    first = ranked.argmax(axis=1)
    for k in ranks:
        out[f"rank{k}"] = float(np.mean(first < k))
    hits = np.cumsum(ranked, axis=1)
    positions = np.arange(1, ranked.shape[1] + 1)
    ap = (np.where(ranked, hits / positions, 0.0).sum(axis=1)) / ranked.sum(axis=1)
    out["map"] = float(ap.mean())
    out["queries"] = float(len(ranked))
    return out


@dataclass(frozen=True)
class ReidSample:
    camera: int                 # index into ReidData.cameras
    frame: int
    id: int
    box: tuple[float, float, float, float]   # x1, y1, x2, y2


@dataclass(frozen=True, eq=False)
class ReidData:
    """Query and gallery boxes cut from a CityFlow directory's gt."""

    root: Path
    cameras: tuple[CameraFrames, ...]
    queries: tuple[ReidSample, ...]
    gallery: tuple[ReidSample, ...]
    warnings: tuple[str, ...] = ()
    partial: bool = False


def load_reid(data_dir: Path | str | CityFlowData, *, every: int = 1, max_frames: int | None = None,
              queries_per_id: int = 2, gallery_per_track: int = 4, min_side: float = 8.0,
              seed: int = 0) -> ReidData:
    """Sample query and gallery boxes (see the module docstring) from the gt of the frames
    `load_cityflow` selects."""
    data = _as_cityflow(data_dir, every, max_frames)
    tracks: dict[tuple[int, int], list[tuple[int, tuple[float, ...]]]] = defaultdict(list)
    for ci, cf in enumerate(data.cameras):
        for k in cf.frames:
            ids, boxes = cf.boxes(k)
            for ident, b in zip(ids.tolist(), boxes.tolist()):
                if b[2] - b[0] >= min_side and b[3] - b[1] >= min_side:
                    tracks[(int(ident), ci)].append((k, tuple(b)))
    cams_of: dict[int, list[int]] = defaultdict(list)
    for ident, ci in sorted(tracks):
        cams_of[ident].append(ci)
    eligible = [i for i, cs in sorted(cams_of.items()) if len(cs) >= 2]
    if not eligible:
        raise JellyBeanError(
            f"{data.root}: no vehicle id appears in two or more cameras (with boxes of at least {min_side:g} px) "
            f"in the frames selected; cross-camera re-ID needs ids shared across cameras in gt/gt.txt")
    rng = np.random.default_rng(seed)
    query_cam = {i: cams_of[i][int(rng.integers(len(cams_of[i])))] for i in eligible}
    queries, gallery = [], []
    for (ident, ci), items in sorted(tracks.items()):
        picked: set[int] = set()
        if query_cam.get(ident) == ci:
            for n in _spread(range(len(items)), queries_per_id):
                picked.add(n)
                queries.append(ReidSample(ci, items[n][0], ident, items[n][1]))
        rest = [n for n in range(len(items)) if n not in picked]
        for n in _spread(rest, gallery_per_track):
            gallery.append(ReidSample(ci, items[n][0], ident, items[n][1]))
    return ReidData(data.root, data.cameras, tuple(queries), tuple(gallery), data.warnings, data.partial)


def crop(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The pixels of x1, y1, x2, y2 `box` (rounded outwards, clipped to the image, at least 1 px)."""
    h, w = image.shape[:2]
    x1 = min(max(int(math.floor(box[0])), 0), w - 1)
    y1 = min(max(int(math.floor(box[1])), 0), h - 1)
    x2 = max(min(int(math.ceil(box[2])), w), x1 + 1)
    y2 = max(min(int(math.ceil(box[3])), h), y1 + 1)
    return image[y1:y2, x1:x2]


def embed_samples(backend: Any, data: ReidData, samples: Sequence[ReidSample], *, imgsz=None, batch=None,
                  progress: Progress | None = None, warnings: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings [S, D] of the samples' crops and a mask of the samples whose frame was decoded."""
    what = _name(backend)
    spec, size = image_input(backend, imgsz, what)
    bs = _batch_size(spec, batch or 32)
    warnings = [] if warnings is None else warnings
    by_cam: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for s, sample in enumerate(samples):
        by_cam[sample.camera][sample.frame].append(s)
    embeddings: np.ndarray | None = None
    ok = np.zeros(len(samples), bool)
    pending_idx: list[int] = []
    pending_img: list[np.ndarray] = []
    done = 0

    def flush() -> None:
        nonlocal embeddings, done
        out = run_model(backend, spec, preprocess(pending_img, size).images, what)
        out = out.reshape(len(out), -1)
        if embeddings is None:
            embeddings = np.zeros((len(samples), out.shape[1]), np.float32)
        embeddings[pending_idx] = out
        ok[pending_idx] = True
        done += len(pending_idx)
        pending_idx.clear()
        pending_img.clear()
        if progress:
            progress(done, len(samples))

    for ci in sorted(by_cam):
        frames = by_cam[ci]
        for k, image in _camera_frames(data.cameras[ci], frames, warnings):
            for s in frames[k]:
                pending_idx.append(s)
                pending_img.append(crop(image, samples[s].box))
                if len(pending_idx) == bs:
                    flush()
    if pending_idx:
        flush()
    if embeddings is None:
        embeddings = np.zeros((len(samples), 1), np.float32)
    return embeddings, ok


@register("reid", load=load_reid)
def evaluate_reid(backend: Any, data: ReidData | CityFlowData | Path | str, *, every: int = 1,
                  max_frames: int | None = None, queries_per_id: int = 2, gallery_per_track: int = 4,
                  min_side: float = 8.0, seed: int = 0, imgsz: int | Sequence[int] | None = None,
                  batch: int | None = None, progress: Progress | None = None) -> EvalResult:
    """Cross-camera rank-1 (headline), rank-5, rank-10 and mAP of a re-ID embedder ([N, D] out)."""
    if not isinstance(data, ReidData):
        data = load_reid(data, every=every, max_frames=max_frames, queries_per_id=queries_per_id,
                         gallery_per_track=gallery_per_track, min_side=min_side, seed=seed)
    warnings = list(data.warnings)
    n_warn = len(warnings)
    samples = data.queries + data.gallery
    emb, ok = embed_samples(backend, data, samples, imgsz=imgsz, batch=batch, progress=progress, warnings=warnings)
    nq = len(data.queries)
    q_ok, g_ok = ok[:nq], ok[nq:]

    def cols(items: Sequence[ReidSample], mask: np.ndarray):
        items = [s for s, m in zip(items, mask) if m]
        return np.array([s.id for s in items], np.int64), np.array([s.camera for s in items], np.int64)

    q_ids, q_cams = cols(data.queries, q_ok)
    g_ids, g_cams = cols(data.gallery, g_ok)
    metrics = reid_metrics(emb[:nq][q_ok], q_ids, q_cams, emb[nq:][g_ok], g_ids, g_cams)
    if metrics["queries"] == 0:
        raise JellyBeanError(f"{data.root}: no query could be matched across cameras"
                             + "".join(f"\n  {w}" for w in warnings[n_warn:]))
    metrics.update({"gallery": float(g_ok.sum()), "identities": float(len(set(q_ids.tolist())))})
    return EvalResult("reid", metrics["rank1"], metrics, tuple(warnings), data.partial or len(warnings) > n_warn,
                      metric="rank1")


# --- classification ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ImageFolder:
    """DIR/<class name>/<image>: classes sorted by name, numbered from 0."""

    root: Path
    classes: tuple[str, ...]
    items: tuple[tuple[Path, int], ...]
    warnings: tuple[str, ...] = ()


EXPECTED_FOLDER = "an ImageFolder directory DIR/<class name>/*.jpg|png, one folder per class"


def load_image_folder(data_dir: Path | str, *, max_frames: int | None = None) -> ImageFolder:
    """The classes and images of an ImageFolder directory; `max_frames` images at most, spread
    evenly over the sorted list."""
    root = Path(data_dir)
    if not root.is_dir():
        raise JellyBeanError(f"{root}: not a directory; expected {EXPECTED_FOLDER}")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise JellyBeanError(f"{root}: no class folders; expected {EXPECTED_FOLDER}")
    items, warnings = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            warnings.append(f"{root / name}: no images (.jpg, .jpeg, .png, .bmp)")
        items.extend((p, label) for p in files)
    if not items:
        raise JellyBeanError(f"{root}: the class folders ({', '.join(classes)}) hold no images; expected {EXPECTED_FOLDER}")
    if max_frames is not None:
        items = [items[i] for i in _spread(range(len(items)), max_frames)]
    return ImageFolder(root, classes, tuple(items), tuple(warnings))


@register("classification", load=load_image_folder)
def evaluate_classification(backend: Any, data: ImageFolder | Path | str, *, max_frames: int | None = None,
                            imgsz: int | Sequence[int] | None = None, batch: int | None = None,
                            progress: Progress | None = None) -> EvalResult:
    """Top-1 (headline) and top-5 accuracy of a classifier ([N, C] logits or probabilities)."""
    import cv2

    if not isinstance(data, ImageFolder):
        data = load_image_folder(data, max_frames=max_frames)
    what = _name(backend)
    spec, size = image_input(backend, imgsz, what)
    bs = _batch_size(spec, batch or 32)
    warnings = list(data.warnings)
    n_warn = len(warnings)
    top1 = top5 = n = 0
    num_outputs = None
    pending: list[tuple[np.ndarray, int]] = []

    def flush() -> None:
        nonlocal top1, top5, n, num_outputs
        out = run_model(backend, spec, preprocess([p[0] for p in pending], size).images, what)
        out = out.reshape(len(out), -1)
        num_outputs = out.shape[1]
        if num_outputs < len(data.classes):
            raise JellyBeanError(f"{what}: {num_outputs} outputs but {data.root} has {len(data.classes)} classes "
                                 f"({', '.join(data.classes)}); the class folders must match the model's classes")
        labels = np.array([p[1] for p in pending])
        order = np.argsort(-out, axis=1, kind="stable")
        top1 += int((order[:, 0] == labels).sum())
        top5 += int((order[:, :5] == labels[:, None]).any(axis=1).sum())
        n += len(pending)
        pending.clear()
        if progress:
            progress(n, len(data.items))

    for path, label in data.items:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            warnings.append(f"{path}: cannot be read as an image; skipped")
            continue
        pending.append((image, label))
        if len(pending) == bs:
            flush()
    if pending:
        flush()
    if n == 0:
        raise JellyBeanError(f"{data.root}: none of the images could be read; expected {EXPECTED_FOLDER}")
    metrics = {"top1": top1 / n, "images": float(n), "classes": float(len(data.classes))}
    if num_outputs is not None and num_outputs >= 5:
        metrics["top5"] = top5 / n
    return EvalResult("classification", metrics["top1"], metrics, tuple(warnings), len(warnings) > n_warn,
                      metric="top1")
