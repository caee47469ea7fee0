"""The broker: its configuration against a real Mosquitto (TLS, passwords, ACL), local brokers, URLs, CLI."""

from __future__ import annotations

import base64
import os
import queue
import signal
import socket
import ssl
import stat
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from cryptography import x509
from typer.testing import CliRunner

from jellybean.agents import topics
from jellybean.agents.broker import (
    AgentGrant,
    EmbeddedBroker,
    MosquittoBroker,
    Rule,
    check_mosquitto_password,
    configure_client,
    find_mosquitto,
    free_port,
    grants_from_plan,
    load_broker_config,
    mosquitto_password_hash,
    parse_broker_url,
    start_local_broker,
    write_broker_config,
)
from jellybean.cli.main import app
from jellybean.errors import JellyBeanError

try:
    from .mqtt_probe import Probe
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from mqtt_probe import Probe

runner = CliRunner()
# Mosquitto drops a publish the ACL denies without telling the publisher; a message that has not
# arrived this long after a later, allowed one from the same client never will.
SILENCE_S = 0.5


@pytest.fixture
def probes():
    made: list[Probe] = []

    def make(url: str, ca: Path | None = None, **kw) -> Probe:
        made.append(Probe(url, ca, **kw))
        return made[-1]

    yield make
    for p in made:
        p.close()


def connected(make, url: str, ca: Path | None = None, **kw) -> Probe:
    probe = make(url, ca, **kw)
    rc = probe.connect()
    assert rc is not None and not rc.is_failure, f"CONNACK {rc} from {probe.address.url}"
    return probe


# Passwords and files -----------------------------------------------------------------------------


def test_password_hash_is_mosquittos_own(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "alice", "s3cret"], check=True)
    line_hash = passwd.read_text().strip().split(":", 1)[1]
    _, seven, iterations, salt, _ = line_hash.split("$")
    assert (seven, iterations) == ("7", "101")
    assert mosquitto_password_hash("s3cret", salt=base64.b64decode(salt), iterations=101) == line_hash
    assert check_mosquitto_password(line_hash, "s3cret")
    assert not check_mosquitto_password(line_hash, "s3cre")


def test_config_files_modes_certificate_and_rerun(tmp_path):
    cfg = write_broker_config(tmp_path / "b", agents=["edge-1"], host="broker.example", port=9999,
                              extra_hosts=["10.0.0.7"])
    d = cfg.dir
    ca_pem = (d / "ca.crt").read_bytes()
    for name in ("ca.key", "server.key", "passwd", "acl", "credentials.yaml", "clients/edge-1.password"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((d / "clients").stat().st_mode) == 0o700
    assert set(cfg.credentials) == {"controller", "replay", "edge-1"}
    assert yaml.safe_load((d / "credentials.yaml").read_text()) == cfg.credentials
    for user, pw in cfg.credentials.items():
        assert cfg.password_file(user).read_text() == pw + "\n"
    lines = dict(line.split(":", 1) for line in (d / "passwd").read_text().splitlines())
    assert all(check_mosquitto_password(lines[u], pw) for u, pw in cfg.credentials.items())

    ca = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((d / "server.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"broker.example", "localhost"}
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"10.0.0.7", "127.0.0.1"}

    conf = (d / "mosquitto.conf").read_text()
    for line in ("listener 9999 broker.example", f"cafile {d / 'ca.crt'}", "allow_anonymous false",
                 f"password_file {d / 'passwd'}", f"acl_file {d / 'acl'}", "persistence true",
                 f"persistence_location {d / 'data'}/", "use_username_as_clientid true", "log_dest stderr"):
        assert line in conf.splitlines(), line
    assert "require_certificate" not in conf and (d / "data").is_dir()
    assert cfg.url == "mqtts://broker.example:9999"
    assert cfg.url_for("edge-1") == f"mqtts://edge-1:{cfg.credentials['edge-1']}@broker.example:9999"
    assert load_broker_config(d) == cfg

    # Adding an agent keeps the CA and the passwords already handed out; --rotate replaces them.
    again = write_broker_config(d, agents=["edge-1", "hub-1"], host="broker.example", port=9999)
    assert again.credentials["edge-1"] == cfg.credentials["edge-1"] and "hub-1" in again.credentials
    assert (d / "ca.crt").read_bytes() == ca_pem
    rotated = write_broker_config(d, agents=["edge-1"], rotate=True)
    assert rotated.credentials["edge-1"] != cfg.credentials["edge-1"]
    assert not (d / "clients" / "hub-1.password").exists()  # a user that is gone leaves no secret behind
    assert x509.load_pem_x509_certificate((d / "ca.crt").read_bytes()).serial_number != ca.serial_number


def test_acl_rules_from_grants(tmp_path):
    cfg = write_broker_config(tmp_path, agents={
        "hub": AgentGrant(site="hub", publish_sites=("cloud",)),
        "cloud": AgentGrant(site="cloud", sink_topics=("jb/v1/sink/aicity",))})
    acl = (tmp_path / "acl").read_text()
    section = acl.split("user hub\n", 1)[1].split("\n\n", 1)[0].strip().splitlines()
    assert section == ["topic readwrite jb/v1/agents/hub/#", "topic read jb/v1/assign/hub",
                       "topic read jb/v1/models/hub/#", "topic read jb/v1/routes",
                       "topic readwrite jb/v1/data/hub/#", "topic write jb/v1/data/cloud/#",
                       "topic readwrite jb/v1/acks/hub/#"]
    # Only an agent granted the sink may write it, and only its workflow's topic.
    assert acl.split("user cloud\n", 1)[1].strip().splitlines()[-1] == "topic write jb/v1/sink/aicity"
    assert "user controller\ntopic readwrite jb/v1/#\n" in acl
    assert "user replay\ntopic write jb/v1/data/#\ntopic read jb/v1/sink/#\ntopic read jb/v1/routes\n" in acl
    assert cfg.rules["hub"][-2] == Rule("write", "jb/v1/data/cloud/#")
    assert load_broker_config(tmp_path).agents == cfg.agents


@pytest.mark.parametrize("agents, message", [
    (["controller"], "reserved"),
    (["edge/1"], "not usable as an MQTT topic level"),
    ({"a": AgentGrant(site="a", publish_sites=("b#",))}, "site name 'b#'"),
    ({"a": AgentGrant(site="a", sink_topics=("jb/v1/#",))}, "not under jb/v1/sink/"),
])
def test_bad_agent_names(tmp_path, agents, message):
    with pytest.raises(JellyBeanError, match=message):
        write_broker_config(tmp_path, agents=agents)


# Broker URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url, expected", [
    ("mqtt://127.0.0.1", ("127.0.0.1", 1883, False, None, None)),
    ("mqtts://broker.example", ("broker.example", 8883, True, None, None)),
    ("MQTTS://edge-1:p%40ss@h:9000/", ("h", 9000, True, "edge-1", "p@ss")),
    ("mqtt://[::1]:1884", ("::1", 1884, False, None, None)),
])
def test_parse_broker_url(url, expected):
    a = parse_broker_url(url)
    assert (a.host, a.port, a.tls, a.username, a.password) == expected


@pytest.mark.parametrize("url, message", [
    ("tcp://h:1883", "scheme must be mqtt:// .* or mqtts://"),
    ("127.0.0.1:1883", "scheme must be"),
    ("mqtt://:1883", "has no host"),
    ("mqtt://h:port", "port is not a number"),
    ("mqtt://h:0", "port is not a number"),
    ("mqtt://h:1883/jb", "unexpected path"),
    ("mqtt://:secret@h", "password but no user name"),
])
def test_parse_broker_url_errors(url, message):
    with pytest.raises(JellyBeanError, match=message):
        parse_broker_url(url)


def test_url_errors_never_show_the_password():
    with pytest.raises(JellyBeanError) as err:
        parse_broker_url("mqtt://u:topsecret@h:1883/x")
    assert "topsecret" not in str(err.value) and "u:***@h" in str(err.value)


def test_configure_client_refuses_a_ca_for_plain_mqtt(tmp_path):
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    with pytest.raises(JellyBeanError, match="plain MQTT"):
        configure_client(client, parse_broker_url("mqtt://h"), tmp_path / "ca.crt")
    with pytest.raises(JellyBeanError, match="does not exist"):
        configure_client(client, parse_broker_url("mqtts://h"), tmp_path / "ca.crt")


# The secure configuration on a real Mosquitto --------------------------------------------------


def test_valid_credentials_round_trip_qos1(secure_broker, probes):
    controller = connected(probes, secure_broker.url_for("controller"), secure_broker.ca)
    assert controller.subscribe(topics.ALL_AGENTS)[0].value == 1  # granted QoS 1
    edge = connected(probes, secure_broker.url_for("edge-1"), secure_broker.ca)
    edge.publish(topics.heartbeat("edge-1"), b"beat")
    assert controller.next() == ("jb/v1/agents/edge-1/heartbeat", b"beat", False)


def test_wrong_password_is_refused(secure_broker, probes):
    url = secure_broker.url_for("edge-1").replace(secure_broker.credentials["edge-1"], "wrong")
    rc = probes(url, secure_broker.ca).connect()
    assert rc is not None and rc.is_failure and str(rc) == "Not authorized"


def test_anonymous_client_is_refused(secure_broker, probes):
    rc = probes(secure_broker.url, secure_broker.ca).connect()
    assert rc is not None and rc.is_failure


def test_plain_mqtt_client_cannot_connect(secure_broker, probes):
    url = secure_broker.url_for("controller").replace("mqtts://", "mqtt://")
    assert probes(url).connect(timeout=2) is None


def test_certificate_is_verified(secure_broker, probes):
    probe = probes(secure_broker.url_for("controller"))  # the system's CAs do not know ours
    assert probe.connect() is None
    assert isinstance(probe.error, ssl.SSLCertVerificationError), probe.error


def test_agent_publishes_only_under_its_own_topics(secure_broker, probes):
    controller = connected(probes, secure_broker.url_for("controller"), secure_broker.ca)
    controller.subscribe(f"{topics.ROOT}/#")
    edge = connected(probes, secure_broker.url_for("edge-1"), secure_broker.ca)
    edge.publish(topics.heartbeat("edge-1"), b"own")
    assert controller.next() == (topics.heartbeat("edge-1"), b"own", False)

    edge.publish(topics.heartbeat("hub-1"), b"impersonated")
    edge.publish(topics.assignment("hub-1"), b"forged assignment")
    edge.publish(topics.data("hub-1", "detect"), b"not its site")
    edge.publish(topics.metrics("edge-1"), b"control")
    assert controller.next() == (topics.metrics("edge-1"), b"control", False)
    time.sleep(SILENCE_S)
    assert controller.drain() == []


def test_agent_reads_only_its_own_assignment(secure_broker, probes):
    controller = connected(probes, secure_broker.url_for("controller"), secure_broker.ca)
    controller.publish(topics.assignment("hub-1"), b"hub's retained", retain=True)
    edge = connected(probes, secure_broker.url_for("edge-1"), secure_broker.ca)
    edge.subscribe(topics.assignment("hub-1"), topics.assignment("edge-1"))
    controller.publish(topics.assignment("hub-1"), b"hub's")
    controller.publish(topics.assignment("edge-1"), b"edge's")
    assert edge.next() == (topics.assignment("edge-1"), b"edge's", False)
    time.sleep(SILENCE_S)
    assert edge.drain() == []


def test_replay_publishes_frames_and_an_agent_without_the_sink_cannot_forge_results(secure_broker, probes):
    edge = connected(probes, secure_broker.url_for("edge-1"), secure_broker.ca)
    edge.subscribe(topics.data("edge-1", "#"))
    replay = connected(probes, secure_broker.url_for("replay"), secure_broker.ca)
    replay.subscribe(topics.sink("#"), topics.metrics("+"))
    replay.publish(topics.data("edge-1", "detect"), b"frame")
    assert edge.next() == (topics.data("edge-1", "detect"), b"frame", False)
    # edge-1 was given by name, without --sink: it may not write the sink (tests/agents/test_security.py
    # has an agent that may).
    edge.publish(topics.sink("mini"), b"forged tracks")
    edge.publish(topics.metrics("edge-1"), b"later")
    assert replay.next() == (topics.metrics("edge-1"), b"later", False)
    time.sleep(SILENCE_S)
    assert replay.drain() == []


# Local brokers -----------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _connect_with_will(host: str, port: int, topic: str, payload: bytes) -> socket.socket:
    """An MQTT 3.1.1 CONNECT with a QoS 1 will, written by hand so that the socket can then be
    dropped without the DISCONNECT a client library would send."""

    def field(b: bytes) -> bytes:
        return struct.pack(">H", len(b)) + b

    flags = 0x02 | 0x04 | 0x08  # clean session, will, will QoS 1
    body = field(b"MQTT") + bytes([4, flags]) + struct.pack(">H", 60)
    body += field(f"will-{uuid.uuid4().hex[:8]}".encode()) + field(topic.encode()) + field(payload)
    sock = socket.create_connection((host, port), timeout=5)
    sock.sendall(b"\x10" + _varint(len(body)) + body)
    assert sock.recv(4) == b"\x20\x02\x00\x00"  # CONNACK, accepted
    return sock


@pytest.fixture(params=["embedded", "mosquitto"])
def local_url(request, tmp_path):
    """The embedded broker, and Mosquitto beside it, so the two are held to the same behaviour."""
    if request.param == "mosquitto":
        yield request.getfixturevalue("mosquitto")
    else:
        with EmbeddedBroker(free_port()) as broker:
            yield broker.url


def test_local_broker_qos1_retained_and_last_will(local_url, probes):
    sub = connected(probes, local_url)
    sub.subscribe("jb/v1/test/#")
    pub = connected(probes, local_url)
    pub.publish("jb/v1/test/q1", b"one")
    assert sub.next() == ("jb/v1/test/q1", b"one", False)

    pub.publish(topics.status("edge-1"), b"online", retain=True)
    late = connected(probes, local_url)
    late.subscribe(topics.status("edge-1"))
    assert late.next() == (topics.status("edge-1"), b"online", True)

    address = parse_broker_url(local_url)
    sock = _connect_with_will(address.host, address.port, topics.status("edge-1"), b"offline")
    sock.close()  # no DISCONNECT: the broker must publish the will
    assert late.next() == (topics.status("edge-1"), b"offline", False)


def test_local_broker_queues_qos1_for_an_offline_persistent_session(local_url, probes):
    agent = connected(probes, local_url, client_id="agent-hub", clean=False)
    agent.subscribe(topics.assignment("hub"))
    agent.close()
    connected(probes, local_url).publish(topics.assignment("hub"), b"while away")
    back = connected(probes, local_url, client_id="agent-hub", clean=False)
    topic, payload, _ = back.next()  # amqtt sets the retain flag on queued messages; Mosquitto does not
    assert (topic, payload) == (topics.assignment("hub"), b"while away")


def test_start_local_broker_picks_and_stops(tmp_path):
    broker = start_local_broker(tmp_path, prefer="embedded")
    try:
        assert broker.kind == "embedded"
        port = parse_broker_url(broker.url).port
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        broker.stop()
    broker = start_local_broker(tmp_path)
    assert broker.kind == "mosquitto" and "running" in (tmp_path / "mosquitto.log").read_text()
    port = parse_broker_url(broker.url).port
    broker.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert broker.pid is None


def test_mosquitto_broker_persists_across_a_restart_on_its_workdir(tmp_path, probes):
    """The plain broker keeps its database in workdir/data: a QoS 1 message queued for an offline
    persistent session survives a stop (SIGTERM) and a start on the same workdir and port."""
    port = free_port()
    broker = MosquittoBroker(None, port, workdir=tmp_path / "b", executable=find_mosquitto())
    with broker:
        url = broker.url
        agent = connected(probes, url, client_id="jb-agent-hub", clean=False)
        agent.subscribe(topics.assignment("hub"))
        agent.close()
        connected(probes, url).publish(topics.assignment("hub"), b"queued")
    assert (tmp_path / "b" / "data" / "mosquitto.db").is_file()
    with MosquittoBroker(None, port, workdir=tmp_path / "b", executable=find_mosquitto()):
        back = connected(probes, url, client_id="jb-agent-hub", clean=False)
        assert back.next()[:2] == (topics.assignment("hub"), b"queued")
        back.close()
    # `jellybean up` starts from an empty database: no retained assignment of an earlier run.
    broker = start_local_broker(tmp_path / "b", port)
    try:
        fresh = connected(probes, broker.url, client_id="jb-agent-hub", clean=False)
        assert fresh.next(timeout=SILENCE_S) is None
        fresh.close()
    finally:
        broker.stop()


def test_failed_mosquitto_start_quotes_its_log(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(JellyBeanError, match=r"(?s)exited with code \d+ .*Address already in use"):
            with MosquittoBroker(None, port, workdir=tmp_path):
                pass
    bad = tmp_path / "bad.conf"
    bad.write_text("listener 1 127.0.0.1\nno_such_option true\n")
    with pytest.raises(JellyBeanError, match="no_such_option"):
        with MosquittoBroker(bad, workdir=tmp_path):
            pass


# Grants from a plan --------------------------------------------------------------------------------


def _plan(specs, tmp_path):
    p = specs.write()
    out = tmp_path / "plan.yaml"
    result = runner.invoke(app, ["plan", "-w", str(p["workflow"]), "-z", str(p["zoo"]), "-i", str(p["infrastructure"]),
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    from jellybean.planner.render import read_plan
    from jellybean.spec.base import load_model
    from jellybean.spec.infrastructure import Infrastructure

    return read_plan(out), load_model(Infrastructure, p["infrastructure"]), out


def test_grants_from_plan(specs, tmp_path):
    specs.infra["links"][1]["both_ways"] = True  # cam-2 <-> hub
    plan, infra, _ = _plan(specs, tmp_path)
    grants = grants_from_plan(plan, infra)
    assert set(grants) == {w.location for w in plan.workers if w.count > 0} != set()

    everywhere = plan.model_copy(update={"workers": tuple(
        plan.workers[0].model_copy(update={"location": s.name}) for s in infra.sites)})
    grants = grants_from_plan(everywhere, infra)
    assert grants == {
        "cam-1": AgentGrant("cam-1", ("cam-1", "cam-2", "cloud", "hub")),  # cam-2 over hub, both ways
        "cam-2": AgentGrant("cam-2", ("cam-2", "cloud", "hub"), ack_sites=("cam-1", "hub")),
        "hub": AgentGrant("hub", ("hub", "cam-2", "cloud"), ack_sites=("cam-1", "cam-2")),
        # Acknowledgements go back to every site whose data can reach this one.
        "cloud": AgentGrant("cloud", ("cloud",), ack_sites=("cam-1", "cam-2", "hub")),
    }

    # The sink: only sites that can run the last operator (track), under any re-plan: with the zoo,
    # every site whose hardware a variant of it is profiled on; without, where this plan runs it.
    specs.zoo["operators"][1]["variants"][0]["profiles"].pop("cam-box")
    p = specs.write()
    from jellybean.spec.base import load_model
    from jellybean.spec.workflow import Workflow
    from jellybean.spec.zoo import Zoo

    workflow, zoo = load_model(Workflow, p["workflow"]), load_model(Zoo, p["zoo"])
    grants = grants_from_plan(everywhere, infra, workflow=workflow, zoo=zoo)
    assert {n for n, g in grants.items() if g.sink_topics} == {"hub", "cloud"}
    assert grants["cloud"].sink_topics == ("jb/v1/sink/mini",) and grants["hub"].publish_sites == ("hub", "cam-2", "cloud")
    tracks = {w.location for w in plan.workers if w.operator == "track" and w.count > 0}
    assert {n for n, g in grants_from_plan(plan, infra).items() if g.sink_topics} == tracks
    with pytest.raises(JellyBeanError, match="both the workflow and the zoo"):
        grants_from_plan(plan, infra, workflow=workflow)

    elsewhere = plan.model_copy(update={"workers": (plan.workers[0].model_copy(update={"location": "mars"}),)})
    with pytest.raises(JellyBeanError, match="'mars', which infrastructure 'mini-infra' does not define"):
        grants_from_plan(elsewhere, infra)


# The CLI ---------------------------------------------------------------------------------------------


def test_cli_broker_config(tmp_path):
    result = runner.invoke(app, ["broker", "config", str(tmp_path / "b"), "--agent", "edge-1", "--agent", "hub-1",
                                 "--port", "18883"])
    assert result.exit_code == 0, result.output
    for text in ("controller", "replay", "edge-1", "jb/v1/agents/hub-1/#", "jb/v1/assign/edge-1",
                 "mqtts://127.0.0.1:18883", "jellybean broker run"):
        assert text in result.output, text
    cfg = load_broker_config(tmp_path / "b")
    assert set(cfg.credentials) == {"controller", "replay", "edge-1", "hub-1"} and cfg.port == 18883
    assert cfg.credentials["edge-1"] not in result.output


def test_cli_broker_config_from_plan(specs, tmp_path, monkeypatch):
    p = specs.write()
    monkeypatch.chdir(specs.root)
    result = runner.invoke(app, ["plan", "-w", "workflow.yaml", "-z", "zoo.yaml", "-i", "infrastructure.yaml",
                                 "-o", str(tmp_path / "plan.yaml")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["broker", "config", str(tmp_path / "b"), "--plan", str(tmp_path / "plan.yaml")])
    assert result.exit_code == 0, result.output
    agents = set(load_broker_config(tmp_path / "b").agents)
    assert agents and agents <= {"cam-1", "cam-2", "hub", "cloud"}

    # From another folder the plan still finds its inputs: it names them relative to itself.
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["broker", "config", str(tmp_path / "c"), "--plan", "plan.yaml"])
    assert result.exit_code == 0, result.output
    assert set(load_broker_config(tmp_path / "c").agents) == agents
    # An input that has gone is named, with the option that replaces it.
    moved = p["workflow"].rename(p["workflow"].with_name("moved.yaml"))
    result = runner.invoke(app, ["broker", "config", str(tmp_path / "d"), "--plan", "plan.yaml"])
    assert result.exit_code == 2
    assert "inputs.workflow" in result.output and "workflow.yaml'" in result.output and "--workflow" in result.output
    result = runner.invoke(app, ["broker", "config", str(tmp_path / "d"), "--plan", "plan.yaml",
                                 "--workflow", str(moved)])
    assert result.exit_code == 0, result.output
    assert set(load_broker_config(tmp_path / "d").agents) == agents


def test_cli_broker_config_sink_replay_users_and_client_certs(tmp_path):
    result = runner.invoke(app, ["broker", "config", str(tmp_path / "b"), "--agent", "cam", "--agent", "cloud",
                                 "--agent", "cloud-2@cloud", "--sink", "cloud", "--replay-user", "replay-2",
                                 "--client-certs", "--port", "18883"])
    assert result.exit_code == 0, result.output
    cfg = load_broker_config(tmp_path / "b")
    assert cfg.client_certs and cfg.agents["cloud"].sink_topics == ("jb/v1/sink/#",)
    assert cfg.agents["cam"].sink_topics == () and cfg.agents["cloud-2"].sink_topics == ()
    assert cfg.rules["replay-2"] == cfg.rules["replay"]
    for user in ("controller", "replay", "replay-2", "cam", "cloud", "cloud-2"):
        crt, key = cfg.cert_for(user)
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(cfg.ca.read_bytes()))
        assert cert.subject.rfc4514_string() == f"CN={user}" and stat.S_IMODE(key.stat().st_mode) == 0o600
        assert cfg.credentials[user] not in result.output
    assert "--cert" in result.output and "clients" in result.output
    # Re-running keeps the client certificates it can (deployed devices keep theirs).
    pem = cfg.cert_for("cam")[0].read_bytes()
    assert runner.invoke(app, ["broker", "config", str(tmp_path / "b"), "--agent", "cam", "--client-certs"]).exit_code == 0
    assert cfg.cert_for("cam")[0].read_bytes() == pem and not (tmp_path / "b" / "clients" / "cloud.crt").exists()

    result = runner.invoke(app, ["broker", "config", str(tmp_path / "c"), "--agent", "cam", "--sink", "cloud"])
    assert result.exit_code == 1 and "--sink cloud: no such agent" in result.output


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership for user mosquitto is set only by root")
def test_cli_broker_config_as_root_gives_mosquittos_files_to_it_and_warns_when_it_cannot_enter(tmp_path):
    import pwd

    result = runner.invoke(app, ["broker", "config", str(tmp_path / "b"), "--agent", "cam"])
    assert result.exit_code == 0, result.output
    uid = pwd.getpwnam("mosquitto").pw_uid
    d = tmp_path / "b"
    assert [(d / n).stat().st_uid == uid for n in ("passwd", "acl", "server.key", "data")] == [True] * 4
    assert (d / "ca.key").stat().st_uid == 0 and (d / "credentials.yaml").stat().st_uid == 0
    # pytest's temporary directories are root's alone (0700): the stock broker could not enter.
    assert "warning: user mosquitto" in " ".join(result.output.split()) and "/etc/mosquitto" in result.output


def test_cli_broker_config_needs_agents(tmp_path):
    result = runner.invoke(app, ["broker", "config", str(tmp_path)])
    assert result.exit_code == 1 and "give --agent NAME" in result.output


def test_cli_broker_run_missing_dir(tmp_path):
    result = runner.invoke(app, ["broker", "run", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert f"{tmp_path / 'nowhere' / 'mosquitto.conf'} does not exist" in result.output
    assert "jellybean broker config" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["broker", "run", str(tmp_path), "--embedded"])
    assert result.exit_code == 1 and "cannot use" in result.output


def test_cli_broker_run_serves_the_config_until_interrupted(tmp_path, probes):
    cfg = write_broker_config(tmp_path / "b", agents=["edge-1"], port=free_port())
    proc = subprocess.Popen([sys.executable, "-m", "jellybean", "broker", "run", str(cfg.dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
        deadline = time.monotonic() + 15
        while not any("ready at" in line for line in list(lines.queue)):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines.queue)
            time.sleep(0.05)
        connected(probes, cfg.url_for("edge-1"), cfg.ca)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", cfg.port), timeout=1).close()


def test_broker_config_cli_takes_a_second_device_at_a_site(tmp_path):
    from typer.testing import CliRunner

    from jellybean.agents.broker import load_broker_config
    from jellybean.cli.main import app

    result = CliRunner().invoke(app, ["broker", "config", str(tmp_path / "b"), "--agent", "hub",
                                      "--agent", "hub-2@hub", "--port", "18883"])
    assert result.exit_code == 0, result.output
    cfg = load_broker_config(tmp_path / "b")
    rules = {r.topic: r.access for r in cfg.rules["hub-2"]}
    assert rules.get("jb/v1/data/hub/#") == "readwrite" and "jb/v1/agents/hub-2/#" in rules
