"""`collect_status` against a real Mosquitto: a running deployment (in-process agents and
controller), an agent that went offline, stale retained state and an empty broker."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from jellybean.agents import topics
from jellybean.agents.agent import Agent, AgentOptions
from jellybean.agents.controller import Controller
from jellybean.agents.deployment import Deployment, build_routes, sites_needed
from jellybean.agents.items import Item, encode_item
from jellybean.agents.messages import Announce, Status
from jellybean.agents.status import SILENT_S, StatusCollector, collect_status
from jellybean.agents.transport import MqttLink
from jellybean.errors import JellyBeanError
from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.strategies import make_plan

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity"


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    inputs = load_inputs(EXAMPLE / "workflow.yaml", EXAMPLE / "zoo.yaml", EXAMPLE / "infrastructure.yaml")
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    return Deployment(plan=plan, inputs=inputs, zoo_dir=EXAMPLE)


def _jpeg() -> bytes:
    import cv2
    import numpy as np

    ok, data = cv2.imencode(".jpg", np.full((360, 640, 3), 120, np.uint8))
    return data.tobytes()


class _Feeder:
    """Frames into the crossing's detector, one every 0.1 s, while the status is collected."""

    def __init__(self, url: str) -> None:
        self.link = MqttLink(url, "status-test-feeder", clean=True).start()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        frame, seq = _jpeg(), 0
        while not self.stop.wait(0.1):
            seq += 1
            self.link.publish(topics.data("crossing", "detect"),
                              encode_item(Item("cam", seq, time.time(), "frame", blobs=[frame])))

    def __enter__(self):
        self.link.wait_connected()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.link.stop()


@pytest.fixture
def running(mosquitto, tmp_path, deployment):
    """One in-process agent per planned site and the controller, deployed and ready."""
    agents = {site: Agent(AgentOptions(name=site, hardware=hw, broker=mosquitto, model_dirs=(EXAMPLE,),
                                       cache_dir=tmp_path / f"cache-{site}", threads=1)).start()
              for site, hw in sorted(sites_needed(deployment.plan).items())}
    ctl = Controller(deployment, mosquitto)
    stop = threading.Event()
    watcher = threading.Thread(target=ctl.run, kwargs={"until": stop.is_set}, daemon=True)
    try:
        ctl.connect()
        assert ctl.wait_for_agents(30) == []
        ctl.publish()
        assert ctl.wait_ready(60), ctl.errors()
        watcher.start()
        yield mosquitto, agents, ctl
    finally:
        stop.set()
        ctl.stop()
        for a in agents.values():
            a.stop()


def test_status_shows_the_plan_every_agent_and_the_bytes_over_each_link(running, deployment):
    url, agents, ctl = running
    plan = deployment.plan
    with _Feeder(url):
        found = collect_status(url, wait=30)
    assert found.running and found.complete
    assert found.plan is not None and found.plan.name == plan.name
    assert found.plan.cost.total == pytest.approx(plan.cost.total)
    assert found.version == ctl.version
    assert [a.name for a in found.agents] == sorted(agents)

    planned_ops: dict[str, set[str]] = {}
    for w in plan.workers:
        planned_ops.setdefault(w.location, set()).add(f"{w.operator}={w.variant}")
    for a in found.agents:
        assert a.state == "online" and a.site == a.name, a
        assert a.assignment_version == a.published_version == ctl.version
        assert {f"{t.operator}={t.variant}" for t in a.tasks} == planned_ops[a.site]
        assert a.errors == () and a.pid is not None and a.metrics_url is None
    crossing = next(a for a in found.agents if a.name == "crossing")
    detect = next(t for t in crossing.tasks if t.operator == "detect")
    assert detect.items_in > 0 and detect.items_per_s > 0 and detect.p99_ms > 0

    # Every link of the plan, with its bandwidth; the detector's output crosses crossing -> hub.
    links = {(link.from_, link.to): link for link in found.links}
    assert set(links) == {(link.from_, link.to) for link in plan.links}
    to_hub = links[("crossing", "hub")]
    assert to_hub.bandwidth_mbps == 100 and to_hub.bytes_per_s > 0
    assert to_hub.utilisation == pytest.approx(to_hub.bytes_per_s * 8 / 1e6 / 100)
    assert links[("crossing", "cloud")].bytes_per_s == 0.0

    doc = found.to_json()
    assert doc["plan"]["cost"]["total"] == pytest.approx(plan.cost.total)
    assert {a["name"]: a["state"] for a in doc["agents"]} == {name: "online" for name in agents}


def test_an_agent_that_stopped_shows_offline_and_the_rest_online(running):
    url, agents, ctl = running
    agents["hub"].stop()   # a clean stop: its retained status says offline
    found = collect_status(url, wait=30)
    states = {a.name: a.state for a in found.agents}
    assert states == {"cloud": "online", "crossing": "online", "hub": "offline"}
    assert found.running and found.complete


def test_an_empty_broker_runs_nothing_and_says_so_without_waiting_out_the_wait(mosquitto):
    started = time.monotonic()
    found = collect_status(mosquitto, wait=30)
    assert time.monotonic() - started < 15   # settled after SILENT_S, well before --wait
    assert not found.running and found.agents == () and found.plan is None
    message = str(found.nothing_running())
    assert message.startswith(f"nothing is running on {mosquitto}") and "jellybean up" in message


def test_stale_retained_state_is_not_a_running_deployment(mosquitto, deployment):
    """What a deployment leaves on a broker that outlives it: routes, an agent's announce and its
    offline status, and one whose status still says online but that no longer heartbeats."""
    link = MqttLink(mosquitto, "status-test-stale", clean=True).start()
    acked = threading.Semaphore(0)
    try:
        link.wait_connected()
        messages = [(topics.ROUTES, build_routes(deployment, 7).to_bytes())]
        for name, state in (("gone", "offline"), ("mute", "online")):
            announce = Announce(agent=name, site="hub", hardware="hub-x86-minipc")
            messages += [(topics.announce(name), announce.to_bytes()),
                         (topics.status(name), Status(agent=name, state=state).to_bytes())]
        for topic, payload in messages:
            link.publish(topic, payload, retain=True, on_done=acked.release)
        for _ in messages:   # the broker holds them all before we leave
            assert acked.acquire(timeout=20)
    finally:
        link.stop()
    found = collect_status(mosquitto, wait=30)
    assert {a.name: a.state for a in found.agents} == {"gone": "offline", "mute": "silent"}
    assert found.version == 7 and found.plan is not None and found.seconds >= SILENT_S
    assert not found.running
    message = str(found.nothing_running())
    assert "retained state" in message and f"plan {deployment.plan.name} version 7" in message
    assert "gone (offline)" in message and "mute (silent)" in message


def test_status_refuses_to_connect_as_the_controller():
    with pytest.raises(JellyBeanError, match="running controller would be disconnected"):
        StatusCollector("mqtts://controller@127.0.0.1:8883")


def test_a_broker_that_is_not_there_is_one_clear_error():
    from jellybean.agents.broker import free_port

    with pytest.raises(JellyBeanError, match="could not connect to the broker"):
        collect_status(f"mqtt://127.0.0.1:{free_port()}", wait=1)


def test_on_a_secured_broker_a_user_with_replays_rights_sees_the_agents_from_their_metrics(secure_broker, tmp_path):
    """TLS, passwords and the ACL: replay's user may read only the routes and the agents' metrics,
    and that is enough to tell which agents run (and their figures)."""
    cfg = secure_broker
    agent = Agent(AgentOptions(name="edge-1", hardware="jetson-orin-nano-8gb", broker=cfg.url_for("edge-1"), ca=cfg.ca,
                               cache_dir=tmp_path / "cache")).start()
    try:
        found = collect_status(cfg.url_for("replay"), ca=cfg.ca, wait=30)
    finally:
        agent.stop()
    assert found.running and found.complete and found.broker == cfg.url
    assert [(a.name, a.site, a.state) for a in found.agents] == [("edge-1", "edge-1", "online")]
    assert found.plan is None and found.agents[0].hardware == ""   # announce is not replay's to read
