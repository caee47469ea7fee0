"""The parity worker (ParM): a parity model run on parity queries, its outputs left un-normalised.

A parity query (jellybean.parity.groups) carries one encoded crop per crop position of its group;
the parity model maps it to the sum of the base model's outputs for the crops it encodes. That
sum is what the decoder subtracts from, so unlike the re-ID embedder nothing is normalised here.
"""

from __future__ import annotations

import numpy as np

from jellybean.agents.items import Item
from jellybean.agents.operators.base import Operator, OperatorConfig, register
from jellybean.agents.operators.models import decode_jpeg, open_model, run_crops
from jellybean.parity.groups import META, OUTPUT_KIND, QUERY_KIND
from jellybean.zoo.evaluators import image_input, run_model

DEFAULT_CHUNK = 256


@register("parity-embedder")
class ParityEmbedder(Operator):
    """Parity queries -> one parity vector per encoded crop (float32 [crops, D])."""

    kind = "model"
    keyed = "item"
    accepts = (QUERY_KIND,)
    produces = OUTPUT_KIND

    def __init__(self, config: OperatorConfig) -> None:
        super().__init__(config)
        self.chunk = int(config.params.get("chunk", DEFAULT_CHUNK))
        self.backend = open_model(config)
        self.spec, self.size = image_input(self.backend, config.params.get("imgsz"), str(config.model))
        blank = np.zeros((1, 3) + self.size, np.float32)
        self.dim = int(run_model(self.backend, self.spec, blank, str(config.model)).reshape(1, -1).shape[1])

    def process(self, items: list[Item]) -> list[Item]:
        out: list[Item | None] = [None] * len(items)
        crops: list[np.ndarray] = []
        spans: list[tuple[int, int, int]] = []     # (item index, first crop, end crop)
        for i, item in enumerate(items):
            images = [decode_jpeg(b) for b in item.blobs]
            if any(image is None for image in images):
                out[i] = item.tombstone(f"undecodable parity crop at {self.config.operator}")
                continue
            spans.append((i, len(crops), len(crops) + len(images)))
            crops.extend(images)
        values = run_crops(self, crops)       # the batch's queries in as few model calls as it takes
        for i, start, end in spans:
            item = items[i]
            out[i] = item.derive(OUTPUT_KIND, meta={META: item.meta.get(META, {})},
                                 arrays={OUTPUT_KIND: values[start:end]})
        return [o for o in out if o is not None]

    def close(self) -> None:
        self.backend.close()
