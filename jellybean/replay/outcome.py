"""RunData (what replay measured) + the plan + ground truth -> a ReplayResult."""

from __future__ import annotations

from collections import defaultdict

from jellybean.replay.cityflow import Scenario
from jellybean.replay.driver import RunData
from jellybean.replay.results import CameraCounts, LinkMeasure, ReplayResult
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


def nothing_came_out(result: ReplayResult) -> str | None:
    """Why a replay is worthless when none of its frames came out of the workflow, else None."""
    t = result.totals()
    if not t.frames_in or t.frames_out:
        return None
    return f"none of the {t.frames_in} frames came out ({t.dropped} dropped on the way, {t.lost} never accounted for)"


def build_result(data: RunData, scenario: Scenario, plan: Plan | None, *, evaluate: bool = True) -> ReplayResult:
    result = ReplayResult(scenario=f"{scenario.split}/{scenario.name}", mode=data.mode, speed=data.speed,
                          seconds=data.seconds)
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
    predicted = {(l.from_, l.to): l.kb_per_s for l in plan.links} if plan else {}
    for (a, b), n in sorted(_link_bytes(data).items()):
        result.links.append(LinkMeasure(**{"from": a}, to=b, bytes=n, kb_per_s=n / 1024 / seconds,
                                        predicted_kb_per_s=predicted.get((a, b))))
    prev_t, prev_n = 0.0, 0
    for t, n in data.timeline:
        if t - prev_t >= 0.5:
            result.throughput.append((round(t, 3), (n - prev_n) / (t - prev_t)))
            prev_t, prev_n = t, n
    if plan is not None:
        result.plan_cost_per_hour = plan.cost.total
        result.plan_predicted_accuracy = plan.predicted.accuracy
        tiers: dict[str, list[str]] = defaultdict(list)
        for w in plan.workers:
            tiers[w.tier].append(f"{w.location}: {w.operator}={w.variant} x{w.count}")
        result.plan_summary = {"variants": dict(plan.variants), "workers": dict(tiers), "status": plan.solver.status}
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
