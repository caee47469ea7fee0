"""The encoders on the agents' images: k decoded crops (H x W x 3 uint8, None for a blank slot)
-> one image of the same size, as the parity model was trained on. The tiles' geometry and the
kinds are jellybean.parity.coders' (which codes model inputs, float [C, H, W]); here the images are
the agents' decoded JPEGs, of any size, resized to their tile."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from jellybean.errors import NotSupportedError
from jellybean.parity.coders import KINDS, CoderSpec, grid
from jellybean.parity.groups import Encode

__all__ = ["SIDE", "grid", "wire_encoder"]

SIDE = 96  # the re-ID crops' side, and so the parity query's


def wire_encoder(kind: str, k: int, side: int = SIDE) -> Encode:
    if kind not in KINDS:
        raise NotSupportedError(f"parity encoder '{kind}' is not one of {', '.join(KINDS)}")
    spec = CoderSpec(kind, k)
    if kind == "concat":
        boxes = spec.tiles(side, side)

        def concat(tiles: Sequence[np.ndarray | None]) -> np.ndarray:
            out = np.zeros((side, side, 3), np.uint8)
            for tile, (top, bottom, left, right) in zip(tiles[:k], boxes):
                if tile is None:
                    continue
                out[top:bottom, left:right] = cv2.resize(tile, (right - left, bottom - top),
                                                         interpolation=cv2.INTER_AREA)
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
