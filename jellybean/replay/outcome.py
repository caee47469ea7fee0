"""RunData (what replay measured) + the plan + ground truth -> a ReplayResult."""

from __future__ import annotations

import math
from collections import defaultdict

from jellybean.graphs import reachable
from jellybean.replay.cityflow import Scenario
from jellybean.replay.driver import RunData
from jellybean.replay.results import (CameraCounts, LinkMeasure, LinkPoint, Outage, Rate, Replan, ReplayResult,
                                      Sampling, Segment, Stats)
from jellybean.replay.sink import Delivered
from jellybean.replay.tracking_metrics import Prediction, evaluate_mtmc
from jellybean.spec.plan import Plan


def predictions(data: RunData) -> list[Prediction]:
    preds = []
    for d in data.sink.snapshot().values():
        if d.dropped:
            continue
        for box, ident in zip(d.boxes, d.ids):
            preds.append(Prediction(camera=d.stream, frame=d.frame, id=int(ident), left=box[0], top=box[1],
                                    width=box[2], height=box[3]))
    return preds


def _link_bytes(data: RunData) -> dict[tuple[str, str], int]:
    """Source hops (measured by replay) plus agent-to-agent hops (measured by the agents)."""
    total: dict[tuple[str, str], int] = defaultdict(int)
    for key, n in data.link_bytes.items():
        total[key] += n
    for m in data.agent_metrics.values():
        # A replay with a session counts only its own items' bytes, not what ran before it.
        sent = m.session_bytes_out.get(data.session, {}) if data.session else m.bytes_out
        for to, n in sent.items():
            if to != "sink":
                total[(m.site, to)] += n
    return {k: v for k, v in total.items() if k[0] != k[1]}


def along_links(sent: dict[tuple[str, str], int], plan: Plan | None) -> dict[tuple[str, str], int]:
    """Bytes sent from site a to site b, booked on the links they cross: a pair the plan has no
    link for is spread over the path the site brokers' bridges carry it on (the widest over the
    plan's links, as jellybean.agents.bridges chooses), so each row is one wire."""
    if plan is None or not plan.links:
        return dict(sent)
    from jellybean.agents.bridges import widest_next_hops

    direct = {(l.from_, l.to) for l in plan.links} | {(l.to, l.from_) for l in plan.links}
    arcs = {(l.from_, l.to): (l.bandwidth_mbps, l.latency_ms) for l in plan.links}
    out: dict[tuple[str, str], int] = defaultdict(int)
    trees: dict[str, dict[str, str]] = {}
    for (a, b), n in sent.items():
        if (a, b) in direct:
            out[(a, b)] += n
            continue
        nxt = trees.setdefault(b, widest_next_hops(arcs, b))
        hops, here = [], a
        while here != b and here in nxt and len(hops) <= len(arcs):
            hops.append((here, nxt[here]))
            here = nxt[here]
        for hop in (hops if here == b else [(a, b)]):
            out[hop] += n
    return dict(out)


def _kb_per_s(mbps: float | None) -> float | None:
    return None if not mbps else mbps * 1e6 / 8 / 1024


def _t0(data: RunData) -> float:
    """When the replay's clock started: the driver's record, else the first frame's capture."""
    if data.clock_start:
        return data.clock_start
    captures = [d.capture_ts for d in data.sink.snapshot().values()]
    return min(captures, default=data.started_at)


def _source_name(plan: Plan | None) -> str:
    names = {s.source for s in plan.streams} if plan else set()
    return names.pop() if len(names) == 1 else "source"


def segments(data: RunData, plan: Plan | None) -> list[Segment]:
    """The delivered items' latency split into stages and hops from their traces (see Segment)."""
    samples: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    order: dict[tuple[str, str, str], int] = {}
    source = _source_name(plan)

    def add(key: tuple[str, str, str], position: int, seconds: float) -> None:
        samples[key].append(seconds * 1000.0)
        order[key] = min(order.get(key, position), position)

    for d in data.sink.snapshot().values():
        if d.dropped or not d.trace:
            continue
        prev, site, t = source, data.camera_sites.get(d.stream, "?"), d.capture_ts
        for i, entry in enumerate(_trace(d)):
            at, op, t_in, t_out = entry
            add(("hop", f"{prev} → {op}", f"{site} → {at}"), 2 * i, t_in - t)
            add(("stage", op, at), 2 * i + 1, t_out - t_in)
            prev, site, t = op, at, t_out
        add(("hop", f"{prev} → sink", f"{site} → replay"), 2 * len(d.trace), d.received_ts - t)
    result = []
    for key, values in samples.items():
        kind, name, sites = key
        stats = Stats.of(values)
        if stats is not None:
            result.append(Segment(kind=kind, name=name, sites=sites, order=order[key], ms=stats,
                                  predicted_ms=_predicted_ms(plan, kind, name, sites)))
    return sorted(result, key=lambda s: (s.order, s.name, s.sites))


def _trace(d: Delivered) -> list[tuple[str, str, float, float]]:
    out = []
    for entry in d.trace:
        if len(entry) >= 4:
            out.append((str(entry[0]), str(entry[1]), float(entry[2]), float(entry[3])))
    return out


def _predicted_ms(plan: Plan | None, kind: str, name: str, sites: str) -> float | None:
    """The plan's latency for the same segment: the worker group's for a stage, the link's for a
    hop between sites (0 within one); None where the plan has no figure (the hop to the sink)."""
    if plan is None:
        return None
    if kind == "stage":
        group = next((w for w in plan.workers if w.location == sites and w.operator == name), None)
        return group.latency_ms if group is not None and group.latency_ms else None
    a, b = sites.split(" → ", 1)
    if b == "replay" or name.endswith("→ sink"):
        return None
    if a == b:
        return 0.0
    link = next((l for l in plan.links if l.from_ == a and l.to == b), None)
    return link.latency_ms if link is not None else None


def drops_over_time(data: RunData, t0: float) -> dict[str, list[tuple[float, int]]]:
    """Items dropped with a reason, per reason and per second since the clock started (when the
    sink heard of them)."""
    bins: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for d in data.sink.snapshot().values():
        if d.dropped:
            bins[d.dropped][int(math.floor(d.received_ts - t0))] += 1
    return {reason: sorted((float(s), n) for s, n in per.items()) for reason, per in sorted(bins.items())}


def marked_over_time(data: RunData, t0: float, mark: str) -> dict[str, list[tuple[float, int, int]]]:
    """Per operator and per second (when the sink heard of them): the frames whose output of that
    operator carries `mark` (`reconstructed`: rebuilt from parity; `resent`: served from a re-sent
    copy), beside all frames delivered that second."""
    delivered: dict[int, int] = defaultdict(int)
    rebuilt: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for d in data.sink.snapshot().values():
        if d.dropped:
            continue
        second = int(math.floor(d.received_ts - t0))
        delivered[second] += 1
        for op in getattr(d, mark):
            rebuilt[op][second] += 1
    return {op: [(float(s), per.get(s, 0), delivered[s]) for s in sorted(delivered)] for op, per in sorted(rebuilt.items())}


def upstream_load(data: RunData, plan: Plan, location: str) -> float | None:
    """Frames/s the replay offered from the streams at ``location`` and every location that reaches
    it over the plan's links, over the plan's frames/s for those streams; None when unknown."""
    senders: dict[str, set[str]] = defaultdict(set)
    for use in plan.links:
        senders[use.to].add(use.from_)
    upstream = reachable(senders, location)
    planned = sum(s.rate for s in plan.streams if s.location in upstream)
    seconds = data.media_seconds or data.seconds
    if planned <= 0 or seconds <= 0 or not data.camera_sites:
        return None
    frames = sum(len(f) for cam, f in data.published.items() if data.camera_sites.get(cam) in upstream)
    return frames / seconds / planned


def sampling(data: RunData) -> Sampling | None:
    """What a sampled re-ID embedded, against the crops of the frames it counted (delivered ones)."""
    counted = [d for d in data.sink.snapshot().values() if not d.dropped and d.embedded is not None]
    if not counted:
        return None
    return Sampling(frames=len(counted), crops=sum(len(d.boxes) for d in counted),
                    embedded=sum(d.embedded for d in counted))


def _rates_over_time(counts: list[tuple[float, int]], every_s: float = 0.5) -> list[tuple[float, float]]:
    """(t, count so far) samples -> (t, per second since the previous kept sample), at most every `every_s`."""
    out, prev_t, prev_n = [], 0.0, 0
    for t, n in counts:
        if t - prev_t >= every_s:
            out.append((round(t, 3), (n - prev_n) / (t - prev_t)))
            prev_t, prev_n = t, n
    return out


def link_timeline(data: RunData) -> list[LinkPoint]:
    return [LinkPoint(t=round(x.t, 3), link=x.link, **{"from": x.from_}, to=x.to, up=x.up,
                      bytes_forward=x.bytes_forward, bytes_backward=x.bytes_backward,
                      held_from=x.held_from, held_to=x.held_to) for x in data.wire_samples]


def outages(data: RunData, t0: float) -> list[Outage]:
    """Spans where a link's samples say down, with the frames captured meanwhile: how many were
    delivered and their end-to-end latency (the delay the outage caused them)."""
    spans: list[Outage] = []
    open_at: dict[str, float] = {}
    for x in data.wire_samples:
        if not x.up and x.link not in open_at:
            open_at[x.link] = x.t
        elif x.up and x.link in open_at:
            spans.append(Outage(link=x.link, down_at=round(open_at.pop(x.link), 3), up_at=round(x.t, 3)))
    spans += [Outage(link=link, down_at=round(t, 3)) for link, t in open_at.items()]
    delivered = data.sink.snapshot()
    for o in spans:
        end = o.up_at if o.up_at is not None else math.inf
        for x in data.wire_samples:
            if x.link == o.link and o.down_at <= x.t <= end:
                for site, held in ((x.from_, x.held_from), (x.to, x.held_to)):
                    if held is not None:
                        o.peak_held[site] = max(o.peak_held.get(site, 0), held)
        caught = [d for d in delivered.values() if o.down_at <= d.capture_ts - t0 <= end]
        ok = sorted(d.latency_ms for d in caught if not d.dropped)
        o.frames_captured = len(caught)
        o.frames_delivered = len(ok)
        o.latency_p50_ms = round(ok[len(ok) // 2], 1) if ok else None
        o.latency_max_ms = round(ok[-1], 1) if ok else None
    return sorted(spans, key=lambda o: (o.down_at, o.link))


def plans_in_effect(data: RunData, t0: float) -> list[Replan]:
    """Every plan version the routes topic announced, the first one (in effect when the clock
    started) at t = 0."""
    return [Replan(t=max(0.0, round(ts - t0, 3)), version=v, plan=name, cost_per_hour=cost, accuracy=accuracy)
            for ts, v, name, cost, accuracy in data.routes_log]


def replans(data: RunData, t0: float) -> list[Replan]:
    """Plan versions the routes topic announced after the first one the replay saw."""
    return plans_in_effect(data, t0)[1:]


def rates(data: RunData, result: ReplayResult, plan: Plan | None) -> list[Rate]:
    """Items/s per second of recorded video: the plan's, the plan's at the load replayed, measured.

    - frames per stream: the plan's rate of one stream against each camera's publishing rate
      (its frames' capture times), averaged over the cameras;
    - frames in: the plan's frames/s of all its streams against the frames published over the
      replay; their ratio is the load the replay offered, which scales the plan's other figures;
    - per operator: the plan's throughput against what its agents received (their counters of the
      plan's items, frames or crops, over the replay; broker mode only);
    - frames delivered: every frame published should come out."""
    seconds = data.media_seconds or data.seconds
    if seconds <= 0:
        return []
    totals = result.totals()
    published = totals.frames_in / seconds
    cams = len(result.cameras)
    planned = sum(s.rate for s in plan.streams) if plan else 0.0
    streams = sum(s.count for s in plan.streams) if plan else 0
    per_stream = planned / streams if streams else None
    load = published / planned if planned else None
    measured_stream = _stream_rate(data)
    if measured_stream is None:
        stream_note = "no pacing (--speed 0): no rate per second of video"
    elif per_stream and measured_stream < 0.9 * per_stream:
        stream_note = "published slower than the plan's rate: the replay fell behind, or the video's fps is lower"
    else:
        stream_note = ""
    out = [Rate(name="frames per stream", unit="frames", planned=per_stream, expected=per_stream,
                measured=measured_stream, note=stream_note),
           Rate(name="frames in, all streams", unit="frames", planned=planned or None, measured=published,
                note=(f"{cams} camera(s) replayed" + (f" of the plan's {streams} stream(s)" if plan else "")
                      + "; the plan's figures below are scaled by measured / plan of this row"))]
    received = _operator_arrivals(data)
    order = {s.name: s.order for s in result.segments if s.kind == "stage"}
    ops = sorted(plan.predicted.throughput.items(), key=lambda kv: (order.get(kv[0], 1 << 30), kv[0])) if plan else []
    for op, rate in ops:
        measured = received.get(op)
        note = "" if measured is not None else (
            "agents' counters needed (replay --broker)" if data.mode != "broker" else "no counters from its agents")
        out.append(Rate(name=f"{op}, received", planned=rate, expected=rate * load if load is not None else None,
                        measured=None if measured is None else measured / seconds, note=note))
    out.append(Rate(name="frames delivered", unit="frames", planned=planned or None, expected=published,
                    measured=totals.frames_out / seconds))
    return out


def _stream_rate(data: RunData) -> float | None:
    """Frames per second of video each camera was published at (from its frames' capture times at
    the sink, wall clock over the replay speed), averaged over the cameras."""
    if data.speed <= 0:
        return None
    times: dict[str, list[float]] = defaultdict(list)
    for d in data.sink.snapshot().values():
        times[d.stream].append(d.capture_ts)
    per = [(len(ts) - 1) / (max(ts) - min(ts)) / data.speed for ts in times.values()
           if len(ts) > 1 and max(ts) > min(ts)]
    return sum(per) / len(per) if per else None


def _operator_arrivals(data: RunData) -> dict[str, float]:
    """The plan's items each operator received during the replay, summed over its agents (their
    counters at the end minus at the clock's start); an operator on an agent without a count before
    the start is left out."""
    total: dict[str, float] = defaultdict(float)
    unknown: set[str] = set()
    for agent, last in data.agent_metrics.items():
        first = data.metrics_at_start.get(agent)
        before = {o.operator: o.arrivals for o in first.operators} if first else None
        for o in last.operators:
            if before is None:
                if o.arrivals:
                    unknown.add(o.operator)
                continue
            total[o.operator] += max(0.0, o.arrivals - before.get(o.operator, 0.0))
    return {op: n for op, n in total.items() if op not in unknown}


def nothing_came_out(result: ReplayResult) -> str | None:
    """Why a replay is worthless when none of its frames came out of the workflow, else None."""
    t = result.totals()
    if not t.frames_in or t.frames_out:
        return None
    return f"none of the {t.frames_in} frames came out ({t.dropped} dropped on the way, {t.lost} never accounted for)"


def build_result(data: RunData, scenario: Scenario, plan: Plan | None, *, evaluate: bool = True,
                 accuracy_metric: str | None = None) -> ReplayResult:
    """`accuracy_metric`: what the zoo's accuracy figures measure (e.g. "IDF1"); by default what the
    plan says its zoo named. The report compares the plan's accuracy with the measured IDF1 only
    when it is IDF1."""
    if accuracy_metric is None and plan is not None:
        accuracy_metric = plan.predicted.accuracy_metric
    result = ReplayResult(scenario=f"{scenario.split}/{scenario.name}", mode=data.mode, speed=data.speed,
                          seconds=data.seconds, plan_accuracy_metric=accuracy_metric)
    delivered = data.sink.snapshot()
    for cam, frames in sorted(data.published.items()):
        got = [delivered.get((cam, f)) for f in frames]
        out = sum(1 for d in got if d is not None and not d.dropped)
        dropped = sum(1 for d in got if d is not None and d.dropped)
        late = sum(1 for d in got if d is not None and d.dropped and "late" in d.dropped)
        result.cameras[cam] = CameraCounts(frames_in=len(frames), frames_out=out, dropped=dropped,
                                           duplicates=data.sink.duplicates.get(cam, 0), late=late,
                                           lost=len(frames) - out - dropped)
    result.latency_ms = sorted(round(d.latency_ms, 3) for d in delivered.values() if not d.dropped)
    # Per second of recorded video, like the plan's figures, whatever the replay speed.
    seconds = max(data.media_seconds or data.seconds, 1e-9)
    planned = {(l.from_, l.to): l for l in plan.links} if plan else {}
    wire = {(w.from_, w.to): w.bytes for w in data.wire}
    payload = along_links(_link_bytes(data), plan)
    for a, b in sorted(set(payload) | set(wire)):
        n = payload.get((a, b), 0)
        use = planned.get((a, b))
        result.links.append(LinkMeasure(**{"from": a}, to=b, bytes=n, kb_per_s=n / 1024 / seconds,
                                        predicted_kb_per_s=use.kb_per_s if use else None,
                                        capacity_kb_per_s=_kb_per_s(use.bandwidth_mbps) if use else None,
                                        wire_bytes=wire.get((a, b)),
                                        wire_kb_per_s=wire[(a, b)] / 1024 / seconds if (a, b) in wire else None))
    result.throughput = _rates_over_time(data.timeline)
    result.offered = _rates_over_time(data.offered)
    result.trace, result.held_back = data.trace, data.held_back
    if plan is not None:
        result.plan_cost_per_hour = plan.cost.total
        result.plan_predicted_accuracy = plan.predicted.accuracy
        tiers: dict[str, list[str]] = defaultdict(list)
        for w in plan.workers:
            tiers[w.tier].append(f"{w.location}: {w.operator}={w.variant} x{w.count}")
        result.plan_summary = {"variants": dict(plan.variants), "workers": dict(tiers), "status": plan.solver.status}
        result.latency_predicted_ms = plan.predicted.latency_ms
        result.latency_slo_ms = plan.predicted.latency_bound_ms
    t0 = _t0(data)
    result.segments = segments(data, plan)
    result.rates = rates(data, result, plan)     # operators in the order of the traces' stages
    planned_frames = sum(s.rate for s in plan.streams) if plan else 0.0
    if planned_frames and (data.media_seconds or data.seconds) > 0:
        result.load = result.totals().frames_in / (data.media_seconds or data.seconds) / planned_frames
    if plan is not None:
        for link in result.links:
            link.load = upstream_load(data, plan, link.from_)
    result.drops = drops_over_time(data, t0)
    result.reconstructed = marked_over_time(data, t0, "reconstructed")
    result.resent = marked_over_time(data, t0, "resent")
    result.sampling = sampling(data)
    result.replans = replans(data, t0)
    result.plans = plans_in_effect(data, t0)
    result.link_timeline = link_timeline(data)
    result.outages = outages(data, t0)
    for p in data.problems:
        result.add_problem(p)
    totals = result.totals()
    if (nothing := nothing_came_out(result)) is not None:
        result.add_problem(nothing)
    elif totals.lost:
        result.add_problem(f"{totals.lost} of {totals.frames_in} frames never reached the sink (neither delivered "
                           "nor dropped with a reason)")
    if data.sink.rejected:
        result.add_problem(f"{data.sink.rejected} malformed message(s) on the sink topic were dropped")
    if evaluate:
        result.tracking = evaluate_mtmc(scenario, predictions(data), cameras=sorted(data.published),
                                        frames=dict(data.published))
        for cam, why in result.tracking.cameras_skipped.items():
            result.add_problem(f"{cam}: not scored: {why}")
    return result
