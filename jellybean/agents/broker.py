"""The MQTT broker: its configuration (TLS, passwords, ACL), local brokers, and broker URLs.

``write_broker_config(DIR, agents=...)`` writes everything a production Mosquitto needs:

    ca.crt, ca.key            a self-signed CA that clients trust (ca.key: 0600)
    server.crt, server.key    the broker's certificate, signed by the CA, for the host names given
    passwd                    Mosquitto 2's PBKDF2-SHA512 password file (0600)
    acl                       one section per user, generated from jellybean.agents.topics (0600)
    mosquitto.conf            TLS listener, no anonymous clients, password file, ACL, no persistence
    credentials.yaml          user -> password, for the controller, replay and every agent (0600)
    broker.yaml               what is not secret: host, port, URL, each user's topic rules

Users and what they may do (Mosquitto denies every topic not listed):

    controller   readwrite jb/v1/#
    replay       write jb/v1/data/#, read jb/v1/sink/#, read jb/v1/routes, read jb/v1/agents/+/metrics
    agent NAME   readwrite jb/v1/agents/NAME/#, read its assignment and model chunks, read
                 jb/v1/routes, read jb/v1/data/SITE/#, write jb/v1/data/S/# for each S it may
                 forward to, write jb/v1/sink/#

Local brokers for tests and the one-machine demo: ``MosquittoBroker`` (the real broker as a child
process), ``EmbeddedBroker`` (amqtt in a background thread, for machines without Mosquitto), and
``start_local_broker`` which picks one. Every client parses its broker URL with
``parse_broker_url`` and sets credentials and TLS with ``configure_client``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence
from urllib.parse import quote, unquote, urlsplit

import yaml

from jellybean.agents import topics
from jellybean.agents.processes import stop_process
from jellybean.errors import JellyBeanError

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from jellybean.spec.infrastructure import Infrastructure
    from jellybean.spec.plan import Plan

log = logging.getLogger(__name__)

CONTROLLER = "controller"
REPLAY = "replay"
RESERVED_USERS = (CONTROLLER, REPLAY)
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# Mosquitto 2's own default for `mosquitto_passwd`; it reads the count from each line, so any works.
PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12  # what mosquitto_passwd uses
_SECRET_MODE = 0o600
_INSTALL_HINT = "install it (`apt-get install mosquitto`) or use the embedded broker (--embedded)"

Access = Literal["read", "write", "readwrite"]


# Users, grants and ACL rules -------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One Mosquitto ACL line: ``topic ACCESS TOPIC``."""

    access: Access
    topic: str

    @property
    def may_read(self) -> bool:
        return self.access in ("read", "readwrite")

    @property
    def may_write(self) -> bool:
        return self.access in ("write", "readwrite")


@dataclass(frozen=True)
class AgentGrant:
    """Which site an agent serves and to which sites' data topics it may forward items."""

    site: str
    publish_sites: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # An agent always passes items between operators of its own site.
        sites = (self.site, *(s for s in self.publish_sites if s != self.site))
        object.__setattr__(self, "publish_sites", tuple(dict.fromkeys(sites)))


def agent_rules(name: str, grant: AgentGrant) -> tuple[Rule, ...]:
    """What agent NAME may do: its own subtree, its assignment and models, its site's data."""
    rules = [
        Rule("readwrite", topics.agent(name, "#")),
        Rule("read", topics.assignment(name)),
        Rule("read", topics.model_chunks(name, "#")),
        Rule("read", topics.ROUTES),
    ]
    for site in grant.publish_sites:
        access: Access = "readwrite" if site == grant.site else "write"
        rules.append(Rule(access, topics.data(site, "#")))
    rules.append(Rule("write", topics.sink("#")))
    return tuple(rules)


def user_rules(agents: Mapping[str, AgentGrant],
               extra_users: Mapping[str, Sequence[Rule]] | None = None) -> dict[str, tuple[Rule, ...]]:
    """Every user's ACL rules: the controller, replay, each agent, then any extra users."""
    rules: dict[str, tuple[Rule, ...]] = {
        CONTROLLER: (Rule("readwrite", f"{topics.ROOT}/#"),),
        # Replay reads the agents' metrics for the bytes they sent over each link (its report).
        REPLAY: (Rule("write", f"{topics.ROOT}/data/#"), Rule("read", topics.sink("#")),
                 Rule("read", topics.ROUTES), Rule("read", topics.metrics("+"))),
    }
    for name, grant in agents.items():
        rules[name] = agent_rules(name, grant)
    for name, extra in (extra_users or {}).items():
        if name in rules:
            raise JellyBeanError(f"user '{name}' is defined twice (as an agent or a built-in user and as an extra "
                                 "user); give it another name")
        rules[check_user(name)] = tuple(extra)
    return rules


def check_user(name: str) -> str:
    return topics.check_name(name, "broker user name")


def _normalise_agents(agents: Mapping[str, AgentGrant] | Iterable[str]) -> dict[str, AgentGrant]:
    if isinstance(agents, Mapping):
        grants = dict(agents)
    else:
        grants = {name: AgentGrant(site=name) for name in agents}
    for name, grant in grants.items():
        topics.check_name(name)
        if name in RESERVED_USERS:
            raise JellyBeanError(f"agent name '{name}' is reserved for the {name}'s broker user; rename the agent")
        for site in grant.publish_sites:
            topics.check_name(site, "site name")
    return grants


def grants_from_plan(plan: Plan, infrastructure: Infrastructure) -> dict[str, AgentGrant]:
    """One agent per site where the plan runs workers, named after the site.

    Each agent may publish to the data topics of its own site and of every site reachable from it
    over the infrastructure's links (any number of hops; a ``both_ways`` link counts in both
    directions). That is a superset of what this plan routes and of what any re-plan on the same
    infrastructure could route, so re-planning never needs a new broker configuration -- unless it
    places workers at a site that has no agent yet.
    """
    known = {s.name for s in infrastructure.sites}
    sites = sorted({w.location for w in plan.workers if w.count > 0})
    for site in sites:
        if site not in known:
            raise JellyBeanError(
                f"plan '{plan.name}' runs workers at '{site}', which infrastructure '{infrastructure.name}' does not "
                f"define (sites: {', '.join(sorted(known))}); give the infrastructure the plan was made from")
    nexts: dict[str, set[str]] = {name: set() for name in known}
    for link in infrastructure.links:
        nexts[link.from_].add(link.to)
        if link.both_ways:
            nexts[link.to].add(link.from_)
    grants: dict[str, AgentGrant] = {}
    for site in sites:
        reached, frontier = {site}, [site]
        while frontier:
            for nxt in nexts[frontier.pop()]:
                if nxt not in reached:
                    reached.add(nxt)
                    frontier.append(nxt)
        grants[site] = AgentGrant(site=site, publish_sites=tuple(sorted(reached - {site})))
    return grants


# Password file ---------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def mosquitto_password_hash(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """The part after ``user:`` in a Mosquitto 2 password file: ``$7$ITER$SALT$HASH`` (PBKDF2-SHA512)."""
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def check_mosquitto_password(line_hash: str, password: str) -> bool:
    """True when ``password`` matches a ``$7$...`` hash as Mosquitto checks it."""
    parts = line_hash.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    salt = base64.b64decode(parts[3])
    return secrets.compare_digest(mosquitto_password_hash(password, salt=salt, iterations=int(parts[2])), line_hash)


# Certificates ----------------------------------------------------------------------------------


def _san_entry(name: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _make_ca(common_name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate clocks a little behind ours
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_server_cert(ca_key, ca_cert, hosts: Sequence[str]):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _new_key()
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([_san_entry(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        # Python 3.13's default TLS context (VERIFY_X509_STRICT) rejects certificates without it.
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _load_ca(directory: Path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    except (OSError, ValueError) as exc:
        raise JellyBeanError(f"{directory}: cannot reuse the CA in ca.crt/ca.key ({exc}); remove both files or "
                             "pass rotate=True (--rotate) to make a new CA") from exc
    return key, cert


# Writing the configuration ---------------------------------------------------------------------


def _write(path: Path, data: str | bytes, *, secret: bool = False) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file; secrets are 0600
    from the moment they exist."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _SECRET_MODE if secret else 0o644)
    try:
        os.fchmod(fd, _SECRET_MODE if secret else 0o644)  # O_CREAT's mode does not apply to an existing file
        os.write(fd, data.encode("utf-8") if isinstance(data, str) else data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class BrokerConfig:
    """A configuration written by :func:`write_broker_config` (or read back by :func:`load_broker_config`)."""

    dir: Path
    host: str
    port: int
    ca: Path
    credentials: dict[str, str] = field(repr=False)
    rules: dict[str, tuple[Rule, ...]] = field(default_factory=dict)
    agents: dict[str, AgentGrant] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"mqtts://{_netloc(self.host, self.port)}"

    @property
    def conf(self) -> Path:
        return self.dir / "mosquitto.conf"

    def url_for(self, user: str) -> str:
        """``mqtts://user:password@host:port`` for a user of this configuration."""
        if user not in self.credentials:
            raise JellyBeanError(f"{self.dir}: no broker user '{user}' (users: {', '.join(self.credentials)}); "
                                 "add the agent with `jellybean broker config --agent NAME` and restart the broker")
        return f"mqtts://{quote(user, safe='')}:{quote(self.credentials[user], safe='')}@{_netloc(self.host, self.port)}"


def write_broker_config(
    directory: Path,
    *,
    agents: Mapping[str, AgentGrant] | Iterable[str],
    host: str = "127.0.0.1",
    port: int = 8883,
    bind: str | None = None,
    extra_hosts: Sequence[str] = (),
    extra_users: Mapping[str, Sequence[Rule]] | None = None,
    rotate: bool = False,
) -> BrokerConfig:
    """Write a TLS Mosquitto configuration with one password and ACL section per user into DIRECTORY.

    ``agents``: names (each serving the site of its own name) or name -> AgentGrant. ``host`` is the
    name clients use (it and ``extra_hosts``, 127.0.0.1 and localhost go in the certificate);
    ``bind`` the address the listener binds (default: ``host``). Re-running keeps the CA and the
    passwords of users that remain, so deployed agents keep working; ``rotate`` makes all new.
    """
    grants = _normalise_agents(agents)
    rules = user_rules(grants, extra_users)
    if not 0 < port < 65536:
        raise JellyBeanError(f"port {port} is not a TCP port; give 1..65535 (8883 is MQTT over TLS)")
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)

    old: dict[str, str] = {}
    cred_path = directory / "credentials.yaml"
    if cred_path.exists() and not rotate:
        loaded = yaml.safe_load(cred_path.read_text()) or {}
        old = {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
    credentials = {user: old.get(user) or secrets.token_urlsafe(24) for user in rules}

    if (directory / "ca.key").exists() and (directory / "ca.crt").exists() and not rotate:
        ca_key, ca_cert = _load_ca(directory)
    else:
        ca_key, ca_cert = _make_ca(f"JellyBean broker CA ({directory.name})")
        _write(directory / "ca.key", _key_pem(ca_key), secret=True)
        _write(directory / "ca.crt", _cert_pem(ca_cert))
    hosts = list(dict.fromkeys([host, *extra_hosts, "127.0.0.1", "localhost"]))
    server_key, server_cert = _make_server_cert(ca_key, ca_cert, hosts)
    _write(directory / "server.key", _key_pem(server_key), secret=True)
    _write(directory / "server.crt", _cert_pem(server_cert))

    _write(directory / "passwd",
           "".join(f"{user}:{mosquitto_password_hash(pw)}\n" for user, pw in credentials.items()), secret=True)

    acl = ["# Written by `jellybean broker config` from jellybean/agents/topics.py.",
           "# Mosquitto denies every topic a user's section does not list; denied publishes are dropped silently."]
    for user, granted in rules.items():
        acl += ["", f"user {user}", *(f"topic {r.access} {r.topic}" for r in granted)]
    _write(directory / "acl", "\n".join(acl) + "\n", secret=True)

    conf = f"""\
# Written by `jellybean broker config`; run it with `jellybean broker run {directory}`
# or `mosquitto -c {directory / 'mosquitto.conf'}`. Paths are absolute: Mosquitto resolves
# relative ones against its working directory, not this file's.
per_listener_settings false
persistence false
# Without it a small message waits for the peer's delayed ACK (~40 ms a hop, measured).
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information

listener {port} {bind or host}
cafile {directory / 'ca.crt'}
certfile {directory / 'server.crt'}
keyfile {directory / 'server.key'}
tls_version tlsv1.2

allow_anonymous false
password_file {directory / 'passwd'}
acl_file {directory / 'acl'}
"""
    _write(directory / "mosquitto.conf", conf)
    _write(cred_path, "# Broker passwords: user -> password. Keep this file secret.\n"
           + yaml.safe_dump(credentials, sort_keys=False), secret=True)
    _write(directory / "broker.yaml", yaml.safe_dump({
        "host": host, "port": port, "url": f"mqtts://{_netloc(host, port)}", "ca": "ca.crt",
        "agents": {n: {"site": g.site, "publish_sites": list(g.publish_sites)} for n, g in grants.items()},
        "users": {u: [f"{r.access} {r.topic}" for r in rs] for u, rs in rules.items()},
    }, sort_keys=False))
    return BrokerConfig(dir=directory, host=host, port=port, ca=directory / "ca.crt", credentials=credentials,
                        rules=rules, agents=grants)


def load_broker_config(directory: Path) -> BrokerConfig:
    """Read back a configuration that :func:`write_broker_config` wrote."""
    directory = Path(directory).resolve()
    try:
        meta = yaml.safe_load((directory / "broker.yaml").read_text())
        credentials = yaml.safe_load((directory / "credentials.yaml").read_text())
    except OSError as exc:
        raise JellyBeanError(f"{directory}: not a broker configuration ({exc.strerror}: {exc.filename}); write one "
                             "with `jellybean broker config DIR`") from exc
    rules = {u: tuple(Rule(*line.split(" ", 1)) for line in rs) for u, rs in meta.get("users", {}).items()}
    agents = {n: AgentGrant(site=g["site"], publish_sites=tuple(g["publish_sites"]))
              for n, g in meta.get("agents", {}).items()}
    return BrokerConfig(dir=directory, host=meta["host"], port=int(meta["port"]), ca=directory / meta.get("ca", "ca.crt"),
                        credentials={str(k): str(v) for k, v in credentials.items()}, rules=rules, agents=agents)


# Broker URLs and paho clients ------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The URL without credentials, for logs and messages."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{_netloc(self.host, self.port)}"


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` (default 1883) or ``mqtts://...`` (TLS, default 8883)."""
    shown = url
    parts = urlsplit(url.strip())
    if parts.password:
        shown = url.replace(f":{parts.password}@", ":***@")
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise JellyBeanError(f"broker URL '{shown}': scheme must be mqtt:// (plain) or mqtts:// (TLS), "
                             "e.g. mqtts://agent-1:PASSWORD@broker.example:8883")
    if not parts.hostname:
        raise JellyBeanError(f"broker URL '{shown}' has no host; e.g. {scheme}://127.0.0.1:{DEFAULT_PORTS[scheme]}")
    try:
        port = DEFAULT_PORTS[scheme] if parts.port is None else parts.port
    except ValueError:
        raise JellyBeanError(f"broker URL '{shown}': the port is not a number in 1..65535") from None
    if port == 0:
        raise JellyBeanError(f"broker URL '{shown}': the port is not a number in 1..65535")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise JellyBeanError(f"broker URL '{shown}': unexpected path or query; give only "
                             f"{scheme}://[user:password@]host[:port]")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise JellyBeanError(f"broker URL '{shown}' has a password but no user name; give user:password@host")
    return BrokerAddress(host=parts.hostname, port=port, tls=scheme == "mqtts", username=username, password=password)


def connect_kwargs(address: BrokerAddress, keepalive: int = 30) -> dict[str, Any]:
    """Arguments for ``client.connect(**...)`` / ``connect_async``."""
    return {"host": address.host, "port": address.port, "keepalive": keepalive}


def configure_client(client: mqtt.Client, address: BrokerAddress, ca: Path | None = None) -> mqtt.Client:
    """Set credentials and TLS on a paho (v2 callback API) client for ADDRESS.

    With TLS the broker's certificate must chain to ``ca`` (the system's CAs when None) and name the
    host in the URL; nothing here turns that check off.
    """
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        import ssl

        if ca is not None and not Path(ca).is_file():
            raise JellyBeanError(f"CA file {ca} does not exist; give the ca.crt that `jellybean broker config` wrote")
        client.tls_set(ca_certs=str(ca) if ca is not None else None, cert_reqs=ssl.CERT_REQUIRED)
    elif ca is not None:
        raise JellyBeanError(f"a CA file ({ca}) was given for {address.url}, which is plain MQTT; use an mqtts:// URL "
                             "for a TLS broker, or drop the CA")
    return client


# Local brokers ---------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (another process may take it before we bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def find_mosquitto() -> str | None:
    """The mosquitto executable; Debian installs it in /usr/sbin, which a user's PATH often lacks."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.25):
            return True
    except OSError:
        return False


class LocalBroker(ABC):
    """A broker on this machine; a context manager that starts it, waits until it accepts
    connections and stops it."""

    kind: str = ""
    url: str = ""

    @abstractmethod
    def start(self) -> LocalBroker: ...

    @abstractmethod
    def wait_ready(self, timeout: float = 10.0) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> LocalBroker:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()  # __exit__ does not run when __enter__ raises
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _conf_lines(text: str) -> list[tuple[str, str]]:
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out.append((key, value.strip()))
    return out


class MosquittoBroker(LocalBroker):
    """The real Mosquitto as a child process.

    With ``config`` (e.g. the one write_broker_config wrote) it runs ``mosquitto -c config`` and takes
    the address from the config's first ``listener`` line; without one it writes a plain anonymous
    loopback configuration on ``port`` (a free one when None) into ``workdir``. Mosquitto's log goes
    to ``workdir/mosquitto.log`` (``capture_log=False``: to our stderr).
    """

    kind = "mosquitto"

    def __init__(self, config: Path | None = None, port: int | None = None, *, workdir: Path | None = None,
                 executable: str | None = None, capture_log: bool = True):
        self.executable = executable or find_mosquitto()
        if self.executable is None:
            raise JellyBeanError(f"mosquitto is not installed (not on PATH nor in /usr/sbin); {_INSTALL_HINT}")
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="jb-mosquitto-")) if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.capture_log = capture_log
        self.log_path = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen | None = None
        self._log_file = None
        if config is None:
            self.port = port or free_port()
            self.host, tls = "127.0.0.1", False
            self.config = self.workdir / "mosquitto-plain.conf"
            self.config.write_text(
                "# A plain, anonymous broker on loopback only: for tests and the one-machine demo.\n"
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n"
                "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
            text = self.config.read_text()
        else:
            self.config = Path(config).resolve()
            try:
                text = self.config.read_text()
            except OSError as exc:
                raise JellyBeanError(f"cannot read Mosquitto config {config}: {exc.strerror}; write one with "
                                     "`jellybean broker config DIR`") from exc
            self.host, self.port, tls = self._listener(text)
            if port is not None and port != self.port:
                raise JellyBeanError(f"{config} listens on port {self.port}, not {port}; Mosquitto ignores a port "
                                     "given beside a config with listeners: change the config's `listener` line")
        self.url = f"{'mqtts' if tls else 'mqtt'}://{_netloc(self.host, self.port)}"
        self._run_config = self._privileges(text)
        self._ready_marker = capture_log and self._logs_running_notice(text)

    def _listener(self, text: str) -> tuple[str, int, bool]:
        lines = _conf_lines(text)
        listener = next((v.split() for k, v in lines if k == "listener"), None)
        if not listener or not listener[0].isdigit():
            raise JellyBeanError(f"{self.config} has no `listener PORT [ADDRESS]` line; add one (MQTT over TLS: "
                                 "`listener 8883`)")
        bind = listener[1] if len(listener) > 1 else ""
        host = "127.0.0.1" if bind in ("", "0.0.0.0", "::") else bind
        return host, int(listener[0]), any(k == "certfile" for k, _ in lines)

    def _privileges(self, text: str) -> Path:
        """As root, Mosquitto drops to user `mosquitto`, who cannot read our 0600 password and ACL
        files; run as their owner instead (root when root wrote them), unless the config says `user`."""
        lines = _conf_lines(text)
        if os.geteuid() != 0 or any(k == "user" for k, _ in lines):
            return self.config
        secret = next((Path(v) for k, v in lines if k in ("password_file", "acl_file")), None)
        if secret is None:
            return self.config
        try:
            owner = pwd.getpwuid((secret if secret.exists() else self.config).stat().st_uid).pw_name
        except (KeyError, OSError):
            return self.config
        run_config = self.workdir / "mosquitto.run.conf"
        run_config.write_text(f"# {self.config} with the user to run as (written by jellybean).\n{text}\n"
                              f"user {owner}\n")
        log.info("running mosquitto as %s, the owner of %s", owner, secret)
        return run_config

    @staticmethod
    def _logs_running_notice(text: str) -> bool:
        """Whether Mosquitto will write its "running" line (log_type information) to stderr (then that marks readiness: a
        port answering may belong to another process when ours failed to bind)."""
        lines = _conf_lines(text)
        dests = [v for k, v in lines if k == "log_dest"]
        types = {v for k, v in lines if k == "log_type"}
        return (not dests or any(d.startswith("stderr") for d in dests)) and (not types or bool(types & {"information", "all"}))

    def start(self) -> MosquittoBroker:
        if self._proc is not None:
            return self
        if self.capture_log:
            self._log_file = open(self.log_path, "wb")  # fresh: an old "running" line must not mark readiness
        self._proc = subprocess.Popen(
            [self.executable, "-c", str(self._run_config)],
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=self._log_file,
            start_new_session=True,  # Ctrl-C in a terminal goes to us; we stop the broker ourselves
        )
        log.info("mosquitto (pid %d) starting on %s, log %s", self._proc.pid, self.url,
                 self.log_path if self.capture_log else "on stderr")
        return self

    def log_tail(self, lines: int = 15) -> str:
        if not self.capture_log or not self.log_path.exists():
            return "(see mosquitto's output above)"
        with open(self.log_path, errors="replace") as f:
            return "".join(deque(f, maxlen=lines)).rstrip() or "(mosquitto wrote nothing)"

    def wait_ready(self, timeout: float = 10.0) -> None:
        if self._proc is None:
            self.start()
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                raise JellyBeanError(f"mosquitto -c {self.config} exited with code {code} before accepting connections "
                                     f"on {self.url}; its last log lines:\n{self.log_tail()}")
            # Mosquitto logs "running" once its listeners are bound; without that line on our log,
            # a port that answers is the best sign (it may belong to another process, though).
            ready = " running" in self._log_text() if self._ready_marker else _port_open(self.host, self.port)
            if ready:
                return
            if time.monotonic() > deadline:
                raise JellyBeanError(f"mosquitto -c {self.config} did not accept connections on {self.url} within "
                                     f"{timeout:g} s; its last log lines:\n{self.log_tail()}")
            time.sleep(0.05)

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait(self) -> int:
        """Block until Mosquitto exits; its exit code."""
        if self._proc is None:
            raise JellyBeanError("mosquitto was not started")
        return self._proc.wait()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class EmbeddedBroker(LocalBroker):
    """amqtt (pure-Python, MQTT 3.1.1) in a background thread with its own event loop: anonymous, plain
    TCP on loopback. For the one-machine demo where Mosquitto is not installed; not for production."""

    kind = "embedded"

    def __init__(self, port: int | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.port = port or free_port(host)
        self.url = f"mqtt://{_netloc(host, self.port)}"
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": _netloc(self.host, self.port)}},
            # Only an authentication plugin: amqtt's default set also logs every packet and
            # publishes $SYS topics every 20 s, which nothing here reads.
            "plugins": {f"{__name__}.EmbeddedAuthPlugin": {}},
        }

    def start(self) -> EmbeddedBroker:
        if self._thread is not None:
            return self
        for name in ("amqtt", "transitions"):
            if logging.getLogger(name).level == logging.NOTSET:  # amqtt logs every connection at INFO
                logging.getLogger(name).setLevel(logging.WARNING)
        self._thread = threading.Thread(target=self._run, name=f"amqtt-broker-{self.port}", daemon=True)
        self._thread.start()
        log.info("embedded amqtt broker starting on %s", self.url)
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            from amqtt.broker import Broker

            self._broker = Broker(self._config())
            await self._broker.start()

        try:
            loop.run_until_complete(boot())
        except BaseException as exc:  # handed to wait_ready(), which raises it in the caller's thread
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            self.start()
        if not self._started.wait(timeout):
            raise JellyBeanError(f"the embedded broker did not start on {self.url} within {timeout:g} s")
        if self._error is not None:
            raise JellyBeanError(f"the embedded broker could not listen on {self.url}: {self._error}") from self._error
        # Broker.start() returned, so its listener is bound; a probe connection would only make
        # amqtt log an error about a client that sent nothing.

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop = self._loop
        if self._started.wait(10) and self._error is None and loop is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._broker.shutdown(), loop).result(timeout=10)
            except Exception as exc:  # stopping anyway; a failed clean shutdown only loses nothing we keep
                log.warning("embedded broker shutdown: %s", exc)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def _embedded_auth_plugin() -> type:
    """Lets every client in, like amqtt's AnonymousAuthPlugin, without marking its session
    anonymous: amqtt drops anonymous sessions on disconnect and queues nothing for them, so QoS 1
    messages for a persistent (clean_session=False) client that is reconnecting would be lost."""
    from amqtt.plugins.authentication import AnonymousAuthPlugin

    class EmbeddedAuthPlugin(AnonymousAuthPlugin):
        async def authenticate(self, *, session: Any) -> bool:
            return True

    EmbeddedAuthPlugin.__module__ = __name__
    return EmbeddedAuthPlugin


def __getattr__(name: str) -> Any:
    # amqtt loads plugins by dotted name; building the class on first use keeps amqtt out of imports.
    if name == "EmbeddedAuthPlugin":
        cls = _embedded_auth_plugin()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def start_local_broker(workdir: Path | None = None, port: int | None = None,
                       prefer: Literal["mosquitto", "embedded"] = "mosquitto") -> LocalBroker:
    """A started, ready, plain loopback broker: Mosquitto when installed (and preferred), else amqtt."""
    if prefer not in ("mosquitto", "embedded"):
        raise JellyBeanError(f"unknown broker kind '{prefer}'; use mosquitto or embedded")
    executable = find_mosquitto() if prefer == "mosquitto" else None
    broker: LocalBroker
    if executable:
        broker = MosquittoBroker(None, port, workdir=workdir, executable=executable)
        log.info("local broker: mosquitto (%s)", executable)
    else:
        if prefer == "mosquitto":
            log.warning("mosquitto is not installed (`apt-get install mosquitto`); using the embedded amqtt broker")
        broker = EmbeddedBroker(port)
        log.info("local broker: embedded amqtt")
    broker.start()
    try:
        broker.wait_ready()
    except BaseException:
        broker.stop()
        raise
    return broker
