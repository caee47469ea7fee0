"""Single-camera trackers: SORT and ByteTrack-style association over one Kalman motion model.

Both keep one state per stream (one worker serves several cameras; the runtime delivers each
stream's items in frame order, possibly with gaps). Every track has SORT's constant-velocity Kalman
filter on (cx, cy, s, r) -- centre, area, aspect ratio -- and an exponential moving average of its
detections' unit-norm embeddings. A dropped item (a tombstone) or a gap in the frame numbers
advances a stream's clock: tracks are predicted through it and age, so a track survives a short
gap and is deleted after `max_age` frames without a detection.

Association costs are `(1 - appearance) * (1 - IoU) + appearance * (1 - cosine similarity)`,
solved with the Hungarian algorithm (`scipy.optimize.linear_sum_assignment`); a pair is allowed
only when the detection overlaps the track's predicted box by at least `min_iou`, so appearance
picks among plausible boxes but never links across the frame.

- `sort-tracker` (Bewley et al., 2016): one association of all tracks with all detections scoring
  at least `min_score`.
- `bytetrack-tracker` (Zhang et al., 2022): high-scoring detections (>= `high_score`) first, with
  all tracks; then the low-scoring ones (>= `low_score`), by IoU alone (their crops are mostly
  occluded vehicles) and with a stricter `low_min_iou`, with the tracks still unmatched that were
  seen in the previous frame. Only unmatched detections scoring >= `new_track_score` start
  tracks, and a tentative track that misses a frame is deleted. For low scores to reach it, lower
  the detector's `conf` (0.25 by default) to about `low_score`.

A box cut by the frame's edge (within `edge_margin` pixels of it) shows part of a vehicle: its
embedding starts a track's average only until the first whole view replaces it, and is left out
after that, so that the average the associator compares across cameras describes the whole vehicle.

A track is confirmed after `min_hits` consecutive matches (tracks born in a stream's first frame
at once, as ByteTrack does) and stays confirmed; SORT re-requires `min_hits` after every miss,
which would hide a vehicle for frames after each missed detection. Each output item lists the
confirmed tracks matched in that frame, with the detection's box (not the filter's).

Params and defaults:

    both                max_age 10 (frames), min_hits 2, appearance 0.25 (0 = IoU only), ema 0.9
                        (weight of the past in the embedding average), edge_margin 2 (pixels)
    sort-tracker        min_iou 0.3, min_score 0.0
    bytetrack-tracker   min_iou 0.2, high_score 0.5, low_score 0.1, new_track_score 0.6,
                        low_min_iou 0.5
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from jellybean.agents.items import Item
from jellybean.agents.operators.base import Operator, OperatorConfig, register
from jellybean.zoo.yolo import box_iou

log = logging.getLogger("jellybean.agents")

# --- SORT's Kalman filter ------------------------------------------------------------------------
# State (cx, cy, s, r, vcx, vcy, vs): position, area and aspect ratio, velocities of the first three
# (the aspect ratio is taken as constant). Noise matrices as SORT sets them.
_F = np.eye(7)
_F[0, 4] = _F[1, 5] = _F[2, 6] = 1.0
_H = np.eye(4, 7)
_R = np.diag([1.0, 1.0, 10.0, 10.0])
_Q = np.diag([1.0, 1.0, 1.0, 1.0, 0.01, 0.01, 0.0001])
_P0 = np.diag([10.0, 10.0, 10.0, 10.0, 10000.0, 10000.0, 10000.0])


def xyxy_to_z(box: np.ndarray) -> np.ndarray:
    """x1, y1, x2, y2 -> the measurement (cx, cy, area, aspect ratio w/h)."""
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array([box[0] + w / 2, box[1] + h / 2, w * h, w / max(h, 1e-6)])


def z_to_xyxy(z: np.ndarray) -> np.ndarray:
    s, r = max(float(z[2]), 1e-6), max(float(z[3]), 1e-6)
    w = np.sqrt(s * r)
    h = s / w
    return np.array([z[0] - w / 2, z[1] - h / 2, z[0] + w / 2, z[1] + h / 2])


class KalmanBox:
    """One box's constant-velocity Kalman filter, as in SORT."""

    def __init__(self, box: np.ndarray) -> None:
        self.x = np.zeros(7)
        self.x[:4] = xyxy_to_z(box)
        self.P = _P0.copy()

    def predict(self) -> None:
        # An area shrinking through zero would make the box imaginary: stop the shrinking instead.
        if self.x[2] + self.x[6] <= 0:
            self.x[6] = 0.0
        self.x = _F @ self.x
        self.P = _F @ self.P @ _F.T + _Q

    def update(self, box: np.ndarray) -> None:
        y = xyxy_to_z(box) - _H @ self.x
        S = _H @ self.P @ _H.T + _R
        K = np.linalg.solve(S, _H @ self.P).T        # P H^T S^-1 (S is symmetric)
        self.x = self.x + K @ y
        self.P = (np.eye(7) - K @ _H) @ self.P

    def box(self) -> np.ndarray:
        return z_to_xyxy(self.x)


# --- tracks, detections, per-stream state ---------------------------------------------------------


@dataclass
class Track:
    id: int
    kf: KalmanBox
    embedding: np.ndarray | None
    streak: int = 1            # consecutive frames matched
    misses: int = 0            # frames since the last match
    confirmed: bool = False
    full_view: bool = False    # the embedding comes from boxes clear of the frame's edges

    def smooth(self, embedding: np.ndarray | None, ema: float, full_view: bool) -> None:
        """Fold a unit-norm embedding into the track's moving average (kept unit-norm).

        A box cut by the frame's edge shows part of the vehicle: its embedding starts the average
        only until the first whole view replaces it, and is ignored after that."""
        if embedding is None or (self.full_view and not full_view):
            return
        if self.embedding is None or (full_view and not self.full_view):
            self.embedding = embedding.copy()
            self.full_view = full_view
            return
        mixed = ema * self.embedding + (1.0 - ema) * embedding
        norm = np.linalg.norm(mixed)
        self.embedding = mixed / norm if norm > 0 else embedding.copy()


@dataclass(frozen=True)
class FrameDetections:
    """One item's detections: x1, y1, x2, y2 boxes [K, 4], scores [K], unit-norm embeddings
    [K, D] (None when the item has none), and the boxes as the item listed them."""

    boxes: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray | None
    raw: list[list[float]]
    inside: np.ndarray          # [K] bool: the box is clear of the frame's edges

    def __len__(self) -> int:
        return len(self.scores)


def clear_of_edges(boxes: np.ndarray, size: Any, margin: float) -> np.ndarray:
    """[K] bool: x1, y1, x2, y2 boxes at least `margin` pixels inside a frame of `size` [w, h]
    (all True when the size is unknown)."""
    if not size or len(size) != 2:
        return np.ones(len(boxes), bool)
    w, h = float(size[0]), float(size[1])
    return ((boxes[:, 0] > margin) & (boxes[:, 1] > margin)
            & (boxes[:, 2] < w - margin) & (boxes[:, 3] < h - margin))


def ltwh_clear_of_edges(ltwh: np.ndarray, size: Any, margin: float) -> np.ndarray:
    """`clear_of_edges` for [K, 4] left, top, width, height boxes (as items list them)."""
    return clear_of_edges(np.concatenate([ltwh[:, :2], ltwh[:, :2] + ltwh[:, 2:]], axis=1), size, margin)


def read_detections(item: Item, margin: float = 2.0) -> FrameDetections:
    """The boxes ([l, t, w, h] or [l, t, w, h, score]) and embeddings of a features item."""
    raw = [list(map(float, b[:4])) for b in item.meta.get("boxes", [])]
    scores = np.array([float(b[4]) if len(b) > 4 else 1.0 for b in item.meta.get("boxes", [])], np.float64)
    ltwh = np.array(raw, np.float64).reshape(-1, 4)
    boxes = np.concatenate([ltwh[:, :2], ltwh[:, :2] + ltwh[:, 2:]], axis=1)
    emb = item.arrays.get("embeddings")
    embeddings = None
    if emb is not None and emb.ndim == 2 and len(emb) == len(raw) and emb.shape[1] > 0:
        e = emb.astype(np.float32)
        norm = np.linalg.norm(e, axis=1, keepdims=True)
        embeddings = np.divide(e, norm, out=np.zeros_like(e), where=norm > 0)
    elif emb is not None and len(raw):
        log.warning("%s frame %d: embeddings of shape %s for %d boxes; tracking by IoU alone",
                    item.stream, item.frame, emb.shape, len(raw))
    return FrameDetections(boxes, scores, embeddings, raw, clear_of_edges(boxes, item.meta.get("size"), margin))


@dataclass
class StreamState:
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1
    last_frame: int | None = None
    dim: int = 0               # embedding size seen on this stream (for empty outputs)


# --- association ---------------------------------------------------------------------------------

_INFEASIBLE = 1e6


def match(tracks: list[Track], det: FrameDetections, cols: np.ndarray, min_iou: float,
          appearance: float) -> tuple[list[tuple[int, int]], list[int]]:
    """Hungarian matching of `tracks` with the detections `cols` (indices into `det`).

    Returns (track index, detection index) pairs and the detection indices left unmatched. A
    pair needs IoU >= `min_iou` with the track's predicted box; its cost blends 1 - IoU with the
    cosine distance of the track's average embedding and the detection's (weight `appearance`)."""
    if not tracks or not len(cols):
        return [], list(cols)
    predicted = np.array([t.kf.box() for t in tracks])
    iou = box_iou(predicted, det.boxes[cols])
    cost = 1.0 - iou
    if appearance > 0 and det.embeddings is not None:
        cost = (1.0 - appearance) * cost + appearance * _cosine_distance(tracks, det.embeddings[cols])
    cost = np.where(iou >= min_iou, cost, _INFEASIBLE)
    rows, picked = linear_sum_assignment(cost)
    pairs = [(int(r), int(cols[c])) for r, c in zip(rows, picked) if cost[r, c] < _INFEASIBLE]
    taken = {d for _, d in pairs}
    return pairs, [int(c) for c in cols if int(c) not in taken]


def _cosine_distance(tracks: list[Track], embeddings: np.ndarray) -> np.ndarray:
    """1 - cosine similarity [tracks, detections]; 0.5 (neutral) for a track without embedding."""
    out = np.full((len(tracks), len(embeddings)), 0.5)
    for i, t in enumerate(tracks):
        if t.embedding is not None and len(t.embedding) == embeddings.shape[1]:
            out[i] = 1.0 - embeddings @ t.embedding
    return np.clip(out, 0.0, 2.0)


# --- the trackers ---------------------------------------------------------------------------------


class KalmanTracker(Operator):
    """What SORT and ByteTrack share: per-stream state, the clock, track life cycle, the output."""

    kind = "builtin"
    keyed = "stream"
    accepts = ("features", "detections")
    produces = "tracks"

    def __init__(self, config: OperatorConfig) -> None:
        super().__init__(config)
        p = config.params
        self.max_age = int(p.get("max_age", 10))
        self.min_hits = int(p.get("min_hits", 2))
        self.appearance = float(p.get("appearance", 0.25))
        self.ema = float(p.get("ema", 0.9))
        self.edge_margin = float(p.get("edge_margin", 2.0))
        self.streams: dict[str, StreamState] = {}

    def process(self, items: list[Item]) -> list[Item]:
        return [self._one(item) for item in items]

    def _one(self, item: Item) -> Item:
        state = self.streams.setdefault(item.stream, StreamState())
        if item.meta.get("skipped"):
            # A strided detector did not look at this frame: no evidence either way, so tracks
            # neither move nor miss; the next looked-at frame predicts across the gap.
            return item.derive("tracks", meta={"boxes": [], "ids": [], "size": item.meta.get("size"), "skipped": True},
                               arrays={"embeddings": np.zeros((0, state.dim or 0), np.float16)})
        first = state.last_frame is None
        self._advance(state, item.frame)
        if item.dropped:
            return item
        det = read_detections(item, self.edge_margin)
        if det.embeddings is not None:
            state.dim = det.embeddings.shape[1]
        pairs, unmatched = self._associate(state, det)
        for ti, di in pairs:
            self._update(state.tracks[ti], det, di)
        reported = [(state.tracks[ti], di) for ti, di in pairs if state.tracks[ti].confirmed]
        for di in unmatched:
            if self._may_start(det.scores[di]):
                track = self._start(state, det, di, confirmed=first)
                if track.confirmed:
                    reported.append((track, di))
        self._prune(state)
        reported.sort(key=lambda td: td[1])
        return self._output(item, state, det, reported)

    def _advance(self, state: StreamState, frame: int) -> None:
        """Predict every track through the frames since the stream's last item."""
        steps = 1 if state.last_frame is None else frame - state.last_frame
        if steps < 0:
            log.warning("%s: frame %d after frame %d; the stream must arrive in frame order",
                        self.name, frame, state.last_frame)
        for _ in range(max(steps, 0)):
            for t in state.tracks:
                t.kf.predict()
        # One miss per frame handled (a dropped frame's tombstone is handled too, a skipped one is
        # not): frames a strided detector never looked at do not age tracks.
        if steps > 0:
            for t in state.tracks:
                t.misses += 1
                if t.misses > 1:   # a handled frame went by without a match
                    t.streak = 0
        state.last_frame = frame if state.last_frame is None else max(frame, state.last_frame)
        # Only age here: a tentative track that missed this frame may still match in it.
        state.tracks = [t for t in state.tracks if t.misses <= self.max_age]

    def _update(self, track: Track, det: FrameDetections, di: int) -> None:
        track.kf.update(det.boxes[di])
        track.streak += 1          # `_advance` reset it if the track missed a frame
        track.misses = 0
        track.confirmed = track.confirmed or track.streak >= self.min_hits
        if self._learns_appearance(det.scores[di]):
            track.smooth(None if det.embeddings is None else det.embeddings[di], self.ema, bool(det.inside[di]))

    def _start(self, state: StreamState, det: FrameDetections, di: int, confirmed: bool) -> Track:
        emb = None if det.embeddings is None else det.embeddings[di].copy()
        track = Track(state.next_id, KalmanBox(det.boxes[di]), emb,
                      confirmed=confirmed or self.min_hits <= 1, full_view=emb is not None and bool(det.inside[di]))
        state.next_id += 1
        state.tracks.append(track)
        return track

    def _prune(self, state: StreamState) -> None:
        state.tracks = [t for t in state.tracks if t.misses <= self.max_age and self._keeps(t)]

    def _output(self, item: Item, state: StreamState, det: FrameDetections,
                reported: list[tuple[Track, int]]) -> Item:
        dim = state.dim
        emb = np.zeros((len(reported), dim), np.float16)
        for k, (track, _) in enumerate(reported):
            if track.embedding is not None and len(track.embedding) == dim:
                emb[k] = track.embedding
        meta: dict[str, Any] = {"boxes": [det.raw[di] for _, di in reported],
                                "ids": [t.id for t, _ in reported], "size": item.meta.get("size")}
        # Detections (not features) come with one crop per box: passed on with the tracks, for a
        # re-ID after the tracker that embeds only some of each track's crops (`sampled-reid`).
        crops = [item.blobs[di] for _, di in reported] if len(item.blobs) == len(det) else []
        return item.derive("tracks", meta=meta, arrays={"embeddings": emb}, blobs=crops)

    # What the two algorithms do differently.

    @abstractmethod
    def _associate(self, state: StreamState, det: FrameDetections) -> tuple[list[tuple[int, int]], list[int]]:
        """(track index, detection index) pairs, and the unmatched detections that may start tracks."""

    def _may_start(self, score: float) -> bool:
        return True

    def _learns_appearance(self, score: float) -> bool:
        return True

    def _keeps(self, track: Track) -> bool:
        return True

    def reset_stream(self, stream: str) -> None:
        self.streams.pop(stream, None)

    def close(self) -> None:
        self.streams.clear()


@register("sort-tracker")
class SortTracker(KalmanTracker):
    """SORT: one Hungarian association of all tracks with the detections above `min_score`."""

    def __init__(self, config: OperatorConfig) -> None:
        super().__init__(config)
        self.min_iou = float(config.params.get("min_iou", 0.3))
        self.min_score = float(config.params.get("min_score", 0.0))

    def _associate(self, state: StreamState, det: FrameDetections) -> tuple[list[tuple[int, int]], list[int]]:
        cols = np.flatnonzero(det.scores >= self.min_score)
        return match(state.tracks, det, cols, self.min_iou, self.appearance)


@register("bytetrack-tracker")
class ByteTracker(KalmanTracker):
    """ByteTrack: high-score detections with all tracks, then low-score ones with the rest."""

    def __init__(self, config: OperatorConfig) -> None:
        super().__init__(config)
        p = config.params
        self.min_iou = float(p.get("min_iou", 0.2))
        self.high_score = float(p.get("high_score", 0.5))
        self.low_score = float(p.get("low_score", 0.1))
        self.new_track_score = float(p.get("new_track_score", 0.6))
        self.low_min_iou = float(p.get("low_min_iou", 0.5))

    def _associate(self, state: StreamState, det: FrameDetections) -> tuple[list[tuple[int, int]], list[int]]:
        high = np.flatnonzero(det.scores >= self.high_score)
        low = np.flatnonzero((det.scores >= self.low_score) & (det.scores < self.high_score))
        pairs, unmatched_high = match(state.tracks, det, high, self.min_iou, self.appearance)
        used = {ti for ti, _ in pairs}
        # Second stage: only tracks that were seen in the previous frame (not lost ones), by IoU.
        rest = [ti for ti, t in enumerate(state.tracks) if ti not in used and t.misses <= 1]
        second, _ = match([state.tracks[ti] for ti in rest], det, low, self.low_min_iou, 0.0)
        pairs += [(rest[k], di) for k, di in second]
        return pairs, unmatched_high

    def _may_start(self, score: float) -> bool:
        return score >= self.new_track_score

    def _learns_appearance(self, score: float) -> bool:
        # Low-score boxes are mostly occluded vehicles: their crops show something else.
        return score >= self.high_score

    def _keeps(self, track: Track) -> bool:
        # A tentative track that misses a frame was a false positive.
        return track.confirmed or track.misses == 0
