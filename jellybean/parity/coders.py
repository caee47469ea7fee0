"""ParM's coders (Kosaian et al., SOSP 2019) on model inputs and outputs, numpy only.

Encoder: k inputs of one shape [C, H, W] (e.g. the re-ID model's [3, 96, 96] RGB 0..1) -> one
parity input of the same shape, which a parity model P maps to the sum of the base model's
outputs, P(E(x_1..x_k)) ~ sum_i F(x_i).

- `concat` (ParM's default): each input resized (cv2.INTER_AREA) to one tile of a grid, slot i in
  tile i, row-major: k = 2 is two side-by-side halves, k = 4 a 2 x 2 grid (`grid`).
- `add`: the *mean* of the k inputs, not their sum. The sum of k images in 0..1 leaves the base
  model's input range (and 8 bits, on the wire); the mean stays in it, and the parity model,
  trained on the same mean, learns the factor k back. The decoder is the same either way: the
  parity model's target is always the plain sum of the outputs.

A blank slot (None) is a black tile / zeros; the parity model is trained to count it as an output
of zero.

k = 1 is ParM's other baseline, a backup model: the "group" is one input, the encoder copies it
(concat: one tile, the whole image; add: the mean of one), and the model is a cheaper network
trained to reproduce the base model's output (F^(x) = P(x)); it stands in for an output that is
late or lost, at the cost of a backup query per item rather than one per k.

Decoder: with the parity output and all but one of the k outputs, the missing one is
F^(x_j) = P - sum_{i != j} F(x_i), by default re-normalised to unit L2 norm as the base re-ID
model's outputs are. Nothing is rebuilt when the parity output is missing, when no output is
missing, or when two or more are: `decode` then returns an `Undecodable` with the reason. Bad
inputs (wrong count, mismatched shapes, NaN or infinity) raise `CoderError`.

The agents' wire encoders (jellybean.parity.wire) place tiles with this module's geometry, and
their decoder (jellybean.parity.groups) normalises with `unit_rows`, so a parity model trained or
evaluated through either sees the same thing.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from jellybean.errors import JellyBeanError

KINDS = ("concat", "add")
MIN_K, MAX_K = 1, 8

Kind = Literal["concat", "add"]


class CoderError(JellyBeanError):
    """A parity coder described or used wrongly: the message says what is wrong and the fix."""


def grid(k: int) -> tuple[int, int]:
    """(rows, columns) of the concatenation encoder's tiles: 1 x 2 for k = 2, 2 x 2 for k = 4,
    2 x 3 for k = 5 and 6, 2 x 4 for k = 7 and 8."""
    rows = max(1, int(math.isqrt(k)))
    return rows, math.ceil(k / rows)


@dataclass(frozen=True)
class CoderSpec:
    """How k inputs become one parity input: `kind` concat | add, `k` members, 1..8 (1: a backup model)."""

    kind: Kind = "concat"
    k: int = 2

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            close = difflib.get_close_matches(str(self.kind), KINDS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise CoderError(f"parity coder kind '{self.kind}' is not one of {', '.join(KINDS)}{hint}")
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)):
            raise CoderError(f"parity coder k = {self.k!r}: k is the number of inputs per group, an integer "
                             f"from {MIN_K} to {MAX_K}")
        if not MIN_K <= self.k <= MAX_K:
            raise CoderError(f"parity coder k = {self.k}: a group codes {MIN_K} to {MAX_K} inputs; "
                             f"use k in {MIN_K}..{MAX_K} (1 is a backup model; larger k tiles each input too small to be "
                             "recognised)")

    def tiles(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """The concatenation encoder's tile of each slot in an image of height x width:
        (top, bottom, left, right), slot i in tile i, row-major. Rows and columns left over by the
        integer division stay blank."""
        rows, cols = grid(self.k)
        th, tw = height // rows, width // cols
        if th < 1 or tw < 1:
            raise CoderError(f"a {height} x {width} input is too small for {rows} x {cols} tiles (k = {self.k})")
        return [(r * th, (r + 1) * th, c * tw, (c + 1) * tw) for r, c in (divmod(i, cols) for i in range(self.k))]


def _slots(spec: CoderSpec, inputs: np.ndarray | Sequence[np.ndarray | None]) -> list[np.ndarray | None]:
    slots = list(inputs)
    if len(slots) != spec.k:
        raise CoderError(f"a k = {spec.k} parity coder got {len(slots)} inputs; pass exactly {spec.k} "
                         f"(None for a blank slot)")
    out = _arrays(slots, [f"parity input {i}" for i in range(len(slots))],
                  "{name} has shape {got}, input before it {want}; the members of a group share one input shape",
                  ndim=3, ndim_hint="each input is one [C, H, W] array")
    if all(x is None for x in out):
        raise CoderError(f"all {spec.k} parity inputs are blank; a group needs at least one input")
    return out


def _arrays(values: Sequence[np.ndarray | None], names: Sequence[str], mismatch: str, *,
            ndim: int | None = None, ndim_hint: str = "") -> list[np.ndarray | None]:
    """float32 copies of `values` (None kept): finite, and of one shape (`mismatch` says otherwise,
    formatted with name, got and want), each with `ndim` axes when given."""
    out: list[np.ndarray | None] = []
    shape = None
    for name, x in zip(names, values):
        if x is None:
            out.append(None)
            continue
        x = np.asarray(x, np.float32)
        if ndim is not None and x.ndim != ndim:
            raise CoderError(f"{name} has shape {list(x.shape)}; {ndim_hint}")
        if shape is not None and x.shape != shape:
            raise CoderError(mismatch.format(name=name, got=list(x.shape), want=list(shape)))
        if not np.all(np.isfinite(x)):
            raise CoderError(f"{name} has NaN or infinite values")
        shape = x.shape
        out.append(x)
    return out


def encode(spec: CoderSpec, inputs: np.ndarray | Sequence[np.ndarray | None]) -> np.ndarray:
    """k inputs ([k, C, H, W], or k arrays [C, H, W] with None for a blank slot) -> one float32
    parity input [C, H, W] (see the module's docstring for the two kinds)."""
    slots = _slots(spec, inputs)
    channels, height, width = next(x for x in slots if x is not None).shape
    out = np.zeros((channels, height, width), np.float32)
    if spec.kind == "add":
        for x in slots:
            if x is not None:
                out += x
        out /= spec.k
        return out
    for x, (top, bottom, left, right) in zip(slots, spec.tiles(height, width)):
        if x is None:
            continue
        hwc = np.ascontiguousarray(x.transpose(1, 2, 0))
        tile = cv2.resize(hwc, (right - left, bottom - top), interpolation=cv2.INTER_AREA)
        out[:, top:bottom, left:right] = tile.reshape(bottom - top, right - left, channels).transpose(2, 0, 1)
    return out


@dataclass(frozen=True)
class Rebuilt:
    """The missing output, rebuilt: `index` is its slot, `output` has the data outputs' shape."""

    index: int
    output: np.ndarray


@dataclass(frozen=True)
class Undecodable:
    """Nothing rebuilt: `reason` says why, `missing` lists the slots without an output."""

    reason: str
    missing: tuple[int, ...]


def unit_rows(x: np.ndarray) -> np.ndarray:
    """x scaled to unit L2 norm along its last axis (a zero row stays zero); float32, a new array."""
    x = np.array(x, np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    np.divide(x, norm, out=x, where=norm > 0)
    return x


def decode(spec: CoderSpec, parity: np.ndarray | None,
           outputs: Sequence[np.ndarray | None] | Mapping[int, np.ndarray | None], *,
           normalize: bool = True) -> Rebuilt | Undecodable:
    """The one missing output of a group: parity - sum of the others (re-normalised to unit L2 norm
    unless normalize=False). `outputs` has the k data outputs in slot order, None where missing (a
    mapping slot -> output may leave missing slots out); pass zeros for a blank slot, which the
    parity model counts as zero."""
    if isinstance(outputs, Mapping):
        extra = sorted(set(outputs) - set(range(spec.k)), key=str)
        if extra:
            raise CoderError(f"a k = {spec.k} group has slots 0..{spec.k - 1}; got outputs for slots {extra}")
        slots = [outputs.get(i) for i in range(spec.k)]
    else:
        slots = list(outputs)
        if len(slots) != spec.k:
            raise CoderError(f"a k = {spec.k} group has {spec.k} outputs; got {len(slots)} (None where one is missing)")
    values = _arrays([parity, *slots], ["the parity output", *(f"output {i}" for i in range(len(slots)))],
                     "{name} has shape {got}, not {want} as the others; the parity output and the data outputs "
                     "have one shape")
    p, data = values[0], values[1:]
    missing = tuple(i for i, y in enumerate(data) if y is None)
    if p is None:
        return Undecodable("the parity output is missing: there is nothing to rebuild from; wait for the "
                           "data outputs or drop the missing one", missing)
    if not missing:
        return Undecodable("no output is missing: nothing to rebuild", missing)
    if len(missing) > 1:
        return Undecodable(f"{len(missing)} of the {spec.k} outputs are missing (slots "
                           f"{', '.join(map(str, missing))}): one parity output rebuilds only one", missing)
    out = p - np.sum([y for y in data if y is not None], axis=0)
    return Rebuilt(missing[0], unit_rows(out) if normalize else out)
