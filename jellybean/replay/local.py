"""`replay --local`: the plan's operators in one process, no broker, no agents.

Each operator runs the plan's variant (one instance; stream-keyed state kept per stream as on an
agent). Items follow the plan's routing weights from site to site only on paper: the bytes each
hop would carry are measured from the encoded items and booked on the link it would cross."""

from __future__ import annotations

import time
from typing import Callable

from jellybean.agents.deployment import Deployment, _downstream, assign_cameras, build_routes, keyed_map
from jellybean.agents.items import Item, encode_item
from jellybean.agents.operators.base import Operator, OperatorConfig, create, runtime_for
from jellybean.agents.routing import Router
from jellybean.replay.cityflow import Scenario
from jellybean.replay.driver import RunData, _pace, encode_frame, playable_cameras, schedule


class LocalPipeline:
    def __init__(self, dep: Deployment, threads: int | None = None) -> None:
        self.dep = dep
        self.down, self.sources, self.sinks = _downstream(dep.inputs)
        self.keyed = keyed_map(dep.plan, dep.inputs)
        self.routes = build_routes(dep, 1)
        self.router = Router(self.routes.routing, self.routes.placements, self.keyed)
        self.operators: dict[str, Operator] = {}
        for op, variant in dep.plan.variants.items():
            zop = dep.inputs.zoo.operator(op)
            v = zop.variant(variant)
            model = (dep.zoo_dir / v.model) if v.model else None
            self.operators[op] = create(runtime_for(zop.task, v.runtime), OperatorConfig(
                operator=op, variant=variant, model=model, threads=threads, params=dict(v.params)))

    def close(self) -> None:
        for op in self.operators.values():
            op.close()

    def run_item(self, item: Item, site: str, data: RunData) -> list[Item]:
        """Push one source item through every operator; returns the sink outputs."""
        outputs: list[Item] = []
        frontier = [(item, site, f"{src}->{op}", op) for src, ops in self.sources.items() for op in ops]
        while frontier:
            it, at, edge, op = frontier.pop(0)
            dest = self.router.next_site(edge, at, it.stream) or at
            if dest != at:
                data.link_bytes[(at, dest)] += len(encode_item(it))
            t_in = time.time()
            out = self.operators[op].process([it])[0] if it.dropped is None or self.keyed[op] != "item" else it
            out.trace.append([dest, op, round(t_in, 4), round(time.time(), 4)])
            if op in self.sinks:
                outputs.append(out)
            for nxt in self.down.get(op, []):
                frontier.append((out, dest, f"{op}->{nxt}", nxt))
        return outputs


def run_local(dep: Deployment, scenario: Scenario, *, speed: float = 1.0, limit_s: float | None = None,
              threads: int | None = None, progress: Callable[[int, int], None] | None = None) -> RunData:
    data = RunData(mode="local", speed=speed, started_at=time.time())
    cams = playable_cameras(scenario, data.problems)
    pipeline = LocalPipeline(dep, threads)
    try:
        data.camera_sites = assign_cameras(pipeline.routes, [c.key for c in cams])
        total = sum(c.frame_count or 0 for c in cams)
        t0 = time.time()
        sent = 0
        for t_rel, cam, frame, image in schedule(cams, data.problems, limit_s):
            if speed > 0:
                _pace(t0, t_rel, speed)
            item = encode_frame(cam, frame, image, time.time())
            data.published[cam.key].add(frame)
            data.media_seconds = max(data.media_seconds, t_rel + 1.0 / (cam.fps or 10.0))
            for out in pipeline.run_item(item, data.camera_sites[cam.key], data):
                data.sink.add(out)
            sent += 1
            if sent % 10 == 0:
                data.timeline.append((time.time() - t0, data.sink.count()))
            if progress:
                progress(sent, total)
        data.timeline.append((time.time() - t0, data.sink.count()))
        data.seconds = time.time() - t0
    finally:
        pipeline.close()
    return data

