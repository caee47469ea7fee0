"""YOLOv8 (Ultralytics ONNX export layout) preprocessing and decoding, in numpy only.

The layout every detector of the zoo follows, and what a user's own Ultralytics YOLOv8 export has:

    input   float32 [N, 3, H, W], RGB, 0..1; H x W is read from the model's input shape
    output  [N, 4 + nc, A]: rows 0..3 = cx, cy, w, h in input pixels, rows 4.. = per-class scores
            (sigmoid already applied, no objectness), one column per anchor

The zoo's own detectors are fed frames plainly resized to H x W; Ultralytics exports expect a
letterbox (aspect kept, grey padding of 114, centred), which `preprocess(..., letterbox=True)`
does. Either way `preprocess` returns, per image, the `Transform` it applied, and `decode_yolov8`
undoes it so that boxes come back as x1, y1, x2, y2 in the pixels of the original frame.

The agents use these at run time, so both are vectorised: one copy for a whole batch in
`preprocess`, and in `decode_yolov8` a batch-wide best-class pass, a score threshold before any box
work, and a greedy NMS that takes candidates best first in chunks, one vector IoU per kept box,
and stops at `max_det` (classes kept apart by offsetting their boxes, so one pass handles all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from jellybean.errors import JellyBeanError

PAD_VALUE = 114          # Ultralytics' letterbox grey
MAX_NMS = 30000          # candidates kept (by score) before NMS, as Ultralytics does
NMS_CHUNK = 512          # candidates NMS resolves at a time


# --- geometry ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transform:
    """How one original image was mapped into the model input: `x_in = x * sx + px`,
    `y_in = y * sy + py`; `width` x `height` is the original image's size."""

    width: int
    height: int
    sx: float
    sy: float
    px: float = 0.0
    py: float = 0.0

    def to_original(self, boxes: np.ndarray, clip: bool = True) -> np.ndarray:
        """x1, y1, x2, y2 boxes [K, 4] in input pixels -> original pixels (clipped to the image)."""
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        out = np.empty_like(b)
        out[:, 0::2] = (b[:, 0::2] - self.px) / self.sx
        out[:, 1::2] = (b[:, 1::2] - self.py) / self.sy
        if clip:
            np.clip(out[:, 0::2], 0, self.width, out=out[:, 0::2])
            np.clip(out[:, 1::2], 0, self.height, out=out[:, 1::2])
        return out

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """x1, y1, x2, y2 boxes [K, 4] in original pixels -> input pixels."""
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        out = np.empty_like(b)
        out[:, 0::2] = b[:, 0::2] * self.sx + self.px
        out[:, 1::2] = b[:, 1::2] * self.sy + self.py
        return out


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    """(height, width) from an int (square) or a (height, width) pair."""
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise JellyBeanError(f"model input size {h}x{w}: height and width must be at least 1 pixel")
    return h, w


def resize_transform(width: int, height: int, size: int | Sequence[int]) -> Transform:
    """The plain resize of a `width` x `height` image to `size` = (H, W)."""
    H, W = _size(size)
    return Transform(width, height, W / width, H / height)


def letterbox_transform(width: int, height: int, size: int | Sequence[int]) -> Transform:
    """Ultralytics' letterbox of a `width` x `height` image into `size` = (H, W): scale by
    min(H/h, W/w), round the new size, centre it with the padding split as Ultralytics splits it.
    The scales are the ones actually applied (new size / old size), so the inverse is exact."""
    H, W = _size(size)
    r = min(H / height, W / width)
    new_w, new_h = max(1, int(round(width * r))), max(1, int(round(height * r)))
    left = int(round((W - new_w) / 2 - 0.1))
    top = int(round((H - new_h) / 2 - 0.1))
    return Transform(width, height, new_w / width, new_h / height, float(left), float(top))


# --- preprocessing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """A model-ready batch and, per image, the transform that undoes its resize or letterbox."""

    images: np.ndarray                      # [N, 3, H, W] float32 RGB 0..1 (or the dtype asked for)
    transforms: tuple[Transform, ...]

    def __len__(self) -> int:
        return len(self.transforms)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, :3]
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    raise JellyBeanError(f"expected an H x W x 3 image (or grey H x W), got an array of shape {image.shape}")


def fit_image(image: np.ndarray, size: int | Sequence[int], *, letterbox: bool = False,
              pad_value: int = PAD_VALUE, out: np.ndarray | None = None) -> tuple[np.ndarray, Transform]:
    """One image resized (or letterboxed) to `size` = (H, W), channels untouched, and its transform."""
    image = _as_bgr(image)
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise JellyBeanError(f"cannot resize an empty image of shape {image.shape}")
    H, W = _size(size)
    h, w = image.shape[:2]
    if out is None:
        out = np.empty((H, W, 3), image.dtype)
    if not letterbox:
        t = resize_transform(w, h, (H, W))
        if (h, w) == (H, W):
            out[...] = image
        else:
            cv2.resize(image, (W, H), dst=out, interpolation=cv2.INTER_LINEAR)
        return out, t
    t = letterbox_transform(w, h, (H, W))
    new_w, new_h = int(round(w * t.sx)), int(round(h * t.sy))
    left, top = int(t.px), int(t.py)
    out[...] = pad_value
    inner = image if (new_h, new_w) == (h, w) else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out[top:top + new_h, left:left + new_w] = inner
    return out, t


def preprocess(images: Sequence[np.ndarray] | np.ndarray, size: int | Sequence[int], *,
               letterbox: bool = False, pad_value: int = PAD_VALUE, bgr: bool = True,
               dtype: np.dtype | type = np.float32) -> Batch:
    """Images (BGR uint8 as OpenCV decodes them, any sizes) -> one [N, 3, H, W] RGB 0..1 batch.

    `size` is the model's (H, W) (or one int for a square input); `letterbox=True` keeps the
    aspect ratio and pads as Ultralytics does; `bgr=False` when the images are already RGB."""
    if isinstance(images, np.ndarray) and images.ndim in (2, 3) and (images.ndim == 2 or images.shape[-1] in (1, 3, 4)):
        images = [images]
    H, W = _size(size)
    n = len(images)
    fitted = np.empty((n, H, W, 3), np.uint8)
    transforms = []
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.dtype != np.uint8:
            image = np.clip(image, 0, 255).astype(np.uint8)
        _, t = fit_image(image, (H, W), letterbox=letterbox, pad_value=pad_value, out=fitted[i])
        transforms.append(t)
    chans = fitted[..., ::-1] if bgr else fitted
    batch = np.array(chans.transpose(0, 3, 1, 2), dtype=np.float32, order="C")
    batch *= np.float32(1 / 255)
    if np.dtype(dtype) != np.float32:
        batch = batch.astype(dtype)
    return Batch(batch, tuple(transforms))


# --- boxes and NMS -------------------------------------------------------------------------------


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """cx, cy, w, h [K, 4] -> x1, y1, x2, y2 [K, 4]."""
    b = np.asarray(boxes, np.float32)
    half = b[:, 2:4] * 0.5
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU [len(a), len(b)] of x1, y1, x2, y2 boxes (0 where both are empty)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.6, classes: np.ndarray | None = None,
        max_det: int | None = None, chunk: int = NMS_CHUNK) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first.

    A box is dropped when its IoU with a kept, higher-scoring box (of the same class, when
    `classes` is given) is greater than `iou`. Stops after `max_det` kept boxes.

    Candidates are taken best first in chunks: a chunk is first thinned by one IoU matrix against
    the boxes kept so far, then resolved greedily with one vector IoU per kept box against the
    rest of the chunk; so each step costs O(chunk) however many candidates there are, and the
    candidates after the `max_det`-th kept box are never looked at."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores).reshape(-1)
    if len(boxes) != len(scores):
        raise JellyBeanError(f"nms: {len(boxes)} boxes but {len(scores)} scores")
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    if classes is not None:
        # move each class into its own region, so that boxes of different classes never overlap
        span = float(boxes.max() - boxes.min()) + 1.0
        boxes = boxes + np.asarray(classes).reshape(-1, 1).astype(np.float64) * span
    order = np.argsort(-scores, kind="stable")
    limit = len(order) if max_det is None else max(0, int(max_det))
    kept: list[np.ndarray] = []
    kept_boxes = np.zeros((0, 4))
    n_kept = 0
    for start in range(0, len(order), max(1, chunk)):
        if n_kept >= limit:
            break
        idx = order[start:start + chunk]
        if n_kept:
            idx = idx[box_iou(boxes[idx], kept_boxes).max(axis=1) <= iou]
        b = boxes[idx]
        x1, y1, x2, y2 = (np.ascontiguousarray(b[:, k]) for k in range(4))
        areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        take: list[int] = []
        rest = np.arange(len(idx))
        while rest.size and n_kept + len(take) < limit:
            i = rest[0]
            take.append(i)
            rest = rest[1:]
            if not rest.size:
                break
            iw = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
            ih = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
            inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
            union = areas[i] + areas[rest] - inter
            overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
            rest = rest[overlap <= iou]
        if take:
            t = np.asarray(take, np.int64)
            kept.append(idx[t])
            kept_boxes = np.concatenate([kept_boxes, b[t]])
            n_kept += len(t)
    return np.concatenate(kept) if kept else np.zeros(0, np.int64)


# --- decoding ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detections:
    """One image's detections: x1, y1, x2, y2 boxes [K, 4] (float32), scores [K] (float32) and
    class ids [K] (int64), best score first."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def decode_yolov8(output: np.ndarray, conf: float = 0.25, iou: float = 0.6, max_det: int = 300,
                  class_agnostic: bool = False, transforms: Batch | Sequence[Transform] | Transform | None = None,
                  *, multi_label: bool = False, classes: Sequence[int] | None = None,
                  max_nms: int = MAX_NMS) -> list[Detections]:
    """YOLOv8 output [N, 4 + nc, A] (or [4 + nc, A] for one image) -> one `Detections` per image.

    Each anchor is scored by its best class (`multi_label=True`: by every class above `conf`, as
    Ultralytics validates); candidates scoring more than `conf` (at most `max_nms`, best first)
    go through NMS at IoU `iou`, per class unless `class_agnostic`; at most `max_det` are kept.
    `classes` keeps only those class ids. With `transforms` (a `Batch`, one `Transform` per
    image, or one for all) boxes are mapped back to the original image and clipped to it;
    without, they stay in input pixels. NMS runs on the boxes as returned."""
    out = np.asarray(output)
    if out.ndim == 2:
        out = out[None]
    if out.ndim != 3 or out.shape[1] < 5:
        raise JellyBeanError(
            f"YOLOv8 output of shape {tuple(np.shape(output))}: expected [N, 4 + classes, anchors] "
            f"(rows cx, cy, w, h, then one score per class); is this a YOLOv8 detector export?")
    n, rows, anchors = out.shape
    if isinstance(transforms, Batch):
        transforms = transforms.transforms
    if isinstance(transforms, Transform):
        transforms = [transforms] * n
    if transforms is not None and len(transforms) != n:
        raise JellyBeanError(f"decode_yolov8: {n} images in the output but {len(transforms)} transforms")
    keep_classes = None if classes is None else np.asarray(sorted(set(int(c) for c in classes)), np.int64)

    scores_all = out[:, 4:, :]
    if not multi_label:
        best_class = scores_all.argmax(axis=1)                             # [N, A]
        best_score = np.take_along_axis(scores_all, best_class[:, None, :], axis=1)[:, 0, :]
    results: list[Detections] = []
    for i in range(n):
        if multi_label:
            cls, idx = np.nonzero(scores_all[i] > conf)
            sc = scores_all[i, cls, idx]
        else:
            idx = np.flatnonzero(best_score[i] > conf)
            cls, sc = best_class[i, idx], best_score[i, idx]
        if keep_classes is not None and idx.size:
            m = np.isin(cls, keep_classes)
            idx, cls, sc = idx[m], cls[m], sc[m]
        if idx.size == 0:
            results.append(Detections.empty())
            continue
        if idx.size > max_nms:
            top = np.argpartition(-sc, max_nms - 1)[:max_nms]
            idx, cls, sc = idx[top], cls[top], sc[top]
        boxes = xywh_to_xyxy(out[i, :4][:, idx].T)
        if transforms is not None:
            boxes = transforms[i].to_original(boxes)
        kept = nms(boxes, sc, iou, None if class_agnostic else cls, max_det)
        results.append(Detections(boxes[kept].astype(np.float32, copy=False),
                                  sc[kept].astype(np.float32, copy=False),
                                  cls[kept].astype(np.int64, copy=False)))
    return results


def encode_yolov8(per_image: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], num_classes: int,
                  anchors: int | None = None, transforms: Sequence[Transform] | None = None) -> np.ndarray:
    """The inverse of `decode_yolov8`, for tests and fakes: per image (boxes x1,y1,x2,y2 [K,4],
    scores [K], classes [K]) -> a YOLOv8 output [N, 4 + num_classes, anchors] whose first K anchors
    hold the boxes (in input pixels, via `transforms` when given) and the rest score 0."""
    k_max = max((len(s) for _, s, _ in per_image), default=0)
    a = max(k_max, 1) if anchors is None else anchors
    if a < k_max:
        raise JellyBeanError(f"encode_yolov8: {k_max} boxes do not fit in {a} anchors")
    out = np.zeros((len(per_image), 4 + num_classes, a), np.float32)
    for i, (boxes, scores, cls) in enumerate(per_image):
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        if transforms is not None:
            b = transforms[i].to_input(b)
        k = len(b)
        out[i, 0, :k] = (b[:, 0] + b[:, 2]) / 2
        out[i, 1, :k] = (b[:, 1] + b[:, 3]) / 2
        out[i, 2, :k] = b[:, 2] - b[:, 0]
        out[i, 3, :k] = b[:, 3] - b[:, 1]
        out[i, 4 + np.asarray(cls, np.int64), np.arange(k)] = np.asarray(scores, np.float32)
    return out
