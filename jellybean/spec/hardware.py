"""Hardware profiles (tiers/*.yaml): what a machine of each tier costs and can hold."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from jellybean.errors import SpecError
from jellybean.spec.base import MAX_MEMORY_MB, MAX_PRICE, StrictModel, require_unique_names

# Tiers in the order data normally flows: from cameras towards the cloud.
TIERS: tuple[str, ...] = ("edge", "hub", "edge-dc", "cloud")
Tier = Literal["edge", "hub", "edge-dc", "cloud"]


def tier_rank(tier: str) -> int:
    return TIERS.index(tier)


class Hardware(StrictModel):
    name: str = Field(min_length=1)
    tier: Tier
    price_per_hour: float = Field(ge=0, le=MAX_PRICE, description="$/h for one worker; amortised for owned devices")
    memory_mb: float = Field(gt=0, le=MAX_MEMORY_MB, description="memory available to models on one worker")
    execution_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    description: str = ""
    price_source: str = ""


class HardwareCatalog(StrictModel):
    kind: Literal["hardware"]
    hardware: tuple[Hardware, ...] = Field(min_length=1)

    @field_validator("hardware")
    @classmethod
    def _unique(cls, items: tuple[Hardware, ...]) -> tuple[Hardware, ...]:
        return require_unique_names(items, "hardware")


def hardware_files(path: Path) -> list[Path]:
    """A catalog path may be one YAML file or a directory of them."""
    if path.is_dir():
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        if not files:
            raise SpecError([f"{path}: no hardware YAML files in this directory; add tiers/*.yaml"])
        return files
    return [path]


def merge_catalogs(catalogs: list[tuple[str, HardwareCatalog]]) -> dict[str, Hardware]:
    merged: dict[str, Hardware] = {}
    origin: dict[str, str] = {}
    problems: list[str] = []
    for source, cat in catalogs:
        for i, h in enumerate(cat.hardware):
            if h.name in merged and merged[h.name] != h:
                problems.append(
                    f"{source}: hardware[{i}].name: '{h.name}' is also defined differently in {origin[h.name]}; "
                    "keep one definition"
                )
            merged[h.name] = h
            origin[h.name] = source
    if problems:
        raise SpecError(problems)
    return merged
