"""The shipped YAML (tiers/, configs/) loads and hangs together; bad files give precise errors.

Every error line has the shape ``file: path.to.field: what is wrong, what to do``.
"""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import pytest
import yaml

from jellybean.errors import SpecError
from jellybean.spec.base import load_model
from jellybean.spec.hardware import Hardware, HardwareCatalog, hardware_files, merge_catalogs
from jellybean.spec.infrastructure import Infrastructure
from jellybean.spec.workflow import Workflow
from jellybean.spec.zoo import Profile, Variant, Zoo

ROOT = Path(__file__).resolve().parents[2]
TIERS = ROOT / "tiers"
CONFIGS = ROOT / "configs"
VQA_DATA = Path("/work/shared/data/jellybean-vqa")

MODELS = {"hardware": HardwareCatalog, "workflow": Workflow, "model-zoo": Zoo, "infrastructure": Infrastructure}
SHIPPED = sorted([*TIERS.glob("*.yaml"), *CONFIGS.rglob("*.yaml")])
EXAMPLES = ("aicity", "vqa")


def load_any(path: Path):
    kind = yaml.safe_load(path.read_text(encoding="utf-8"))["kind"]
    return load_model(MODELS[kind], path)


def load_catalog(infra_path: Path, infra: Infrastructure) -> dict[str, Hardware]:
    """The hardware an infrastructure file refers to, resolved relative to that file."""
    catalogs = []
    for entry in infra.hardware_catalog:
        for f in hardware_files((infra_path.parent / entry).resolve()):
            catalogs.append((str(f), load_model(HardwareCatalog, f)))
    return merge_catalogs(catalogs)


def load_example(name: str) -> tuple[Workflow, Zoo, Infrastructure, dict[str, Hardware]]:
    d = CONFIGS / name
    infra = load_model(Infrastructure, d / "infrastructure.yaml")
    return (
        load_model(Workflow, d / "workflow.yaml"),
        load_model(Zoo, d / "zoo.yaml"),
        infra,
        load_catalog(d / "infrastructure.yaml", infra),
    )


def capacity(profile: Profile, max_batch_latency_ms: float | None) -> float:
    """Items/s of one worker: the profiled throughput at the largest batch whose batch latency
    fits the operator's bound, else 1000 / latency_ms (batch 1)."""
    best = 1000.0 / profile.latency_ms
    if max_batch_latency_ms is not None:
        for batch, rate in sorted(profile.throughput.items()):
            if batch / rate * 1000.0 <= max_batch_latency_ms:
                best = max(best, rate)
    return best


def accuracy_of(zoo: Zoo, assignment: dict[str, str]) -> float:
    value = 1.0
    for op, var in assignment.items():
        factor = zoo.operator(op).variant(var).accuracy
        value *= factor if factor is not None else 1.0
    return value


# -- every shipped file loads ------------------------------------------------------------------


def test_shipped_files_exist() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in SHIPPED}
    expected = {f"tiers/{t}.yaml" for t in ("edge", "hub", "edge-dc", "cloud")}
    expected |= {f"configs/{e}/{f}.yaml" for e in EXAMPLES for f in ("workflow", "zoo", "infrastructure")}
    expected.add("configs/vqa/hardware.yaml")
    assert expected <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shipped_yaml_loads(path: Path) -> None:
    load_any(path)


def test_tier_files_hold_their_tier() -> None:
    for tier in ("edge", "hub", "edge-dc", "cloud"):
        catalog = load_model(HardwareCatalog, TIERS / f"{tier}.yaml")
        for h in catalog.hardware:
            assert h.tier == tier, h.name
            assert h.price_per_hour > 0 and h.price_source, h.name
    merged = merge_catalogs([(str(f), load_model(HardwareCatalog, f)) for f in hardware_files(TIERS)])
    readme = (TIERS / "README.md").read_text(encoding="utf-8")
    for name, h in merged.items():
        assert f"`{name}`" in readme, f"tiers/README.md does not list {name}"
        assert f"{h.price_per_hour:g}" in readme or f"{h.price_per_hour:.4f}" in readme, name


# -- the files of each example agree with each other -------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_is_consistent(example: str) -> None:
    workflow, zoo, infra, catalog = load_example(example)
    assert {o.name for o in workflow.operators} == {o.name for o in zoo.operators}
    source_names = {s.name for s in workflow.sources}
    for site in infra.sites:
        assert set(site.sources) <= source_names, site.name
        for hw in site.hardware:
            assert hw in catalog, f"{site.name}: {hw}"
            assert catalog[hw].tier == site.tier, f"{site.name}: {hw} is a {catalog[hw].tier} machine"
    assert any(site.sources for site in infra.sites)
    hardware_in_use = {hw for site in infra.sites for hw in site.hardware}
    for op in zoo.operators:
        for v in op.variants:
            assert v.profiles, f"{op.name}/{v.name} has no profiles"
            for hw, profile in v.profiles.items():
                assert hw in catalog, f"{op.name}/{v.name}: unknown hardware {hw}"
                assert v.memory_mb <= catalog[hw].memory_mb, f"{op.name}/{v.name} does not fit {hw}"
            assert set(v.profiles) & hardware_in_use, f"{op.name}/{v.name} runs on no deployed hardware"


# -- AI City: profiles are complete and plausible, and the city is feasible --------------------

GPU_BATCHES = {1, 4, 8}


def is_gpu(h: Hardware) -> bool:
    return any(ep in h.execution_providers for ep in ("TensorrtExecutionProvider", "CUDAExecutionProvider"))


def test_aicity_zoo_profiles_every_tier_machine() -> None:
    _, zoo, _, catalog = load_example("aicity")
    for op in zoo.operators:
        for v in op.variants:
            expected = {hw for hw, h in catalog.items() if is_gpu(h) or v.precision != "fp16"}
            assert set(v.profiles) == expected, f"{op.name}/{v.name}"
            for hw, p in v.profiles.items():
                if v.model is None:  # built-in operators: one item at a time on the host CPU
                    continue
                if is_gpu(catalog[hw]):
                    assert set(p.throughput) == GPU_BATCHES, f"{op.name}/{v.name}@{hw}"
                if p.throughput:
                    rates = [p.throughput[b] for b in sorted(p.throughput)]
                    assert rates == sorted(rates), f"{op.name}/{v.name}@{hw}: throughput falls with batch"
                    assert p.throughput[1] == pytest.approx(1000 / p.latency_ms, rel=0.02), f"{op.name}/{v.name}@{hw}"


def test_aicity_gpu_speed_ratios() -> None:
    """A Jetson Orin Nano is ~5-10x slower than a T4; int8 and fp16 beat fp32 on GPUs."""
    _, zoo, _, _ = load_example("aicity")
    for op in ("detect", "reid"):
        for v in zoo.operator(op).variants:
            ratio = v.profiles["jetson-orin-nano-8gb"].latency_ms / v.profiles["g4dn.xlarge"].latency_ms
            assert 5 <= ratio <= 10, f"{v.name}: Nano/T4 = {ratio:.1f}"
    det = zoo.operator("detect")
    for hw in ("jetson-orin-nano-8gb", "edc-t4-server", "g4dn.xlarge", "g5.xlarge"):
        fp32 = det.variant("det-w100-fp32").profiles[hw].latency_ms
        assert det.variant("det-w100-fp16").profiles[hw].latency_ms < fp32
        assert det.variant("det-w100-int8").profiles[hw].latency_ms < det.variant("det-w100-fp16").profiles[hw].latency_ms


def test_aicity_accuracy_target_is_reachable_and_binding() -> None:
    workflow, zoo, _, _ = load_example("aicity")
    target = workflow.slo.accuracy
    combos = [
        {o.name: v for o, v in zip(zoo.operators, names)}
        for names in __import__("itertools").product(*[[v.name for v in o.variants] for o in zoo.operators])
    ]
    values = [accuracy_of(zoo, c) for c in combos]
    assert 0 < target < 1
    assert max(values) >= target + 0.02
    assert min(values) < target
    # The cheapest detector can not meet the target whatever re-ID model follows it.
    assert all(v < target for c, v in zip(combos, values) if c["detect"] == "det-w050-int8")


def test_aicity_has_the_brief_shape() -> None:
    workflow, _, infra, _ = load_example("aicity")
    camera = workflow.source("camera")
    assert (camera.rate, camera.item_kb) == (10, 60)
    assert [o.name for o in workflow.topological_operators()] == ["detect", "reid", "track", "associate"]
    assert workflow.edge("detect", "reid").ratio == 4
    assert workflow.edge("track", "associate").ratio == 0.25
    tiers = [s.tier for s in infra.sites]
    assert (tiers.count("edge"), tiers.count("hub"), tiers.count("edge-dc"), tiers.count("cloud")) == (10, 3, 1, 1)
    assert sum(s.streams_at()["camera"].count for s in infra.sites if "camera" in s.sources) == 40


def aicity_rates(workflow: Workflow, cameras: int) -> dict[str, float]:
    rates = {"camera": cameras * workflow.source("camera").rate}
    for op in workflow.topological_operators():
        rates[op.name] = min(rates[i] * workflow.edge(i, op.name).ratio for i in op.inputs)
    return rates


def test_aicity_compute_is_feasible() -> None:
    """With every variant that can meet the accuracy target, the city's workers comfortably exceed
    the load of 40 cameras at 10 fps, and the edge DC alone can take the int8/fp16 detector load."""
    workflow, zoo, infra, _ = load_example("aicity")
    rates = aicity_rates(workflow, cameras=40)
    assert rates["detect"] == 400 and rates["reid"] == 1600

    def total(op: str, variant: str, tiers: set[str]) -> float:
        o = workflow.operator(op)
        bound = o.batching.max_batch_latency_ms if o.batching else None
        v = zoo.operator(op).variant(variant)
        return sum(
            hw.count * capacity(v.profiles[name], bound)
            for site in infra.sites
            if site.tier in tiers
            for name, hw in site.hardware_at().items()
            if name in v.profiles
        )

    everywhere = {"edge", "hub", "edge-dc", "cloud"}
    for det in ("det-w100-fp32", "det-w100-fp16", "det-w100-int8", "det-w100-pruned50"):
        assert total("detect", det, everywhere) >= 3 * rates["detect"], det
    for reid in ("reid-fp32", "reid-fp16", "reid-int8"):
        assert total("reid", reid, everywhere) >= 3 * rates["reid"], reid
    assert total("track", "sort", everywhere) >= 3 * rates["track"]
    assert total("associate", "greedy-cosine", everywhere) >= 3 * rates["associate"]
    # Without the cloud: the edge DC's T4s carry the accurate int8/fp16 detector and re-ID.
    below_cloud = {"edge", "hub", "edge-dc"}
    assert total("detect", "det-w100-int8", below_cloud) >= 1.5 * rates["detect"]
    assert total("detect", "det-w100-fp16", below_cloud) >= 1.5 * rates["detect"]
    assert total("reid", "reid-fp16", below_cloud) >= 1.5 * rates["reid"]
    # A Jetson Orin Nano alone cannot run the accurate detector for its 4 cameras: a real trade-off.
    nano = zoo.operator("detect").variant("det-w100-int8").profiles["jetson-orin-nano-8gb"]
    assert capacity(nano, workflow.operator("detect").batching.max_batch_latency_ms) < 40


def test_aicity_links_carry_raw_frames_at_a_price() -> None:
    """All 40 raw streams can reach the cloud, but not for free; per-intersection uplinks carry
    their own 4 cameras."""
    workflow, _, infra, _ = load_example("aicity")
    kbps_to_mbps = 8 * 1024 / 1e6
    cam = workflow.source("camera")
    raw_mbps = {s.name: s.streams_at()["camera"].count * cam.rate * cam.item_kb * kbps_to_mbps
                for s in infra.sites if "camera" in s.sources}
    links = {(link.from_, link.to): link for link in infra.links}
    tier = {s.name: s.tier for s in infra.sites}
    hub_load: dict[str, float] = {}
    for site, mbps in raw_mbps.items():
        (up,) = [link for (a, _), link in links.items() if a == site]
        assert mbps <= 0.5 * up.bandwidth_mbps, site
        hub_load[up.to] = hub_load.get(up.to, 0.0) + mbps
    edc = next(s.name for s in infra.sites if s.tier == "edge-dc")
    cloud = next(s.name for s in infra.sites if s.tier == "cloud")
    for hub, mbps in hub_load.items():
        assert tier[hub] == "hub"
        assert mbps <= 0.5 * links[(hub, edc)].bandwidth_mbps, hub
    total = sum(raw_mbps.values())
    assert total == pytest.approx(196.608)
    assert total <= 0.5 * links[(edc, cloud)].bandwidth_mbps
    # The free Internet uplinks cannot carry it all: raw frames to the cloud cost network.
    free_into_cloud = sum(link.bandwidth_mbps for (a, b), link in links.items() if b == cloud and link.cost_per_gb == 0)
    assert free_into_cloud < total
    assert links[(edc, cloud)].cost_per_gb > 0 and all(links[(h, edc)].cost_per_gb > 0 for h in hub_load)


def test_aicity_latency_bound_is_meetable() -> None:
    workflow, zoo, infra, _ = load_example("aicity")
    links = {(link.from_, link.to): link.latency_ms for link in infra.links}
    route = ("int-01", "hub-1", "edge-dc", "aws-us-east-1")
    link_ms = sum(links[(a, b)] for a, b in zip(route, route[1:]))
    compute_ms = sum(
        o.batching.max_batch_latency_ms if o.batching
        else max(p.latency_ms for v in zoo.operator(o.name).variants for p in v.profiles.values())
        for o in workflow.operators
    )
    assert link_ms + compute_ms <= 0.75 * workflow.slo.latency_ms


# -- VQA: a faithful copy of the prototype's inputs --------------------------------------------


def test_vqa_matches_the_prototype_shape() -> None:
    workflow, zoo, infra, catalog = load_example("vqa")
    assert [(s.name, s.rate) for s in workflow.sources] == [("ReadImage", 40), ("ReadSpeech", 40)]
    assert workflow.source("ReadImage").item_kb == pytest.approx(794.03, abs=0.01)
    assert workflow.source("ReadSpeech").item_kb == pytest.approx(97.07, abs=0.01)
    assert workflow.operator("VQA").join == "zip"
    assert workflow.slo.accuracy == 56.0
    assert len(catalog) == 9
    assert {s.name: s.tier for s in infra.sites} == {"tier0": "edge", "tier1": "cloud"}
    assert set(infra.site("tier0").sources) == {"ReadImage", "ReadSpeech"}
    (link,) = infra.links
    assert (link.from_, link.to, link.cost_per_gb, link.bandwidth_mbps, link.both_ways) == ("tier0", "tier1", 0.1, None, False)
    table = zoo.accuracy_table
    assert table.operators == ("ExtractImageFeature", "SpeechRecognition")
    measured = {
        ("resnet18", "wav2vec2-base-960h"): 54.02, ("resnet18", "wav2vec2-large-960h-lv60-self"): 56.59,
        ("resnet34", "wav2vec2-base-960h"): 54.37, ("resnet34", "wav2vec2-large-960h-lv60-self"): 56.85,
        ("resnet50", "wav2vec2-base-960h"): 55.42, ("resnet50", "wav2vec2-large-960h-lv60-self"): 57.94,
        ("resnet101", "wav2vec2-base-960h"): 55.91, ("resnet101", "wav2vec2-large-960h-lv60-self"): 58.19,
        ("resnet152", "wav2vec2-base-960h"): 55.76, ("resnet152", "wav2vec2-large-960h-lv60-self"): 58.33,
    }
    assert {row.variants: row.accuracy for row in table.rows} == measured
    out = {v.name: v.output_kb for v in zoo.operator("ExtractImageFeature").variants}
    assert out == {"resnet18": 2.00390625, "resnet34": 2.00390625, "resnet50": 8.00390625,
                   "resnet101": 8.00390625, "resnet152": 8.00390625}
    assert workflow.edge("SpeechRecognition", "VQA").item_kb == pytest.approx(0.10)
    assert all(v.accuracy is None for o in zoo.operators for v in o.variants)


needs_vqa_data = pytest.mark.skipif(not VQA_DATA.is_dir(), reason="the prototype's VQA inputs are not here")


def _csv(name: str) -> list[list[str]]:
    with (VQA_DATA / name).open(newline="") as f:
        return [[c for c in row if c != ""] for row in csv.reader(f) if row]


@needs_vqa_data
def test_vqa_numbers_equal_the_prototype_files() -> None:
    workflow, zoo, infra, catalog = load_example("vqa")
    for op, worker, variant, latency in _csv("execution_profile.csv"):
        assert zoo.operator(op).variant(variant).profiles[worker].latency_ms == float(latency)
    assert sum(len(v.profiles) for o in zoo.operators for v in o.variants) == len(_csv("execution_profile.csv"))
    assert {name: float(price) for name, price in _csv("workers_specs.csv")} == {
        n: h.price_per_hour for n, h in catalog.items()
    }
    partition = json.loads((VQA_DATA / "workers_partition.json").read_text())
    assert [sorted(infra.site(s).hardware) for s in ("tier0", "tier1")] == [sorted(p) for p in partition]
    assert all(count == 1 for s in infra.sites for count in s.hardware.values())
    for src, dst, src_var, _dst_var, kb in _csv("message_sizes.csv"):
        if workflow.source(src):
            assert workflow.source(src).item_kb == float(kb)
        elif src_var != "default":
            assert zoo.operator(src).variant(src_var).output_kb == float(kb)
        else:
            assert workflow.edge(src, dst).item_kb == float(kb)
    assert {(s.name, s.rate) for s in workflow.sources} == {(n, float(r)) for n, r in _csv("input_injection_rates.csv")}
    assert {(i, o.name) for o in workflow.operators for i in o.inputs} == {tuple(r) for r in _csv("logical_graph.csv")}
    assert workflow.slo.accuracy == json.loads((VQA_DATA / "accuracy_requirement.json").read_text())["threshold"]


class _Stub:
    """Stands in for the prototype's profile classes; holds constructor args and state."""

    def __new__(cls, *args):
        obj = object.__new__(cls)
        obj.args = args
        return obj


class _ProfileUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "beam_search" and name in ("EndToEndAccuracyProfile", "OperatorAccuracyProfile", "AccSample"):
            return type(name, (_Stub,), {})
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


@needs_vqa_data
def test_vqa_accuracy_table_equals_the_pickle() -> None:
    _, zoo, _, _ = load_example("vqa")
    with (VQA_DATA / "nodes_accuracy_profiles.pkl").open("rb") as f:
        profiles = _ProfileUnpickler(f).load()
    e2e = profiles["end_to_end_profile"]
    assert tuple(e2e.operators) == zoo.accuracy_table.operators
    assert dict(e2e.acc_profile) == {row.variants: row.accuracy for row in zoo.accuracy_table.rows}


# -- bad files: each error names the file, the path and the fix --------------------------------


def problems(model, path: Path, text: str) -> list[str]:
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_model(model, path)
    return info.value.problems


WORKFLOW_HEAD = "kind: workflow\nname: w\nsources:\n  - {name: camera, rate: 10, item_kb: 60}\n"


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    f = tmp_path / "workflow.yaml"
    text = WORKFLOW_HEAD + "operators:\n  - {name: detect, inputs: [camera], batchng: {max_batch_latency_ms: 50}}\n"
    assert problems(Workflow, f, text) == [
        f"{f}: operators[0].batchng: unknown key 'batchng'; did you mean 'batching'?"
    ]


def test_unknown_key_in_hardware_profile(tmp_path: Path) -> None:
    f = tmp_path / "hw.yaml"
    text = "kind: hardware\nhardware:\n  - {name: x, tier: edge, price_per_hour: 0.1, memory_mb: 10, price_sourse: me}\n"
    assert problems(HardwareCatalog, f, text) == [
        f"{f}: hardware[0].price_sourse: unknown key 'price_sourse'; did you mean 'price_source'?"
    ]


def test_negative_rate_names_the_field(tmp_path: Path) -> None:
    f = tmp_path / "workflow.yaml"
    text = WORKFLOW_HEAD + "  - {name: radar, rate: -5, item_kb: 1}\noperators:\n  - {name: detect, inputs: [camera]}\n"
    assert problems(Workflow, f, text) == [
        f"{f}: sources[1].rate: input should be greater than 0 (got -5); use a larger value"
    ]


def test_negative_latency_in_zoo_profile_names_the_field(tmp_path: Path) -> None:
    f = tmp_path / "zoo.yaml"
    text = (
        "kind: model-zoo\nname: z\noperators:\n  - name: detect\n    variants:\n"
        "      - name: det-a\n        profiles: {g4dn.xlarge: {latency_ms: -3}}\n"
    )
    assert problems(Zoo, f, text) == [
        f"{f}: operators[0].variants[0].profiles.g4dn.xlarge.latency_ms: "
        "input should be greater than or equal to 0.000001 (got -3); use a larger value"
    ]


def test_edge_to_an_unknown_operator(tmp_path: Path) -> None:
    f = tmp_path / "workflow.yaml"
    text = WORKFLOW_HEAD + (
        "operators:\n  - {name: detect, inputs: [camera]}\n  - {name: reid, inputs: [detect]}\n"
        "edges:\n  - {from: detect, to: reid, ratio: 4}\n  - {from: detect, to: reidd, ratio: 4}\n"
    )
    assert problems(Workflow, f, text) == [
        f"{f}: edges[1].to: unknown operator 'reidd'; did you mean 'reid'? (known: detect, reid)"
    ]


def test_edge_between_known_nodes_that_are_not_connected(tmp_path: Path) -> None:
    f = tmp_path / "workflow.yaml"
    text = WORKFLOW_HEAD + (
        "operators:\n  - {name: detect, inputs: [camera]}\n  - {name: reid, inputs: [detect]}\n"
        "edges:\n  - {from: camera, to: reid, ratio: 4}\n"
    )
    assert problems(Workflow, f, text) == [
        f"{f}: edges[0]: no operator lists 'camera' as an input of 'reid'; "
        "add it to that operator's inputs or correct the names"
    ]


def test_input_from_an_unknown_node_suggests_a_name(tmp_path: Path) -> None:
    f = tmp_path / "workflow.yaml"
    text = WORKFLOW_HEAD + "operators:\n  - {name: detect, inputs: [camera]}\n  - {name: reid, inputs: [detcet]}\n"
    assert problems(Workflow, f, text) == [
        f"{f}: operators[1].inputs[0]: unknown input 'detcet'; did you mean 'detect'? (known: camera, detect, reid)"
    ]


def test_link_down_a_tier_needs_both_ways(tmp_path: Path) -> None:
    f = tmp_path / "infra.yaml"
    text = (
        "kind: infrastructure\nname: i\nsites:\n  - {name: int-01, tier: edge}\n  - {name: dc, tier: edge-dc}\n"
        "  - {name: cloud, tier: cloud}\nlinks:\n  - {from: int-01, to: dc}\n  - {from: cloud, to: dc}\n"
    )
    assert problems(Infrastructure, f, text) == [
        f"{f}: links[1]: goes from tier cloud down to tier edge-dc; data moves towards higher tiers: "
        "swap from/to, or set `both_ways: true` to allow it"
    ]
    # ... and with both_ways it loads.
    f.write_text(text.replace("{from: cloud, to: dc}", "{from: cloud, to: dc, both_ways: true}"), encoding="utf-8")
    assert load_model(Infrastructure, f).links[1].both_ways


def test_cycle_is_named(tmp_path: Path) -> None:
    f = tmp_path / "workflow.yaml"
    text = WORKFLOW_HEAD + (
        "operators:\n  - {name: detect, inputs: [camera, track]}\n  - {name: reid, inputs: [detect]}\n"
        "  - {name: track, inputs: [reid]}\n"
    )
    assert problems(Workflow, f, text) == [
        f"{f}: operators: the workflow has a cycle (detect -> reid -> track -> detect); remove one of its inputs"
    ]


def test_accuracy_table_row_of_the_wrong_length(tmp_path: Path) -> None:
    f = tmp_path / "zoo.yaml"
    text = (
        "kind: model-zoo\nname: z\noperators:\n"
        "  - {name: a, variants: [{name: a1}, {name: a2}]}\n  - {name: b, variants: [{name: b1}]}\n"
        "accuracy_table:\n  operators: [a, b]\n  rows:\n"
        "    - {variants: [a1, b1], accuracy: 50}\n    - {variants: [a2], accuracy: 51}\n"
    )
    assert problems(Zoo, f, text) == [
        f"{f}: accuracy_table.rows[1].variants: has 1 variant(s) but the table covers 2 operator(s) (a, b); "
        "give one variant per operator"
    ]


def test_accuracy_table_unknown_variant(tmp_path: Path) -> None:
    f = tmp_path / "zoo.yaml"
    text = (
        "kind: model-zoo\nname: z\noperators:\n"
        "  - {name: a, variants: [{name: resnet18}, {name: resnet34}]}\n  - {name: b, variants: [{name: b1}]}\n"
        "accuracy_table:\n  operators: [a, b]\n  rows:\n    - {variants: [resnet43, b1], accuracy: 50}\n"
    )
    assert problems(Zoo, f, text) == [
        f"{f}: accuracy_table.rows[0].variants[0]: unknown variant of a 'resnet43'; did you mean 'resnet34'? "
        "(known: resnet18, resnet34)"
    ]


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "workflow.yaml"
    text = "kind: workflow\nname: w\nsources:\n  - name: camera\n   rate: 10\n"
    assert problems(Workflow, f, text) == [
        f"{f}: line 5, column 4: invalid YAML (while parsing a block collection at line 4, column 3: "
            "did not find expected '-' indicator); "
        "fix the syntax there"
    ]


@pytest.mark.parametrize("text", ["", "# only a comment\n\n"], ids=["empty", "comment-only"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    f = tmp_path / "infra.yaml"
    assert problems(Infrastructure, f, text) == [
        f"{f}: (top level): the file is empty; write the spec as a YAML mapping"
    ]


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    f = tmp_path / "hw.yaml"
    text = (
        "kind: hardware\nhardware:\n  - {name: a, tier: edge, price_per_hour: -1, memory_mb: 10}\n"
        "  - {name: b, tier: fog, price_per_hour: 0.1, memory_mb: 0}\n"
    )
    got = problems(HardwareCatalog, f, text)
    assert got[0] == f"{f}: hardware[0].price_per_hour: input should be greater than or equal to 0 (got -1); use a larger value"
    assert any(p.startswith(f"{f}: hardware[1].tier: input should be 'edge', 'hub', 'edge-dc' or 'cloud'") for p in got)
    assert f"{f}: hardware[1].memory_mb: input should be greater than 0 (got 0); use a larger value" in got
    assert len(got) == 3
