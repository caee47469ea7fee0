"""A broker per site, bridged along the infrastructure's links: which topics cross which link
(pure), and three real Mosquitto brokers carrying them (and queueing them through an outage)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from jellybean.agents import topics
from jellybean.agents.bridges import (
    control_next_hops,
    controller_site,
    data_next_hops,
    plan_bridges,
    queue_bytes,
    topic_matches,
)
from jellybean.agents.broker import (
    AgentGrant,
    MosquittoBroker,
    Rule,
    find_mosquitto,
    free_port,
    write_site_configs,
)
from jellybean.spec.base import load_model
from jellybean.spec.infrastructure import Infrastructure

try:
    from .mqtt_probe import Probe
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from mqtt_probe import Probe

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity" / "infrastructure.yaml"
CITY = REPO / "configs" / "aicity" / "infrastructure.yaml"
SILENCE_S = 0.5


def _infra(path: Path) -> Infrastructure:
    return load_model(Infrastructure, path)


def _agents(infra: Infrastructure) -> dict[str, str]:
    """One agent per site with hardware, named after it."""
    return {s.name: s.name for s in infra.sites if s.hardware}


def _deliveries(bridges, topic: str, origin: str) -> list[str]:
    """Every site a message published on ``topic`` at ``origin`` reaches, as the bridges forward it
    (a site listed twice got it twice). Stops after 100 hops, so a loop shows as repeats."""
    arrived, frontier = [origin], [(origin, None)]
    while frontier and len(arrived) < 100:
        site, came_from = frontier.pop()
        for b in bridges:
            for here, there, direction in ((b.local, b.remote, "out"), (b.remote, b.local, "in")):
                if here == site and there != came_from and b.carries(topic, direction):
                    arrived.append(there)
                    frontier.append((there, site))
    return arrived


@pytest.mark.parametrize("path", [EXAMPLE, CITY], ids=["example", "city"])
def test_each_link_carries_the_data_of_the_sites_behind_it_and_control_towards_the_controller(path):
    infra = _infra(path)
    agents = _agents(infra)
    bridges = plan_bridges(infra, agents)
    controller = controller_site(infra)
    assert infra.site(controller).tier == "cloud"
    assert len(bridges) == len(infra.links)
    data = data_next_hops(infra)
    up = control_next_hops(infra, controller)
    arcs = {(l.from_, l.to) for l in infra.links} | {(l.to, l.from_) for l in infra.links if l.both_ways}
    for b in bridges:
        # Data: exactly the sites whose next hop from this end is the other end.
        for a, z, direction in ((b.local, b.remote, "out"), (b.remote, b.local, "in")):
            want = {topics.data(d, "#") for d in data if data[d].get(a) == z}
            got = {p for p in b.patterns(direction) if p.startswith(f"{topics.ROOT}/data/")}
            assert got == want, (b.name, direction)
            assert not want or (a, z) in arcs  # data only where the link lets it flow
        # No pattern crosses one link both ways.
        assert not set(b.patterns("out")) & set(b.patterns("in")), b.name
        # The lower tier initiates.
        assert b.remote in (l.to for l in infra.links if l.from_ == b.local) or \
            b.remote in (l.from_ for l in infra.links if l.to == b.local)
    for origin in (s.name for s in infra.sites):
        for dest in (s.name for s in infra.sites):
            reached = _deliveries(bridges, topics.data(dest, "op"), origin)
            assert len(reached) == len(set(reached)), (origin, dest, reached)  # never twice, never a loop
            assert (dest in reached) == (origin == dest or origin in data[dest]), (origin, dest)
        if origin == controller or origin in up:
            for agent, site in agents.items():
                for leaf in ("heartbeat", "metrics", "announce", "status"):
                    reached = _deliveries(bridges, topics.agent(agent, leaf), site)
                    assert reached.count(controller) == 1 and len(reached) == len(set(reached))
            reached = _deliveries(bridges, topics.sink("wf"), origin)
            assert reached.count(controller) == 1 and len(reached) == len(set(reached))
    for agent, site in agents.items():
        for topic in (topics.assignment(agent), topics.model_chunks(agent, "abc")):
            reached = _deliveries(bridges, topic, controller)
            assert reached.count(site) == 1 and len(reached) == len(set(reached)), (topic, reached)
            # ... and only along the path to the agent's site.
            path = {site}
            hop = site
            while hop in up:
                hop = up[hop]
                path.add(hop)
            assert set(reached) == path
    routes = _deliveries(bridges, topics.ROUTES, controller)
    assert sorted(routes) == sorted({controller, *up})


def test_example_bridges_and_city_shape():
    bridges = {b.name: b for b in plan_bridges(_infra(EXAMPLE), _agents(_infra(EXAMPLE)))}
    assert set(bridges) == {"bridge-crossing-hub", "bridge-hub-cloud", "bridge-crossing-cloud"}
    # The crossing's data for the cloud takes the widest path, through the hub (50 Mbit/s) rather
    # than the direct 20 Mbit/s link, which carries the crossing's control.
    assert bridges["bridge-crossing-hub"].patterns("out") == (topics.data("cloud", "#"), topics.data("hub", "#"),
                                                               topics.ack("hub", "#"))
    # Re-send acknowledgements go back against the data: the crossing's from the hub, over this link.
    assert bridges["bridge-crossing-hub"].patterns("in") == (topics.ack("crossing", "#"),)
    assert bridges["bridge-crossing-cloud"].patterns("out") == (
        topics.ack("cloud", "#"), topics.agent("crossing", "#"), topics.sink("#"))
    # A link's state goes up from its far end (the crossing-hub link's from the hub), never over itself.
    assert topics.link_state("bridge-crossing-hub") in bridges["bridge-hub-cloud"].patterns("out")
    assert not [b for b in bridges.values() if topics.link_state(b.name) in b.patterns("out")]
    assert bridges["bridge-crossing-cloud"].patterns("in") == (
        topics.ack("crossing", "#"), topics.assignment("crossing"), topics.model_chunks("crossing", "#"), topics.ROUTES)
    assert queue_bytes(20, 60) == 150_000_000 and queue_bytes(None, 60) is None
    assert topic_matches("jb/v1/data/cloud/#", "jb/v1/data/cloud") and not topic_matches("jb/v1/routes", "jb/v1/x")

    city = {b.name: b for b in plan_bridges(_infra(CITY), _agents(_infra(CITY)))}
    # Intersections send everything up to their hub; hubs send on over the 1 Gbit/s edge DC link.
    assert set(city["bridge-int-01-hub-1"].patterns("out")) >= {
        topics.data("hub-1", "#"), topics.data("edge-dc", "#"), topics.data("aws-us-east-1", "#")}
    assert topics.data("aws-us-east-1", "#") in city["bridge-hub-1-edge-dc"].patterns("out")
    assert not [p for p in city["bridge-hub-1-aws-us-east-1"].patterns("out") if "/data/" in p]


# Real brokers ----------------------------------------------------------------------------------

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


@pytest.fixture
def sites(tmp_path, request):
    """The AI City example's three site brokers, running, bridged on loopback ports (the agents'
    grants: `request.param`, else only their own site's)."""
    infra = _infra(EXAMPLE)
    names = [s.name for s in infra.sites]
    grants = getattr(request, "param", None) or {n: AgentGrant(site=n) for n in names}
    cfg = write_site_configs(tmp_path / "brokers", infra, agents=grants,
                             ports={n: free_port() for n in names}, outage_budget_s=5,
                             extra_users={"observer": (Rule("readwrite", f"{topics.ROOT}/#"),)})
    brokers: dict[str, MosquittoBroker] = {}

    def start(site: str) -> MosquittoBroker:
        broker = MosquittoBroker(cfg.sites[site].conf, workdir=tmp_path / "run" / site)
        brokers[site] = broker
        broker.start()
        broker.wait_ready()
        return broker

    for site in names:
        start(site)
    yield cfg, brokers, start
    for broker in brokers.values():
        broker.stop()


@pytest.fixture
def probes():
    made: list[Probe] = []

    def make(cfg, site: str, user: str) -> Probe:
        site_cfg = cfg.sites[site]
        probe = Probe(site_cfg.url_for(user), site_cfg.ca, client_id=f"{user}-{uuid.uuid4().hex[:6]}")
        made.append(probe)
        rc = probe.connect()
        assert rc is not None and not rc.is_failure, f"CONNACK {rc} from {site} as {user}"
        return probe

    yield make
    for p in made:
        p.close()


def _next(probe: Probe, timeout: float, states: dict | None = None):
    """The next message that is not a bridge's link state (those go into ``states``)."""
    deadline = time.monotonic() + timeout
    while (got := probe.next(timeout=max(0.0, deadline - time.monotonic()))) is not None:
        bridge = topics.parse_link_state(got[0])
        if bridge is None:
            return got
        if states is not None:
            states[bridge] = got[1]
    return None


def _until_through(sender: Probe, receiver: Probe, topic: str, timeout: float = 30.0) -> None:
    """Publish on ``topic`` until one arrives at ``receiver`` (the bridges on its way are up), then
    let the rest in flight arrive and drop them all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sender.publish(topic, b"warm-up")
        got = _next(receiver, 0.5)
        if got is not None:
            assert got[0] == topic, got
            _settle(sender, receiver, topic)
            return
    raise AssertionError(f"nothing on {topic} came through the bridges within {timeout:g} s")


def _settle(sender: Probe, receiver: Probe, topic: str) -> list:
    """Everything the receiver gets before a marker published after it on ``topic``."""
    marker = f"marker-{uuid.uuid4().hex}".encode()
    sender.publish(topic, marker)
    seen = []
    while True:
        got = _next(receiver, 30)
        assert got is not None, "the marker did not arrive"
        if got[1] == marker:
            return seen
        seen.append(got)


@needs_mosquitto
def test_data_control_and_nothing_else_cross_real_bridges(sites, probes):
    cfg, _, _ = sites
    # (A client's id is its user name: two clients of one user at one broker replace each other.)
    # Data for the cloud, published at the crossing, arrives at the cloud once (through the hub).
    at_cloud = probes(cfg, "cloud", "observer")
    at_cloud.subscribe_granted(f"{topics.ROOT}/#")
    at_crossing = probes(cfg, "crossing", "replay")
    warm = topics.data("cloud", "warm-up")
    _until_through(at_crossing, at_cloud, warm)
    at_crossing.publish(topics.data("cloud", "track"), b"frame-1")
    got = _settle(at_crossing, at_cloud, warm)
    assert [(t, p) for t, p, _ in got] == [(topics.data("cloud", "track"), b"frame-1")]

    # An assignment published at the cloud reaches the crossing's agent at its own broker.
    agent = probes(cfg, "crossing", "crossing")
    agent.subscribe_granted(topics.assignment("crossing"))
    controller = probes(cfg, "cloud", "controller")
    _until_through(controller, agent, topics.assignment("crossing"))
    controller.publish(topics.assignment("crossing"), b"assignment-1")
    assert [(t, p) for t, p, _ in _settle(controller, agent, topics.assignment("crossing"))] == [
        (topics.assignment("crossing"), b"assignment-1")]

    # A retained assignment stays retained at the crossing: an agent that subscribes later gets it.
    controller.publish(topics.assignment("crossing"), b"assignment-2", retain=True)
    _settle(controller, agent, topics.assignment("crossing"))
    agent.client.unsubscribe(topics.assignment("crossing"))
    agent.subscribe_granted(topics.assignment("crossing"))
    assert agent.next(timeout=30) == (topics.assignment("crossing"), b"assignment-2", True)

    # Topics no bridge carries stay where they were published: the cloud agent's heartbeat and
    # data for the crossing (no link carries data down) do not reach the crossing.
    watcher = probes(cfg, "crossing", "observer")
    watcher.subscribe_granted(f"{topics.ROOT}/#")
    _until_through(controller, watcher, topics.assignment("crossing"))
    controller.publish(topics.heartbeat("cloud"), b"hb")
    controller.publish(topics.data("crossing", "detect"), b"down")
    controller.publish(topics.data("hub", "reid"), b"sideways")
    assert _settle(controller, watcher, topics.assignment("crossing")) == []
    # The crossing's heartbeat reaches the cloud (over the direct link).
    agent.publish(topics.heartbeat("crossing"), b"hb-crossing")
    while (got := _next(at_cloud, 30)) is not None and got[0] != topics.heartbeat("crossing"):
        pass  # the cloud's observer also sees what the controller published at the cloud
    assert got is not None and got[1] == b"hb-crossing"


@needs_mosquitto
@pytest.mark.parametrize("sites", [{"crossing": AgentGrant("crossing", ("hub",)),
                                    "hub": AgentGrant("hub", ("cloud",), ack_sites=("crossing",)),
                                    "cloud": AgentGrant("cloud", ack_sites=("crossing", "hub"))}], indirect=True)
def test_a_replicas_acknowledgement_goes_back_against_the_data_to_its_producer(sites, probes):
    """Re-send acknowledgements (jellybean.agents.resend): the hub's re-ID replica tells the
    crossing's detector what it served, over the crossing-hub link that carries no data down."""
    cfg, _, _ = sites
    producer = probes(cfg, "crossing", "crossing")
    producer.subscribe_granted(topics.ack("crossing", "detect"))
    replica = probes(cfg, "hub", "hub")
    _until_through(replica, producer, topics.ack("crossing", "detect"))
    replica.publish(topics.ack("crossing", "detect"), b"seen-1")
    assert [(t, p) for t, p, _ in _settle(replica, producer, topics.ack("crossing", "detect"))] == [
        (topics.ack("crossing", "detect"), b"seen-1")]
    # The ACL keeps acknowledgements to the sites whose data can reach the replica: the hub may not
    # acknowledge to the cloud, and the crossing (which no site's data reaches) to no one.
    watcher = probes(cfg, "cloud", "observer")
    watcher.subscribe_granted(f"{topics.ROOT}/acks/#")
    cloud = probes(cfg, "cloud", "cloud")
    _until_through(cloud, watcher, topics.ack("cloud", "warm-up"))
    replica.publish(topics.ack("cloud", "track"), b"not-granted")
    producer.publish(topics.ack("cloud", "track"), b"not-granted")
    assert _settle(cloud, watcher, topics.ack("cloud", "warm-up")) == []


@needs_mosquitto
def test_data_queued_through_a_hub_outage_arrives_once(sites, probes):
    cfg, brokers, start = sites
    at_cloud = probes(cfg, "cloud", "controller")
    at_cloud.subscribe_granted(topics.data("cloud", "#"))
    at_crossing = probes(cfg, "crossing", "replay")
    warm = topics.data("cloud", "warm-up")
    _until_through(at_crossing, at_cloud, warm)

    states: dict[str, bytes] = {}
    watcher = probes(cfg, "cloud", "observer")
    watcher.subscribe_granted(topics.link_state("+"))
    deadline = time.monotonic() + 30
    while states.get("bridge-hub-cloud") != b"1" and time.monotonic() < deadline:
        _next(watcher, 1, states)  # retained: the bridge's state at the cloud's end
    assert states.get("bridge-hub-cloud") == b"1", states
    brokers["hub"].stop()  # by its PID
    at_crossing.publish(topics.data("cloud", "track"), b"during-outage")  # QoS 1, acknowledged by the crossing
    assert _next(at_cloud, SILENCE_S) is None
    deadline = time.monotonic() + 30
    while states.get("bridge-hub-cloud") != b"0" and time.monotonic() < deadline:
        _next(watcher, 1, states)
    assert states["bridge-hub-cloud"] == b"0", states  # its last will, published by the cloud's broker
    start("hub")
    got = _settle(at_crossing, at_cloud, warm)
    assert [(t, p) for t, p, _ in got] == [(topics.data("cloud", "track"), b"during-outage")]


def test_site_configs_files(tmp_path):
    infra = _infra(EXAMPLE)
    cfg = write_site_configs(tmp_path / "b", infra, agents={"crossing": AgentGrant(site="crossing")}, port=20000,
                             outage_budget_s=10)
    assert cfg.controller_site == "cloud"
    assert [c.port for c in cfg.sites.values()] == [20000, 20001, 20002]
    crossing = cfg.sites["crossing"]
    conf = crossing.conf.read_text()
    assert "include_dir" in conf and "max_queued_bytes 125000000" in conf  # 100 Mbit/s x 10 s
    bridge = (crossing.dir / "bridges" / "bridge-crossing-hub.conf")
    assert oct(bridge.stat().st_mode & 0o777) == "0o600"
    text = bridge.read_text()
    for line in ("cleansession false", "remote_clientid bridge-crossing-hub", "bridge_insecure false",
                 f"bridge_cafile {cfg.dir / 'ca.crt'}", "address 127.0.0.1:20001", "try_private true",
                 f"remote_password {cfg.sites['hub'].credentials['bridge-crossing-hub']}"):
        assert line in text
    # The bridge user lives at the remote (hub) only, with only its bridge's topics.
    assert "bridge-crossing-hub" in cfg.sites["hub"].rules and "bridge-crossing-hub" not in crossing.rules
    assert {r.topic for r in cfg.sites["hub"].rules["bridge-crossing-hub"]} == {
        topics.data("hub", "#"), topics.data("cloud", "#"), topics.link_state("bridge-crossing-hub"),
        topics.ack("hub", "#"), topics.ack("crossing", "#")}
    assert f"notification_topic {topics.link_state('bridge-crossing-hub')}" in text
    assert "crossing" not in cfg.sites["hub"].rules  # agents only at their own site's broker
    # One CA signs every site's broker; only the top directory holds its key.
    assert all((c.dir / "ca.crt").read_bytes() == (cfg.dir / "ca.crt").read_bytes() for c in cfg.sites.values())
    assert not (crossing.dir / "ca.key").exists()
    # Re-running keeps the passwords (deployed bridges and agents keep working).
    again = write_site_configs(tmp_path / "b", infra, agents={"crossing": AgentGrant(site="crossing")}, port=20000)
    assert again.sites["hub"].credentials == cfg.sites["hub"].credentials


def test_cli_broker_config_per_site(tmp_path):
    from typer.testing import CliRunner

    from jellybean.cli.main import app

    runner = CliRunner()
    plan = tmp_path / "plan.yaml"
    result = runner.invoke(app, ["plan", "-w", str(REPO / "examples/aicity/workflow.yaml"),
                                 "-z", str(REPO / "examples/aicity/zoo.yaml"), "-i", str(EXAMPLE), "-o", str(plan)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "brokers"
    result = runner.invoke(app, ["broker", "config", str(out), "--plan", str(plan), "--per-site", "--port", "21000",
                                 "--site-host", "hub=10.0.0.2", "--outage-budget", "30", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["controller_site"] == "cloud"
    assert shown["sites"]["hub"]["url"] == "mqtts://10.0.0.2:21000"  # a machine of its own: --port itself
    assert shown["sites"]["cloud"]["url"] == "mqtts://127.0.0.1:21002"  # sharing this machine: --port + i
    assert shown["bridges"]["bridge-crossing-hub"]["max_queued_bytes"] == 375_000_000  # 100 Mbit/s x 30 s
    assert (out / "sites" / "crossing" / "bridges" / "bridge-crossing-hub.conf").read_text().count(
        "address 10.0.0.2:21000") == 1
    result = runner.invoke(app, ["broker", "config", str(tmp_path / "x"), "--plan", str(plan), "--per-site",
                                 "--controller-site", "nowhere"])
    assert result.exit_code != 0 and "nowhere" in result.output
    result = runner.invoke(app, ["broker", "config", str(tmp_path / "y"), "--agent", "a", "--per-site"])
    assert result.exit_code != 0 and "--plan" in result.output
