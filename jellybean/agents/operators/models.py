"""Model-backed operators: the YOLOv8-layout detector and the re-ID embedder.

Both run their ONNX model (or TensorRT engine) through `jellybean.agents.backends` and prepare
inputs exactly as the zoo's evaluators do (`jellybean.zoo.evaluators`), so that the accuracy a
variant has in `jellybean zoo eval` is the accuracy it has when an agent runs it:

- the detector plainly resizes each frame to the model's input (no letterbox, unless
  `letterbox: true` for an Ultralytics export), decodes with `decode_yolov8` (class-agnostic NMS)
  and maps boxes back to frame pixels;
- a detection's crop is the box's pixels rounded outwards and clipped (`evaluators.crop`), resized
  bilinearly to the re-ID input (aspect not kept), as the re-ID evaluator cuts crops; it travels as
  a JPEG so that a `detections` item is a few KB instead of a frame.

Params (`OperatorConfig.params`), with defaults:

    yolov8-detector   conf 0.25 (the evaluators' reporting threshold and the deploy threshold of
                      model_zoo/README.md; `zoo eval` computes AP at 0.001), iou 0.6, max_det 100,
                      letterbox false, classes null (all), imgsz null (the model's), crop_size 96,
                      crop_quality 90, stride 1 (run the model on every stride-th frame of a
                      stream only: frame numbers 1, 1+stride, ...; the others come out with no
                      boxes and `skipped: true` — a cheaper variant that reports fewer frames)
    reid-embedder     imgsz null (the model's), chunk 256 (crops per inference call)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import cv2
import numpy as np

from jellybean.agents.backends import ONNX_SUFFIXES, Backend, open_backend
from jellybean.agents.items import Item
from jellybean.agents.operators.base import Operator, OperatorConfig, register
from jellybean.errors import JellyBeanError
from jellybean.parity.coders import unit_rows
from jellybean.zoo.evaluators import crop, image_input, run_model
from jellybean.zoo.yolo import Detections, decode_yolov8, fit_image, preprocess

log = logging.getLogger("jellybean.agents")

DEFAULT_CONF = 0.25
DEFAULT_IOU = 0.6
DEFAULT_MAX_DET = 100
DEFAULT_CROP_SIZE = 96
DEFAULT_CROP_QUALITY = 90
DEFAULT_REID_CHUNK = 256


def open_model(config: OperatorConfig) -> Backend:
    """The variant's model loaded on the configured (or best available) provider."""
    if config.model is None:
        raise JellyBeanError(f"operator '{config.operator}' variant '{config.variant}': no model file; "
                             "give the variant a `model:` path in the zoo manifest")
    # Only ONNX Runtime has an intra-op thread pool to size; a TensorRT engine takes no options.
    options: dict[str, Any] = {}
    if config.model.suffix.lower() in ONNX_SUFFIXES and config.threads:
        options["intra_op_threads"] = config.threads
    return open_backend(config.model, config.provider, **options)


def decode_jpeg(blob: bytes) -> np.ndarray | None:
    """BGR image of an encoded blob, or None when OpenCV cannot decode it."""
    if not blob:
        return None
    image = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    return image if image is not None and image.size else None


def chunks(n: int, size: int | None) -> list[slice]:
    """Slices covering range(n) in runs of `size` (one run when size is None)."""
    step = n if not size else max(1, size)
    return [slice(i, min(i + step, n)) for i in range(0, n, max(step, 1))]


@dataclass
class _Frames:
    """A detector batch on its way through the stages."""

    items: list[Item]
    out: list[Item | None]
    images: list[np.ndarray]
    where: list[int]
    runs: list[tuple[Any, np.ndarray]]     # (preprocessed batch with its transforms, raw model output)


def _tombstone(item: Item, reason: str, operator: str) -> Item:
    log.warning("%s: %s frame %d dropped: %s", operator, item.stream, item.frame, reason)
    return item.tombstone(reason)


@register("yolov8-detector")
class Detector(Operator):
    """Frames -> boxes [[left, top, width, height, score], ...] in frame pixels, and one re-ID-sized
    JPEG crop per box."""

    kind = "model"
    keyed = "item"
    accepts = ("frame",)
    produces = "detections"

    def __init__(self, config: OperatorConfig) -> None:
        super().__init__(config)
        p = config.params
        self.conf = float(p.get("conf", DEFAULT_CONF))
        self.iou = float(p.get("iou", DEFAULT_IOU))
        self.max_det = int(p.get("max_det", DEFAULT_MAX_DET))
        self.letterbox = bool(p.get("letterbox", False))
        self.classes: Sequence[int] | None = p.get("classes")
        self.crop_size = _pair(p.get("crop_size", DEFAULT_CROP_SIZE))
        self.crop_quality = int(p.get("crop_quality", DEFAULT_CROP_QUALITY))
        self.stride = int(p.get("stride", 1))
        if self.stride < 1:
            raise JellyBeanError(f"{config.operator}={config.variant}: params.stride must be >= 1 (got {self.stride})")
        self.backend = open_model(config)
        self.spec, self.size = image_input(self.backend, p.get("imgsz"), str(config.model))

    def stages(self) -> list[Callable[[Any], Any]]:
        return [self._decode, self._infer, self._finish]

    def process(self, items: list[Item]) -> list[Item]:
        return self._finish(self._infer(self._decode(items)))

    def _decode(self, items: list[Item]) -> "_Frames":
        """Decode the frames a detector looks at."""
        out: list[Item | None] = [None] * len(items)
        images: list[np.ndarray] = []
        where: list[int] = []
        for i, item in enumerate(items):
            if (item.frame - 1) % self.stride:
                # Not decoded, not inferred: that is the saving a strided variant buys.
                out[i] = item.derive("detections", meta={"boxes": [], "skipped": True})
                continue
            image = decode_jpeg(item.blobs[0]) if item.blobs else None
            if image is None:
                out[i] = _tombstone(item, "undecodable frame", self.name)
            else:
                images.append(image)
                where.append(i)
        return _Frames(items, out, images, where, [])

    def _infer(self, begun: "_Frames") -> "_Frames":
        """The model on every decoded frame, in one call unless its batch size is fixed."""
        for part in chunks(len(begun.images), self.spec.batch):
            batch = preprocess(begun.images[part], self.size, letterbox=self.letterbox)
            begun.runs.append((batch, run_model(self.backend, self.spec, batch.images, str(self.config.model))))
        return begun

    def _finish(self, begun: "_Frames") -> list[Item]:
        """Boxes from the model's output (NMS), crops, the output items."""
        results: list[Detections] = []
        for batch, raw in begun.runs:
            results.extend(decode_yolov8(raw, conf=self.conf, iou=self.iou, max_det=self.max_det,
                                         class_agnostic=True, transforms=batch, classes=self.classes))
        out = begun.out
        for i, image, det in zip(begun.where, begun.images, results):
            out[i] = self._output(begun.items[i], image, det)
        return [o for o in out if o is not None]

    def _output(self, item: Item, image: np.ndarray, det: Detections) -> Item:
        h, w = image.shape[:2]
        boxes, crops = [], []
        for (x1, y1, x2, y2), score in zip(det.boxes.tolist(), det.scores.tolist()):
            # decode_yolov8 clips to the frame, so a box can have collapsed to a line at its edge.
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            boxes.append([round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2), round(score, 4)])
            crops.append(self._crop_jpeg(image, (x1, y1, x2, y2)))
        return item.derive("detections", meta={"boxes": boxes, "size": [w, h]}, blobs=crops)

    def _crop_jpeg(self, image: np.ndarray, box: tuple[float, float, float, float]) -> bytes:
        # Resized here, not by the re-ID worker: a 96x96 JPEG is smaller than most boxes' pixels.
        fitted, _ = fit_image(crop(image, box), self.crop_size)
        ok, buf = cv2.imencode(".jpg", fitted, [cv2.IMWRITE_JPEG_QUALITY, self.crop_quality])
        if not ok:
            raise JellyBeanError(f"{self.name}: OpenCV could not JPEG-encode a crop of shape {fitted.shape}")
        return buf.tobytes()

    def close(self) -> None:
        self.backend.close()


class CropModel(Protocol):
    """An operator that runs an image model on crops (the re-ID embedder, the parity worker)."""

    config: OperatorConfig
    backend: Backend
    spec: Any           # jellybean.zoo.evaluators' model input spec
    size: tuple[int, int]
    chunk: int
    dim: int


def run_crops(op: CropModel, crops: list[np.ndarray]) -> np.ndarray:
    """The model's raw outputs, float32 [len(crops), op.dim]: every crop of a batch in as few calls
    as op.chunk (or the model's fixed batch) allows."""
    out = np.zeros((len(crops), op.dim), np.float32)
    size = op.spec.batch or op.chunk
    for part in chunks(len(crops), size):
        raw = run_model(op.backend, op.spec, preprocess(crops[part], op.size).images, str(op.config.model))
        out[part] = raw.reshape(len(raw), -1)
    return out


@register("reid-embedder")
class ReidEmbedder(Operator):
    """Detections with crops -> the same boxes and one L2-normalised float16 embedding per box."""

    kind = "model"
    keyed = "item"
    accepts = ("detections",)
    produces = "features"

    def __init__(self, config: OperatorConfig) -> None:
        super().__init__(config)
        p = config.params
        self.chunk = int(p.get("chunk", DEFAULT_REID_CHUNK))
        self.backend = open_model(config)
        self.spec, self.size = image_input(self.backend, p.get("imgsz"), str(config.model))
        self.dim = self._embedding_dim()

    def process(self, items: list[Item]) -> list[Item]:
        out: list[Item | None] = [None] * len(items)
        crops: list[np.ndarray] = []
        spans: list[tuple[int, int, int]] = []     # (item index, first crop, end crop)
        for i, item in enumerate(items):
            decoded, reason = self._crops(item)
            if reason is not None:
                out[i] = _tombstone(item, reason, self.name)
                continue
            spans.append((i, len(crops), len(crops) + len(decoded)))
            crops.extend(decoded)
        embeddings = self._embed(crops)
        for i, start, end in spans:
            item = items[i]
            meta = {"boxes": item.meta.get("boxes", []), "size": item.meta.get("size")}
            out[i] = item.derive("features", meta=meta, arrays={"embeddings": embeddings[start:end]})
        return [o for o in out if o is not None]

    @staticmethod
    def _crops(item: Item) -> tuple[list[np.ndarray], str | None]:
        """The item's decoded crops, or why it cannot be embedded."""
        boxes = item.meta.get("boxes", [])
        if len(boxes) != len(item.blobs):
            return [], f"{len(boxes)} boxes but {len(item.blobs)} crops"
        decoded: list[np.ndarray] = []
        for blob in item.blobs:
            image = decode_jpeg(blob)
            if image is None:
                return [], "undecodable crop"
            decoded.append(image)
        return decoded, None

    def _embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """Unit-norm float16 embeddings [len(crops), D]."""
        # A user's model may not normalise in the graph; cosine similarity downstream is a dot product.
        return unit_rows(run_crops(self, crops)).astype(np.float16)

    def _embedding_dim(self) -> int:
        """D from the model's declared output, or from one forward pass when it is dynamic."""
        shape = self.backend.output_specs[0].shape if self.backend.output_specs else ()
        if len(shape) == 2 and shape[1]:
            return int(shape[1])
        blank = np.zeros((1, 3) + self.size, np.float32)
        return int(run_model(self.backend, self.spec, blank, str(self.config.model)).reshape(1, -1).shape[1])

    def close(self) -> None:
        self.backend.close()


def _pair(size: Any) -> tuple[int, int]:
    """(H, W) from an int or an [H, W] pair."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)

