"""Broker security against a real Mosquitto: no session takeover with another party's credentials,
no secret in argv or logs, only the sink's owner writes the sink, mutual TLS, and the generated
configuration run by the stock broker as root (with persistence)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from jellybean.agents import topics
from jellybean.agents.broker import (
    PASSWORD_ENV,
    AgentGrant,
    MosquittoBroker,
    client_url,
    find_mosquitto,
    free_port,
    parse_broker_url,
    read_password_file,
    redact_url,
    replay_rules,
    split_password,
    write_broker_config,
)
from jellybean.agents.processes import stop_process
from jellybean.agents.transport import MqttLink, Will
from jellybean.errors import JellyBeanError

try:
    from .mqtt_probe import Probe
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from mqtt_probe import Probe

SINK = topics.sink("mini")
# Mosquitto drops a publish the ACL denies without telling the publisher; a message that has not
# arrived this long after a later, allowed one from the same client never will.
SILENCE_S = 0.5


def wait_for(condition, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def closing():
    """Collects probes and links; closes them after the test."""
    made: list = []

    def keep(thing):
        made.append(thing)
        return thing

    yield keep
    for thing in reversed(made):
        thing.close() if isinstance(thing, Probe) else thing.stop()


def connected(closing, url: str, ca: Path | None, **kw) -> Probe:
    probe = closing(Probe(url, ca, **kw))
    rc = probe.connect()
    assert rc is not None and not rc.is_failure, f"CONNACK {rc}"
    return probe


def _grants() -> dict[str, AgentGrant]:
    # a1 runs the workflow's last operator (it may write the sink); a2 does not.
    return {"a1": AgentGrant(site="a1", publish_sites=("a2",), sink_topics=(SINK,)), "a2": AgentGrant(site="a2")}


def _config(directory: Path, **kw):
    return write_broker_config(directory, agents=_grants(), port=free_port(),
                               extra_users={"replay-2": replay_rules()}, **kw)


@pytest.fixture
def broker(tmp_path):
    """Mosquitto on the generated TLS + password + ACL configuration for agents a1 (sink) and a2."""
    cfg = _config(tmp_path / "broker")
    with MosquittoBroker(cfg.conf, workdir=tmp_path / "run", executable=find_mosquitto()):
        yield cfg


# Session takeover ---------------------------------------------------------------------------------


def _impostor_flaps(cfg, closing, attempts: int = 10) -> tuple[int, int]:
    """Agent a1 connected as the agent connects (persistent session, client id jb-agent-a1, a last
    will); an impostor holding a2's credentials connects with client id jb-agent-a1, `attempts`
    times. Returns (a1's reconnects, a1's last wills published)."""
    watcher = connected(closing, cfg.url_for("controller"), cfg.ca)
    watcher.subscribe_granted(topics.status("a1"))
    a1 = closing(MqttLink(cfg.url_for("a1"), "jb-agent-a1", ca=cfg.ca,
                          will=Will(topics.status("a1"), b"offline")).start())
    a1.wait_connected()
    echoes: list[bytes] = []
    a1.subscribe(topics.agent("a1", "echo"), lambda t, p: echoes.append(p))
    a1.publish(topics.agent("a1", "echo"), b"ready")
    wait_for(lambda: b"ready" in echoes, what="a1's first round trip")
    for i in range(attempts):
        impostor = Probe(cfg.url_for("a2"), cfg.ca, client_id="jb-agent-a1", clean=False)
        rc = impostor.connect()
        impostor.close()
        assert rc is not None and not rc.is_failure, f"the impostor holds valid (a2's) credentials: {rc}"
    # The broker closes a taken-over session before it answers the newcomer, so a round trip through
    # a1 after the last CONNACK shows any takeover: the message comes back only over a new connection.
    a1.publish(topics.agent("a1", "echo"), b"after")
    wait_for(lambda: b"after" in echoes, what="a1's round trip after the impostor")
    wills = [m for m in watcher.drain() if m[1] == b"offline"]
    return a1.connects - 1, len(wills)


def test_another_users_credentials_cannot_disconnect_an_agent(broker, closing):
    reconnects, wills = _impostor_flaps(broker, closing)
    print(f"\nimpostor with a2's credentials and a1's client id, 10 tries: a1 reconnects {reconnects}, "
          f"last wills {wills}")
    assert (reconnects, wills) == (0, 0)


@pytest.fixture
def unbound_broker(tmp_path):
    """The generated configuration without use_username_as_clientid (as it was before)."""
    cfg = _config(tmp_path / "broker")
    conf = cfg.conf.read_text()
    assert "use_username_as_clientid true\n" in conf
    cfg.conf.write_text(conf.replace("use_username_as_clientid true\n", ""))
    with MosquittoBroker(cfg.conf, workdir=tmp_path / "run", executable=find_mosquitto()):
        yield cfg


def test_without_the_client_id_binding_the_impostor_would_disconnect_the_agent(unbound_broker, closing):
    """The control for the test above: the same attack without use_username_as_clientid knocks a1
    off, so the test above can see a takeover."""
    reconnects, _ = _impostor_flaps(unbound_broker, closing, attempts=3)
    assert reconnects >= 1


def test_a_persistent_session_belongs_to_the_user_whatever_client_id(broker, closing):
    """With the client id replaced by the user name, an agent's session (clean_session=False) still
    keeps QoS 1 messages sent while it was away."""
    controller = connected(closing, broker.url_for("controller"), broker.ca)
    got: list[bytes] = []
    a1 = MqttLink(broker.url_for("a1"), "jb-agent-a1", ca=broker.ca).start()
    a1.subscribe(topics.assignment("a1"), lambda t, p: got.append(p))
    a1.wait_connected()

    def subscribed() -> bool:  # published until the subscription has landed
        controller.publish(topics.assignment("a1"), b"before")
        return b"before" in got

    wait_for(subscribed, what="the subscription")
    a1.stop()
    controller.publish(topics.assignment("a1"), b"while away")
    again = closing(MqttLink(broker.url_for("a1"), "another-id", ca=broker.ca))
    again.subscribe(topics.assignment("a1"), lambda t, p: got.append(p))
    again.start()
    wait_for(lambda: b"while away" in got, what="the queued message")


def test_two_replays_need_two_users(broker, closing):
    """A client id is its user name: two replays as one user would replace each other, so
    `broker config --replay-user` gives a second one its own identity."""
    r1 = closing(MqttLink(broker.url_for("replay"), "jb-replay-1", ca=broker.ca, clean=True).start())
    r1.wait_connected()
    r2 = closing(MqttLink(broker.url_for("replay-2"), "jb-replay-2", ca=broker.ca, clean=True).start())
    r2.wait_connected()
    a1 = Probe(broker.url_for("a1"), broker.ca)
    assert not a1.connect().is_failure
    for link, user in ((r1, "replay"), (r2, "replay-2")):
        got: list[bytes] = []
        link.subscribe(SINK, lambda t, p, got=got: got.append(p))

        def arrived(got=got, user=user) -> bool:  # published until the subscription has landed
            a1.publish(SINK, user.encode())
            return user.encode() in got

        wait_for(arrived, what=f"the sink at {user}")
    assert (r1.connects, r2.connects) == (1, 1)
    a1.close()

    same = closing(MqttLink(broker.url_for("replay"), "jb-replay-3", ca=broker.ca, clean=True).start())
    same.wait_connected()
    wait_for(lambda: r1.connects >= 2, what="the first replay to be replaced by the second of its user")


# Only the sink's owner writes the sink ------------------------------------------------------------


def test_only_the_agent_granted_the_sink_may_write_it(broker, closing):
    replay = connected(closing, broker.url_for("replay"), broker.ca)
    replay.subscribe_granted(topics.sink("#"), topics.metrics("+"))
    a1 = connected(closing, broker.url_for("a1"), broker.ca)
    a2 = connected(closing, broker.url_for("a2"), broker.ca)
    a1.publish(SINK, b"tracks")
    assert replay.next() == (SINK, b"tracks", False)
    a2.publish(SINK, b"forged by a2")
    a2.publish(topics.sink("other"), b"forged by a2")
    a1.publish(topics.sink("other"), b"another workflow's sink")
    a2.publish(topics.metrics("a2"), b"later")
    a1.publish(topics.metrics("a1"), b"later")
    assert sorted([replay.next(), replay.next()]) == [(topics.metrics("a1"), b"later", False),
                                                      (topics.metrics("a2"), b"later", False)]
    time.sleep(SILENCE_S)
    assert replay.drain() == []


# No secret in argv or logs ------------------------------------------------------------------------


def _agent_process(cfg, tmp_path: Path, name: str, broker_args: list[str], env: dict | None = None):
    log = open(tmp_path / f"agent-{name}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jellybean", "agent", "--name", name, "--hardware", "cam-box", *broker_args,
         "--ca", str(cfg.ca), "--cache", str(tmp_path / "models"), "--log-level", "info"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    log.close()
    return proc


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _online(watcher: Probe, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = watcher.next(timeout=0.5)
        if msg and msg[0] == topics.status(name) and b"online" in msg[1]:
            return
    raise AssertionError(f"agent {name} did not come online within {timeout:g} s")


def test_agent_password_from_a_file_is_in_no_argv_nor_log_and_an_impostor_cannot_knock_it_off(broker, closing,
                                                                                                tmp_path):
    password = broker.credentials["a1"]
    watcher = connected(closing, broker.url_for("controller"), broker.ca)
    watcher.subscribe_granted(topics.status("a1"), topics.heartbeat("a1"))
    url = f"mqtts://a1@127.0.0.1:{broker.port}"
    proc = _agent_process(broker, tmp_path, "a1", ["--broker", url, "--password-file",
                                                   str(broker.password_file("a1"))])
    try:
        _online(watcher, "a1")
        assert password not in _cmdline(proc.pid)
        assert password not in Path(f"/proc/{proc.pid}/environ").read_bytes().decode(errors="replace")
        # The bar, with the real agent: a2's credentials under a1's client id, 10 times.
        for _ in range(10):
            impostor = Probe(broker.url_for("a2"), broker.ca, client_id="jb-agent-a1", clean=False)
            rc = impostor.connect()
            impostor.close()
            assert rc is not None and not rc.is_failure
        # Two heartbeats sent after the last try: a reconnect would have re-announced by then.
        watcher.drain()
        beats = 0
        statuses = []
        deadline = time.monotonic() + 30
        while beats < 2 and time.monotonic() < deadline:
            msg = watcher.next(timeout=1)
            if msg and msg[0] == topics.heartbeat("a1"):
                beats += 1
            elif msg:
                statuses.append(msg)
        assert beats == 2 and statuses == [], statuses
    finally:
        stop_process(proc)
    log = (tmp_path / "agent-a1.log").read_text()
    assert "lost the broker connection" not in log, log
    assert f"broker mqtts://a1:***@127.0.0.1:{broker.port}" in log, log  # where it connected, no secret
    assert password not in log


def test_a_password_in_the_url_still_works_and_is_logged_redacted(broker, closing, tmp_path):
    password = broker.credentials["a2"]
    watcher = connected(closing, broker.url_for("controller"), broker.ca)
    watcher.subscribe_granted(topics.status("a2"))
    proc = _agent_process(broker, tmp_path, "a2", ["--broker", broker.url_for("a2")])
    try:
        _online(watcher, "a2")
    finally:
        stop_process(proc)
    log = (tmp_path / "agent-a2.log").read_text()
    assert f"mqtts://a2:***@127.0.0.1:{broker.port}" in log and password not in log, log


def test_spawned_agents_get_their_password_in_the_environment(broker, closing, tmp_path):
    """`jellybean up` (spawn_agents) with per-agent URLs that carry passwords: the children's
    command lines carry none, and they connect."""
    from jellybean.cli.run import spawn_agents

    watcher = connected(closing, broker.url_for("controller"), broker.ca)
    watcher.subscribe_granted(topics.status("a1"))
    dep = SimpleNamespace(plan=SimpleNamespace(workers=[SimpleNamespace(location="a1", hardware="cam-box", count=1)]),
                          zoo_dir=tmp_path)
    procs = spawn_agents(dep, {"a1": broker.url_for("a1")}, tmp_path, ca=broker.ca)
    try:
        _online(watcher, "a1")
        assert broker.credentials["a1"] not in _cmdline(procs["a1"].pid)
    finally:
        stop_process(procs["a1"])
    assert broker.credentials["a1"] not in (tmp_path / "agent-a1.log").read_text()


def test_client_url_resolves_secrets_without_showing_them(tmp_path):
    secret = tmp_path / "a1.password"
    secret.write_text("s3cret/@:?\n")
    url = client_url("mqtts://a1@h:8883", password_file=secret, environ={})
    assert parse_broker_url(url).password == "s3cret/@:?" and parse_broker_url(url).username == "a1"
    assert redact_url(url) == "mqtts://a1:***@h:8883"
    assert parse_broker_url(client_url("mqtts://a1@h", environ={PASSWORD_ENV: "from-env"})).password == "from-env"
    assert parse_broker_url(client_url("mqtts://a1:inline@h", environ={PASSWORD_ENV: "x"})).password == "inline"
    assert parse_broker_url(client_url("mqtt://h", environ={PASSWORD_ENV: "x"})).password is None
    with pytest.raises(JellyBeanError, match="give it once") as err:
        client_url("mqtts://a1:inline@h", password_file=secret, environ={})
    assert "inline" not in str(err.value)
    with pytest.raises(JellyBeanError, match="names no user"):
        client_url("mqtts://h", password_file=secret, environ={})
    with pytest.raises(JellyBeanError, match="cannot read the broker password"):
        read_password_file(tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(JellyBeanError, match="empty"):
        read_password_file(tmp_path / "empty")

    # A client certificate: given, or found beside the password file; paths travel in the URL.
    (tmp_path / "a1.crt").write_text("c")
    (tmp_path / "a1.key").write_text("k")
    beside = parse_broker_url(client_url("mqtts://a1@h", password_file=secret, environ={}))
    assert (beside.cert, beside.key) == (tmp_path / "a1.crt", tmp_path / "a1.key")
    given = parse_broker_url(client_url("mqtts://h", cert=tmp_path / "x y&z.crt", environ={}))
    assert (given.cert, given.key) == (tmp_path / "x y&z.crt", tmp_path / "x y&z.key")
    with pytest.raises(JellyBeanError, match="--key without --cert"):
        client_url("mqtts://h", key=tmp_path / "a1.key", environ={})
    with pytest.raises(JellyBeanError, match="unexpected query 'password'"):
        parse_broker_url("mqtts://h?password=x")

    assert split_password("mqtts://a1:pw@h:1") == ("mqtts://a1@h:1", "pw")
    assert split_password("mqtt://h:1") == ("mqtt://h:1", None)
    assert redact_url("mqtts://a1:p@ss@h:1") == "mqtts://a1:***@h:1"
    assert redact_url("not a url a:b@c") == "not a url a:b@c"


# Mutual TLS ---------------------------------------------------------------------------------------


@pytest.fixture
def mtls_broker(tmp_path):
    cfg = _config(tmp_path / "broker", client_certs=True)
    with MosquittoBroker(cfg.conf, workdir=tmp_path / "run", executable=find_mosquitto()):
        yield cfg


def test_mutual_tls_client_certificates_are_the_identity(mtls_broker, closing):
    cfg = mtls_broker
    conf = cfg.conf.read_text()
    for line in ("require_certificate true", "use_identity_as_username true", "use_username_as_clientid true"):
        assert line in conf.splitlines()
    assert "password_file" not in conf
    for user in cfg.credentials:
        crt, key = cfg.cert_for(user)
        assert crt.is_file() and oct(key.stat().st_mode & 0o777) == "0o600"
    controller = connected(closing, cfg.url_for("controller"), cfg.ca)
    controller.subscribe_granted(topics.ALL_AGENTS)
    a1 = Probe(cfg.url_for("a1"), cfg.ca)
    assert not a1.connect().is_failure
    a1.publish(topics.heartbeat("a1"), b"with its certificate")
    assert controller.next() == (topics.heartbeat("a1"), b"with its certificate", False)
    a1.close()

    # No certificate: refused, with a password or without.
    password_url = f"mqtts://a1:{cfg.credentials['a1']}@127.0.0.1:{cfg.port}"
    for url in (password_url, cfg.url):
        refused = Probe(url, cfg.ca)
        rc = refused.connect(timeout=5)
        refused.close()
        assert rc is None or rc.is_failure, rc
    # The certificate is the identity: a2's certificate is a2, whatever user the URL names.
    crt, key = cfg.cert_for("a2")
    as_a2 = connected(closing, client_url(f"mqtts://a1@127.0.0.1:{cfg.port}", cert=crt, key=key), cfg.ca)
    as_a2.publish(topics.heartbeat("a1"), b"impersonated")
    as_a2.publish(topics.heartbeat("a2"), b"as itself")
    assert controller.next() == (topics.heartbeat("a2"), b"as itself", False)

    # The transport presents the certificate the URL names (as `--cert/--key` give it).
    link = closing(MqttLink(cfg.url_for("a1"), "jb-agent-a1", ca=cfg.ca).start())
    link.wait_connected()
    link.publish(topics.heartbeat("a1"), b"from the transport")
    assert controller.next() == (topics.heartbeat("a1"), b"from the transport", False)
    assert controller.drain() == []  # a2's impersonation never arrived


# The stock broker, as root -------------------------------------------------------------------------


def _is_root_with_mosquitto_user() -> bool:
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        return False
    return os.geteuid() == 0


@pytest.mark.skipif(not _is_root_with_mosquitto_user(), reason="needs root and user mosquitto (Debian's package)")
def test_stock_mosquitto_started_by_root_runs_the_generated_config_and_persists(closing):
    """`mosquitto -c DIR/mosquitto.conf` as a user would start it (as root, no extra `user` line):
    it drops to user mosquitto, reads its files, and keeps a queued message across a restart."""
    base = Path(tempfile.mkdtemp(prefix="jb-stock-"))
    base.chmod(0o755)  # where user mosquitto may enter, as /etc/mosquitto/... is
    mosquitto = find_mosquitto()
    proc = None
    try:
        cfg = _config(base / "broker")
        assert "\nuser " not in cfg.conf.read_text()
        uid = pwd.getpwnam("mosquitto").pw_uid
        for name in ("passwd", "acl", "server.key", "data"):
            assert (cfg.dir / name).stat().st_uid == uid, name
        for name in ("ca.key", "credentials.yaml", "clients/a1.password"):
            assert (cfg.dir / name).stat().st_uid == 0 and (cfg.dir / name).stat().st_mode & 0o077 == 0, name

        def start() -> subprocess.Popen:
            log = open(base / "mosquitto.log", "a")
            p = subprocess.Popen([mosquitto, "-c", str(cfg.conf)], stdout=log, stderr=log,
                                 start_new_session=True)
            log.close()
            marks = (base / "mosquitto.log").read_text().count(" running")
            wait_for(lambda: p.poll() is not None or (base / "mosquitto.log").read_text().count(" running") > marks,
                     what="mosquitto to start")
            assert p.poll() is None, (base / "mosquitto.log").read_text()
            return p

        proc = start()
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert f"Uid:\t{uid}\t" in status  # it dropped to user mosquitto
        agent = Probe(cfg.url_for("a1"), cfg.ca, client_id="jb-agent-a1", clean=False)
        assert not agent.connect().is_failure
        agent.subscribe_granted(topics.assignment("a1"))
        agent.close()
        controller = Probe(cfg.url_for("controller"), cfg.ca)
        assert not controller.connect().is_failure
        controller.publish(topics.assignment("a1"), b"queued")
        controller.close()

        proc.send_signal(signal.SIGTERM)  # a clean shutdown saves the database
        assert proc.wait(timeout=30) == 0
        assert (cfg.dir / "data" / "mosquitto.db").is_file()
        proc = start()
        back = Probe(cfg.url_for("a1"), cfg.ca, client_id="jb-agent-a1", clean=False)
        assert not back.connect().is_failure
        assert back.next()[:2] == (topics.assignment("a1"), b"queued")
        back.close()
        assert "rror" not in (base / "mosquitto.log").read_text()
    finally:
        if proc is not None:
            stop_process(proc)
        shutil.rmtree(base, ignore_errors=True)
