"""ParM's coders on model inputs and outputs: the encoders' tiles and means, the decoder's one
rebuilt output (exact with a linear stand-in model), and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jellybean.errors import JellyBeanError
from jellybean.parity.coders import (
    CoderError,
    CoderSpec,
    Rebuilt,
    Undecodable,
    decode,
    encode,
    grid,
    unit_rows,
)
from jellybean.parity.wire import wire_encoder

H = W = 96


def _solid(value: float, channels: int = 3) -> np.ndarray:
    return np.full((channels, H, W), value, np.float32)


# --- the description --------------------------------------------------------------------------

def test_a_spec_takes_the_two_kinds_and_k_from_1_to_8():
    for kind in ("concat", "add"):
        for k in range(1, 9):
            assert CoderSpec(kind, k).k == k
    assert CoderSpec() == CoderSpec("concat", 2)


@pytest.mark.parametrize("kind, k, message", [
    ("concatt", 2, r"'concatt' is not one of concat, add \(did you mean 'concat'\?\)"),
    ("xor", 2, r"'xor' is not one of concat, add$"),
    ("concat", 0, r"k = 0: a group codes 1 to 8 inputs; use k in 1..8 \(1 is a backup model"),
    ("add", 9, r"k = 9: a group codes 1 to 8 inputs"),
    ("concat", 2.0, r"k = 2.0: k is the number of inputs per group, an integer from 1 to 8"),
    ("concat", True, r"k = True: .* an integer"),
])
def test_a_bad_spec_is_a_clear_error_of_the_project(kind, k, message):
    with pytest.raises(CoderError, match=message) as caught:
        CoderSpec(kind, k)
    assert isinstance(caught.value, JellyBeanError)


def test_the_spec_is_frozen():
    with pytest.raises(AttributeError):
        CoderSpec().k = 3  # type: ignore[misc]


@pytest.mark.parametrize("k, shape", [(2, (1, 2)), (3, (1, 3)), (4, (2, 2)), (5, (2, 3)), (8, (2, 4))])
def test_the_grid_has_a_tile_per_slot(k, shape):
    assert grid(k) == shape
    tiles = CoderSpec("concat", k).tiles(H, W)
    assert len(tiles) == k and len(set(tiles)) == k


# --- the encoders -----------------------------------------------------------------------------

def test_concat_k2_puts_slot_0_left_and_slot_1_right():
    out = encode(CoderSpec("concat", 2), [_solid(0.25), _solid(0.75)])
    assert out.shape == (3, H, W) and out.dtype == np.float32
    assert np.allclose(out[:, :, :48], 0.25) and np.allclose(out[:, :, 48:], 0.75)


def test_concat_k4_is_a_2x2_grid_row_major_with_blank_slots_zero():
    out = encode(CoderSpec("concat", 4), np.stack([_solid(0.1), _solid(0.2), _solid(0.3), _solid(0.4)]))
    assert out.shape == (3, H, W)
    assert np.allclose(out[:, :48, :48], 0.1) and np.allclose(out[:, :48, 48:], 0.2)
    assert np.allclose(out[:, 48:, :48], 0.3) and np.allclose(out[:, 48:, 48:], 0.4)
    out = encode(CoderSpec("concat", 4), [_solid(0.1), None, None, _solid(0.4)])
    assert np.all(out[:, :48, 48:] == 0) and np.all(out[:, 48:, :48] == 0) and np.allclose(out[:, 48:, 48:], 0.4)


def test_concat_resizes_each_input_into_its_tile_keeping_its_layout_and_channels():
    x = np.zeros((3, H, W), np.float32)
    x[0, :, :48] = 1.0     # red on the left half
    x[2, :48, :] = 0.5     # blue on the top half
    out = encode(CoderSpec("concat", 2), [_solid(0.0), x])
    right = out[:, :, 48:]
    assert np.allclose(right[0, :, :24], 1.0) and np.allclose(right[0, :, 24:], 0.0)
    assert np.allclose(right[2, :48], 0.5) and np.allclose(right[2, 48:], 0.0) and np.allclose(right[1], 0.0)
    assert np.allclose(out[:, :, :48], 0.0)


def test_concat_on_model_inputs_matches_the_agents_wire_encoder():
    """The float coder and the agents' uint8 encoder (what the parity model is trained on) agree."""
    rng = np.random.default_rng(0)
    for k in (2, 4):
        images = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(k)]
        images[1] = None
        wire = wire_encoder("concat", k)(images).astype(np.float32).transpose(2, 0, 1) / 255
        ours = encode(CoderSpec("concat", k), [None if i is None else i.transpose(2, 0, 1) / 255 for i in images])
        assert np.abs(wire - ours).max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize("k", [2, 4])
def test_add_is_the_mean_of_the_slots(k):
    values = [0.1 * (i + 1) for i in range(k)]
    out = encode(CoderSpec("add", k), [_solid(v) for v in values])
    assert out.shape == (3, H, W) and np.allclose(out, np.mean(values))
    out = encode(CoderSpec("add", k), [_solid(0.8)] + [None] * (k - 1))
    assert np.allclose(out, 0.8 / k)     # a blank slot counts zero


@pytest.mark.parametrize("inputs, message", [
    ([_solid(0.5)] * 3, r"a k = 2 parity coder got 3 inputs; pass exactly 2"),
    (np.stack([_solid(0.5)] * 3), r"got 3 inputs"),
    ([_solid(0.5), np.zeros((3, 48, 48), np.float32)], r"input 1 has shape \[3, 48, 48\], input before it \[3, 96, 96\]"),
    ([_solid(0.5), np.zeros((96, 96), np.float32)], r"input 1 has shape \[96, 96\]; each input is one \[C, H, W\]"),
    ([_solid(0.5), _solid(np.nan)], r"parity input 1 has NaN or infinite values"),
    ([_solid(np.inf), None], r"parity input 0 has NaN or infinite values"),
    ([None, None], r"all 2 parity inputs are blank"),
])
@pytest.mark.parametrize("kind", ["concat", "add"])
def test_bad_inputs_to_the_encoder_are_clear_errors(kind, inputs, message):
    with pytest.raises(CoderError, match=message):
        encode(CoderSpec(kind, 2), inputs)


# --- the decoder, with a linear stand-in model --------------------------------------------------

class LinearStandIn:
    """A linear "base model" F and a parity model P for which ParM's decode is exact.

    concat: F(x) = A @ (x resized to a tile, as the encoder resizes it), P(z) = sum over tiles t of
    A @ z[t]; so P(E(x_1..x_k)) = sum_i F(x_i) exactly. add: F(x) = A @ x, P(z) = k A @ z (the
    encoder's mean times k)."""

    def __init__(self, spec: CoderSpec, dim: int = 16, seed: int = 0):
        self.spec = spec
        self.tiles = spec.tiles(H, W)
        top, bottom, left, right = self.tiles[0]
        size = 3 * (bottom - top) * (right - left) if spec.kind == "concat" else 3 * H * W
        self.A = np.random.default_rng(seed).standard_normal((dim, size)).astype(np.float64) / np.sqrt(size)

    def base(self, x: np.ndarray) -> np.ndarray:
        if self.spec.kind == "add":
            return self.A @ x.ravel()
        alone = encode(self.spec, [x] + [None] * (self.spec.k - 1))     # x in tile 0 = x resized to a tile
        top, bottom, left, right = self.tiles[0]
        return self.A @ alone[:, top:bottom, left:right].ravel()

    def parity(self, z: np.ndarray) -> np.ndarray:
        if self.spec.kind == "add":
            return self.spec.k * (self.A @ z.ravel())
        return sum(self.A @ z[:, t:b, l:r].ravel() for t, b, l, r in self.tiles)


@pytest.mark.parametrize("kind", ["concat", "add"])
@pytest.mark.parametrize("k", [2, 4])
def test_each_single_missing_output_is_rebuilt_exactly(kind, k):
    spec = CoderSpec(kind, k)
    model = LinearStandIn(spec)
    rng = np.random.default_rng(k)
    xs = [rng.random((3, H, W)).astype(np.float32) for _ in range(k)]
    outputs = [model.base(x) for x in xs]
    parity = model.parity(encode(spec, xs))
    for j in range(k):
        given_ = [None if i == j else y for i, y in enumerate(outputs)]
        raw = decode(spec, parity, given_, normalize=False)
        assert isinstance(raw, Rebuilt) and raw.index == j
        assert np.allclose(raw.output, outputs[j], atol=1e-4)
        # and the other member's output is not what comes back (the test can tell them apart)
        assert not np.allclose(raw.output, outputs[(j + 1) % k], atol=1e-2)
        unit = decode(spec, parity, {i: y for i, y in enumerate(outputs) if i != j})
        assert isinstance(unit, Rebuilt) and unit.index == j
        assert np.allclose(unit.output, outputs[j] / np.linalg.norm(outputs[j]), atol=1e-4)
        assert np.isclose(np.linalg.norm(unit.output), 1.0, atol=1e-5)


@pytest.mark.parametrize("kind", ["concat", "add"])
def test_k1_is_a_backup_model_the_input_copied_and_its_output_taken_as_is(kind):
    spec = CoderSpec(kind, 1)
    rng = np.random.default_rng(3)
    x = rng.random((3, H, W)).astype(np.float32)
    assert np.allclose(encode(spec, [x]), x, atol=1e-6)
    backup = np.array([3.0, 4.0], np.float32)
    got = decode(spec, backup, [None])
    assert isinstance(got, Rebuilt) and got.index == 0 and np.allclose(got.output, [0.6, 0.8])
    assert isinstance(decode(spec, backup, [np.ones(2)]), Undecodable)   # the original came: nothing to stand in for
    assert isinstance(decode(spec, None, [None]), Undecodable)


def test_decode_rebuilds_rows_of_a_batch_of_outputs():
    rng = np.random.default_rng(1)
    outputs = [unit_rows(rng.standard_normal((5, 8))) for _ in range(3)]
    got = decode(CoderSpec("concat", 3), sum(outputs), [outputs[0], None, outputs[2]])
    assert isinstance(got, Rebuilt) and got.index == 1 and np.allclose(got.output, outputs[1], atol=1e-5)


def test_without_the_parity_output_nothing_is_rebuilt():
    got = decode(CoderSpec("concat", 2), None, [np.ones(4), None])
    assert isinstance(got, Undecodable) and got.missing == (1,)
    assert "parity output is missing" in got.reason and "nothing to rebuild from" in got.reason


def test_two_missing_outputs_are_not_rebuilt_and_the_reason_says_so():
    got = decode(CoderSpec("add", 4), np.ones(4), [None, np.ones(4), None, np.ones(4)])
    assert isinstance(got, Undecodable) and got.missing == (0, 2)
    assert got.reason == "2 of the 4 outputs are missing (slots 0, 2): one parity output rebuilds only one"
    got = decode(CoderSpec("add", 2), np.ones(4), {})
    assert isinstance(got, Undecodable) and got.missing == (0, 1)


def test_nothing_missing_is_nothing_to_rebuild():
    got = decode(CoderSpec("concat", 2), np.ones(4), [np.ones(4), np.ones(4)])
    assert isinstance(got, Undecodable) and got.missing == () and "no output is missing" in got.reason


@pytest.mark.parametrize("parity, outputs, message", [
    (np.ones(4), [np.ones(4)], r"a k = 2 group has 2 outputs; got 1"),
    (np.ones(4), [np.ones(4), None, None], r"got 3"),
    (np.ones(4), {0: np.ones(4), 2: np.ones(4)}, r"slots 0..1; got outputs for slots \[2\]"),
    (np.ones(4), [np.ones(3), None], r"output 0 has shape \[3\], not \[4\]"),
    (np.array([1.0, np.nan, 0, 0]), [np.ones(4), None], r"the parity output has NaN or infinite values"),
    (np.ones(4), [np.full(4, np.inf), None], r"output 0 has NaN or infinite values"),
])
def test_bad_inputs_to_the_decoder_are_clear_errors(parity, outputs, message):
    with pytest.raises(CoderError, match=message):
        decode(CoderSpec("concat", 2), parity, outputs)


def test_unit_rows_leaves_a_zero_row_zero():
    out = unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])


# --- properties --------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(k=st.integers(2, 8), dim=st.integers(1, 32), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_property_parity_minus_the_others_is_the_missing_one(k, dim, seed, data):
    rng = np.random.default_rng(seed)
    outputs = [rng.standard_normal(dim).astype(np.float32) for _ in range(k)]
    j = data.draw(st.integers(0, k - 1), label="missing")
    kind = data.draw(st.sampled_from(["concat", "add"]), label="kind")
    given_ = [None if i == j else y for i, y in enumerate(outputs)]
    got = decode(CoderSpec(kind, k), np.sum(outputs, axis=0), given_, normalize=False)
    assert isinstance(got, Rebuilt) and got.index == j
    assert np.allclose(got.output, outputs[j], atol=1e-4 * k)
    unit = decode(CoderSpec(kind, k), np.sum(outputs, axis=0), given_)
    assert isinstance(unit, Rebuilt)
    norm = np.linalg.norm(unit.output)
    assert np.isclose(norm, 1.0, atol=1e-4) or norm == 0.0


@settings(max_examples=60, deadline=None)
@given(k=st.integers(2, 8), values=st.lists(st.floats(0, 1, width=32), min_size=8, max_size=8))
def test_property_concat_places_slot_i_in_tile_i(k, values):
    spec = CoderSpec("concat", k)
    out = encode(spec, [_solid(v) for v in values[:k]])
    covered = np.zeros((H, W), bool)
    for v, (top, bottom, left, right) in zip(values, spec.tiles(H, W)):
        assert np.allclose(out[:, top:bottom, left:right], v, atol=1e-6)
        covered[top:bottom, left:right] = True
    assert np.all(out[:, ~covered] == 0)    # what the grid leaves over stays blank
