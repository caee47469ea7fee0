"""Data items: what flows between operators, and its wire format on data topics.

One item is one frame of one stream at one stage of the workflow. Every operator turns each input
item into exactly one output item with the same (stream, frame) and capture time, so that the
runtime can drop duplicates by (stream, frame) and measure end-to-end latency at the sink.

Wire format (bytes on an MQTT data topic)::

    b"JBD" | version byte | u32 big-endian header length | header JSON | body

The header is a validated, versioned model (version 2 added `session`); the body is the concatenation of the item's blobs
(JPEG bytes) and arrays (raw little-endian numbers), whose lengths, dtypes and shapes the header
lists. Nothing is pickled.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jellybean.errors import JellyBeanError

MAGIC = b"JBD"
WIRE_VERSION = 2
# Bounds on what a peer may send: an item larger than this is not a frame, a frame number past
# 2**53 does not survive JSON, and a header this long is not metadata.
MAX_ITEM_BYTES = 64 * 2**20
MAX_HEADER_BYTES = 4 * 2**20
MAX_FRAME = 2**53
_PREFIX = struct.Struct(">3sBI")
# Meta keys that describe the frame rather than one stage's output; every stage carries them on:
# "skipped" (a strided detector did not look), "t" (when the frame was taken, seconds on the
# scenario's clock), "calibration" (the camera's world -> image homography, 3x3), "reconstructed"
# (the operators whose output for this frame a parity decoder rebuilt; jellybean.parity.groups),
# "resent" (the operators this frame's item was re-sent to and served from; jellybean.agents.resend).
# "embedded": the crops a sampled re-ID embedded for the frame; it rides on to the sink so that a
# replay can show what approximation saved (jellybean/agents/operators/sampled_reid.py).
STICKY_META = ("skipped", "t", "calibration", "reconstructed", "resent", "embedded")
_DTYPES = {"float32", "float16", "float64", "int64", "int32", "uint8", "int16", "uint16", "bool"}


class MessageError(JellyBeanError):
    """A message on a topic could not be decoded or validated; the runtime logs it and drops it."""


@dataclass
class Item:
    """One frame of one stream at one stage.

    - ``stream``: the camera (``S01/c001``); ``frame``: its 1-based frame number;
    - ``session``: which run of the stream's frame counter this is (a replay, a camera boot): a
      counter that restarts is a new sequence, not a stream of duplicates; "" for none;
    - ``capture_ts``: wall-clock seconds (time.time()) when the source published the frame;
    - ``kind``: what the payload is (``frame``: one JPEG blob; ``detections``: boxes and crops; ...);
    - ``meta``: small JSON-able fields (boxes as lists, scores, ids);
    - ``arrays``: numeric payloads (embeddings, boxes as arrays);
    - ``blobs``: encoded images (the frame JPEG, crop JPEGs);
    - ``dropped``: why the item was dropped upstream (a tombstone: kept flowing so that ordered
      consumers do not wait for it and the sink counts it), or None;
    - ``trace``: one entry per operator that handled it: [site, operator, t_in, t_out].
    """

    stream: str
    frame: int
    capture_ts: float
    kind: str = "frame"
    meta: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    blobs: list[bytes] = field(default_factory=list)
    dropped: str | None = None
    trace: list[list[Any]] = field(default_factory=list)
    session: str = ""

    @property
    def key(self) -> tuple[str, str, int]:
        """What makes an item unique: a frame of one run of a stream."""
        return (self.stream, self.session, self.frame)

    @property
    def units(self) -> int:
        """How many of the plan's items this message carries: one per box where there are boxes
        (crops, detections, tracks), else one (a frame); none for a tombstone."""
        if self.dropped is not None:
            return 0
        boxes = self.meta.get("boxes")
        return len(boxes) if isinstance(boxes, list) else 1

    def derive(self, kind: str, *, meta: dict[str, Any] | None = None,
               arrays: dict[str, np.ndarray] | None = None, blobs: list[bytes] | None = None) -> "Item":
        """The output item of an operator for this input: same stream, frame, capture time, trace."""
        carried = {k: self.meta[k] for k in STICKY_META if k in self.meta}
        return replace(self, kind=kind, meta={**carried, **(meta or {})}, arrays=dict(arrays or {}),
                       blobs=list(blobs or []), trace=[list(t) for t in self.trace])

    def tombstone(self, reason: str) -> "Item":
        """This item marked dropped, payload removed."""
        return replace(self, meta={}, arrays={}, blobs=[], dropped=reason,
                       trace=[list(t) for t in self.trace])


class ArraySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    dtype: str
    shape: tuple[Annotated[int, Field(ge=0, le=MAX_ITEM_BYTES)], ...] = Field(max_length=8)


class ItemHeader(BaseModel):
    # Non-finite times would poison every latency and lateness decision downstream.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    v: Literal[2] = 2
    stream: str = Field(min_length=1, max_length=200)
    session: str = Field("", max_length=64, pattern=r"^[A-Za-z0-9._:-]*$")
    frame: int = Field(ge=0, le=MAX_FRAME)
    capture_ts: float = Field(ge=0)
    kind: str = Field(min_length=1, max_length=40)
    meta: dict[str, Any] = Field(default_factory=dict)
    arrays: dict[str, ArraySpec] = Field(default_factory=dict)
    blobs: list[int] = Field(default_factory=list, description="byte length of each blob, in order")
    dropped: str | None = None
    trace: list[list[Any]] = Field(default_factory=list)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number an item may carry")


def encode_item(item: Item) -> bytes:
    arrays: dict[str, ArraySpec] = {}
    parts: list[bytes] = list(item.blobs)
    for name, array in item.arrays.items():
        a = np.ascontiguousarray(array)
        if a.dtype.name not in _DTYPES:
            raise MessageError(f"array '{name}' has dtype {a.dtype.name}; use one of {sorted(_DTYPES)}")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        arrays[name] = ArraySpec(dtype=a.dtype.name, shape=tuple(int(s) for s in a.shape))
        parts.append(a.tobytes())
    try:
        header = ItemHeader(stream=item.stream, session=item.session, frame=item.frame, capture_ts=item.capture_ts,
                            kind=item.kind, meta=item.meta, arrays=arrays, blobs=[len(b) for b in item.blobs],
                            dropped=item.dropped, trace=item.trace)
        head = header.model_dump_json().encode()
    except (ValidationError, ValueError) as exc:
        raise MessageError(f"item {item.stream}/{item.frame} cannot be sent: {first_error(exc)}") from None
    return _PREFIX.pack(MAGIC, WIRE_VERSION, len(head)) + head + b"".join(parts)


def decode_item(payload: bytes, topic: str = "?") -> Item:
    """Bytes from `topic` -> Item, or MessageError naming the topic and what is wrong."""
    if len(payload) < _PREFIX.size:
        raise MessageError(f"{topic}: data message of {len(payload)} bytes is shorter than its "
                           f"{_PREFIX.size}-byte prefix; publish items with jellybean.agents.items.encode_item")
    if len(payload) > MAX_ITEM_BYTES:
        raise MessageError(f"{topic}: data message of {len(payload)} bytes is larger than the "
                           f"{MAX_ITEM_BYTES // 2**20} MiB an item may be; send smaller frames or crops")
    magic, version, head_len = _PREFIX.unpack_from(payload)
    if magic != MAGIC:
        raise MessageError(f"{topic}: not a JellyBean data message (starts with {magic!r}, expected {MAGIC!r})")
    if version != WIRE_VERSION:
        raise MessageError(f"{topic}: data message version {version} is not supported (this agent "
                           f"speaks {WIRE_VERSION}); upgrade the older side")
    start = _PREFIX.size
    if head_len > MAX_HEADER_BYTES:
        raise MessageError(f"{topic}: header of {head_len} bytes is larger than {MAX_HEADER_BYTES // 2**20} MiB")
    if start + head_len > len(payload):
        raise MessageError(f"{topic}: header length {head_len} runs past the end of a "
                           f"{len(payload)}-byte message (truncated?)")
    try:
        header = ItemHeader.model_validate(json.loads(payload[start:start + head_len], parse_constant=_no_constant))
    except (ValueError, ValidationError, RecursionError) as exc:
        raise MessageError(f"{topic}: bad data header: {first_error(exc)}") from None
    body = memoryview(payload)[start + head_len:]
    need = sum(header.blobs)
    sizes = {}
    for name, spec in header.arrays.items():
        if spec.dtype not in _DTYPES:
            raise MessageError(f"{topic}: arrays.{name}.dtype '{spec.dtype}' is not allowed")
        n = np.dtype(spec.dtype).itemsize
        for dim in spec.shape:
            n *= dim
            if n > MAX_ITEM_BYTES:
                raise MessageError(f"{topic}: arrays.{name}.shape {list(spec.shape)} describes more bytes than an "
                                   "item may hold")
        sizes[name] = n
        need += n
    if need != len(body):
        raise MessageError(f"{topic}: body has {len(body)} bytes but the header describes {need}")
    offset = 0
    blobs = []
    for n in header.blobs:
        blobs.append(bytes(body[offset:offset + n]))
        offset += n
    arrays = {}
    for name, spec in header.arrays.items():
        n = sizes[name]
        arrays[name] = np.frombuffer(body[offset:offset + n], dtype=np.dtype(spec.dtype).newbyteorder("<")) \
            .reshape(spec.shape).astype(spec.dtype)
        offset += n
    return Item(stream=header.stream, frame=header.frame, capture_ts=header.capture_ts, kind=header.kind,
                meta=dict(header.meta), arrays=arrays, blobs=blobs, dropped=header.dropped,
                trace=[list(t) for t in header.trace], session=header.session)


def first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        return f"{where}: {err['msg']}"
    return str(exc).splitlines()[0]
