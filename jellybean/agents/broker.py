"""The MQTT broker: its configuration (TLS, passwords, ACL), local brokers, and broker URLs.

``write_broker_config(DIR, agents=...)`` writes everything a production Mosquitto needs:

    ca.crt, ca.key            a self-signed CA that clients trust (ca.key: 0600)
    server.crt, server.key    the broker's certificate, signed by the CA, for the host names given
    passwd                    Mosquitto 2's PBKDF2-SHA512 password file (0600)
    acl                       one section per user, generated from jellybean.agents.topics (0600)
    mosquitto.conf            TLS listener, no anonymous clients, client id = user name, password
                              file, ACL, persistence in data/
    data/                     Mosquitto's persistence database (sessions, retained and queued messages)
    credentials.yaml          user -> password, for the controller, replay and every agent (0600)
    clients/USER.password     each party's password alone, for --password-file (0600)
    clients/USER.crt, .key    with client_certs (mutual TLS): each party's certificate, CN = USER
    broker.yaml               what is not secret: host, port, URL, each user's topic rules

Run as root, the files Mosquitto reads after dropping to its own user (server.key, passwd, acl,
data/) belong to user ``mosquitto``, so ``mosquitto -c DIR/mosquitto.conf`` works as it stands.

Users and what they may do (Mosquitto denies every topic not listed):

    controller   readwrite jb/v1/#
    replay       write jb/v1/data/#, read jb/v1/sink/#, read jb/v1/routes, read jb/v1/agents/+/metrics
    agent NAME   readwrite jb/v1/agents/NAME/#, read its assignment and model chunks, read
                 jb/v1/routes, read jb/v1/data/SITE/#, write jb/v1/data/S/# for each S it may
                 forward to, and write the workflow's sink topic only when its site can run the
                 workflow's last operator (``AgentGrant.sink_topics``)

Every client's id is its user name (``use_username_as_clientid``): a party holding one user's
credentials cannot take over, and so disconnect, another party's session.

Local brokers for tests and the one-machine demo: ``MosquittoBroker`` (the real broker as a child
process), ``EmbeddedBroker`` (amqtt in a background thread, for machines without Mosquitto), and
``start_local_broker`` which picks one. Every client parses its broker URL with
``parse_broker_url`` and sets credentials and TLS with ``configure_client``; ``client_url`` adds a
password from a file or JELLYBEAN_BROKER_PASSWORD and a client certificate; ``redact_url`` is the
form of a URL fit for logs.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import grp
import hashlib
import ipaddress
import logging
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import yaml

from jellybean.agents import topics
from jellybean.agents.processes import stop_process
from jellybean.errors import JellyBeanError
from jellybean.graphs import reachable

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from jellybean.spec.infrastructure import Infrastructure
    from jellybean.spec.plan import Plan
    from jellybean.spec.workflow import Workflow
    from jellybean.spec.zoo import Zoo

log = logging.getLogger(__name__)

CONTROLLER = "controller"
REPLAY = "replay"
RESERVED_USERS = (CONTROLLER, REPLAY)
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# Mosquitto 2's own default for `mosquitto_passwd`; it reads the count from each line, so any works.
PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12  # what mosquitto_passwd uses
_SECRET_MODE = 0o600
# The user Mosquitto drops to when started as root without a `user` line (`nobody` when it does not exist).
MOSQUITTO_USER = "mosquitto"
# A password from the environment, so that it is neither on a command line nor in a URL.
PASSWORD_ENV = "JELLYBEAN_BROKER_PASSWORD"
# Mosquitto saves its database on a clean shutdown and this often (seconds) in between.
AUTOSAVE_INTERVAL_S = 1
_INSTALL_HINT = "install it (`apt-get install mosquitto`) or use the embedded broker (--embedded)"

Access = Literal["read", "write", "readwrite"]
# Agents acknowledge an item only once its work is done, so what they hold is in flight: Mosquitto's
# default of 20 in flight per client would stall an agent holding a backlog for a task still
# starting (its assignment queued behind it). The agents bound what they hold themselves. Queues
# of absent persistent clients (an agent being restarted) hold this many messages before
# Mosquitto drops any.
MAX_QUEUED_MESSAGES = 200_000
DELIVERY_SETTINGS = ("# Agents acknowledge items once processed and bound what they hold (jellybean.agents.agent).\n"
                     "max_inflight_messages 0\n"
                     f"max_queued_messages {MAX_QUEUED_MESSAGES}\n")


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
    """Which site an agent serves, to which sites' data topics it may forward items, and which sink
    topics it may write (only an agent that can run the workflow's last operator has any)."""

    site: str
    publish_sites: tuple[str, ...] = ()
    sink_topics: tuple[str, ...] = ()
    ack_sites: tuple[str, ...] = ()   # where producers of what it serves may run: its re-send acknowledgements go there

    def __post_init__(self) -> None:
        # An agent always passes items between operators of its own site.
        sites = (self.site, *(s for s in self.publish_sites if s != self.site))
        object.__setattr__(self, "publish_sites", tuple(dict.fromkeys(sites)))


def agent_rules(name: str, grant: AgentGrant) -> tuple[Rule, ...]:
    """What agent NAME may do: its own subtree, its assignment and models, its site's data, and
    the sink topics of its grant."""
    rules = [
        Rule("readwrite", topics.agent(name, "#")),
        Rule("read", topics.assignment(name)),
        Rule("read", topics.model_chunks(name, "#")),
        Rule("read", topics.ROUTES),
    ]
    for site in grant.publish_sites:
        access: Access = "readwrite" if site == grant.site else "write"
        rules.append(Rule(access, topics.data(site, "#")))
    rules.append(Rule("readwrite", topics.ack(grant.site, "#")))
    rules.extend(Rule("write", topics.ack(site, "#")) for site in grant.ack_sites if site != grant.site)
    rules.extend(Rule("write", topic) for topic in grant.sink_topics)
    return tuple(rules)


def replay_rules() -> tuple[Rule, ...]:
    """What replay (or any other source of frames) may do: publish frames, read the sink, the routes,
    the agents' metrics (for the bytes they sent over each link, in its report) and the bridges' states."""
    return (Rule("write", f"{topics.ROOT}/data/#"), Rule("read", topics.sink("#")),
            Rule("read", topics.ROUTES), Rule("read", topics.metrics("+")), Rule("read", topics.link_state("+")))


def user_rules(agents: Mapping[str, AgentGrant],
               extra_users: Mapping[str, Sequence[Rule]] | None = None) -> dict[str, tuple[Rule, ...]]:
    """Every user's ACL rules: the controller, replay, each agent, then any extra users."""
    rules: dict[str, tuple[Rule, ...]] = {
        CONTROLLER: (Rule("readwrite", f"{topics.ROOT}/#"),),
        REPLAY: replay_rules(),
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
        for site in (*grant.publish_sites, *grant.ack_sites):
            topics.check_name(site, "site name")
        for topic in grant.sink_topics:
            if not topic.startswith(f"{topics.ROOT}/sink/"):
                raise JellyBeanError(f"agent '{name}': sink topic '{topic}' is not under {topics.ROOT}/sink/; an "
                                     "agent may write only the sink's topics besides its own")
    return grants


def grants_from_plan(plan: Plan, infrastructure: Infrastructure, *, workflow: Workflow | None = None,
                     zoo: Zoo | None = None) -> dict[str, AgentGrant]:
    """One agent per site where the plan runs workers, named after the site.

    Each agent may publish to the data topics of its own site and of every site reachable from it
    over the infrastructure's links (any number of hops; a ``both_ways`` link counts in both
    directions). That is a superset of what this plan routes and of what any re-plan on the same
    infrastructure could route, so re-planning never needs a new broker configuration -- unless it
    places workers at a site that has no agent yet.

    Only agents whose site could run one of the workflow's last operators (those feeding no other)
    may write the sink topic: with the ``workflow`` and ``zoo``, every site with hardware that a
    variant of such an operator is profiled on (where any re-plan could put it); without them, the
    sites where this plan runs it (a re-plan that moves it elsewhere then needs a new configuration).
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
    sink_sites = _sink_sites(plan, infrastructure, workflow, zoo)
    sink = topics.sink(workflow.name if workflow is not None else plan.name)
    reached = {site: reachable(nexts, site) for site in sorted(known)}
    grants: dict[str, AgentGrant] = {}
    for site in sites:
        grants[site] = AgentGrant(site=site, publish_sites=tuple(sorted(reached[site] - {site})),
                                  sink_topics=(sink,) if site in sink_sites else (),
                                  ack_sites=tuple(s for s in sorted(known) if s != site and site in reached[s]))
    return grants


def _sink_sites(plan: Plan, infrastructure: Infrastructure, workflow: Workflow | None, zoo: Zoo | None) -> set[str]:
    """Sites that could run one of the workflow's last operators (see grants_from_plan)."""
    if workflow is not None and zoo is not None:
        feeding = {i for op in workflow.operators for i in op.inputs}
        last = [op.name for op in workflow.operators if op.name not in feeding]
        able = {hw for name in last for v in (zoo.operator(name).variants if zoo.operator(name) else ())
                for hw in v.profiles}
        return {s.name for s in infrastructure.sites
                if any(at.count > 0 and hw in able for hw, at in s.hardware_at().items())}
    if workflow is not None or zoo is not None:
        raise JellyBeanError("grants_from_plan: give both the workflow and the zoo, or neither")
    feeding = {r.edge.split("->", 1)[0] for r in plan.routes}
    last = set(plan.variants) - feeding
    return {w.location for w in plan.workers if w.count > 0 and w.operator in last}


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


def _make_leaf_cert(ca_key, ca_cert, common_name: str, *, server: bool, hosts: Sequence[str] = ()):
    """A certificate signed by the CA: the broker's (server auth, its host names as SANs) or a
    client's for mutual TLS (client auth, CN = the broker user, as use_identity_as_username reads)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _new_key()
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san_entry(h) for h in hosts]), critical=False)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        builder
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        # Python 3.13's default TLS context (VERIFY_X509_STRICT) rejects certificates without it.
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _make_server_cert(ca_key, ca_cert, hosts: Sequence[str]):
    return _make_leaf_cert(ca_key, ca_cert, hosts[0], server=True, hosts=hosts)


def _make_client_cert(ca_key, ca_cert, user: str):
    return _make_leaf_cert(ca_key, ca_cert, user, server=False)


def _client_cert_reusable(crt: Path, key: Path, ca_cert, user: str) -> bool:
    """Whether clients/USER.crt and .key exist, belong together, name USER and chain to the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    def spki(public) -> bytes:
        return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca_cert)
        same_key = spki(private.public_key()) == spki(cert.public_key())
    except Exception:  # noqa: BLE001 - missing, unreadable, another CA's: issue a new one
        return False
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    expires = cert.not_valid_after_utc
    return names == [user] and same_key and expires > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)


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


def _write(path: Path, data: str | bytes, *, secret: bool = False, owner: tuple[int, int] | None = None) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file; secrets are 0600
    from the moment they exist; ``owner`` (uid, gid) is set before the file appears."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _SECRET_MODE if secret else 0o644)
    try:
        os.fchmod(fd, _SECRET_MODE if secret else 0o644)  # O_CREAT's mode does not apply to an existing file
        if owner is not None:
            os.fchown(fd, *owner)
        os.write(fd, data.encode("utf-8") if isinstance(data, str) else data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _mosquitto_owner() -> tuple[int, int] | None:
    """(uid, gid) of user `mosquitto` when we are root and it exists: Mosquitto started as root
    drops to it before it opens its password file, ACL and key, so those must be its own."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(MOSQUITTO_USER)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


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
    client_certs: bool = False

    @property
    def url(self) -> str:
        return f"mqtts://{_netloc(self.host, self.port)}"

    @property
    def conf(self) -> Path:
        return self.dir / "mosquitto.conf"

    def _check_user(self, user: str) -> None:
        if user not in self.credentials:
            raise JellyBeanError(f"{self.dir}: no broker user '{user}' (users: {', '.join(self.credentials)}); "
                                 "add the agent with `jellybean broker config --agent NAME` and restart the broker")

    def url_for(self, user: str) -> str:
        """``mqtts://user:password@host:port`` for a user of this configuration; with client
        certificates, ``mqtts://user@host:port?cert=...&key=...`` (the certificate is the identity)."""
        self._check_user(user)
        if self.client_certs:
            cert, key = self.cert_for(user)
            return format_broker_url(BrokerAddress(self.host, self.port, tls=True, username=user, cert=cert, key=key))
        return f"mqtts://{quote(user, safe='')}:{quote(self.credentials[user], safe='')}@{_netloc(self.host, self.port)}"

    def password_file(self, user: str) -> Path:
        """clients/USER.password: the user's password alone, for ``--password-file``."""
        self._check_user(user)
        return self.dir / "clients" / f"{user}.password"

    def cert_for(self, user: str) -> tuple[Path, Path]:
        """(clients/USER.crt, clients/USER.key): the user's client certificate and key (mutual TLS)."""
        self._check_user(user)
        if not self.client_certs:
            raise JellyBeanError(f"{self.dir} has no client certificates; write it with "
                                 "`jellybean broker config --client-certs`")
        return self.dir / "clients" / f"{user}.crt", self.dir / "clients" / f"{user}.key"


def write_broker_config(
    directory: Path,
    *,
    agents: Mapping[str, AgentGrant] | Iterable[str],
    host: str = "127.0.0.1",
    port: int = 8883,
    bind: str | None = None,
    extra_hosts: Sequence[str] = (),
    extra_users: Mapping[str, Sequence[Rule]] | None = None,
    client_certs: bool = False,
    rotate: bool = False,
    ca_dir: Path | None = None,
    extra_conf: str = "",
) -> BrokerConfig:
    """Write a TLS Mosquitto configuration with one password and ACL section per user into DIRECTORY.

    ``agents``: names (each serving the site of its own name) or name -> AgentGrant. ``host`` is the
    name clients use (it and ``extra_hosts``, 127.0.0.1 and localhost go in the certificate);
    ``bind`` the address the listener binds (default: ``host``). ``client_certs``: mutual TLS, a
    certificate per user (CN = the user name) that the broker requires and takes as the identity,
    instead of passwords. Re-running keeps the CA, the passwords and client certificates of users
    that remain, so deployed agents keep working; ``rotate`` makes all new. ``ca_dir``: sign with the
    CA in that directory (shared by several brokers; only its ca.crt is copied here).
    ``extra_conf`` is appended to mosquitto.conf.
    """
    grants = _normalise_agents(agents)
    rules = user_rules(grants, extra_users)
    if not 0 < port < 65536:
        raise JellyBeanError(f"port {port} is not a TCP port; give 1..65535 (8883 is MQTT over TLS)")
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    clients = directory / "clients"
    clients.mkdir(mode=0o700, exist_ok=True)
    os.chmod(clients, 0o700)
    data = directory / "data"
    data.mkdir(mode=0o700, exist_ok=True)
    mosquitto = _mosquitto_owner()
    if mosquitto is not None:
        os.chown(data, *mosquitto)

    old: dict[str, str] = {}
    cred_path = directory / "credentials.yaml"
    if cred_path.exists() and not rotate:
        loaded = yaml.safe_load(cred_path.read_text()) or {}
        old = {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
    credentials = {user: old.get(user) or secrets.token_urlsafe(24) for user in rules}

    if ca_dir is not None:
        ca_key, ca_cert = _load_ca(Path(ca_dir))
        _write(directory / "ca.crt", _cert_pem(ca_cert))
    elif (directory / "ca.key").exists() and (directory / "ca.crt").exists() and not rotate:
        ca_key, ca_cert = _load_ca(directory)
    else:
        ca_key, ca_cert = _make_ca(f"JellyBean broker CA ({directory.name})")
        _write(directory / "ca.key", _key_pem(ca_key), secret=True)
        _write(directory / "ca.crt", _cert_pem(ca_cert))
    hosts = list(dict.fromkeys([host, *extra_hosts, "127.0.0.1", "localhost"]))
    server_key, server_cert = _make_server_cert(ca_key, ca_cert, hosts)
    # Mosquitto reads its key, password file and ACL after dropping to its own user.
    _write(directory / "server.key", _key_pem(server_key), secret=True, owner=mosquitto)
    _write(directory / "server.crt", _cert_pem(server_cert))

    _write(directory / "passwd",
           "".join(f"{user}:{mosquitto_password_hash(pw)}\n" for user, pw in credentials.items()), secret=True,
           owner=mosquitto)

    acl = ["# Written by `jellybean broker config` from jellybean/agents/topics.py.",
           "# Mosquitto denies every topic a user's section does not list; denied publishes are dropped silently."]
    for user, granted in rules.items():
        acl += ["", f"user {user}", *(f"topic {r.access} {r.topic}" for r in granted)]
    _write(directory / "acl", "\n".join(acl) + "\n", secret=True, owner=mosquitto)

    # Each party's own secrets, to hand to that party alone; those of users that are gone are removed.
    wanted = set()
    for user, pw in credentials.items():
        _write(clients / f"{user}.password", pw + "\n", secret=True)
        wanted.add(f"{user}.password")
        if client_certs:
            crt, key = clients / f"{user}.crt", clients / f"{user}.key"
            if rotate or not _client_cert_reusable(crt, key, ca_cert, user):
                c_key, c_cert = _make_client_cert(ca_key, ca_cert, user)
                _write(key, _key_pem(c_key), secret=True)
                _write(crt, _cert_pem(c_cert))
            wanted |= {crt.name, key.name}
    for stale in clients.iterdir():
        if stale.name not in wanted and stale.suffix in (".password", ".crt", ".key"):
            stale.unlink()

    if client_certs:
        authentication = """\
# Mutual TLS: a client must present a certificate from our CA; its CN is the user name (no password).
require_certificate true
use_identity_as_username true"""
    else:
        authentication = f"password_file {directory / 'passwd'}"
    conf = f"""\
# Written by `jellybean broker config`; run it with `jellybean broker run {directory}`
# or `mosquitto -c {directory / 'mosquitto.conf'}` (as root too: Mosquitto then drops to user
# mosquitto, which owns the files it reads). Paths are absolute: Mosquitto resolves relative
# ones against its working directory, not this file's.
per_listener_settings false
# Sessions, retained and queued QoS 1 messages survive a restart: saved on a clean shutdown
# (SIGTERM, SIGINT) and every {AUTOSAVE_INTERVAL_S} s.
persistence true
persistence_location {data}/
autosave_interval {AUTOSAVE_INTERVAL_S}
# Without it a small message waits for the peer's delayed ACK (~40 ms a hop, measured).
set_tcp_nodelay true
{DELIVERY_SETTINGS}log_dest stderr
log_type error
log_type warning
log_type notice
log_type information

listener {port} {bind or host}
cafile {directory / 'ca.crt'}
certfile {directory / 'server.crt'}
keyfile {directory / 'server.key'}
tls_version tlsv1.2
# A client's id is its user name, whatever id it sends: a party cannot take over (and so
# disconnect) another's session. Two clients of one user replace each other.
use_username_as_clientid true
{authentication}

allow_anonymous false
acl_file {directory / 'acl'}
{extra_conf}"""
    _write(directory / "mosquitto.conf", conf)
    _write(cred_path, "# Broker passwords: user -> password. Keep this file secret.\n"
           + yaml.safe_dump(credentials, sort_keys=False), secret=True)
    _write(directory / "broker.yaml", yaml.safe_dump({
        "host": host, "port": port, "url": f"mqtts://{_netloc(host, port)}", "ca": "ca.crt",
        "client_certs": client_certs,
        "agents": {n: {"site": g.site, "publish_sites": list(g.publish_sites), "sink_topics": list(g.sink_topics),
                       "ack_sites": list(g.ack_sites)} for n, g in grants.items()},
        "users": {u: [f"{r.access} {r.topic}" for r in rs] for u, rs in rules.items()},
    }, sort_keys=False))
    return BrokerConfig(dir=directory, host=host, port=port, ca=directory / "ca.crt", credentials=credentials,
                        rules=rules, agents=grants, client_certs=client_certs)


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
    agents = {n: AgentGrant(site=g["site"], publish_sites=tuple(g["publish_sites"]),
                            sink_topics=tuple(g.get("sink_topics", ())), ack_sites=tuple(g.get("ack_sites", ())))
              for n, g in meta.get("agents", {}).items()}
    return BrokerConfig(dir=directory, host=meta["host"], port=int(meta["port"]), ca=directory / meta.get("ca", "ca.crt"),
                        credentials={str(k): str(v) for k, v in credentials.items()}, rules=rules, agents=agents,
                        client_certs=bool(meta.get("client_certs", False)))


@dataclass(frozen=True)
class SiteConfigs:
    """What :func:`write_site_configs` wrote: each site's broker configuration and the bridges between them."""

    dir: Path
    controller_site: str
    sites: dict[str, BrokerConfig]
    bridges: tuple[Any, ...]  # jellybean.agents.bridges.Bridge


def write_site_configs(
    directory: Path,
    infrastructure: Infrastructure,
    *,
    agents: Mapping[str, AgentGrant],
    controller_site: str | None = None,
    hosts: Mapping[str, str] | None = None,
    port: int = 8883,
    ports: Mapping[str, int] | None = None,
    outage_budget_s: float = 60.0,
    extra_users: Mapping[str, Sequence[Rule]] | None = None,
    rotate: bool = False,
) -> SiteConfigs:
    """One broker configuration per site in DIRECTORY/sites/SITE (as :func:`write_broker_config`
    writes, all signed by one CA in DIRECTORY), each with a bridge per link it initiates
    (jellybean.agents.bridges) in DIRECTORY/sites/SITE/bridges/ (0600: it holds the bridge's password).

    A site's broker has the controller, replay (and ``extra_users``), the agents at that site, and
    a user per bridge that connects to it, allowed exactly that bridge's topics. A site listens on
    ``ports[SITE]``; else one with a host of its own (``hosts[SITE]``, a machine of its own) on
    ``port``, and one on the default 127.0.0.1 on ``port + i`` (i: its index in the
    infrastructure, so that sites sharing this machine do not collide). Each
    broker's queue per client is bounded by the largest of its links' bandwidth x ``outage_budget_s``.
    """
    from jellybean.agents import bridges as bridging

    if not outage_budget_s > 0:
        raise JellyBeanError(f"outage budget {outage_budget_s:g} s: give a positive number of seconds")
    grants = _normalise_agents(agents)
    names = [s.name for s in infrastructure.sites]
    hosts, ports = dict(hosts or {}), dict(ports or {})
    for site in (*hosts, *ports):
        if site not in names:
            raise JellyBeanError(f"host given for '{site}', which is not a site of infrastructure "
                                 f"'{infrastructure.name}' (sites: {', '.join(names)})")
    if port + len(names) - 1 > 65535:
        raise JellyBeanError(f"ports {port}..{port + len(names) - 1} (one per site) do not fit below 65536; lower --port")
    for site in names:
        topics.check_name(site, "site name")
    controller = bridging.controller_site(infrastructure, controller_site)
    links = bridging.plan_bridges(infrastructure, {n: g.site for n, g in grants.items()}, controller=controller)
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if rotate or not ((directory / "ca.key").exists() and (directory / "ca.crt").exists()):
        ca_key, ca_cert = _make_ca(f"JellyBean site brokers CA ({directory.name})")
        _write(directory / "ca.key", _key_pem(ca_key), secret=True)
        _write(directory / "ca.crt", _cert_pem(ca_cert))
    mosquitto = _mosquitto_owner()
    sites: dict[str, BrokerConfig] = {}
    for i, site in enumerate(names):
        site_dir = directory / "sites" / site
        include = site_dir / "bridges"
        include.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(include, 0o700)
        if mosquitto is not None:
            os.chown(include, *mosquitto)
        users = dict(extra_users or {})
        for b in links:
            if b.remote == site:  # what the bridge may do here: publish what comes in, read what goes back
                users[b.name] = (*(Rule("write" if t.direction == "out" else "read", t.pattern) for t in b.topics),
                                 Rule("write", topics.link_state(b.name)))  # its state and last will
        budgets = [b.queue_bytes(outage_budget_s) for b in links if site in (b.local, b.remote)]
        # $SYS every 2 s (default 10): how many messages the broker holds (a cut link's queue) shows soon.
        extra = f"sys_interval 2\ninclude_dir {include}\n"
        if budgets and None not in budgets:
            extra = (f"# A client's queue (a bridge's too) holds what its fastest link carries in {outage_budget_s:g} s.\n"
                     f"max_queued_bytes {max(budgets)}\n" + extra)
        sites[site] = write_broker_config(
            site_dir, agents={n: g for n, g in grants.items() if g.site == site}, host=hosts.get(site, "127.0.0.1"),
            port=ports.get(site, port if site in hosts else port + i), extra_users=users, rotate=rotate, ca_dir=directory, extra_conf=extra)
    for site in names:
        include = directory / "sites" / site / "bridges"
        wanted = set()
        for b in links:
            if b.local != site:
                continue
            remote = sites[b.remote]
            text = bridging.bridge_conf(b, address=_netloc(remote.host, remote.port),
                                        password=remote.credentials[b.name], cafile=str(directory / "ca.crt"))
            _write(include / f"{b.name}.conf", text, secret=True, owner=mosquitto)
            wanted.add(f"{b.name}.conf")
        for stale in include.glob("*.conf"):
            if stale.name not in wanted:
                stale.unlink()
    _write(directory / "sites.yaml", yaml.safe_dump({
        "controller_site": controller,
        "sites": {s: {"url": c.url, "dir": f"sites/{s}"} for s, c in sites.items()},
        "bridges": {b.name: {"from": b.local, "to": b.remote, "bandwidth_mbps": b.bandwidth_mbps,
                             "max_queued_bytes": b.queue_bytes(outage_budget_s),
                             "out": list(b.patterns("out")), "in": list(b.patterns("in"))} for b in links},
    }, sort_keys=False))
    return SiteConfigs(dir=directory, controller_site=controller, sites=sites, bridges=links)


def load_site_configs(directory: Path) -> tuple[str, dict[str, BrokerConfig]]:
    """Read back what :func:`write_site_configs` wrote: (the controller's site, site -> its broker's configuration)."""
    directory = Path(directory).resolve()
    try:
        meta = yaml.safe_load((directory / "sites.yaml").read_text()) or {}
        controller = str(meta["controller_site"])
        sites = {str(site): load_broker_config(directory / str(entry["dir"])) for site, entry in meta["sites"].items()}
    except OSError as exc:
        raise JellyBeanError(f"{directory}: no broker per site here ({exc.strerror}: {exc.filename}); write them with "
                             "`jellybean broker config DIR --plan PLAN --per-site` (`up --isolate` writes "
                             "WORKDIR/brokers)") from exc
    except (KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
        raise JellyBeanError(f"{directory / 'sites.yaml'}: not as `broker config --per-site` writes it ({exc!r}); "
                             "write it again") from exc
    if controller not in sites:
        raise JellyBeanError(f"{directory / 'sites.yaml'}: controller_site '{controller}' is not one of its sites "
                             f"({', '.join(sites)}); write it again with `broker config --per-site`")
    return controller, sites


def stock_mosquitto_problems(conf: Path) -> list[str]:
    """Why ``mosquitto -c CONF`` started by root would fail once it drops to its own user: files
    it cannot read, a persistence directory it cannot write (empty when there is no such problem,
    or when we are not root, or the config names another `user`)."""
    text = Path(conf).read_text()
    lines = _conf_lines(text)
    if os.geteuid() != 0 or any(k == "user" and v != MOSQUITTO_USER for k, v in lines):
        return []
    try:
        pw = pwd.getpwnam(MOSQUITTO_USER)
    except KeyError:
        try:
            pw = pwd.getpwnam("nobody")
        except KeyError:
            return []
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if pw.pw_name in g.gr_mem}
    problems = []
    for key, value in lines:
        if key in ("cafile", "certfile", "keyfile", "password_file", "acl_file") and value:
            why = _access_problem(Path(value), pw.pw_uid, gids, os.R_OK)
        elif key == "persistence_location" and ("persistence", "true") in lines:
            why = _access_problem(Path(value), pw.pw_uid, gids, os.W_OK | os.X_OK)
        else:
            continue
        if why:
            problems.append(f"user {pw.pw_name} (whom Mosquitto runs as when started by root) {why}")
    return problems


def _access_problem(path: Path, uid: int, gids: set[int], want: int) -> str | None:
    """Why user `uid` cannot access `path` with `want` (os.R_OK...) by its mode bits, or None."""
    def allowed(st: os.stat_result, bits: int) -> bool:
        if st.st_uid == uid:
            have = (st.st_mode >> 6) & 7
        elif st.st_gid in gids:
            have = (st.st_mode >> 3) & 7
        else:
            have = st.st_mode & 7
        return have & bits == bits

    path = Path(os.path.abspath(path))
    for parent in reversed(path.parents):
        try:
            st = parent.stat()
        except OSError:
            return f"cannot reach {path}: {parent} is missing"
        if not allowed(st, os.X_OK):
            return (f"cannot reach {path}: it may not enter {parent} (mode {stat.S_IMODE(st.st_mode):04o}, "
                    f"owner {_user_name(st.st_uid)})")
    try:
        st = path.stat()
    except OSError:
        return f"cannot open {path}: it does not exist"
    if not allowed(st, want):
        verb = "write to" if want & os.W_OK else "read"
        return f"cannot {verb} {path} (mode {stat.S_IMODE(st.st_mode):04o}, owner {_user_name(st.st_uid)})"
    return None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# Broker URLs and paho clients ------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cert: Path | None = None   # client certificate and key for mutual TLS (?cert=...&key=... in the URL)
    key: Path | None = None

    @property
    def url(self) -> str:
        """The URL without credentials, for logs and messages."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{_netloc(self.host, self.port)}"


def redact_url(url: str) -> str:
    """URL with its password, if any, replaced by ``***``: ``mqtts://a1:***@host:8883``. Safe on
    any string (an unparsable URL is redacted too: everything up to the last '@' after the user)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    at = rest.rfind("@")
    if at < 0 or ":" not in rest[:at]:
        return url
    return f"{scheme}://{rest[:at].split(':', 1)[0]}:***@{rest[at + 1:]}"


_URL_QUERY_KEYS = ("cert", "key")


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` (default 1883) or ``mqtts://...`` (TLS, default 8883);
    ``mqtts://...?cert=CRT&key=KEY`` presents a client certificate (mutual TLS)."""
    shown = redact_url(url)
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise JellyBeanError(f"broker URL '{shown}': scheme must be mqtt:// (plain) or mqtts:// (TLS), "
                             "e.g. mqtts://agent-1@broker.example:8883")
    if not parts.hostname:
        raise JellyBeanError(f"broker URL '{shown}' has no host; e.g. {scheme}://127.0.0.1:{DEFAULT_PORTS[scheme]}")
    try:
        port = DEFAULT_PORTS[scheme] if parts.port is None else parts.port
    except ValueError:
        raise JellyBeanError(f"broker URL '{shown}': the port is not a number in 1..65535") from None
    if port == 0:
        raise JellyBeanError(f"broker URL '{shown}': the port is not a number in 1..65535")
    if parts.path not in ("", "/") or parts.fragment:
        raise JellyBeanError(f"broker URL '{shown}': unexpected path; give only "
                             f"{scheme}://[user[:password]@]host[:port]")
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False) if parts.query else {}
    unknown = sorted(set(query) - set(_URL_QUERY_KEYS)) or [k for k, v in query.items() if len(v) != 1 or not v[0]]
    if unknown or (parts.query and not query):
        raise JellyBeanError(f"broker URL '{shown}': unexpected query '{unknown[0] if unknown else parts.query}'; "
                             "only ?cert=CLIENT.crt&key=CLIENT.key (a client certificate) may follow the address")
    cert = Path(query["cert"][0]) if "cert" in query else None
    key = Path(query["key"][0]) if "key" in query else None
    if key is not None and cert is None:
        raise JellyBeanError(f"broker URL '{shown}': key= without cert=; give the client certificate too")
    if cert is not None and key is None:
        key = cert.with_suffix(".key")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise JellyBeanError(f"broker URL '{shown}' has a password but no user name; give user:password@host")
    return BrokerAddress(host=parts.hostname, port=port, tls=scheme == "mqtts", username=username, password=password,
                         cert=cert, key=key)


def format_broker_url(address: BrokerAddress) -> str:
    """The URL of an address, credentials and client certificate included (keep it off logs and argv)."""
    auth = ""
    if address.username:
        auth = quote(address.username, safe="")
        if address.password is not None:
            auth += ":" + quote(address.password, safe="")
        auth += "@"
    query = ""
    if address.cert is not None:
        query = "?" + urlencode({"cert": str(address.cert), "key": str(address.key or address.cert.with_suffix(".key"))})
    return f"{'mqtts' if address.tls else 'mqtt'}://{auth}{_netloc(address.host, address.port)}{query}"


def read_password_file(path: Path) -> str:
    """The password in PATH: its first line (a trailing newline is not part of it)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise JellyBeanError(f"cannot read the broker password from {path}: {exc.strerror}; give the file "
                             "`jellybean broker config` wrote (DIR/clients/USER.password)") from exc
    except UnicodeDecodeError:
        raise JellyBeanError(f"{path} is not a UTF-8 text file; give the file `jellybean broker config` wrote "
                             "(DIR/clients/USER.password)") from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise JellyBeanError(f"{path} is empty; its first line must be the broker password")
    return password


def client_url(url: str, *, password_file: Path | None = None, cert: Path | None = None, key: Path | None = None,
               environ: Mapping[str, str] | None = None) -> str:
    """URL with the client's secrets resolved, for a client in this process (never for argv or logs):

    - the password: from the URL, else from ``password_file``, else from $JELLYBEAN_BROKER_PASSWORD
      when the URL names a user (a password in both the URL and a file is an error);
    - a client certificate: ``cert`` and ``key`` (default: the certificate's path with .key), else
      USER.crt and USER.key beside the password file when both are there.
    """
    address = parse_broker_url(url)
    environ = os.environ if environ is None else environ
    password = address.password
    if password_file is not None:
        if password is not None:
            raise JellyBeanError(f"the broker URL {redact_url(url)} has a password and --password-file gives one too; "
                                 "give it once, in the file")
        password = read_password_file(password_file)
    elif password is None and address.username and environ.get(PASSWORD_ENV):
        password = environ[PASSWORD_ENV]
    if password is not None and not address.username:
        raise JellyBeanError(f"a password was given for {address.url}, which names no user; give the user in the URL: "
                             f"{'mqtts' if address.tls else 'mqtt'}://USER@{_netloc(address.host, address.port)}")
    if key is not None and cert is None:
        raise JellyBeanError("--key without --cert; give the client certificate too")
    if cert is not None and address.cert is not None:
        raise JellyBeanError(f"the broker URL {redact_url(url)} names a client certificate and --cert gives one too; "
                             "give it once")
    if cert is None and address.cert is None and password_file is not None:
        beside = Path(password_file).with_suffix(".crt"), Path(password_file).with_suffix(".key")
        if beside[0].is_file() and beside[1].is_file():
            cert, key = beside
    if cert is not None:
        address = dataclasses.replace(address, cert=Path(cert), key=Path(key) if key else Path(cert).with_suffix(".key"))
    return format_broker_url(dataclasses.replace(address, password=password))


def split_password(url: str) -> tuple[str, str | None]:
    """(URL without its password, the password): to start a client process with the password in
    its environment ($JELLYBEAN_BROKER_PASSWORD) rather than on its command line."""
    address = parse_broker_url(url)
    if address.password is None:
        return url, None
    return format_broker_url(dataclasses.replace(address, password=None)), address.password


def connect_kwargs(address: BrokerAddress, keepalive: int = 30) -> dict[str, Any]:
    """Arguments for ``client.connect(**...)`` / ``connect_async``."""
    return {"host": address.host, "port": address.port, "keepalive": keepalive}


def configure_client(client: mqtt.Client, address: BrokerAddress, ca: Path | None = None,
                     cert: Path | None = None, key: Path | None = None) -> mqtt.Client:
    """Set credentials and TLS on a paho (v2 callback API) client for ADDRESS.

    With TLS the broker's certificate must chain to ``ca`` (the system's CAs when None) and name the
    host in the URL; nothing here turns that check off. ``cert``/``key`` (default: the URL's
    ``?cert=&key=``) are the client certificate presented for mutual TLS.
    """
    cert = cert if cert is not None else address.cert
    key = key if key is not None else (address.key if address.cert is not None else None)
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        import ssl

        if ca is not None and not Path(ca).is_file():
            raise JellyBeanError(f"CA file {ca} does not exist; give the ca.crt that `jellybean broker config` wrote")
        if cert is not None:
            key = key if key is not None else Path(cert).with_suffix(".key")
            for what, path in (("client certificate", cert), ("client key", key)):
                if not Path(path).is_file():
                    raise JellyBeanError(f"{what} {path} does not exist; give the clients/USER.crt and .key that "
                                         "`jellybean broker config --client-certs` wrote")
        try:
            client.tls_set(ca_certs=str(ca) if ca is not None else None, cert_reqs=ssl.CERT_REQUIRED,
                           certfile=str(cert) if cert is not None else None,
                           keyfile=str(key) if cert is not None else None)
        except (ssl.SSLError, OSError) as exc:
            raise JellyBeanError(f"cannot load the TLS files (CA {ca}, certificate {cert}, key {key}): {exc}; give the "
                                 "files `jellybean broker config` wrote, a certificate with its own key") from exc
    elif ca is not None:
        raise JellyBeanError(f"a CA file ({ca}) was given for {address.url}, which is plain MQTT; use an mqtts:// URL "
                             "for a TLS broker, or drop the CA")
    elif cert is not None:
        raise JellyBeanError(f"a client certificate ({cert}) was given for {address.url}, which is plain MQTT; use an "
                             "mqtts:// URL")
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
    loopback configuration on ``port`` (a free one when None) into ``workdir``, with persistence in
    ``workdir/data`` (a broker started again on the same workdir, this one or a new one, restores its
    sessions, retained and queued messages). Mosquitto's log goes to ``workdir/mosquitto.log``
    (``capture_log=False``: to our stderr). ``wrap`` goes before the command line, e.g.
    ``ip netns exec NS`` to run the broker inside a site's namespace (it execs: the pid stays Mosquitto's).
    """

    kind = "mosquitto"

    def __init__(self, config: Path | None = None, port: int | None = None, *, workdir: Path | None = None,
                 executable: str | None = None, capture_log: bool = True, wrap: Sequence[str] = ()):
        self.executable = executable or find_mosquitto()
        self.wrap = list(wrap)
        if self.executable is None:
            raise JellyBeanError(f"mosquitto is not installed (not on PATH nor in /usr/sbin); {_INSTALL_HINT}")
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="jb-mosquitto-")) if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._own_workdir:
            self.workdir.chmod(0o755)  # nothing secret in it; Mosquitto started by root enters it as user mosquitto
        self.capture_log = capture_log
        self.log_path = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen | None = None
        self._log_file = None
        if config is None:
            self.port = port or free_port()
            self.host, tls = "127.0.0.1", False
            self.config = self.workdir / "mosquitto-plain.conf"
            data = self.data_dir
            data.mkdir(mode=0o700, exist_ok=True)
            if (owner := _mosquitto_owner()) is not None:
                os.chown(data, *owner)  # where Mosquitto started by root writes, once it is user mosquitto
            self.config.write_text(
                "# A plain, anonymous broker on loopback only: for tests and the one-machine demo.\n"
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
                f"persistence true\npersistence_location {data}/\nautosave_interval {AUTOSAVE_INTERVAL_S}\n"
                f"{DELIVERY_SETTINGS}log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
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
        self.runs_as_root_because: str | None = None  # set when the stock drop to user mosquitto would fail
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

    @property
    def data_dir(self) -> Path:
        """Where the plain configuration keeps Mosquitto's persistence database."""
        return self.workdir / "data"

    def _privileges(self, text: str) -> Path:
        """As root, Mosquitto drops to user `mosquitto` before it opens its files. The configuration
        runs as it is when that user can read them and write the persistence directory (as
        `broker config` arranges); when it cannot (a configuration under a directory only root may
        enter, such as a test's temporary one), Mosquitto runs as root instead, and we say why."""
        problems = stock_mosquitto_problems(self.config) if self.config.exists() else []
        if not problems or any(k == "user" for k, _ in _conf_lines(text)):
            return self.config
        run_config = self.workdir / "mosquitto.run.conf"
        run_config.write_text(f"# {self.config} run as root (written by jellybean): {problems[0]}.\n{text}\n"
                              "user root\n")
        log.info("running mosquitto as root: %s", problems[0])
        self.runs_as_root_because = problems[0]
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
            [*self.wrap, self.executable, "-c", str(self._run_config)],
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
    """A started, ready, plain loopback broker: Mosquitto when installed (and preferred), else amqtt.
    It starts empty: a database an earlier run left in ``workdir`` (old retained assignments and
    sessions) is removed first; restarts of the returned broker keep what it persisted."""
    if prefer not in ("mosquitto", "embedded"):
        raise JellyBeanError(f"unknown broker kind '{prefer}'; use mosquitto or embedded")
    executable = find_mosquitto() if prefer == "mosquitto" else None
    broker: LocalBroker
    if executable:
        broker = MosquittoBroker(None, port, workdir=workdir, executable=executable)
        (broker.data_dir / "mosquitto.db").unlink(missing_ok=True)
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
