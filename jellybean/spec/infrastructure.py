"""The infrastructure: sites of each tier, the hardware at each, the streams attached, the links."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, model_validator

from jellybean.spec.base import (
    BRANCH_TAGS,
    MAX_BANDWIDTH_MBPS,
    MAX_COUNT,
    MAX_MS,
    MAX_PRICE,
    MAX_RATE,
    StrictModel,
    spec_error,
    unknown_name,
)
from jellybean.spec.hardware import Tier

_NUMBER, _MAPPING = BRANCH_TAGS


class HardwareAtSite(StrictModel):
    count: int = Field(ge=0, le=MAX_COUNT, description="workers available (for an elastic cloud: the limit)")
    price_per_hour: float | None = Field(
        None, ge=0, le=MAX_PRICE, description="overrides the hardware profile's price here"
    )


class StreamsAtSite(StrictModel):
    count: int = Field(ge=1, le=MAX_COUNT)
    rate: float | None = Field(None, gt=0, le=MAX_RATE, description="overrides the source's rate for these streams")


def _count_or_mapping(value: Any) -> str:
    return _MAPPING if isinstance(value, (dict, StrictModel)) else _NUMBER


# `name: N` or `name: {count: N, ...}`; the discriminator validates only the branch the value is
# written as, so a bad count gets one error (not one per branch of the union).
HardwareCount = Annotated[
    Union[Annotated[Annotated[int, Field(ge=0, le=MAX_COUNT)], Tag(_NUMBER)], Annotated[HardwareAtSite, Tag(_MAPPING)]],
    Discriminator(_count_or_mapping),
]
StreamCount = Annotated[
    Union[Annotated[Annotated[int, Field(ge=1, le=MAX_COUNT)], Tag(_NUMBER)], Annotated[StreamsAtSite, Tag(_MAPPING)]],
    Discriminator(_count_or_mapping),
]


class Site(StrictModel):
    name: str = Field(min_length=1)
    tier: Tier
    hardware: dict[str, HardwareCount] = Field(default_factory=dict)
    sources: dict[str, StreamCount] = Field(default_factory=dict)
    description: str = ""

    def hardware_at(self) -> dict[str, HardwareAtSite]:
        return {k: (HardwareAtSite(count=v) if isinstance(v, int) else v) for k, v in self.hardware.items()}

    def streams_at(self) -> dict[str, StreamsAtSite]:
        return {k: (StreamsAtSite(count=v) if isinstance(v, int) else v) for k, v in self.sources.items()}


class Link(StrictModel):
    from_: str = Field(alias="from")
    to: str
    bandwidth_mbps: float | None = Field(None, gt=0, le=MAX_BANDWIDTH_MBPS, description="none: unlimited")
    latency_ms: float = Field(0.0, ge=0, le=MAX_MS)
    cost_per_gb: float = Field(0.0, ge=0, le=MAX_PRICE, description="$ per GB (2^30 bytes) sent over the link")
    both_ways: bool = Field(False, description="allow data to flow back towards the lower tier too")
    description: str = ""


class Infrastructure(StrictModel):
    kind: Literal["infrastructure"]
    name: str = Field(min_length=1)
    description: str = ""
    hardware_catalog: tuple[str, ...] = Field(
        ("../../tiers",), description="hardware profile files or directories, relative to this file"
    )
    sites: tuple[Site, ...] = Field(min_length=1)
    links: tuple[Link, ...] = ()

    @model_validator(mode="after")
    def _refs(self) -> "Infrastructure":
        names: list[str] = []
        for i, s in enumerate(self.sites):
            if s.name in names:
                raise spec_error(f"sites[{i}].name", f"site '{s.name}' is defined twice; give each a unique name")
            names.append(s.name)
        tiers = {s.name: s.tier for s in self.sites}
        from jellybean.spec.hardware import tier_rank

        pairs: set[tuple[str, str]] = set()
        for i, link in enumerate(self.links):
            for end, field in ((link.from_, "from"), (link.to, "to")):
                if end not in tiers:
                    raise spec_error(f"links[{i}].{field}", unknown_name("site", end, names))
            if link.from_ == link.to:
                raise spec_error(f"links[{i}]", "a link joins two different sites; data inside a site moves free")
            key = (link.from_, link.to)
            if key in pairs or (link.to, link.from_) in pairs:
                raise spec_error(f"links[{i}]", f"sites {link.from_} and {link.to} are linked twice; keep one link")
            pairs.add(key)
            if tier_rank(tiers[link.from_]) > tier_rank(tiers[link.to]) and not link.both_ways:
                raise spec_error(
                    f"links[{i}]",
                    f"goes from tier {tiers[link.from_]} down to tier {tiers[link.to]}; data moves towards "
                    "higher tiers: swap from/to, or set `both_ways: true` to allow it",
                )
        return self

    def site(self, name: str) -> Site | None:
        return next((s for s in self.sites if s.name == name), None)
