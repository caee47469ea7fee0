"""Re-ID on a growing sample of each track's crops, stopped when the association decision is settled:
Biathlon's approximation (``jellybean.approx``; Chang et al., PVLDB 2024, arXiv 2405.11191) applied to
multi-camera association.

It runs after a motion-only tracker (a `sort-tracker` fed detections, not features, carries each
reported box's crop on) and before the associator, and sees every camera (keyed "global"), since the
decision it settles compares a track with the other cameras' tracks.

The feature is a tracklet's mean embedding, an aggregate over its whole views (crops clear of the
frame's edges; the associator links on whole views only). Exactly (`approx: false`) every crop is
embedded, as the re-ID stage before a tracker does, and the mean is over all whole views (a cut view
only stands in until the first whole one). Approximately, only whole views are embedded: each of a
tracklet's first `dense` (the associator links a tracklet on its first 5 whole views, with the
mean as it is then), then at most one every `spacing` frames (neighbouring frames show the vehicle
alike, and a sample of near-copies would understate its spread), until the decision is settled:

- the decision: the other cameras' tracklet seen within `max_gap` seconds whose mean is most
  similar to this one's, if the cosine similarity is at least `threshold` (the associator's), else
  none: a classifier over the mean embedding;
- each dimension of the mean is estimated with its standard error (``approx.estimators.mean``);
  ``approx.propagate`` draws `draws` scrambled-Sobol embeddings around the mean, and
  ``approx.stopping.StopRule`` stops once the decision on at least `tau` of them is the one at the
  mean, after at least `min_samples` crops; `max_samples` caps a tracklet whose decision never
  settles (a vehicle between two look-alikes).

Within one frame the crops of the tracklets least sure of their decision go first when
`max_per_item` caps how many are embedded (unlimited by default).

Each output item is the tracks item with one embedding per box: its tracklet's mean so far
(unit-norm float16; zeros while it has none), and in meta "embedded", the crops embedded for it.

Params and defaults: approx true, tau 0.95, threshold 0.65, min_samples 3, max_samples 12, dense 5,
spacing 3 (frames), draws 256, max_gap 30 (s), edge_margin 2 (px), max_per_item 0 (no cap),
chunk 256 (crops per model call).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jellybean.agents.items import Item
from jellybean.agents.operators.base import OperatorConfig, register
from jellybean.agents.operators.models import ReidEmbedder, _tombstone, decode_jpeg
from jellybean.agents.operators.tracking import ltwh_clear_of_edges
from jellybean.approx.errors import ApproxError
from jellybean.approx.estimators import mean
from jellybean.approx.propagate import propagate
from jellybean.approx.stopping import StopRule
from jellybean.errors import JellyBeanError
from jellybean.parity.coders import unit_rows

log = logging.getLogger("jellybean.agents")
TrackletKey = tuple[str, int]
NO_MATCH = -1


@dataclass
class Sample:
    """What one tracklet's crops gave so far."""

    embeddings: list[np.ndarray] = field(default_factory=list)   # unit-norm float32, whole views
    total: np.ndarray | None = None     # their sum
    last_sampled: int | None = None     # frame of the last embedded crop
    settled: bool = False
    confidence: float = 0.0             # of the last check
    last_ts: float = float("-inf")
    mean: np.ndarray | None = None      # unit-norm, over `embeddings` (a cut view's until the first)

    def add(self, embedding: np.ndarray) -> None:
        self.embeddings.append(embedding)
        self.total = embedding.astype(np.float64) if self.total is None else self.total + embedding
        norm = float(np.linalg.norm(self.total))
        self.mean = self.total / norm if norm > 0 else None


@register("sampled-reid")
class SampledReid(ReidEmbedder):
    """Tracks with crops -> the same tracks with each tracklet's (sampled) mean embedding."""

    kind = "model"
    keyed = "global"
    accepts = ("tracks",)
    produces = "tracks"

    def __init__(self, config: OperatorConfig) -> None:
        super().__init__(config)
        p = config.params
        self.approx = bool(p.get("approx", True))
        self.threshold = float(p.get("threshold", 0.65))
        self.min_samples = int(p.get("min_samples", 3))
        self.max_samples = int(p.get("max_samples", 12))
        self.spacing = int(p.get("spacing", 3))
        self.dense = int(p.get("dense", 5))
        self.draws = int(p.get("draws", 256))
        self.max_gap = float(p.get("max_gap", 30.0))
        self.edge_margin = float(p.get("edge_margin", 2.0))
        self.max_per_item = int(p.get("max_per_item", 0))
        where = f"{config.operator}={config.variant}"
        if not 2 <= self.min_samples <= self.max_samples:
            raise JellyBeanError(f"{where}: params.min_samples ({self.min_samples}) must be at least 2 (a standard "
                                 f"error needs two crops) and at most max_samples ({self.max_samples})")
        if self.spacing < 1 or self.dense < 0 or self.max_per_item < 0:
            raise JellyBeanError(f"{where}: params.spacing must be >= 1, dense and max_per_item >= 0 "
                                 "(max_per_item 0: no cap)")
        if not -1.0 <= self.threshold <= 1.0:
            raise JellyBeanError(f"{where}: params.threshold {self.threshold!r}: give a cosine similarity in [-1, 1] "
                                 "(the associator's threshold, 0.65 by default)")
        if self.draws < 2 or self.draws & (self.draws - 1):
            raise JellyBeanError(f"{where}: params.draws {self.draws}: give a power of two >= 2 (e.g. 256)")
        try:
            self.rule = StopRule(tau=float(p.get("tau", 0.95)), kind="classifier")
        except ApproxError as exc:
            raise JellyBeanError(f"{where}: params.tau: {exc}") from None
        self.samples: dict[TrackletKey, Sample] = {}
        self.embedded = 0                   # crops embedded since start (all items)
        self.crops = 0                      # crops seen
        self.whole = 0                      # of them, whole views

    def process(self, items: list[Item]) -> list[Item]:
        return [item if item.dropped else self._one(item) for item in items]

    def _one(self, item: Item) -> Item:
        ids = [int(i) for i in item.meta.get("ids", [])]
        boxes = item.meta.get("boxes", [])
        if item.meta.get("skipped") and not ids:
            return self._output(item, ids, boxes, 0)
        if not (len(ids) == len(boxes) == len(item.blobs)):
            return _tombstone(item, f"{len(ids)} ids, {len(boxes)} boxes and {len(item.blobs)} crops: sampled "
                              "re-ID needs each track's crop (feed the tracker detections, not features)", self.name)
        ltwh = np.array([b[:4] for b in boxes], np.float64).reshape(-1, 4)
        whole = ltwh_clear_of_edges(ltwh, item.meta.get("size"), self.edge_margin)
        keys = [(item.stream, i) for i in ids]
        for key in keys:
            self.samples.setdefault(key, Sample()).last_ts = item.capture_ts
        wanted = self._wanted(item.frame, keys, whole)
        crops = []
        for k in wanted:
            image = decode_jpeg(item.blobs[k])
            if image is None:
                return _tombstone(item, "undecodable crop", self.name)
            crops.append(image)
        self.crops += len(ids)
        self.whole += int(whole.sum())
        if crops:
            embeddings = unit_rows(np.asarray(self._embed(crops), np.float32))
            self.embedded += len(crops)
            for k, e in zip(wanted, embeddings):
                self._learn(keys[k], e, bool(whole[k]), item.frame)
            if self.approx:
                for k in wanted:
                    if whole[k]:
                        self._check(keys[k], item.capture_ts)
        self._forget(item.capture_ts)
        return self._output(item, ids, boxes, len(crops))

    def _wanted(self, frame: int, keys: list[TrackletKey], whole: np.ndarray) -> list[int]:
        """The boxes whose crops to embed, in priority order (least settled first)."""
        if not self.approx:
            return list(range(len(keys)))
        picks = []
        for k, key in enumerate(keys):
            s = self.samples[key]
            due = (len(s.embeddings) < self.dense or s.last_sampled is None
                   or frame - s.last_sampled >= self.spacing)
            if whole[k] and not s.settled and due:
                picks.append(k)
        picks.sort(key=lambda k: (self.samples[keys[k]].confidence, len(self.samples[keys[k]].embeddings)))
        return picks[:self.max_per_item] if self.max_per_item else picks

    def _learn(self, key: TrackletKey, embedding: np.ndarray, whole: bool, frame: int) -> None:
        s = self.samples[key]
        s.last_sampled = frame
        if whole:
            s.add(embedding)
        elif not s.embeddings:
            s.mean = embedding

    def _check(self, key: TrackletKey, now: float) -> None:
        """Settle the tracklet once P(its decision is unchanged) >= tau (or it reached max_samples)."""
        s = self.samples[key]
        n = len(s.embeddings)
        if n < self.min_samples:
            return
        if n >= self.max_samples:
            s.settled = True
            return
        gallery = self._gallery(key, now)
        if not len(gallery):
            s.confidence = 1.0      # nothing to link to now; later tracklets decide against this one
            s.settled = True
            return
        sample = np.asarray(s.embeddings, np.float64)
        estimates = [mean(sample[:, d]) for d in range(sample.shape[1])]
        seed = zlib.crc32(f"{key[0]}/{key[1]}/{n}".encode())
        outcome = propagate(lambda x: _decide(x, gallery, self.threshold), estimates, self.draws, seed)
        verdict = self.rule.decide(outcome.outputs, outcome.point)
        s.confidence = verdict.confidence
        s.settled = verdict.stop
        log.debug("%s track %d: %d crops, %s", key[0], key[1], n, verdict.reason)

    def _gallery(self, key: TrackletKey, now: float) -> np.ndarray:
        """[K, D] unit-norm means of the other cameras' tracklets seen within max_gap."""
        rows = [s.mean for k, s in self.samples.items()
                if k[0] != key[0] and s.embeddings and s.mean is not None and s.last_ts >= now - self.max_gap]
        return np.asarray(rows, np.float64).reshape(len(rows), self.dim)

    def _forget(self, now: float) -> None:
        stale = [k for k, s in self.samples.items() if s.last_ts < now - 2 * self.max_gap]
        for k in stale:
            del self.samples[k]

    def _output(self, item: Item, ids: list[int], boxes: list, embedded: int) -> Item:
        emb = np.zeros((len(ids), self.dim), np.float16)
        for row, i in enumerate(ids):
            s = self.samples.get((item.stream, i))
            if s is not None and s.mean is not None:
                emb[row] = s.mean
        meta: dict[str, Any] = {"boxes": boxes, "ids": ids, "size": item.meta.get("size"), "embedded": embedded}
        return item.derive("tracks", meta=meta, arrays={"embeddings": emb})

    def reset_stream(self, stream: str) -> None:
        for k in [k for k in self.samples if k[0] == stream]:
            del self.samples[k]

    def close(self) -> None:
        self.samples.clear()
        super().close()


def _decide(x: np.ndarray, gallery: np.ndarray, threshold: float) -> np.ndarray:
    """Per row of embeddings: the index of the most similar gallery mean if its cosine similarity
    is at least `threshold`, else NO_MATCH."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    sims = (x / np.where(norms > 0, norms, 1.0)) @ gallery.T
    best = sims.argmax(axis=1)
    return np.where(sims[np.arange(len(x)), best] >= threshold, best, NO_MATCH)
