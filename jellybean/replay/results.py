"""What one replay run measured: the contract between the replay driver and the report.

The driver fills a `ReplayResult` as it runs (counts per camera, end-to-end latencies, bytes per
link, a throughput timeline, the plan's predictions, tracking metrics) and writes it with
`to_json()`; `report.py` renders it. Predicted and measured figures sit side by side only where
they are the same quantity: items/s per operator and per stream, KB/s per link (with the link's
capacity), milliseconds per stage and hop and end to end. The planner's accuracy is the zoo's
accuracy product; it is named as such and set beside the measured IDF1 only when the zoo's
accuracy was measured as IDF1 (`plan_accuracy_metric`). Everything is JSON: `ReplayResult.from_json(r.to_json()) == r`.
Bad data does not stop a run: `add_problem` records it and marks the result partial.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jellybean.errors import SpecError
from jellybean.replay.tracking_metrics import TrackingMetrics
from jellybean.spec.base import format_validation_error

RESULT_VERSION = 2   # 2: rates, segments, drops, replans, link capacity, latency predicted/SLO


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CameraCounts(_Model):
    """Frames of one camera: published (`frames_in`) = delivered by the sink (`frames_out`) + dropped on
    the way with a reason (`dropped`, of which `late` past the deadline) + never accounted for
    (`lost`). `duplicates`: further copies the sink discarded (each frame counts once)."""

    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    duplicates: int = 0
    late: int = 0
    lost: int = 0


class LinkMeasure(_Model):
    """Traffic measured on one link (location -> location) and what the plan predicted for it."""

    from_: str = Field(alias="from")
    to: str
    bytes: int = 0
    kb_per_s: float = 0.0
    predicted_kb_per_s: float | None = None
    capacity_kb_per_s: float | None = Field(None, description="the link's bandwidth, as the plan has it")
    wire_bytes: int | None = Field(None, description="bytes on the link's wire (kernel counters), control included")
    wire_kb_per_s: float | None = None
    load: float | None = Field(None, description="frames/s the replay offered from the streams upstream of the "
                               "link, over the plan's frames/s for them: the link's prediction at this load is scaled "
                               "by it (None: by the whole replay's load)")

    @property
    def ratio(self) -> float | None:
        """Measured over predicted, None when nothing was predicted."""
        if not self.predicted_kb_per_s:
            return None
        return self.kb_per_s / self.predicted_kb_per_s

    @property
    def use(self) -> float | None:
        """Measured (on the wire where that was measured) over the link's capacity, None when the capacity is unknown."""
        if not self.capacity_kb_per_s:
            return None
        return (self.wire_kb_per_s if self.wire_kb_per_s is not None else self.kb_per_s) / self.capacity_kb_per_s


class Stats(_Model):
    """A distribution in brief (milliseconds): count, mean and percentiles, enough for a box plot."""

    n: int
    mean: float
    p5: float
    p25: float
    p50: float
    p75: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values) -> "Stats | None":
        a = np.array([v for v in values if math.isfinite(v)], float)
        if a.size == 0:
            return None
        p = np.percentile(a, [5, 25, 50, 75, 95, 99])
        return cls(n=int(a.size), mean=float(a.mean()), **{k: float(v) for k, v in zip(
            ("p5", "p25", "p50", "p75", "p95", "p99"), p)}, max=float(a.max()))


class Segment(_Model):
    """One part of the delivered items' end-to-end latency, from their traces.

    A `stage` is an operator at a site: from the item's arrival there to its output leaving
    (queueing, batching and compute). A `hop` runs from one step's output to the next step's
    input: the network and the brokers between (`source → detect` from capture, `track → sink`
    to the replay). The means of an item's segments add up to its end-to-end latency; hops between
    machines assume their clocks agree. `predicted_ms`: the plan's figure for the same segment (the
    worker group's latency for a stage, the link's latency for a hop, 0 within a site)."""

    kind: Literal["stage", "hop"]
    name: str
    sites: str
    order: int = 0
    ms: Stats
    predicted_ms: float | None = None


class Rate(_Model):
    """Items/s of one quantity, per second of recorded video: what the plan predicts for all its
    streams (`planned`), that figure at the load the replay offered (`expected`: scaled by the frames
    replayed per second over the frames the plan expects), and what was measured."""

    name: str
    unit: str = "items"
    planned: float | None = None
    expected: float | None = None
    measured: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.measured is None or not self.expected:
            return None
        return self.measured / self.expected


class LinkPoint(_Model):
    """A link's wire at one moment (`up --isolate`): seconds since the clock started, its state,
    and bytes each way since the clock started (kernel counters of its veth ends)."""

    t: float
    link: str
    from_: str = Field(alias="from")
    to: str
    up: bool
    bytes_forward: int
    bytes_backward: int
    held_from: int | None = None
    held_to: int | None = None


class Outage(_Model):
    """A link down from `down_at` to `up_at` (None: still down at the end), in seconds since the
    clock started, as the wire samples saw it; the frames captured meanwhile and how late their
    results came."""

    link: str
    down_at: float
    up_at: float | None = None
    peak_held: dict[str, int] = Field(default_factory=dict, description="site -> most messages its broker held "
                                      "while the link was down (retained ones and the bridges' queues)")
    frames_captured: int = 0
    frames_delivered: int = 0
    latency_p50_ms: float | None = None
    latency_max_ms: float | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.up_at is None else self.up_at - self.down_at


class Replan(_Model):
    """A new plan version on the retained routes topic, `t` seconds after the replay's clock started."""

    t: float
    version: int
    plan: str = ""
    cost_per_hour: float | None = None
    accuracy: float | None = Field(None, description="the plan's predicted end-to-end accuracy (the zoo's product)")


class Sampling(_Model):
    frames: int = Field(ge=0, description="frames delivered with a sampled re-ID's count")
    crops: int = Field(ge=0, description="their crops: the boxes their results carry")
    embedded: int = Field(ge=0, description="the crops the sampled re-ID embedded for them")


class ReplayResult(_Model):
    """One replay run. `seconds` is wall-clock; `throughput` is (seconds since start, items/s)."""

    version: int = RESULT_VERSION
    scenario: str
    mode: Literal["local", "broker"]
    speed: float = 1.0
    started_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    seconds: float = 0.0
    cameras: dict[str, CameraCounts] = Field(default_factory=dict)
    latency_ms: list[float] = Field(default_factory=list, description="end to end, one per delivered item")
    links: list[LinkMeasure] = Field(default_factory=list)
    throughput: list[tuple[float, float]] = Field(default_factory=list)
    plan_cost_per_hour: float | None = None
    plan_predicted_accuracy: float | None = None
    plan_summary: dict[str, Any] = Field(default_factory=dict, description="variants, workers per tier, ...")
    plan_accuracy_metric: str | None = Field(None, description="what the zoo's accuracy figures measure, when "
                                             "the zoo says (e.g. IDF1); None: the zoo's accuracy product, unnamed")
    latency_predicted_ms: float | None = Field(None, description="the plan's worst compute + link latency")
    latency_slo_ms: float | None = Field(None, description="the workflow's slo.latency_ms, as the plan has it")
    load: float | None = Field(None, description="frames/s the replay offered over the frames/s the plan expects "
                               "(its streams at their rates): the plan's figures at this load are scaled by it")
    rates: list[Rate] = Field(default_factory=list)
    segments: list[Segment] = Field(default_factory=list)
    drops: dict[str, list[tuple[float, int]]] = Field(
        default_factory=dict, description="reason -> (second since start, items dropped in that second)")
    replans: list[Replan] = Field(default_factory=list)
    reconstructed: dict[str, list[tuple[float, int, int]]] = Field(
        default_factory=dict, description="operator -> (second since start, frames whose output of that operator a "
        "parity decoder rebuilt, frames delivered in that second): redundancy (ParM) at work")
    resent: dict[str, list[tuple[float, int, int]]] = Field(
        default_factory=dict, description="operator -> (second since start, frames whose output of that operator came "
        "from a re-sent copy, frames delivered in that second): re-sent requests (`resend`) at work")
    sampling: Sampling | None = Field(None, description="sampled re-ID (approximate association): what it embedded "
                                      "of the crops of the frames delivered; None when no frame carried the count")
    trace: str | None = Field(None, description="the load trace (replay --trace) that shaped the offered load")
    plans: list[Replan] = Field(default_factory=list, description="every plan version in effect during the run, "
                                "the first at t = 0")
    offered: list[tuple[float, float]] = Field(default_factory=list, description="(seconds since start, frames/s "
                                               "published)")
    held_back: int = Field(0, description="frames a cameras trace kept off (not published, not counted as lost)")
    link_timeline: list[LinkPoint] = Field(default_factory=list)
    outages: list[Outage] = Field(default_factory=list)
    tracking: TrackingMetrics | None = None
    partial: bool = False
    problems: list[str] = Field(default_factory=list)

    def add_problem(self, message: str) -> None:
        """Record bad data (a missing video, a truncated gt) and mark the run partial."""
        self.problems.append(message)
        self.partial = True

    def latency_percentiles(self) -> dict[str, float | None]:
        """p50, p95, p99, mean and max of `latency_ms` (all None when nothing was delivered)."""
        values = np.array([v for v in self.latency_ms if math.isfinite(v)], float)
        if values.size == 0:
            return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(values.mean()),
                "max": float(values.max())}

    def totals(self) -> CameraCounts:
        """The per-camera counts summed."""
        fields = CameraCounts.model_fields
        return CameraCounts(**{f: sum(getattr(c, f) for c in self.cameras.values()) for f in fields})

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(by_alias=True, indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "replay result") -> ReplayResult:
        """Parse `to_json()` output; a SpecError names `source` and the path of every bad field."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as err:
            raise SpecError(format_validation_error(source, err)) from None

    def write(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def read(cls, path: Path | str) -> ReplayResult:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SpecError([f"{path}: cannot be read ({exc.strerror or exc})"]) from None
        return cls.from_json(text, str(path))
