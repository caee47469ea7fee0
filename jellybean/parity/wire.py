"""The encoders on the agents' images: k decoded crops (H x W x 3 uint8, None for a blank slot)
-> one image of the same size, as the parity model was trained on (jellybean.parity.coders)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from jellybean.errors import NotSupportedError
from jellybean.parity.groups import Encode

SIDE = 96  # the re-ID crops' side, and so the parity query's


def grid(k: int) -> tuple[int, int]:
    """(rows, columns) of the concatenation encoder's tiles: 1 x 2 for k = 2, 2 x 2 for k = 4."""
    rows = max(1, int(math.isqrt(k)))
    return rows, math.ceil(k / rows)


def wire_encoder(kind: str, k: int, side: int = SIDE) -> Encode:
    if kind == "concat":
        rows, cols = grid(k)
        th, tw = side // rows, side // cols

        def concat(tiles: Sequence[np.ndarray | None]) -> np.ndarray:
            out = np.zeros((side, side, 3), np.uint8)
            for i, tile in enumerate(tiles[:k]):
                if tile is None:
                    continue
                r, c = divmod(i, cols)
                out[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = cv2.resize(tile, (tw, th), interpolation=cv2.INTER_AREA)
            return out
        return concat
    if kind == "add":
        def add(tiles: Sequence[np.ndarray | None]) -> np.ndarray:
            # The sum of k images does not fit 8 bits; the mean does, and the parity model is
            # trained on the same mean (a scale it learns back).
            acc = np.zeros((side, side, 3), np.float32)
            for tile in tiles[:k]:
                if tile is not None:
                    acc += cv2.resize(tile, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
            return np.clip(np.rint(acc / k), 0, 255).astype(np.uint8)
        return add
    raise NotSupportedError(f"parity encoder '{kind}' is not one of concat, add")
