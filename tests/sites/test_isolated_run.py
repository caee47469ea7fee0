"""The AI City example as isolated sites (issue 13's bars): a namespace, a broker and an agent per
site, bridged over links shaped to their bandwidth; the controller and the replay on the sites' LANs.

Needs root and `ip netns`; skips with the reason otherwise.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from jellybean.agents.deployment import Deployment
from jellybean.agents.processes import stop_processes
from jellybean.agents.status import collect_status
from jellybean.cli.replay import open_scenario
from jellybean.cli.run import agent_names, spawn_agents, start_controller
from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.strategies import make_plan
from jellybean.replay.driver import BrokerReplay
from jellybean.replay.outcome import build_result
from jellybean.replay.scene import SceneConfig, write_scene
from jellybean.sites import available
from jellybean.sites.brokers import SiteBrokers

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity"
ISOLATE, WHY_NOT = available()
pytestmark = pytest.mark.skipif(not ISOLATE, reason=f"cannot build site namespaces: {WHY_NOT}")


@dataclass
class Isolated:
    dep: Deployment
    sites: SiteBrokers
    controller: object
    procs: dict
    workdir: Path

    def replay(self, scene: Path, at_clock=None):
        """Replay `scene` into the sites; `at_clock(event)` runs on the replay's clock events."""
        wire = self.sites.wire_recorder()

        def clock(event: str) -> None:
            wire.on_clock(event)
            if at_clock is not None:
                at_clock(event)

        scenario = open_scenario(scene, None)
        data = BrokerReplay(self.sites.url(self.sites.controller_at, "replay"), ca=self.sites.ca,
                            site_urls=self.sites.replay_urls(), on_clock=clock, drain_s=40.0).run(scenario)
        data.wire, data.wire_samples = wire.measured(), list(wire.samples)
        return data, build_result(data, scenario, self.dep.plan)


@pytest.fixture(scope="module")
def plan_inputs():
    inputs = load_inputs(EXAMPLE / "workflow.yaml", EXAMPLE / "zoo.yaml", EXAMPLE / "infrastructure.yaml")
    return inputs, make_plan(build_problem(inputs), "optimal", time_limit=30, inputs=inputs.paths)


@pytest.fixture(scope="module")
def isolated(tmp_path_factory, plan_inputs):
    """One isolated deployment for the module's tests (in file order: undisturbed bytes first, then a
    cut link, then a broker restart; each asserts on its own replay, and no test may cause a re-plan)."""
    inputs, plan = plan_inputs
    tmp_path = tmp_path_factory.mktemp("isolated")
    dep = Deployment(plan=plan, inputs=inputs, zoo_dir=EXAMPLE)
    names = agent_names(dep)
    # Its own subnet: `up --isolate` and benchmarks/sites.py use the default one.
    sites = SiteBrokers(dep, tmp_path / "brokers", names, outage_budget_s=60.0, subnet="10.214.0.0/16").start()
    procs, controller = {}, None
    try:
        procs = spawn_agents(dep, sites.agent_urls(), tmp_path, ca=sites.ca, wrap=sites.wraps())
        controller = start_controller(dep, sites.controller_url, sites.ca, 90.0, 65000.0, True,  # as `up --isolate`
                                      takeover=sites.takeover_url, outage_budget=60.0)
        runner = threading.Thread(target=controller.run, name="controller", daemon=True)
        runner.start()
        yield Isolated(dep, sites, controller, procs, tmp_path)
    finally:
        if controller is not None:
            controller.stop()
        stop_processes(procs.values())
        sites.stop()
    assert not set(sites.network.created)


def assert_nothing_lost(result) -> None:
    totals = result.totals()
    assert totals.frames_in > 0
    assert (totals.lost, totals.duplicates, totals.dropped) == (0, 0, 0), result.cameras


def test_each_link_carries_what_the_plan_says_on_its_wire(isolated, tmp_path):
    scene = tmp_path / "scene"
    write_scene(scene, SceneConfig(cameras=4, seconds=10, seed=7))   # the scene the example's sizes are measured on
    data, result = isolated.replay(scene)
    assert_nothing_lost(result)
    links = {(link.from_, link.to): link for link in result.links}
    used = [use for use in isolated.dep.plan.links if use.kb_per_s > 0]
    assert {(u.from_, u.to) for u in used} == {("crossing", "hub"), ("hub", "cloud")}
    for use in used:
        link = links[(use.from_, use.to)]
        expected = use.kb_per_s * result.load
        assert link.wire_kb_per_s == pytest.approx(expected, rel=0.15), (use.from_, use.to, link, expected)
    # The link the plan leaves unused carries no item, only the crossing agent's heartbeats and
    # metrics (the controller's shortest path from the crossing is that link).
    unused = links[("crossing", "cloud")]
    assert unused.bytes == 0
    busiest = links[("crossing", "hub")].wire_bytes
    assert 0 < unused.wire_bytes < 0.02 * busiest, (unused.wire_bytes, busiest)
    assert links[("cloud", "crossing")].wire_bytes < 0.02 * busiest
    # `status` at the cloud's broker (as the read-only replay user) sees every bridge up.
    found = collect_status(isolated.sites.url(isolated.sites.controller_at, "replay"), ca=isolated.sites.ca, wait=5)
    assert dict(found.bridges) == {"bridge-crossing-hub": True, "bridge-hub-cloud": True,
                                   "bridge-crossing-cloud": True}


def test_a_cut_link_delays_results_and_loses_none_and_the_controller_waits(isolated, tmp_path):
    scene = tmp_path / "scene"
    write_scene(scene, SceneConfig(cameras=2, seconds=16, seed=7))
    cut_at, cut_for = 3.0, 10.0
    network = isolated.sites.network
    window: dict[str, float] = {}

    def partition() -> None:
        time.sleep(cut_at)
        network.set_link(("hub", "cloud"), up=False)
        window["down"] = time.time()
        time.sleep(cut_for)
        network.set_link(("hub", "cloud"), up=True)
        window["up"] = time.time()

    cutter = threading.Thread(target=partition, name="partition")
    data, result = isolated.replay(scene, at_clock=lambda e: cutter.start() if e == "start" else None)
    cutter.join(30)
    assert_nothing_lost(result)
    # The report shows the outage and the delay it caused to the frames captured meanwhile.
    [outage] = [o for o in result.outages if o.link == "hub->cloud"]
    assert cut_for - 1.5 <= outage.seconds <= cut_for + 1.5, outage
    assert outage.frames_captured == outage.frames_delivered > 0
    assert outage.latency_max_ms > (cut_for - 3) * 1000, outage
    # The hub's broker held the cut bridge's queue: at least a message per two frames captured
    # meanwhile, over what it held before the cut (retained assignments, statuses, link states).
    before = max(x.held_from or 0 for x in result.link_timeline if x.link == "hub->cloud" and x.t < outage.down_at)
    assert outage.peak_held.get("hub", 0) > before + outage.frames_captured / 2, (before, outage)
    # The crossing and the hub kept processing while cut off: results that reached the cloud
    # later carry detect and re-ID outputs from inside the outage.
    inside = {"detect": 0, "reid": 0}
    for d in data.sink.snapshot().values():
        for site, operator, _t_in, t_out in d.trace:
            if operator in inside and window["down"] + 0.5 < t_out < window["up"] - 0.5:
                inside[operator] += 1
    assert min(inside.values()) > 10 * cut_for / 2, inside
    # The controller saw the hub go silent and come back, and did not re-plan it away.
    events = [e.what for e in isolated.controller.events]
    events_text = "\n".join(events)
    assert any("hub unreachable" in e for e in events), events_text
    assert any("reachable again" in e for e in events), events_text
    assert isolated.controller.replans == 0, events_text
    assert not result.replans, (result.replans, events_text)
    # The bridge's state at the controller ends up, and a "down" it saw (the bridge's last will,
    # 1.5 keep-alives after the hub's last packet: not always within a 10 s cut on a busy machine)
    # is followed by "up again".
    assert isolated.controller.links["bridge-hub-cloud"].up, events_text
    downs = [i for i, e in enumerate(events) if "link bridge-hub-cloud went down" in e]
    ups = [i for i, e in enumerate(events) if "link bridge-hub-cloud is up again" in e]
    assert not downs or (ups and ups[-1] > downs[-1]), events_text


def test_a_site_broker_restart_is_survived_by_its_agents_and_bridges(isolated, tmp_path):
    scene = tmp_path / "scene"
    write_scene(scene, SceneConfig(cameras=2, seconds=8, seed=7))
    restarted = {}

    def restart_hub() -> None:
        time.sleep(3.0)
        restarted["pid_before"] = isolated.sites.pids()["hub"]
        isolated.sites.restart("hub")
        restarted["pid_after"] = isolated.sites.pids()["hub"]

    restarter = threading.Thread(target=restart_hub, name="restart-hub")
    data, result = isolated.replay(scene, at_clock=lambda e: restarter.start() if e == "start" else None)
    restarter.join(30)
    assert restarted["pid_before"] != restarted["pid_after"]
    assert_nothing_lost(result)
    assert isolated.controller.replans == 0
