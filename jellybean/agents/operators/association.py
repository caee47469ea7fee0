"""Online multi-camera association: one global id per vehicle across all cameras.

The associator sees the `tracks` items of every stream (each stream in frame order). A tracklet is
one (stream, local track id); every tracklet belongs to one global identity, whose appearance is
the normalised mean of its tracklets' smoothed embeddings (the trackers' moving averages).

Linking. A tracklet is (re)linked on each of its first `decide_frames` sightings in which its box
is clear of the frame's edges: to the most similar identity of the gallery (cosine similarity of
its current embedding with the identity's mean, its own contribution left out) if that similarity
is at least `threshold`, else to an identity of its own. Before its first whole view it holds an
identity of its own. Re-deciding over a few whole views is deliberate: a vehicle entering a view is
cut by the frame's side, and its first crops are its least recognisable (on two 4-camera, 15 s
synthetic scenes, waiting for whole views raised the share of a vehicle's camera pairs that share
its global id from 0.55 to 0.71). After that the link is
frozen for the tracklet's life, so a tracklet's output id may change only within its first few
whole views.

The gallery holds the identities seen in the last `max_gap` seconds (capture time): a vehicle that
left every camera longer ago is not expected back. Tracklets that were never seen whole do not
count in an identity's mean.

Exclusion. A vehicle cannot be twice in one camera at once, so a tracklet is never linked to an
identity that another tracklet of the same stream holds and was seen within the last
`exclusive_frames` frames of that stream (the tracker keeps a lost track that long by default, and
it may come back); the young tracklets of one item are linked one by one, best match first, each
taking its identity out of reach of the others. Should two tracklets of one item still hold the
same identity (a lost track returning after that window), the younger one is given an identity of
its own: two vehicles of one frame never share a global id.

Identities none of whose tracklets was seen for `max_idle` seconds are forgotten, which keeps
memory bounded on a long run; ids are never reused.

Params and defaults: threshold 0.65, decide_frames 5, exclusive_frames 10, max_gap 30 (s),
max_idle 300 (s), edge_margin 2 (px; how far inside the frame a box must be to count as whole).
On the synthetic scenes the true links fall within 1.5 s (neighbouring views overlap), so a
`max_gap` of a few seconds would do there; real camera networks need the transit time between
their cameras. The threshold is where, on those scenes, a link at that similarity is right about as
often as it is wrong.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jellybean.agents.items import Item
from jellybean.agents.operators.base import Operator, OperatorConfig, register
from jellybean.agents.operators.tracking import clear_of_edges

log = logging.getLogger("jellybean.agents")

TrackletKey = tuple[str, int]


@dataclass
class Tracklet:
    stream: str
    local_id: int
    first_frame: int
    gid: int = 0                            # 0 until first linked
    home: int = 0                           # its own identity, allocated when first needed
    seen: int = 0
    full_views: int = 0                     # sightings clear of the frame's edges
    last_frame: int = 0
    last_ts: float = 0.0
    embedding: np.ndarray | None = None     # unit norm

    @property
    def key(self) -> TrackletKey:
        return (self.stream, self.local_id)


@dataclass
class Identity:
    gid: int
    members: set[TrackletKey] = field(default_factory=set)
    last_ts: float = float("-inf")          # when one of its tracklets was last seen


@register("mtmc-associator")
class Associator(Operator):
    """Tracks of every camera -> the same boxes with global vehicle ids."""

    kind = "builtin"
    keyed = "global"
    accepts = ("tracks",)
    produces = "identities"

    def __init__(self, config: OperatorConfig) -> None:
        super().__init__(config)
        p = config.params
        self.threshold = float(p.get("threshold", 0.65))
        self.decide_frames = int(p.get("decide_frames", 5))
        self.exclusive_frames = int(p.get("exclusive_frames", 10))
        self.max_gap = float(p.get("max_gap", 30.0))
        self.max_idle = float(p.get("max_idle", 300.0))
        self.edge_margin = float(p.get("edge_margin", 2.0))
        self.tracklets: dict[TrackletKey, Tracklet] = {}
        self.identities: dict[int, Identity] = {}
        self._by_stream: dict[str, dict[int, Tracklet]] = {}
        self._dim = 0                       # embedding size, from the first embedding seen
        self._next_gid = 1
        self._now = float("-inf")
        self._swept = float("-inf")

    def process(self, items: list[Item]) -> list[Item]:
        return [item if item.dropped else self._one(item) for item in items]

    # One item ---------------------------------------------------------------------------------------

    def _one(self, item: Item) -> Item:
        self._now = max(self._now, item.capture_ts)
        local_ids = [int(i) for i in item.meta.get("ids", [])]
        embeddings = _unit_rows(item.arrays.get("embeddings"), len(local_ids))
        ltwh = np.array([b[:4] for b in item.meta.get("boxes", [])], np.float64).reshape(-1, 4)
        whole = clear_of_edges(np.concatenate([ltwh[:, :2], ltwh[:, :2] + ltwh[:, 2:]], axis=1),
                               item.meta.get("size"), self.edge_margin)
        present = [self._observe(item, lid, emb, bool(w)) for lid, emb, w in zip(local_ids, embeddings, whole)]
        young = [t for t, w in zip(present, whole) if not t.gid or (w and t.full_views <= self.decide_frames)]
        if young:
            self._link(item, young)
        self._keep_apart(present)
        self._forget_idle()
        meta: dict[str, Any] = {"boxes": item.meta.get("boxes", []), "ids": [t.gid for t in present],
                                "size": item.meta.get("size")}
        return item.derive("identities", meta=meta)

    def _observe(self, item: Item, local_id: int, embedding: np.ndarray | None, whole: bool) -> Tracklet:
        key = (item.stream, local_id)
        t = self.tracklets.get(key)
        if t is None:
            t = self.tracklets[key] = Tracklet(item.stream, local_id, first_frame=item.frame)
            self._by_stream.setdefault(item.stream, {})[local_id] = t
        t.seen += 1
        t.full_views += whole
        t.last_frame = item.frame
        t.last_ts = item.capture_ts
        if embedding is not None:
            t.embedding = embedding
            self._dim = self._dim or len(embedding)
        if t.gid:
            self.identities[t.gid].last_ts = max(self.identities[t.gid].last_ts, t.last_ts)
        return t

    def _link(self, item: Item, young: list[Tracklet]) -> None:
        """(Re)link each young tracklet of this item: best match first, one identity each."""
        gids, sums, counts = self._gallery(self._now - self.max_gap)
        active = self._active_in(item.stream, item.frame)
        proposals = []
        for t in young:
            sims = self._similarities(t, gids, sums, counts)
            proposals.append((float(sims.max()) if sims.size else -1.0, t, sims))
        proposals.sort(key=lambda p: -p[0])
        for best, t, sims in proposals:
            # The identities of the other vehicles in this camera now (as re-decided so far).
            blocked = {u.gid for u in active if u is not t and u.gid}
            target = self._best_allowed(gids, sims, blocked)
            self._assign(t, target if target is not None else self._home(t, blocked))
            log.debug("%s track %d frame %d: global id %d (%s; best similarity %.3f)", t.stream, t.local_id,
                      t.last_frame, t.gid, "linked" if target is not None else "own", best)

    def _best_allowed(self, gids: np.ndarray, sims: np.ndarray, blocked: set[int]) -> int | None:
        """The most similar identity at or above the threshold that is not blocked and still
        exists (one whose only member re-linked earlier in this item is gone)."""
        for k in np.argsort(-sims, kind="stable"):
            if sims[k] < self.threshold:
                return None
            gid = int(gids[k])
            if gid not in blocked and gid in self.identities:
                return gid
        return None

    def _keep_apart(self, present: list[Tracklet]) -> None:
        """Two tracklets of one frame never share an identity: the younger takes its own."""
        holder: dict[int, Tracklet] = {}
        for t in sorted(present, key=lambda t: (t.first_frame, t.local_id)):
            if t.gid in holder:
                log.debug("%s: tracklets %d and %d of frame %d share global id %d; splitting %d off",
                          t.stream, holder[t.gid].local_id, t.local_id, t.last_frame, t.gid, t.local_id)
                self._assign(t, self._home(t, set(holder)))
            holder[t.gid] = t

    # The gallery -------------------------------------------------------------------------------------

    def _gallery(self, since: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The identities seen at or after `since` (capture time): ids [G], the sums of their
        members' embeddings [G, D] and member counts [G]."""
        gids = np.array([gid for gid, ident in self.identities.items() if ident.last_ts >= since], np.int64)
        sums = np.zeros((len(gids), self._dim), np.float64)
        counts = np.zeros(len(gids), np.int64)
        for row, gid in enumerate(gids.tolist()):
            for key in self.identities[gid].members:
                t = self.tracklets[key]
                if _describes(t, self._dim):
                    sums[row] += t.embedding
                    counts[row] += 1
        return gids, sums, counts

    def _similarities(self, t: Tracklet, gids: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Cosine similarity of `t` with every identity's mean, `t`'s own embedding left out;
        -1 for identities with no other member."""
        out = np.full(len(gids), -1.0)
        if t.embedding is None or sums.shape[1] != len(t.embedding) or not len(gids):
            return out
        sums, counts = sums.copy(), counts.copy()
        own = np.flatnonzero(gids == t.gid)
        if own.size and _describes(t, sums.shape[1]):
            sums[own[0]] -= t.embedding
            counts[own[0]] -= 1
        norms = np.linalg.norm(sums, axis=1)
        ok = (counts > 0) & (norms > 1e-9)
        out[ok] = (sums[ok] @ t.embedding) / norms[ok]
        return out

    def _active_in(self, stream: str, frame: int) -> list[Tracklet]:
        """The tracklets of `stream` seen in its last `exclusive_frames` frames."""
        return [t for t in self._by_stream.get(stream, {}).values() if frame - t.last_frame <= self.exclusive_frames]

    # Bookkeeping -------------------------------------------------------------------------------------

    def _home(self, t: Tracklet, blocked: set[int]) -> int:
        """The tracklet's own identity (a fresh one if it has none, or if its own is taken)."""
        if not t.home or t.home in blocked:
            t.home = self._next_gid
            self._next_gid += 1
        return t.home

    def _assign(self, t: Tracklet, gid: int) -> None:
        if t.gid == gid:
            return
        if t.gid:
            old = self.identities[t.gid]
            old.members.discard(t.key)
            if not old.members:
                del self.identities[t.gid]
        t.gid = gid
        ident = self.identities.setdefault(gid, Identity(gid))
        ident.members.add(t.key)
        ident.last_ts = max(ident.last_ts, t.last_ts)

    def _forget_idle(self) -> None:
        """Forget identities (and their tracklets) not seen for `max_idle` seconds; looked for
        every tenth of `max_idle`, not on every item."""
        if self._now - self._swept < self.max_idle / 10:
            return
        self._swept = self._now
        idle = [gid for gid, ident in self.identities.items() if self._now - ident.last_ts > self.max_idle]
        for gid in idle:
            for stream, local_id in self.identities.pop(gid).members:
                del self.tracklets[(stream, local_id)]
                del self._by_stream[stream][local_id]

    def close(self) -> None:
        self.tracklets.clear()
        self.identities.clear()
        self._by_stream.clear()


def _describes(t: Tracklet, dim: int) -> bool:
    """Whether `t`'s embedding counts in its identity's mean: only tracklets seen whole at least
    once do (a vehicle only ever seen cut by the frame's edge would blur the mean)."""
    return t.embedding is not None and len(t.embedding) == dim and t.full_views > 0


def _unit_rows(embeddings: np.ndarray | None, n: int) -> list[np.ndarray | None]:
    """`n` unit-norm float32 rows of an embeddings array, or None for each when it has none."""
    if embeddings is None or embeddings.ndim != 2 or len(embeddings) != n or embeddings.shape[1] == 0:
        return [None] * n
    e = embeddings.astype(np.float32)
    norm = np.linalg.norm(e, axis=1)
    return [row / nrm if nrm > 0 else None for row, nrm in zip(e, norm)]
