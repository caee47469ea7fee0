"""Coding groups at run time (ParM): k items bound for a protected operator -> one parity query, and
back: a missing output rebuilt from the parity output and the others.

An item is a frame's detections with one crop per box, so a group is k items and its parity query
has one parity crop per crop position: parity crop j encodes crop j of every member that has one,
a blank tile where a member has fewer crops (the parity model is trained with blank slots counting
zero). The query carries the members' keys, crop counts and input meta (boxes, frame size), so the
decoder can rebuild a member's whole output item from the parity output:

    F̂(x_j)[c] = P[c] - Σ_{i≠j, member i has crop c} F(x_i)[c]

Encoder: on the producer's agent, for the items it sends to the protected operator. Decoder: on
the agent of the protected operator's consumer, where the outputs meet. A rebuilt item has the
original's key, so the consumer's duplicate filter discards the original if it comes later.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from jellybean.agents.items import STICKY_META, Item
from jellybean.agents.operators.models import decode_jpeg
from jellybean.parity.coders import unit_rows

QUERY_KIND = "parity-query"      # what the encoder sends to the parity workers
OUTPUT_KIND = "parity"           # what they send on to the decoder
STREAM_PREFIX = "parity/"        # a parity query's stream: "parity/<producer agent>"
META = "parity"                  # the meta key of the group manifest
REBUILT = "reconstructed"        # meta on a rebuilt output: the operators whose outputs were rebuilt
JPEG_QUALITY = 95

# tiles: one decoded image (H x W x 3, uint8) per member, None for a blank slot -> one image
Encode = Callable[[Sequence[np.ndarray | None]], np.ndarray]


def is_query(item: Item) -> bool:
    return item.kind == QUERY_KIND


def is_parity(item: Item) -> bool:
    return item.kind == OUTPUT_KIND


def members_of(item: Item) -> list[dict[str, Any]]:
    manifest = item.meta.get(META) or {}
    return list(manifest.get("members") or [])


def _member(item: Item) -> dict[str, Any]:
    return {"stream": item.stream, "session": item.session, "frame": item.frame, "capture_ts": item.capture_ts,
            "crops": len(item.blobs), "trace": [list(t) for t in item.trace],
            "meta": {k: v for k, v in item.meta.items() if k in ("boxes", "size", *STICKY_META)}}


def _key(m: dict[str, Any]) -> tuple[str, str, int]:
    return (m["stream"], m["session"], int(m["frame"]))


class GroupEncoder:
    """Producer side: every k items bound for the protected operator become one parity query."""

    def __init__(self, k: int, encode: Encode, *, source: str, session: str = "", max_wait_s: float = 0.1) -> None:
        self.k, self.encode, self.max_wait_s = k, encode, max_wait_s
        self.stream, self.session = STREAM_PREFIX + source, session
        self._members: list[Item] = []
        self._full: list[list[Item]] = []     # groups `offer` filled, not coded yet
        self._since = 0.0
        self._count = 0
        self._lock = threading.Lock()

    def add(self, item: Item, now: float | None = None) -> Item | None:
        """Take an item sent to the protected operator; the parity query once k are in (coded here)."""
        members = self._take(item, now)
        return self._query(members) if members else None

    def offer(self, item: Item, now: float | None = None) -> bool:
        """As `add`, but a full group is coded later by `due`, off the caller's thread (the producer's
        send path should not wait for JPEG work); True when this item filled a group."""
        members = self._take(item, now)
        if members:
            with self._lock:
                self._full.append(members)
        return bool(members)

    def _take(self, item: Item, now: float | None) -> list[Item] | None:
        if item.dropped is not None or is_query(item):
            return None
        with self._lock:
            if not self._members:
                self._since = time.monotonic() if now is None else now
            self._members.append(item)
            if len(self._members) < self.k:
                return None
            members, self._members = self._members, []
        return members

    def seal(self) -> bool:
        """End the partial group now (`due` codes it, with blank slots): the producer's batch is
        over and the next items are a batch period away. True when there was one."""
        with self._lock:
            if not self._members:
                return False
            self._full.append(self._members)
            self._members = []
        return True

    def flush(self, now: float | None = None, force: bool = False) -> Item | None:
        """A group that waited max_wait_s: its query with blank slots (the parity model counts them as zero)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self._members or (not force and now - self._since < self.max_wait_s):
                return None
            members, self._members = self._members, []
        return self._query(members)

    def due(self, now: float | None = None, force: bool = False) -> list[Item]:
        """The queries to send now: the full groups `offer` left, then a partial one that waited
        max_wait_s (or any, with force)."""
        with self._lock:
            full, self._full = self._full, []
        queries = [self._query(m) for m in full]
        partial = self.flush(now, force)
        return queries + ([partial] if partial is not None else [])

    def next_due(self) -> float | None:
        """When `due` has something to send (monotonic seconds), None when nothing waits."""
        with self._lock:
            if self._full:
                return 0.0
            return self._since + self.max_wait_s if self._members else None

    @property
    def sent(self) -> int:
        return self._count

    def _query(self, members: list[Item]) -> Item:
        with self._lock:
            self._count += 1
            number = self._count
        tiles_per_crop = max((len(m.blobs) for m in members), default=0)
        blobs = []
        for c in range(tiles_per_crop):
            # A crop OpenCV cannot decode is a blank tile; its member's own output is a tombstone anyway.
            tiles = [decode_jpeg(m.blobs[c]) if c < len(m.blobs) else None for m in members]
            tiles += [None] * (self.k - len(tiles))
            ok, buf = cv2.imencode(".jpg", self.encode(tiles), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise ValueError("OpenCV could not JPEG-encode a parity crop")
            blobs.append(buf.tobytes())
        manifest = {"k": self.k, "members": [_member(m) for m in members]}
        capture = min(m.capture_ts for m in members)
        return Item(stream=self.stream, frame=number, capture_ts=capture, kind=QUERY_KIND,
                    meta={META: manifest}, blobs=blobs, session=self.session)


@dataclass
class _Group:
    members: list[dict[str, Any]]
    parity: np.ndarray            # [crop positions, D] float32
    first_at: float               # when the first of its outputs (data or parity) came
    ready_at: float | None = None  # when all but one were in, with the parity

    def rebuild_at(self, wait_s: float) -> float | None:
        return None if self.ready_at is None else max(self.ready_at, self.first_at + wait_s)


@dataclass
class DecoderCounts:
    parity: int = 0           # parity outputs taken in
    rebuilt: int = 0          # outputs rebuilt from a parity output
    unrecoverable: int = 0    # groups with two or more outputs missing (tombstones count) when given up
    late_parity: int = 0      # parity outputs of groups already complete
    dropped_parity: int = 0   # parity queries dropped upstream (tombstones)
    expired: int = 0          # groups given up after the horizon


class GroupDecoder:
    """Consumer side: outputs of the protected operator pass through; a group whose parity output
    and all other outputs are in rebuilds the last one once it is `wait_s` later than the first of
    the group's outputs to come (ParM's decoder does not wait for a straggler whose partners are
    all in; the wait only spares rebuilding outputs that are about to come anyway)."""

    def __init__(self, operator: str = "reid", *, site: str = "", output_kind: str = "features",
                 array: str = "embeddings", wait_s: float = 0.05, horizon_s: float = 10.0,
                 max_outputs: int = 50_000) -> None:
        self.operator, self.site, self.output_kind, self.array = operator, site, output_kind, array
        self.wait_s, self.horizon_s, self.max_outputs = wait_s, horizon_s, max_outputs
        self._outputs: OrderedDict[tuple[str, str, int], tuple[float, np.ndarray | None]] = OrderedDict()
        self._groups: dict[tuple[str, str, int], _Group] = {}
        self._waiting: dict[tuple[str, str, int], tuple[str, str, int]] = {}  # member key -> group key
        self.counts = DecoderCounts()
        self._lock = threading.Lock()

    def data(self, item: Item, now: float | None = None) -> None:
        """An output of the protected operator on its way to the consumer (a tombstone counts as absent)."""
        now = time.monotonic() if now is None else now
        values = None
        if item.dropped is None and self.array in item.arrays:
            values = np.asarray(item.arrays[self.array], np.float32)
        with self._lock:
            self._outputs[item.key] = (now, values)
            self._outputs.move_to_end(item.key)
            while self._outputs and (len(self._outputs) > self.max_outputs or
                                     now - next(iter(self._outputs.values()))[0] > self.horizon_s):
                self._outputs.popitem(last=False)
            group = self._waiting.get(item.key)
            if group is not None:
                self._update(group, now)

    def parity(self, item: Item, now: float | None = None) -> None:
        """A parity output (or its tombstone)."""
        now = time.monotonic() if now is None else now
        if item.dropped is not None:
            self.counts.dropped_parity += 1
            return
        self.counts.parity += 1
        members = members_of(item)
        values = np.asarray(item.arrays.get(OUTPUT_KIND, np.zeros((0, 0), np.float32)), np.float32)
        with self._lock:
            if all(_key(m) in self._outputs for m in members):
                self.counts.late_parity += 1
                return
            first = min([now] + [self._outputs[_key(m)][0] for m in members if _key(m) in self._outputs])
            self._groups[item.key] = _Group(members, values, first_at=first)
            for m in members:
                self._waiting[_key(m)] = item.key
            self._update(item.key, now)

    def _update(self, gkey: tuple[str, str, int], now: float) -> None:
        g = self._groups.get(gkey)
        if g is None:     # closed: _close took it out
            return
        missing = [m for m in g.members if _key(m) not in self._outputs]
        if not missing:
            self._close(gkey)
        elif len(missing) == 1 and g.ready_at is None:
            g.ready_at = now

    def due(self, now: float | None = None) -> list[Item]:
        """Outputs rebuilt now: groups whose last output is more than wait_s later than their first."""
        now = time.monotonic() if now is None else now
        out: list[Item] = []
        with self._lock:
            for gkey, g in list(self._groups.items()):
                missing = [m for m in g.members if _key(m) not in self._outputs]
                if not missing:
                    self._close(gkey)
                    continue
                if len(missing) == 1 and g.ready_at is not None and now >= g.rebuild_at(self.wait_s):
                    rebuilt = self._rebuild(g, missing[0])
                    if rebuilt is not None:
                        out.append(rebuilt)
                        self._outputs[rebuilt.key] = (now, None)
                        self.counts.rebuilt += 1
                    else:
                        self.counts.unrecoverable += 1
                    self._close(gkey)
                elif g.members and now - min(self._seen(m, now) for m in g.members) > self.horizon_s:
                    self.counts.expired += 1
                    if len(missing) > 1:
                        self.counts.unrecoverable += 1
                    self._close(gkey)
        return out

    def _seen(self, m: dict[str, Any], now: float) -> float:
        got = self._outputs.get(_key(m))
        return got[0] if got is not None else now

    def _close(self, gkey: tuple[str, str, int]) -> None:
        g = self._groups.pop(gkey, None)
        if g is None:
            return
        for m in g.members:
            if self._waiting.get(_key(m)) == gkey:
                del self._waiting[_key(m)]

    def _rebuild(self, g: _Group, miss: dict[str, Any]) -> Item | None:
        """The missing member's output: P - Σ others, unit-normalised like the base model's."""
        n = int(miss["crops"])
        if n > len(g.parity):
            return None
        rebuilt = g.parity[:n].copy() if n else np.zeros((0, g.parity.shape[1] if g.parity.ndim == 2 else 0),
                                                          np.float32)
        for m in g.members:
            if m is miss:
                continue
            values = self._outputs[_key(m)][1]
            if values is None:
                if int(m["crops"]) > 0 and n > 0:
                    return None       # a tombstone among the others: two unknowns, nothing to solve
                continue
            common = min(n, len(values))
            rebuilt[:common] -= values[:common]
        if not np.all(np.isfinite(rebuilt)):
            return None
        rebuilt = unit_rows(rebuilt)      # as jellybean.parity.coders.decode, per crop position
        # The member's own way so far (to the producer), then the decoder: as if it came from here.
        trace = [list(t) for t in miss.get("trace", [])]
        stamp = round(time.time(), 4)
        trace.append([self.site, self.operator, stamp, stamp])
        rebuilt_at = [*miss["meta"].get(REBUILT, []), self.operator]
        return Item(stream=miss["stream"], frame=int(miss["frame"]), capture_ts=float(miss["capture_ts"]),
                    kind=self.output_kind, meta={**miss["meta"], REBUILT: rebuilt_at},
                    arrays={self.array: rebuilt.astype(np.float16)}, trace=trace, session=miss["session"])

    def next_due(self) -> float | None:
        """When the next group's wait for its last output ends (monotonic seconds), else None."""
        with self._lock:
            ready = [t for g in self._groups.values() if (t := g.rebuild_at(self.wait_s)) is not None]
        return min(ready) if ready else None

    def pending(self) -> int:
        with self._lock:
            return len(self._groups)

