"""Sites as network namespaces joined by shaped veth pairs (issue 13, items 3 and 4: the network layer).

Tests that build namespaces need root and `ip netns`; they skip with the reason otherwise.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jellybean.errors import JellyBeanError
from jellybean.sites import netns as netns_module
from jellybean.sites import (
    SiteNetwork,
    SiteNetworkError,
    available,
    destroy_run,
    run_namespaces,
    netem_available,
    shortest_paths,
    tbf_parameters,
)
from jellybean.spec.base import parse_model
from jellybean.spec.infrastructure import Infrastructure

REPO = Path(__file__).resolve().parents[2]
AICITY = REPO / "examples" / "aicity" / "infrastructure.yaml"
PROBE = str(Path(__file__).with_name("netprobe.py"))
PORT = 7070

ISOLATE, WHY_NOT = available()
needs_namespaces = pytest.mark.skipif(not ISOLATE, reason=f"cannot build site namespaces: {WHY_NOT}")

# a - b - c in a chain: a and c are not adjacent, so their traffic crosses both links.
CHAIN = {
    "kind": "infrastructure",
    "name": "chain",
    "sites": [
        {"name": "int-01", "tier": "edge"},
        {"name": "hub-downtown", "tier": "hub"},
        {"name": "aws-us-east-1", "tier": "cloud"},
    ],
    "links": [
        {"from": "int-01", "to": "hub-downtown", "bandwidth_mbps": 20, "latency_ms": 2},
        {"from": "hub-downtown", "to": "aws-us-east-1", "bandwidth_mbps": 200, "latency_ms": 20},
    ],
}


def infrastructure(data: dict) -> Infrastructure:
    return parse_model(Infrastructure, data, "test-infrastructure.yaml")


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def read_line(process: subprocess.Popen, timeout: float = 20.0) -> str:
    """The next line the process prints, waiting at most ``timeout`` seconds."""
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no output from {process.args} in {timeout} s")
    return process.stdout.readline().strip()


def start(net: SiteNetwork, site: str, *args: str) -> subprocess.Popen:
    return net.run(site, [sys.executable, PROBE, *args], stdout=subprocess.PIPE, text=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(10)


def ask(net: SiteNetwork, site: str, target: str, timeout: float = 5.0) -> tuple[int, str, float]:
    """Connect from ``site`` to the echo server at ``target``: (exit code, output, seconds)."""
    began = time.monotonic()
    process = net.run(site, [sys.executable, PROBE, "ask", net.address(target), str(PORT), str(timeout)],
                      stdout=subprocess.PIPE, text=True)
    out, _ = process.communicate(timeout=timeout + 20)
    return process.returncode, out.strip(), time.monotonic() - began


@pytest.fixture
def build():
    """Builds site networks and destroys every one of them after the test, passed or failed."""
    made: list[SiteNetwork] = []

    def make(infra: Infrastructure, **kwargs) -> SiteNetwork:
        net = SiteNetwork(infra, **kwargs)
        made.append(net)
        return net.create()

    yield make
    for net in made:
        net.destroy()
        assert not set(net.created) & namespaces()


# -- without root ------------------------------------------------------------------------------


def test_tbf_parameters_scale_with_the_rate():
    slow, mid, fast = tbf_parameters(1), tbf_parameters(20), tbf_parameters(1000)
    assert (slow.rate_bits, mid.rate_bits, fast.rate_bits) == (1_000_000, 20_000_000, 1_000_000_000)
    assert slow.burst_bytes == 4096  # the floor: a few frames
    assert mid.burst_bytes == 10_000 and fast.burst_bytes == 500_000  # 4 ms of traffic
    assert fast.limit_bytes == 500_000 + 6_250_000  # bucket + 50 ms
    assert slow.limit_bytes > slow.burst_bytes + 2 * 1514
    assert fast.tc_args() == ["tbf", "rate", "1000000000bit", "burst", "500000", "limit", "6750000"]


def test_names_fit_linux_limits_and_addresses_are_unique():
    net = SiteNetwork(infrastructure(CHAIN), run_id="abc123")
    table = {row["site"]: row for row in net.table()}
    assert table["aws-us-east-1"]["namespace"] == "jb-abc123-s2"
    assert all(len(s.namespace) <= 15 for s in net.sites.values())
    assert all(len(name) <= 15 for v in net.links for name in (v.from_if, v.to_if))
    addresses = [s.address for s in net.sites.values()] + [a for v in net.links for a in (v.from_address, v.to_address)]
    assert len(set(addresses)) == len(addresses)
    assert net.address("int-01") == "10.213.0.1"
    assert net.link(("aws-us-east-1", "hub-downtown")).network == "10.213.128.4/30"
    with pytest.raises(SiteNetworkError, match="did you mean 'int-01'"):
        net.address("int-1")
    with pytest.raises(SiteNetworkError, match="no link joins int-01 and aws-us-east-1"):
        net.link("int-01->aws-us-east-1")
    with pytest.raises(SiteNetworkError, match="at most 6"):
        SiteNetwork(infrastructure(CHAIN), run_id="Bad-Id")
    assert issubclass(SiteNetworkError, JellyBeanError)


def test_routes_follow_unique_shortest_paths():
    aicity = SiteNetwork.from_file(AICITY)
    # A triangle: adjacent sites always use their own link, even where two hops have less latency
    # (crossing-hub-cloud is 28 ms, crossing-cloud 30 ms).
    assert aicity.path("crossing", "cloud") == ("crossing->cloud",)
    assert aicity.path("cloud", "hub") == ("hub->cloud",)
    chain = SiteNetwork(infrastructure(CHAIN))
    assert chain.path("int-01", "aws-us-east-1") == ("int-01->hub-downtown", "hub-downtown->aws-us-east-1")
    assert chain.path("aws-us-east-1", "int-01") == ("hub-downtown->aws-us-east-1", "int-01->hub-downtown")
    # A square a-b-d, a-c-d of equal hops and latency: one path wins, the same both ways.
    square = SiteNetwork(infrastructure({
        "kind": "infrastructure", "name": "square",
        "sites": [{"name": n, "tier": t} for n, t in (("a", "edge"), ("b", "hub"), ("c", "hub"), ("d", "cloud"))],
        "links": [{"from": "a", "to": "b"}, {"from": "a", "to": "c"}, {"from": "b", "to": "d"}, {"from": "c", "to": "d"}],
    }))
    there = square.path("a", "d")
    assert len(there) == 2 and square.path("d", "a") == there[::-1]
    paths = shortest_paths(list(square.sites), square.links)
    for (source, target), hops in paths.items():  # consistent: every hop continues the same path
        if len(hops) > 1:
            nxt = square.links[hops[0]].peer(source)
            assert paths[(nxt, target)] == hops[1:]


def test_probe_says_why_sites_cannot_be_isolated(monkeypatch):
    monkeypatch.setattr(netns_module.os, "geteuid", lambda: 1000)
    probe = netns_module.probe.__wrapped__()
    assert not probe.ok and "root" in probe.reason


def test_a_failing_command_is_named_with_its_stderr():
    with pytest.raises(SiteNetworkError) as caught:
        netns_module._run(["ip", "link", "show", "dev", "jb-no-such-if"], what="reading a link")
    message = str(caught.value)
    assert "reading a link" in message and "`ip link show dev jb-no-such-if` failed" in message
    assert "does not exist" in message
    with pytest.raises(SiteNetworkError, match="at line 2: `link show dev jb-no-such-if`"):
        netns_module._run(["ip", "-batch", "-"], stdin="link show dev lo\nlink show dev jb-no-such-if\n")


# -- with namespaces ---------------------------------------------------------------------------


@needs_namespaces
def test_aicity_every_site_reaches_every_other_over_its_own_link(build):
    net = build(SiteNetwork.from_file(AICITY).infrastructure)
    assert {v.name: v.bandwidth_mbps for v in net.links} == {
        "crossing->hub": 100, "hub->cloud": 50, "crossing->cloud": 20}
    assert set(net.created) <= namespaces() and len(net.created) == 3
    servers = [start(net, site, "echo", "0.0.0.0", str(PORT)) for site in net.sites]
    try:
        assert [read_line(s) for s in servers] == ["ready"] * 3
        for source in net.sites:
            for target in net.sites:
                if source != target:
                    link = net.link((source, target))
                    before = net.link_counters(link).bytes_from(source)
                    code, out, _ = ask(net, source, target)
                    assert (code, out) == (0, "ok"), f"{source} -> {target}"
                    assert net.link_counters(link).bytes_from(source) > before, f"{source} -> {target} took {link.name}"
    finally:
        for s in servers:
            stop(s)
    for v in net.links:  # shaped both ways at the link's bandwidth
        for site in (v.from_site, v.to_site):
            out = subprocess.run(["tc", "-n", net.namespace(site), "qdisc", "show", "dev", v.end(site)[0]],
                                 capture_output=True, text=True, check=True).stdout
            assert "tbf 1: root" in out and f"rate {int(v.bandwidth_mbps)}Mbit" in out


@needs_namespaces
def test_traffic_between_non_adjacent_sites_crosses_the_middle_links(build):
    net = build(infrastructure(CHAIN))
    nbytes = 1_000_000
    before = {v.name: net.link_counters(v) for v in net.links}
    sink = start(net, "aws-us-east-1", "sink", net.address("aws-us-east-1"), str(PORT))
    try:
        assert read_line(sink) == "ready"
        sender = start(net, "int-01", "send", net.address("aws-us-east-1"), str(PORT), str(nbytes))
        received = json.loads(read_line(sink))
        assert sender.wait(30) == 0
    finally:
        stop(sink)
    assert received["bytes"] == nbytes
    for v in net.links:
        sent = net.link_counters(v).bytes_forward - before[v.name].bytes_forward
        assert nbytes <= sent <= nbytes * 1.1, (v.name, sent)


@needs_namespaces
def test_a_shaped_link_delivers_its_bandwidth(build):
    net = build(infrastructure(CHAIN))
    link = net.link(("int-01", "hub-downtown"))  # 20 Mbit/s
    # 3.2 s at 20 Mbit/s: long enough that one TCP retransmission timeout (200 ms or more, when
    # tbf's 50 ms queue overflows) does not pass for a slow link; over 1.2 s it read 15.7 Mbit/s once.
    nbytes = 8_000_000
    before = net.link_counters(link)
    sink = start(net, "hub-downtown", "sink", net.address("hub-downtown"), str(PORT))
    try:
        assert read_line(sink) == "ready"
        sender = start(net, "int-01", "send", net.address("hub-downtown"), str(PORT), str(nbytes))
        received = json.loads(read_line(sink, timeout=60))
        assert sender.wait(30) == 0
    finally:
        stop(sink)
    goodput_mbps = received["bytes"] * 8 / received["seconds"] / 1e6
    wire = net.link_counters(link).bytes_forward - before.bytes_forward
    wire_mbps = wire * 8 / received["seconds"] / 1e6
    print(f"20 Mbit/s link: {received['bytes']} B in {received['seconds']:.3f} s = {goodput_mbps:.2f} Mbit/s of "
          f"payload, {wire_mbps:.2f} Mbit/s on the wire")
    assert 20 * 0.85 <= goodput_mbps <= 20 * 1.15
    assert 20 * 0.85 <= wire_mbps <= 20 * 1.15


@needs_namespaces
def test_a_cut_link_fails_connections_fast_and_comes_back(build):
    net = build(infrastructure(CHAIN))
    server = start(net, "aws-us-east-1", "echo", "0.0.0.0", str(PORT))
    try:
        assert read_line(server) == "ready"
        assert ask(net, "int-01", "aws-us-east-1")[:2] == (0, "ok")
        net.set_link("hub-downtown->aws-us-east-1", up=False)
        for site in ("int-01", "hub-downtown"):  # from beyond the cut and from its end
            code, out, seconds = ask(net, site, "aws-us-east-1", timeout=3.0)
            assert code == 1 and out.startswith("fail"), out
            assert seconds < 10
        assert ask(net, "int-01", "hub-downtown")[:2] == (1, "fail ConnectionRefusedError: [Errno 111] Connection refused")
        net.set_link(("aws-us-east-1", "hub-downtown"), up=True)
        for site in ("int-01", "hub-downtown"):
            assert ask(net, site, "aws-us-east-1")[:2] == (0, "ok")
    finally:
        stop(server)


@needs_namespaces
def test_destroy_removes_exactly_this_runs_namespaces_and_is_idempotent():
    others_before = namespaces()
    net = SiteNetwork.from_file(AICITY)
    with net:
        mine = set(net.created)
        assert len(mine) == 3 and mine <= namespaces()
        sleeper = net.run("hub", ["sleep", "600"])
    assert sleeper.poll() is not None  # destroy stopped what run() started
    assert not mine & namespaces()
    assert namespaces() >= others_before - mine
    net.destroy()  # again: nothing to do, no error
    assert net.created == ()
    with pytest.raises(SiteNetworkError, match="not created"):
        net.run("hub", ["true"])


@needs_namespaces
def test_create_failing_half_way_removes_what_it_made_and_nothing_else():
    net = SiteNetwork.from_file(AICITY)
    taken = net.namespace("hub")  # someone else holds the second site's name
    subprocess.run(["ip", "netns", "add", taken], check=True)
    try:
        with pytest.raises(SiteNetworkError, match=f"site hub: `ip netns add {taken}` failed"):
            net.create()
        assert net.created == ()
        assert net.namespace("crossing") not in namespaces()
        assert taken in namespaces()  # not ours: left alone
    finally:
        subprocess.run(["ip", "netns", "del", taken], check=True)


@needs_namespaces
def test_create_failing_late_removes_everything(monkeypatch):
    net = SiteNetwork.from_file(AICITY)

    def broken(self, link):
        raise SiteNetworkError(f"link {link.name}: forced failure")

    monkeypatch.setattr(SiteNetwork, "_shape", broken)
    with pytest.raises(SiteNetworkError, match="forced failure"):
        net.create()
    assert net.created == ()
    assert not {s.namespace for s in net.sites.values()} & namespaces()


@needs_namespaces
def test_the_network_says_whether_latency_is_emulated(build):
    net = build(infrastructure(CHAIN))
    netem, reason = netem_available()
    assert net.netem == netem
    qdiscs = subprocess.run(["tc", "-n", net.namespace("int-01"), "qdisc", "show"], capture_output=True,
                            text=True, check=True).stdout
    if netem:
        assert "netem" in qdiscs and "delay 2ms" in qdiscs
    else:
        assert "no netem" in reason and "latency is not emulated" in net.latency_note
        assert "netem" not in qdiscs


@needs_namespaces
def test_a_run_left_behind_is_removed_by_its_id_alone():
    net = SiteNetwork.from_file(AICITY).create()
    try:
        assert run_namespaces(net.run_id) == sorted(net.created)
        assert destroy_run(net.run_id) == sorted(net.created)  # as `jellybean down` would, from up.json
        assert run_namespaces(net.run_id) == [] and not set(net.created) & namespaces()
    finally:
        net.destroy()  # nothing left to remove: no error


def test_with_netem_each_end_delays_then_shapes(monkeypatch):
    """The kernel here has no netem, so this checks the commands a kernel with netem would get."""
    commands: list[list[str]] = []
    monkeypatch.setattr(netns_module, "_run", lambda argv, **kwargs: commands.append(list(argv)) or "")
    net = SiteNetwork(infrastructure(CHAIN), run_id="abc123")
    net.netem = True
    net._shape(net.link("hub-downtown->aws-us-east-1"))  # 200 Mbit/s, 20 ms
    head = ["tc", "-n", "jb-abc123-s1", "qdisc", "replace", "dev", "to-s2"]
    in_flight = 200e6 / 8 * 0.020 / 1514  # packets netem holds: its limit must exceed them
    assert commands[0] == head + ["root", "handle", "1:", "netem", "delay", "20.0ms", "limit", str(max(1000, int(2 * in_flight)))]
    assert commands[1] == head + ["parent", "1:1", "handle", "10:"] + tbf_parameters(200).tc_args()
    assert commands[2][:3] == ["tc", "-n", "jb-abc123-s2"] and len(commands) == 4


@needs_namespaces
def test_the_lan_reaches_each_site_from_here_but_no_site_routes_over_it(build):
    net = build(SiteNetwork.from_file(AICITY).infrastructure, lan=True)
    servers = [start(net, site, "echo", "0.0.0.0", str(PORT)) for site in net.sites]
    try:
        assert [read_line(s) for s in servers] == ["ready"] * 3
        for site in net.sites:  # from this machine's namespace, as the replay and the controller connect
            code = subprocess.run([sys.executable, PROBE, "ask", net.address(site), str(PORT), "5"],
                                  capture_output=True, text=True, timeout=30)
            assert (code.returncode, code.stdout.strip()) == (0, "ok"), site
        for source in net.sites:
            for target in net.sites:
                if source != target:
                    route = subprocess.run(["ip", "-n", net.namespace(source), "route", "get", net.address(target)],
                                           capture_output=True, text=True, check=True).stdout
                    assert f"dev {net.link((source, target)).end(source)[0]} " in route, (source, target, route)
    finally:
        for s in servers:
            stop(s)
    host_ifs = [lan.host_if for lan in net.lans.values()]
    net.destroy()
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout
    assert not [name for name in host_ifs if name in links]
