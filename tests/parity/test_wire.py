"""The encoders on the agents' images: tiles where the parity model expects them."""

from __future__ import annotations

import numpy as np
import pytest

from jellybean.errors import NotSupportedError
from jellybean.parity.wire import grid, wire_encoder


def _solid(value: int) -> np.ndarray:
    return np.full((96, 96, 3), value, np.uint8)


@pytest.mark.parametrize("k, shape", [(2, (1, 2)), (3, (1, 3)), (4, (2, 2)), (6, (2, 3)), (8, (2, 4))])
def test_the_grid_has_a_tile_per_slot(k, shape):
    assert grid(k) == shape and shape[0] * shape[1] >= k


def test_concat_puts_slot_i_in_tile_i_and_leaves_blank_slots_black():
    out = wire_encoder("concat", 2)([_solid(100), _solid(200)])
    assert out.shape == (96, 96, 3) and (out[:, :48] == 100).all() and (out[:, 48:] == 200).all()
    out = wire_encoder("concat", 4)([_solid(10), None, _solid(30), _solid(40)])
    assert (out[:48, :48] == 10).all() and (out[:48, 48:] == 0).all()
    assert (out[48:, :48] == 30).all() and (out[48:, 48:] == 40).all()


def test_concat_resizes_any_crop_to_its_tile():
    odd = np.zeros((50, 120, 3), np.uint8)
    odd[:, :60] = 255
    out = wire_encoder("concat", 2)([odd, None])
    assert out.shape == (96, 96, 3) and out[:, :24].mean() > 250 and out[:, 24:48].mean() < 5


def test_add_is_the_mean_of_the_slots_blank_counting_zero():
    out = wire_encoder("add", 2)([_solid(100), _solid(50)])
    assert (out == 75).all()
    assert (wire_encoder("add", 4)([_solid(200), None, None, None]) == 50).all()


def test_an_unknown_encoder_is_not_supported():
    with pytest.raises(NotSupportedError, match="'xor' is not one of concat, add"):
        wire_encoder("xor", 2)
