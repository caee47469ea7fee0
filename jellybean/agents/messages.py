"""Control-plane messages: versioned, validated models (JSON on the wire).

Every message carries `v` (the schema version) and `kind`; `parse_message` validates bytes from a
topic into the right model or raises MessageError naming the topic and the field. Data items have
their own binary format (jellybean.agents.items); model chunks too (`encode_chunk`).
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from jellybean.agents.items import MessageError, first_error

SCHEMA_VERSION = 1
Keyed = Literal["item", "stream", "global"]


class Message(BaseModel):
    # NaN and infinity are never a valid version, time, rate or size.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    v: Literal[1] = 1
    sent_at: float = Field(default_factory=time.time)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class Announce(Message):
    """What an agent has, published retained when it connects."""

    kind: Literal["announce"] = "announce"
    agent: str
    site: str
    hardware: str
    providers: list[str] = Field(default_factory=list)
    memory_mb: float = 0.0
    cpus: int = 1
    models: dict[str, str] = Field(default_factory=dict, description="sha256 -> file name present locally")
    metrics_url: str | None = None
    pid: int = 0
    host: str = ""


class Status(Message):
    """Retained presence: the agent sets "online"; its last will sets "offline"."""

    kind: Literal["status"] = "status"
    agent: str
    state: Literal["online", "offline"]


class Heartbeat(Message):
    kind: Literal["heartbeat"] = "heartbeat"
    agent: str
    seq: int
    assignment_version: int = 0
    running: list[str] = Field(default_factory=list, description="operators running now")
    errors: list[str] = Field(default_factory=list, description="tasks that could not start, and why")


class Task(BaseModel):
    """One operator an agent runs: `workers` workers of `variant`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    operator: str
    variant: str
    runtime: str
    keyed: Keyed = "item"
    workers: int = Field(1, ge=1)
    batch: int = Field(1, ge=1)
    max_batch_latency_ms: float = Field(0.0, ge=0)
    threads: int | None = Field(None, ge=1, le=1024, description="ONNX Runtime intra-op threads per worker, "
                                                                 "as profiled; None: the agent's --threads")
    model: str | None = Field(None, description="file name in the zoo; None for built-in operators")
    sha256: str | None = None
    size: int | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class ParityRun(BaseModel):
    """Redundancy of one operator (ParM) as the agents run it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    operator: str = Field(description="the parity operator, e.g. reid.parity")
    k: int = Field(ge=1, le=8)
    encoder: Literal["concat", "add"] = "concat"
    group_wait_ms: float = Field(100.0, gt=0, description="a producer codes a partial group after this")
    decode_wait_ms: float = Field(20.0, ge=0, description="the decoder waits this long after a group's first output "
                                  "for its last")


class ResendRun(BaseModel):
    """Re-sent requests for one operator (equal-resource replication) as the agents run them."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    after_ms: float = Field(gt=0, description="a producer sends an item again when no replica served it after this")
    times: int = Field(1, ge=1, le=4, description="at most this many copies of one item")
    budget: float = Field(0.2, gt=0, le=4, description="copies per item sent, on average: the rest are refused")


class Assignment(Message):
    """Everything one agent needs to run its part of a plan. Retained; a higher version replaces a lower.

    - `routing[edge][from_site]` = {to_site: weight}: where outputs of `edge`'s upstream go (weights
      are data: the controller may change them at run time without restarting operators);
    - `placements[operator]` = {site: weight}: where each operator runs (for re-homing items of an
      operator this agent no longer runs, and for edges with no route row from this site);
    - `downstream[operator]` = the operators fed by it, `keyed[operator]` how they must be fed;
    - `sinks`: operators whose outputs go to `sink_topic`;
    - `drop_after_ms`: items older than this (since capture) are dropped, not processed late;
    - `deadline_ms` (None: none): the end-to-end deadline since capture. An item at the head of a
      queue that the operator, at its current service time, would finish after it is dropped
      (reason `deadline`) instead of processed late (Loki's early drop). The controller may change
      it at run time like any other field.
    - `reserve_ms[operator]`: of that deadline, the time the operators after this one need (their
      service times and hops, from the plan). An operator's own deadline is `deadline_ms` less it,
      so an item is not served in time here only to die late downstream.
    - `mix[operator]` = {variant: weight}: where this site runs several variants of an operator
      (a mixed plan, or `deploy --adapt` scaling accuracy), the share of its items each takes.
    - `parity[operator]`: that operator is protected by parity workers (ParM): producers code every
      k items sent to it into a parity query for `parity[operator].operator`, whose outputs go where
      the operator's go; the agents of its consumers decode.
    - `direct[operator][site]` = {agent: workers}: where several agents of a site run a protected
      operator, its producers address each item they code to one of them in turn (the agent's own
      topic, jellybean.agents.topics.direct) instead of the site's shared one, so that the members
      of a coding group land on different workers, as ParM's frontend sends them: one slow or dead
      worker then holds at most one member of a group, which the decoder can rebuild.
    - `resend[operator]`: producers send an item for that operator again when none of its replicas
      served it in time (jellybean.agents.resend); its agents acknowledge what they serve.
    """

    kind: Literal["assignment"] = "assignment"
    agent: str
    site: str
    version: int = Field(ge=1)
    plan: str
    workflow: str
    tasks: list[Task] = Field(default_factory=list)
    routing: dict[str, dict[str, dict[str, float]]] = Field(default_factory=dict)
    placements: dict[str, dict[str, float]] = Field(default_factory=dict)
    downstream: dict[str, list[str]] = Field(default_factory=dict)
    keyed: dict[str, Keyed] = Field(default_factory=dict)
    sinks: list[str] = Field(default_factory=list)
    sink_topic: str = ""
    drop_after_ms: float = Field(5000.0, gt=0)
    deadline_ms: float | None = Field(None, gt=0, allow_inf_nan=False)
    reserve_ms: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(default_factory=dict)
    shared: bool = Field(False, description="other agents serve this site too: take items through the "
                                            "broker's shared subscriptions, one per operator run here")
    mix: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="operator -> {variant: weight} where this site runs several variants of "
        "it: each item goes to one of them by these weights (most accurate first, as the controller decided)")

    parity: dict[str, ParityRun] = Field(default_factory=dict)
    direct: dict[str, dict[str, dict[str, Annotated[float, Field(gt=0, allow_inf_nan=False)]]]] = Field(
        default_factory=dict)
    resend: dict[str, ResendRun] = Field(default_factory=dict)

    def deadline_for(self, operator: str) -> float | None:
        """The deadline the operator's queue keeps: the end-to-end one less what comes after it."""
        if self.deadline_ms is None:
            return None
        return max(1.0, self.deadline_ms - self.reserve_ms.get(operator, 0.0))


class Routes(Message):
    """Where sources send their items, retained for replay and cameras.

    `stream_sites[source]` = the site of each of the plan's streams (cameras fill them in order);
    `routing[edge][site]` = {to_site: weight} for every source edge; `sources[source]` = the
    operators a source feeds; `keyed` as in Assignment."""

    kind: Literal["routes"] = "routes"
    version: int = Field(ge=1)
    plan: str
    workflow: str
    sources: dict[str, list[str]] = Field(default_factory=dict)
    stream_sites: dict[str, list[str]] = Field(default_factory=dict, description="source -> site per stream slot")
    routing: dict[str, dict[str, dict[str, float]]] = Field(default_factory=dict)
    placements: dict[str, dict[str, float]] = Field(default_factory=dict)
    keyed: dict[str, Keyed] = Field(default_factory=dict)
    sink_topic: str = ""
    plan_doc: dict[str, Any] | None = Field(None, description="the plan running now, as `plan -o` writes it, "
                                                                "for reports beside the measurements")


class OperatorMetrics(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    operator: str
    variant: str = ""
    items_in: int = 0
    items_out: int = 0
    dropped: int = 0
    duplicates: int = 0
    queue_depth: int = 0
    items_per_s: float = 0.0
    arrivals_per_s: float = Field(0.0, description="the plan's items (frames, crops) received per second, "
                                  "duplicates excluded: the load the controller compares with the plan")
    arrivals: float = Field(0.0, ge=0, description="the plan's items received since the agent started, duplicates "
                            "excluded: rates over any window are differences of these")
    served_per_s: float = Field(0.0, ge=0, description="the plan's items processed per second (items_per_s counts "
                                "messages): what `deploy --adapt` compares with the plan's capacity")
    latency_ms: dict[str, float] = Field(default_factory=dict, description="processing p50/p95/p99")
    batches: int = 0


class Metrics(Message):
    kind: Literal["metrics"] = "metrics"
    agent: str
    site: str
    assignment_version: int = 0
    interval_s: float
    operators: list[OperatorMetrics] = Field(default_factory=list)
    bytes_out: dict[str, int] = Field(default_factory=dict, description="to site -> bytes since start")
    bytes_in: int = 0
    rejected: int = Field(0, description="malformed, unknown or implausible messages dropped")
    session_bytes_out: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="session -> to site -> bytes, for the most recent sessions")


class ModelRequest(Message):
    kind: Literal["model-request"] = "model-request"
    agent: str
    sha256: str
    name: str


ControlMessage = Annotated[
    Union[Announce, Status, Heartbeat, Assignment, Routes, Metrics, ModelRequest], Field(discriminator="kind")
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(ControlMessage)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_message(payload: bytes, topic: str, expect: type[Message] | None = None) -> Message:
    """Bytes -> a validated message, or MessageError naming the topic and the field."""
    try:
        raw = json.loads(payload, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MessageError(f"{topic}: not JSON without NaN or infinity ({len(payload)} bytes); control messages "
                           "are JSON objects") from None
    if isinstance(raw, dict) and raw.get("v") not in (None, SCHEMA_VERSION):
        raise MessageError(f"{topic}: message version {raw.get('v')!r} is not supported (this side speaks "
                           f"{SCHEMA_VERSION}); upgrade the older side")
    try:
        message = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise MessageError(f"{topic}: {first_error(exc)}") from None
    if expect is not None and not isinstance(message, expect):
        raise MessageError(f"{topic}: expected a {expect.__name__} message, got '{message.kind}'")
    return message


# Model chunks: b"JBM" | version | u32 header length | header JSON | chunk bytes.
_CHUNK = struct.Struct(">3sBI")
CHUNK_BYTES = 256 * 1024


class ChunkHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[1] = 1
    sha256: str = Field(description="of the whole file")
    name: str
    index: int = Field(ge=0)
    total: int = Field(ge=1)
    size: int = Field(ge=0, description="whole file")
    chunk_sha256: str


def encode_chunk(sha256: str, name: str, index: int, total: int, size: int, data: bytes) -> bytes:
    header = ChunkHeader(sha256=sha256, name=name, index=index, total=total, size=size,
                         chunk_sha256=hashlib.sha256(data).hexdigest())
    head = header.model_dump_json().encode()
    return _CHUNK.pack(b"JBM", 1, len(head)) + head + data


def decode_chunk(payload: bytes, topic: str) -> tuple[ChunkHeader, bytes]:
    if len(payload) < _CHUNK.size:
        raise MessageError(f"{topic}: model chunk of {len(payload)} bytes is too short")
    magic, version, n = _CHUNK.unpack_from(payload)
    if magic != b"JBM" or version != 1:
        raise MessageError(f"{topic}: not a version-1 model chunk")
    try:
        header = ChunkHeader.model_validate_json(payload[_CHUNK.size:_CHUNK.size + n])
    except (ValidationError, ValueError) as exc:
        raise MessageError(f"{topic}: bad chunk header: {first_error(exc)}") from None
    data = payload[_CHUNK.size + n:]
    if hashlib.sha256(data).hexdigest() != header.chunk_sha256:
        raise MessageError(f"{topic}: chunk {header.index} of {header.name} fails its checksum; it is dropped "
                           f"and will be requested again")
    return header, data
