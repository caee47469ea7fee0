"""Exact against sampled re-ID for multi-camera association, on one scenario, in one process.

The frames go once through the detector and a motion-only tracker (which carries each box's crop),
then through two re-ID + association branches: `sampled-reid` with `approx: false` (every crop
embedded) and with `approx: true` (a growing sample, stopped by the decision rule). Both
associators see the same tracks, so what differs is the embeddings alone.

Counted per branch: crops embedded (re-ID inferences), the seconds spent in re-ID, IDF1 (the
challenge's, multi-camera), and the association decisions: per tracklet, the identity it ends up
in, named by the tracklet that started that identity, or "its own" when it started one. A decision
matches when both branches give a tracklet the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jellybean.agents.items import Item
from jellybean.agents.operators.base import Operator, OperatorConfig, create
from jellybean.errors import JellyBeanError
from jellybean.replay.cityflow import Scenario
from jellybean.replay.driver import encode_frame, playable_cameras, schedule
from jellybean.replay.tracking_metrics import Prediction, evaluate_mtmc

TrackletKey = tuple[str, int]


@dataclass
class Branch:
    """One re-ID + association branch's outcome."""

    name: str
    embedded: int = 0                                   # crops the re-ID model ran on
    crops: int = 0                                      # crops it saw
    whole: int = 0                                      # of them, views clear of the frame's edges
    seconds: float = 0.0                                # in the re-ID operator (model, sampling, decisions)
    idf1: float = 0.0
    final_gid: dict[TrackletKey, int] = field(default_factory=dict)   # tracklet -> its last global id
    predictions: list[Prediction] = field(default_factory=list)

    def decisions(self) -> dict[TrackletKey, TrackletKey | None]:
        """Per tracklet, the identity it was linked to, named by that identity's first tracklet (the
        one that started it), or None when it started an identity of its own."""
        founder: dict[int, TrackletKey] = {}
        for key, gid in self.final_gid.items():   # in the order the tracklets were first seen
            founder.setdefault(gid, key)
        return {key: (None if founder[gid] == key else founder[gid]) for key, gid in self.final_gid.items()}


@dataclass
class Comparison:
    scenario: str
    exact: Branch
    approx: Branch
    frames: int

    @property
    def decisions(self) -> int:
        return len(self.exact.final_gid)

    @property
    def matching(self) -> int:
        a, b = self.exact.decisions(), self.approx.decisions()
        return sum(1 for key, linked in a.items() if key in b and b[key] == linked)


def compare_sampling(scenario: Scenario, detector: Path, reid: Path, approx_params: dict[str, Any], *,
                     threads: int | None = 1, tick: Callable[[int, int], None] | None = None) -> Comparison:
    """Run `scenario` through both branches (see the module docstring)."""
    problems: list[str] = []
    cams = playable_cameras(scenario, problems)
    total = sum(c.frame_count or 0 for c in cams)

    def make(runtime: str, op: str, model: Path | None = None, **params: Any) -> Operator:
        return create(runtime, OperatorConfig(operator=op, variant=runtime, model=model, threads=threads,
                                              params=params))

    ops = {"detect": make("yolov8-detector", "detect", detector),
           # Motion only: no embeddings reach the tracker, so its appearance weight has no effect.
           "track": make("sort-tracker", "track"),
           "reid-exact": make("sampled-reid", "reid", reid, approx=False),
           "reid-approx": make("sampled-reid", "reid", reid, **{**approx_params, "approx": True}),
           "assoc-exact": make("mtmc-associator", "associate"),
           "assoc-approx": make("mtmc-associator", "associate")}
    branches = {"exact": Branch("exact"), "approx": Branch("approx")}
    frames = 0
    try:
        for t_rel, cam, frame, image in schedule(cams, problems):
            item = encode_frame(cam, frame, image, capture_ts=t_rel)
            tracks = ops["track"].process(ops["detect"].process([item]))[0]
            for name, branch in branches.items():
                started = time.perf_counter()
                embedded = ops[f"reid-{name}"].process([tracks])[0]
                branch.seconds += time.perf_counter() - started
                identities = ops[f"assoc-{name}"].process([embedded])[0]
                _record(branch, tracks, embedded, identities)
            frames += 1
            if tick is not None:
                tick(frames, total)
        for name, branch in branches.items():
            branch.whole = ops[f"reid-{name}"].whole
    finally:
        for op in ops.values():
            op.close()
    cameras = [c.key for c in cams]
    for branch in branches.values():
        branch.idf1 = evaluate_mtmc(scenario, branch.predictions, cameras=cameras).idf1
    return Comparison(scenario.name, branches["exact"], branches["approx"], frames)


def _record(branch: Branch, tracks: Item, embedded: Item, identities: Item) -> None:
    if embedded.dropped or identities.dropped:
        raise JellyBeanError(f"{tracks.stream} frame {tracks.frame}: dropped ({embedded.dropped or identities.dropped})")
    branch.embedded += int(embedded.meta.get("embedded", 0))
    branch.crops += len(tracks.meta.get("ids", []))
    for local, gid, box in zip(tracks.meta.get("ids", []), identities.meta.get("ids", []),
                               identities.meta.get("boxes", [])):
        branch.final_gid[(tracks.stream, int(local))] = int(gid)
        branch.predictions.append(Prediction(camera=identities.stream, frame=identities.frame, id=int(gid),
                                             left=box[0], top=box[1], width=box[2], height=box[3]))
