"""Generate larger optimizer input directories in the reference prototype's format.

The shipped VQA directory (examples/vqa/prototype_inputs) has 9 workers in 2 tiers; the planner
also has to handle what a real user's larger deployment looks like. ``write_prototype_instance``
writes such a directory, deterministically from its arguments, with the same files and layouts
the importer (jellybean.planner.jellybean_format) reads:

- a workflow of two sources (camera frames, spoken questions) and five operators:
  ReadImage -> DetectObjects -> ExtractImageFeature -> VQA <- ParseQuestion <- SpeechRecognition
  <- ReadSpeech, with four operators of two or three variants and an end-to-end accuracy table
  over them, whose threshold a handful (at most 20) of the 36 combinations meet;
- ``workers`` workers over ``tiers`` tiers (edge devices at camera sites, hubs, an edge
  datacenter, the cloud), each of a hardware kind of its tier with that kind's catalogue price,
  and each with its own measured latency for every variant it can run, so that the importer's
  grouping of identical workers keeps every worker apart; small devices cannot run the largest
  variants (an empty latency, as the prototype's pandas writes NaN);
- a $/GB for every pair of workers in different tiers and for every source and worker, the
  prices of sites' uplinks with a per-pair spread; rows the semantics ignore are written too
  (towards a lower tier, inside a tier, from a source to a tier-0 worker), as real files have;
- message sizes that depend on the variants, exercising every step of the prototype's fallback
  order ((a, b), (default, b), (a, default), (default, default)), edge ratios that thin one
  input of the VQA join, a variant profiled for latency but absent from the accuracy profiles,
  and a few execution-profile rows ending in a trailing comma, as the shipped files do;
- input rates sized so that a greedy plan exists (the instance is feasible) while the work is
  about ``load`` of what the whole fleet could process.

    python -m jellybean.planner.prototype_instances OUT_DIR --seed 1 --workers 120 [--tiers 4]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import math
import pickle
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["write_prototype_instance", "write_instance", "generate_prototype_instance", "PrototypeInstance"]

# ---------------------------------------------------------------------------------------------
# The workflow
# ---------------------------------------------------------------------------------------------
SOURCES = ("ReadImage", "ReadSpeech")
# In the order logical_graph.csv lists them; that order is also a topological one.
EDGES = (
    ("ReadImage", "DetectObjects"),
    ("DetectObjects", "ExtractImageFeature"),
    ("ReadSpeech", "SpeechRecognition"),
    ("SpeechRecognition", "ParseQuestion"),
    ("ExtractImageFeature", "VQA"),
    ("ParseQuestion", "VQA"),
)
OPERATORS = ("DetectObjects", "ExtractImageFeature", "SpeechRecognition", "ParseQuestion", "VQA")
SINK = "VQA"

# Milliseconds per item on a cloud GPU, before each worker's own speed; order = variant order.
BASE_MS: Mapping[str, Mapping[str, float]] = {
    "DetectObjects": {"yolov8n": 4.0, "yolov8s": 6.5, "yolov8m": 13.0, "yolov8x": 26.0},
    "ExtractImageFeature": {"resnet18": 5.0, "resnet50": 9.5, "resnet101": 16.0},
    "SpeechRecognition": {"wav2vec2-base-960h": 14.0, "wav2vec2-large-960h-lv60-self": 27.0},
    "ParseQuestion": {"distilbert-base": 3.0, "bert-base": 7.0},
    "VQA": {"default": 4.0},
}
# Profiled for latency only: the accuracy profiles do not list it, so the planner never runs it.
UNPROFILED = {("DetectObjects", "yolov8x")}
# The operators of the end-to-end accuracy table, and each variant's mean gain in accuracy points.
TABLE_OPERATORS = ("DetectObjects", "ExtractImageFeature", "SpeechRecognition", "ParseQuestion")
ACCURACY_GAIN: Mapping[str, Mapping[str, float]] = {
    "DetectObjects": {"yolov8n": 0.0, "yolov8s": 1.2, "yolov8m": 2.0},
    "ExtractImageFeature": {"resnet18": 0.0, "resnet50": 1.5, "resnet101": 2.1},
    "SpeechRecognition": {"wav2vec2-base-960h": 0.0, "wav2vec2-large-960h-lv60-self": 2.5},
    "ParseQuestion": {"distilbert-base": 0.0, "bert-base": 0.9},
}
BASE_ACCURACY = 46.0  # percent, as the prototype's VQA profiles are
MAX_COMBOS_MEETING = 20


@dataclass(frozen=True)
class Hardware:
    name: str
    price: float  # $/h, the same for every worker of the kind, as a catalogue price is
    slowdown: float  # latency multiple of the base (cloud GPU) profile
    max_base_ms: float  # variants heavier than this do not fit in its memory (no latency)
    weight: float  # how common it is in its tier


@dataclass(frozen=True)
class TierKind:
    name: str
    share: float  # of the workers
    hardware: tuple[Hardware, ...]
    site_size: tuple[int, int]  # workers per site (a site's workers share its uplink's price)
    uplink: float  # $/GB to reach this tier from below, before spreads


EDGE = TierKind("edge", 0.50, (
    Hardware("nano", 0.035, 14.0, 8.0, 0.3),
    Hardware("nx", 0.070, 7.0, 14.0, 0.5),
    Hardware("orin", 0.140, 3.5, 20.0, 0.2),
), (2, 5), 0.0)
HUB = TierKind("hub", 0.25, (
    Hardware("cpu8", 0.192, 5.0, 30.0, 0.5),
    Hardware("t4", 0.526, 1.8, 30.0, 0.5),
), (2, 4), 0.3)
EDGE_DC = TierKind("edc", 0.15, (
    Hardware("cpu32", 0.768, 2.6, math.inf, 0.4),
    Hardware("a10", 1.006, 1.2, math.inf, 0.6),
), (4, 8), 0.6)
CLOUD = TierKind("cloud", 0.10, (
    Hardware("g4dn", 0.752, 1.7, math.inf, 0.5),
    Hardware("g5", 1.212, 1.0, math.inf, 0.4),
    Hardware("p3", 3.060, 0.6, math.inf, 0.1),
), (1000, 1000), 1.0)
TIER_KINDS: Mapping[int, tuple[TierKind, ...]] = {
    2: (EDGE, CLOUD),
    3: (EDGE, HUB, CLOUD),
    4: (EDGE, HUB, EDGE_DC, CLOUD),
}
WORKER_SPREAD = 0.05  # lognormal sigma of a worker's speed around its hardware's (thermals, firmware, neighbours)
OPERATOR_SPREAD = 0.04  # ... of how well one worker suits one operator
VARIANT_SPREAD = 0.02  # ... of each measured latency

CONFIG_TAIL = """
BEAM_SEARCH:
  BEST_K: 10
  ACC_PROFILE_SAMPLE_LIMIT: None
  PER_ASSIGNMENT_NODE_EXPANSION_LIMIT: None

WORKER_ASSIGNMENT:
  STRATEGY: "multiple-tiers"
  TIER_ALLOCATION_STRATEGY: 'greedy'
  MAX_NUM_ASSIGN_ORDERS: 10
  BEST_K_ASSIGNMENTS: 10
"""
DOWNWARD_COST = 10.0  # what the shipped file writes for pairs towards a lower tier (never used)
SAME_TIER_LINK_SHARE = 0.05  # of same-tier pairs listed with a cost (inside a tier is free)
TRAILING_COMMA_SHARE = 0.03  # of execution-profile rows, as the shipped file has some


# ---------------------------------------------------------------------------------------------
# The instance in memory
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Worker:
    name: str
    tier: int
    site: str
    price: float
    latency_ms: dict[tuple[str, str], float]  # (operator, variant) -> ms; absent: cannot run


@dataclass(frozen=True)
class PrototypeInstance:
    """Everything the directory holds, before it is written."""

    workers: tuple[Worker, ...]
    tiers: tuple[TierKind, ...]
    rates: dict[str, float]  # source -> items/s
    ratios: dict[tuple[str, str], float]  # edges with a row in the ratios file
    sizes: dict[tuple[str, str, str, str], float]  # (u, v, u variant, v variant) -> KB per item
    worker_links: dict[tuple[str, str], float]  # $/GB, before COMM_COST_SCALING_FACTOR
    source_links: dict[tuple[str, str], float]
    accuracy: dict[tuple[str, ...], float]  # TABLE_OPERATORS' variants -> percent
    threshold: float
    overestimate: float  # LATENCY_OVERESTIMATE_RATIO
    comm_scale: float  # COMM_COST_SCALING_FACTOR
    trailing_comma_rows: frozenset[tuple[str, str, str]]  # (operator, worker, variant)

    @property
    def combos_meeting(self) -> int:
        return sum(1 for a in self.accuracy.values() if a >= self.threshold)

    def summary(self) -> str:
        per_tier = collections.Counter(w.tier for w in self.workers)
        tiers = ", ".join(f"{per_tier[t]} {k.name}" for t, k in enumerate(self.tiers))
        rates = ", ".join(f"{s} {r:g}/s" for s, r in self.rates.items())
        return (f"{len(self.workers)} workers ({tiers}); {rates}; {self.combos_meeting} of {len(self.accuracy)} "
                f"variant combinations meet the accuracy threshold {self.threshold:g}")


def generate_prototype_instance(
    seed: int,
    workers: int,
    tiers: int = 4,
    *,
    load: float = 0.45,
    link_spread: float = 0.1,
    site_spread: float = 0.2,
    missing_links: float = 0.0,
    overestimate: float = 1.1,
    comm_scale: float = 0.1,
) -> PrototypeInstance:
    """The instance ``write_prototype_instance`` writes.

    ``load`` is the share of the fleet's compute the lightest admissible variants need at the input
    rates; ``link_spread`` the lognormal sigma of each pair's $/GB around its sites' price, and
    ``site_spread`` that of each site's price around its tier's (both 0: one $/GB per pair of tiers,
    as a user who prices links by tier writes them);
    ``missing_links`` the share of upward pairs left out of the link files (they then cost 0, as
    the prototype reads them); ``overestimate`` and ``comm_scale`` go to config.yaml as
    LATENCY_OVERESTIMATE_RATIO and COMM_COST_SCALING_FACTOR.
    """
    if tiers not in TIER_KINDS:
        raise ValueError(f"tiers must be one of {', '.join(map(str, TIER_KINDS))}, got {tiers}")
    if workers < 2 * tiers:
        raise ValueError(f"{tiers} tiers need at least {2 * tiers} workers (two per tier), got {workers}")
    if not 0 < load <= 1 or not 0 <= missing_links < 1 or link_spread < 0 or site_spread < 0:
        raise ValueError("load must be in (0, 1], missing_links in [0, 1), link_spread and site_spread >= 0")
    # Every argument that shapes the files seeds the generator, so that no two differ by chance.
    rng = np.random.default_rng([seed, workers, tiers])
    kinds = TIER_KINDS[tiers]
    fleet = _workers(rng, workers, kinds)
    accuracy = _accuracy_table(rng)
    threshold = _threshold(rng, accuracy)
    crop_ratio = round(float(rng.uniform(1.0, 2.0)), 2)
    ratios = {
        ("ReadImage", "DetectObjects"): 1.0,
        ("DetectObjects", "ExtractImageFeature"): crop_ratio,
        ("ReadSpeech", "SpeechRecognition"): 1.0,
        ("SpeechRecognition", "ParseQuestion"): 1.0,
        # Back to one feature per frame; ParseQuestion -> VQA has no row (ratio 1, as the importer reads it).
        ("ExtractImageFeature", "VQA"): round(1.0 / crop_ratio, 4),
    }
    questions_per_frame = float(rng.uniform(0.6, 0.95))  # VQA's rate is the lesser input: the questions
    rates = _rates(fleet, accuracy, threshold, ratios, questions_per_frame, load, overestimate)
    worker_links, source_links = _links(rng, fleet, kinds, link_spread, missing_links, site_spread)
    trailing = frozenset(
        (op, w.name, var) for w in fleet for op, variants in BASE_MS.items() for var in variants
        if (op, var) in w.latency_ms and rng.random() < TRAILING_COMMA_SHARE
    )
    return PrototypeInstance(
        workers=tuple(fleet), tiers=kinds, rates=rates, ratios=ratios, sizes=_sizes(rng),
        worker_links=worker_links, source_links=source_links, accuracy=accuracy, threshold=threshold,
        overestimate=overestimate, comm_scale=comm_scale, trailing_comma_rows=trailing,
    )


def _tier_sizes(workers: int, kinds: Sequence[TierKind]) -> list[int]:
    """Workers per tier by the kinds' shares, at least two each (largest remainders get the rest)."""
    total = sum(k.share for k in kinds)
    exact = [max(2.0, workers * k.share / total) for k in kinds]
    sizes = [int(e) for e in exact]
    order = sorted(range(len(kinds)), key=lambda t: exact[t] - sizes[t], reverse=True)
    for t in itertools.cycle(order):
        if sum(sizes) == workers:
            break
        if sum(sizes) < workers:
            sizes[t] += 1
        elif sizes[t] > 2:
            sizes[t] -= 1
    return sizes


def _workers(rng: np.random.Generator, workers: int, kinds: Sequence[TierKind]) -> list[Worker]:
    fleet: list[Worker] = []
    for t, (kind, size) in enumerate(zip(kinds, _tier_sizes(workers, kinds))):
        weights = np.array([hw.weight for hw in kind.hardware])
        site, left = 0, 0
        for i in range(size):
            if left == 0:
                site += 1
                left = int(rng.integers(kind.site_size[0], kind.site_size[1] + 1))
            left -= 1
            hw = kind.hardware[int(rng.choice(len(kind.hardware), p=weights / weights.sum()))]
            # Every worker measures differently, so no two are interchangeable to the importer.
            speed = hw.slowdown * float(rng.lognormal(0.0, WORKER_SPREAD))
            latency: dict[tuple[str, str], float] = {}
            for op, variants in BASE_MS.items():
                affinity = float(rng.lognormal(0.0, OPERATOR_SPREAD))
                for var, ms in variants.items():
                    noise = float(rng.lognormal(0.0, VARIANT_SPREAD))
                    if ms <= hw.max_base_ms:
                        latency[(op, var)] = ms * speed * affinity * noise
            name = f"{kind.name}-s{site:02d}-{hw.name}-{i + 1:03d}"
            fleet.append(Worker(name, t, f"{kind.name}-s{site:02d}", hw.price, latency))
    return fleet


def _accuracy_table(rng: np.random.Generator) -> dict[tuple[str, ...], float]:
    """Percent accuracy of every combination: additive gains (spread per instance) and an interaction."""
    gains = {op: {v: g * float(rng.uniform(0.7, 1.3)) for v, g in table.items()}
             for op, table in ACCURACY_GAIN.items()}
    combos = itertools.product(*(tuple(ACCURACY_GAIN[op]) for op in TABLE_OPERATORS))
    return {
        combo: round(BASE_ACCURACY + sum(gains[op][v] for op, v in zip(TABLE_OPERATORS, combo))
                     + float(rng.normal(0.0, 0.15)), 2)
        for combo in combos
    }


def _threshold(rng: np.random.Generator, accuracy: Mapping[tuple[str, ...], float]) -> float:
    """A threshold that between 6 and MAX_COMBOS_MEETING combinations meet."""
    ranked = sorted(accuracy.values(), reverse=True)
    k = int(rng.integers(6, 17))
    threshold = ranked[k - 1]
    while sum(1 for a in ranked if a >= threshold) > MAX_COMBOS_MEETING:  # ties at the cut
        threshold = round(threshold + 0.01, 2)
    return threshold


def _operator_rates(
    image_rate: float, speech_rate: float, ratios: Mapping[tuple[str, str], float]
) -> dict[str, float]:
    rate = {"ReadImage": image_rate, "ReadSpeech": speech_rate}
    for node in OPERATORS:
        rate[node] = min(rate[u] * ratios.get((u, v), 1.0) for u, v in EDGES if v == node)
    return rate


def _rates(
    fleet: Sequence[Worker],
    accuracy: Mapping[tuple[str, ...], float],
    threshold: float,
    ratios: Mapping[tuple[str, str], float],
    questions_per_frame: float,
    load: float,
    overestimate: float,
) -> dict[str, float]:
    """Source rates at which the lightest admissible variants need ``load`` of the fleet's compute,
    lowered until a greedy plan places them (so the instance is feasible)."""
    choice = _lightest_admissible(accuracy, threshold)
    per_frame = _operator_rates(1.0, questions_per_frame, ratios)
    work_per_frame = sum(per_frame[op] * BASE_MS[op][choice[op]] * overestimate for op in OPERATORS)
    fleet_ms_per_s = sum(_base_ms_per_s(w, choice) for w in fleet)
    image_rate = load * fleet_ms_per_s / work_per_frame
    for _ in range(60):
        rates = {"ReadImage": round(image_rate, 1), "ReadSpeech": round(image_rate * questions_per_frame, 1)}
        if rates["ReadSpeech"] > 0 and _greedy_places(fleet, choice, _operator_rates(*rates.values(), ratios),
                                                      overestimate):
            return rates
        image_rate *= 0.9
    raise ValueError("no feasible input rate found for this fleet; use more workers")


def _base_ms_per_s(w: Worker, choice: Mapping[str, str]) -> float:
    """Milliseconds of base (cloud GPU) work a second of the worker is worth, on average over the
    chosen variants it can run."""
    speeds = [BASE_MS[op][var] / w.latency_ms[(op, var)] for op, var in choice.items() if (op, var) in w.latency_ms]
    return 1000.0 * sum(speeds) / len(speeds) if speeds else 0.0


def _lightest_admissible(accuracy: Mapping[tuple[str, ...], float], threshold: float) -> dict[str, str]:
    def work(combo: tuple[str, ...]) -> float:
        return sum(BASE_MS[op][v] for op, v in zip(TABLE_OPERATORS, combo))

    combo = min((c for c, a in accuracy.items() if a >= threshold), key=work)
    return {**dict(zip(TABLE_OPERATORS, combo)), "VQA": "default"}


def _greedy_places(
    fleet: Sequence[Worker], choice: Mapping[str, str], rate: Mapping[str, float], overestimate: float
) -> bool:
    """Whether operators, in workflow order, fit on free workers no lower than their inputs' highest tier.

    Items then never move down a tier, so what this places is a feasible plan."""
    free = list(fleet)
    top_tier = {s: 0 for s in SOURCES}
    for op in OPERATORS:
        floor = max(top_tier[u] for u, v in EDGES if v == op)
        able = [w for w in free if w.tier >= floor and (op, choice[op]) in w.latency_ms]
        able.sort(key=lambda w: (w.tier, w.latency_ms[(op, choice[op])]))
        served, used = 0.0, []
        for w in able:
            if served >= rate[op] * 1.02:
                break
            served += 1000.0 / (w.latency_ms[(op, choice[op])] * overestimate)
            used.append(w)
        if served < rate[op] * 1.02:
            return False
        top_tier[op] = max(w.tier for w in used)
        taken = {w.name for w in used}
        free = [w for w in free if w.name not in taken]
    return True


def _links(
    rng: np.random.Generator, fleet: Sequence[Worker], kinds: Sequence[TierKind], spread: float, missing: float,
    site_spread: float,
) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
    """$/GB per pair: the receiving tier's uplink price × each site's factor × a per-pair spread."""
    site_factor = {site: float(rng.lognormal(0.0, site_spread)) for site in dict.fromkeys(w.site for w in fleet)}

    def price(base: float, *sites: str) -> float:
        value = base * math.prod(site_factor[s] for s in sites) * float(rng.lognormal(0.0, spread))
        return round(value, 4)

    worker_links: dict[tuple[str, str], float] = {}
    for a in fleet:
        for b in fleet:
            if a is b:
                continue
            if a.tier < b.tier:
                # Leaving a higher sending tier is cheaper: part of the way is already paid.
                base = kinds[b.tier].uplink * (1.0 - 0.15 * a.tier)
                cost = price(base, a.site, b.site)
                if rng.random() >= missing:
                    worker_links[(a.name, b.name)] = cost
            elif a.tier > b.tier:
                worker_links[(a.name, b.name)] = DOWNWARD_COST
            elif rng.random() < SAME_TIER_LINK_SHARE:
                worker_links[(a.name, b.name)] = price(0.05, a.site, b.site)
    source_links: dict[tuple[str, str], float] = {}
    for s in SOURCES:
        for w in fleet:
            base = kinds[w.tier].uplink if w.tier > 0 else 0.05
            cost = price(base, w.site)
            if w.tier == 0 or rng.random() >= missing:
                source_links[(s, w.name)] = cost
    return worker_links, source_links


def _sizes(rng: np.random.Generator) -> dict[tuple[str, str, str, str], float]:
    """KB per item, rows chosen so that each step of the fallback order is the one that answers somewhere."""

    def kb(low: float, high: float) -> float:
        return round(float(rng.uniform(low, high)), 4)

    frame, crops = kb(120.0, 250.0), kb(25.0, 40.0)
    d = "default"
    return {
        ("ReadImage", "DetectObjects", d, d): frame,
        ("DetectObjects", "ExtractImageFeature", "yolov8n", d): round(crops * 0.8, 4),  # (a, default)
        ("DetectObjects", "ExtractImageFeature", "yolov8s", d): round(crops * 0.9, 4),
        ("DetectObjects", "ExtractImageFeature", "yolov8x", d): round(crops * 1.2, 4),  # never chosen
        ("DetectObjects", "ExtractImageFeature", d, "resnet101"): round(crops * 1.5, 4),  # (default, b)
        ("DetectObjects", "ExtractImageFeature", "yolov8m", "resnet50"): round(crops * 1.1, 4),  # (a, b)
        ("DetectObjects", "ExtractImageFeature", d, d): crops,  # e.g. (yolov8m, resnet18)
        ("ReadSpeech", "SpeechRecognition", d, d): kb(80.0, 110.0),
        ("SpeechRecognition", "ParseQuestion", d, d): 0.1,
        ("ExtractImageFeature", "VQA", "resnet18", d): 2.00390625,
        ("ExtractImageFeature", "VQA", "resnet50", d): 8.00390625,
        ("ExtractImageFeature", "VQA", "resnet101", d): 8.00390625,
        ("ParseQuestion", "VQA", "distilbert-base", d): 1.5,
        ("ParseQuestion", "VQA", "bert-base", d): 3.0,
    }


# ---------------------------------------------------------------------------------------------
# The accuracy profile pickle
# ---------------------------------------------------------------------------------------------
# The prototype pickles objects of its beam_search module, and the importer's unpickler accepts only
# those names: these classes carry them.
class EndToEndAccuracyProfile:
    __module__ = "beam_search"

    def __init__(self, operators: list[str], acc_profile: dict[tuple[str, ...], float]):
        self.operators = operators
        self.acc_profile = acc_profile


class OperatorAccuracyProfile:
    __module__ = "beam_search"

    def __init__(self, op_name: str, inputs: list[str] | None, acc_profile: dict[str, list],
                 cost_profile: dict[str, float], weight: float = 1.0):
        self.op_name = op_name
        self.inputs = inputs
        self.acc_profile = acc_profile
        self.cost_profile = cost_profile
        self.weight = weight


AccSample = collections.namedtuple("AccSample", ["inputs_acc", "output_acc"], module="beam_search")


@contextlib.contextmanager
def _beam_search_importable() -> Iterator[None]:
    """pickle checks that importing a class's module and name gives the class back, so a
    ``beam_search`` module holding the three is in sys.modules while they are dumped, and only then."""
    saved = sys.modules.get("beam_search")
    module = types.ModuleType("beam_search")
    for cls in (EndToEndAccuracyProfile, OperatorAccuracyProfile, AccSample):
        setattr(module, cls.__name__, cls)
    sys.modules["beam_search"] = module
    try:
        yield
    finally:
        if saved is None:
            del sys.modules["beam_search"]
        else:
            sys.modules["beam_search"] = saved


def _profiles_pickle(instance: PrototypeInstance) -> bytes:
    """The pickle in the shape of the shipped one: the end-to-end table and one profile per operator."""
    table = dict(instance.accuracy)
    own: dict[str, dict[str, float]] = {}  # an operator's own accuracy: the mean of the rows running it
    per_operator = []
    for j, op in enumerate(TABLE_OPERATORS):
        listed = [v for v in BASE_MS[op] if (op, v) not in UNPROFILED]
        own[op] = {v: round(float(np.mean([a for c, a in table.items() if c[j] == v])), 3) for v in listed}
        samples = {v: [AccSample([], own[op][v])] for v in listed}
        per_operator.append(OperatorAccuracyProfile(op, None, samples, {v: BASE_MS[op][v] for v in listed}))
    sink_samples = [AccSample([own[op][v] for op, v in zip(TABLE_OPERATORS, combo)], a) for combo, a in table.items()]
    per_operator.append(OperatorAccuracyProfile(SINK, list(TABLE_OPERATORS), {"default": sink_samples},
                                                {"default": BASE_MS[SINK]["default"]}))
    data = {"end_to_end_profile": EndToEndAccuracyProfile(list(TABLE_OPERATORS), table),
            "per_operator_profiles": per_operator}
    with _beam_search_importable():
        return pickle.dumps(data, protocol=4)


# ---------------------------------------------------------------------------------------------
# Writing the directory
# ---------------------------------------------------------------------------------------------
def _csv_lines(rows: Sequence[Sequence[object]]) -> str:
    return "\n".join(",".join(_field(f) for f in row) for row in rows) + "\n"


def _field(value: object) -> str:
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as the same float
    return str(value)


def _execution_profile(instance: PrototypeInstance) -> str:
    lines = []
    for op, variants in BASE_MS.items():
        for w in instance.workers:
            for var in variants:
                ms = w.latency_ms.get((op, var))
                # The prototype's pandas writes a missing latency (NaN) as an empty field.
                line = f"{op},{w.name},{var},{'' if ms is None else repr(ms)}"
                if (op, w.name, var) in instance.trailing_comma_rows:
                    line += ","
                lines.append(line)
    return "\n".join(lines) + "\n"


def _partition_json(instance: PrototypeInstance) -> str:
    """One tier a line, lowest first, as the shipped file lays it out."""
    tiers = [json.dumps([w.name for w in instance.workers if w.tier == t]) for t in range(len(instance.tiers))]
    return "[\n" + ",\n".join(f"    {line}" for line in tiers) + "\n]"


def write_instance(directory: Path, instance: PrototypeInstance) -> None:
    """Write ``instance`` as the prototype's optimizer input directory (created if needed; files of
    the same names are replaced, others left alone)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "logical_graph.csv": _csv_lines(EDGES),
        "input_injection_rates.csv": _csv_lines(list(instance.rates.items())),
        "throughput_normalization_ratios.csv": _csv_lines([(u, v, r) for (u, v), r in instance.ratios.items()]),
        "execution_profile.csv": _execution_profile(instance),
        "message_sizes.csv": _csv_lines([(*key, kb) for key, kb in instance.sizes.items()]),
        "workers_specs.csv": _csv_lines([(w.name, w.price) for w in instance.workers]),
        "workers_workers_link.csv": _csv_lines([(a, b, c) for (a, b), c in instance.worker_links.items()]),
        "sources_workers_link.csv": _csv_lines([(s, w, c) for (s, w), c in instance.source_links.items()]),
        "workers_partition.json": _partition_json(instance),
        "accuracy_requirement.json": json.dumps({"sink": SINK, "threshold": instance.threshold}, indent=4),
        "config.yaml": (f"INPUT:\n  LATENCY_OVERESTIMATE_RATIO: {instance.overestimate!r}\n"
                        f"  COMM_COST_SCALING_FACTOR: {instance.comm_scale!r}\n" + CONFIG_TAIL),
    }
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    (directory / "nodes_accuracy_profiles.pkl").write_bytes(_profiles_pickle(instance))


def write_prototype_instance(directory: Path, seed: int, workers: int, tiers: int = 4, **options: float) -> None:
    """Write a prototype optimizer input directory of ``workers`` workers over ``tiers`` (2..4) tiers.

    The same arguments always give the same files; ``options`` are generate_prototype_instance's.
    """
    write_instance(directory, generate_prototype_instance(seed, workers, tiers, **options))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m jellybean.planner.prototype_instances",
        description="Write a prototype optimizer input directory (jellybean plan --jellybean-inputs DIR).",
    )
    parser.add_argument("out_dir", type=Path, help="directory to write (created if needed)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--tiers", type=int, default=4, choices=sorted(TIER_KINDS))
    parser.add_argument("--load", type=float, default=0.45, help="share of the fleet's compute the work needs")
    parser.add_argument("--missing-links", type=float, default=0.0, help="share of upward pairs left unpriced")
    parser.add_argument("--link-spread", type=float, default=0.1, help="lognormal sigma of each pair's $/GB")
    parser.add_argument("--site-spread", type=float, default=0.2, help="lognormal sigma of each site's $/GB")
    args = parser.parse_args(argv)
    try:
        instance = generate_prototype_instance(args.seed, args.workers, args.tiers, load=args.load,
                                               missing_links=args.missing_links, link_spread=args.link_spread,
                                               site_spread=args.site_spread)
    except ValueError as exc:
        parser.error(str(exc))
    write_instance(args.out_dir, instance)
    print(f"{args.out_dir}: {instance.summary()}")


if __name__ == "__main__":
    main()
