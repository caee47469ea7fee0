"""The importer of the reference prototype's optimizer input directory."""

from __future__ import annotations

import builtins
import os
import pickle
import shutil
from pathlib import Path

import pytest

from jellybean.errors import JellyBeanError, SpecError
from jellybean.planner.jellybean_format import jellybean_json, load_jellybean_inputs
from jellybean.planner.problem import KB_PER_S_TO_GB_PER_H, Problem
from jellybean.spec.plan import Plan

VQA_DIR = Path(__file__).resolve().parents[2] / "examples/vqa/prototype_inputs"

needs_vqa = pytest.mark.skipif(not VQA_DIR.is_dir(), reason=f"the shipped VQA inputs are not at {VQA_DIR}")

CPU = [f"workflow-compute-cpu-{i}" for i in range(1, 7)]
GPU = [f"workflow-compute-gpu-{i}" for i in range(1, 4)]


@pytest.fixture(scope="module")
def vqa() -> Problem:
    if not VQA_DIR.is_dir():
        pytest.skip(f"the shipped VQA inputs are not at {VQA_DIR}")
    return load_jellybean_inputs(VQA_DIR)


@pytest.fixture
def vqa_copy(tmp_path: Path) -> Path:
    if not VQA_DIR.is_dir():
        pytest.skip(f"the shipped VQA inputs are not at {VQA_DIR}")
    target = tmp_path / "vqa"
    shutil.copytree(VQA_DIR, target)
    for f in target.iterdir():
        f.chmod(0o644)
    return target


def link(p: Problem, src: str, dst: str):
    return next((l for l in p.links if (l.src, l.dst) == (src, dst)), None)


# -- the shipped VQA directory -----------------------------------------------------------------
def test_vqa_locations_pools_and_streams(vqa: Problem) -> None:
    assert [loc.name for loc in vqa.locations] == ["sources", *CPU, *GPU]
    assert vqa.location("sources").tier == 0 and vqa.location("sources").tier_name == "tier-0"
    assert {vqa.location(w).tier for w in CPU[:5]} == {0}
    assert {vqa.location(w).tier for w in [CPU[5], *GPU]} == {1}
    # Every worker differs from the others (price, latencies), so each is its own class.
    assert all(p.count == 1 and p.members == (p.name,) and p.hardware == p.name for p in vqa.pools)
    assert vqa.pool("workflow-compute-cpu-6").price == pytest.approx(2.305)
    assert [(s.source, s.location, s.rate) for s in vqa.streams] == [
        ("ReadImage", "sources", 40.0), ("ReadSpeech", "sources", 40.0)]
    assert vqa.transit is False
    assert vqa.source_tier == {"ReadImage": 0, "ReadSpeech": 0}


def test_vqa_operators_rates_and_edges(vqa: Problem) -> None:
    assert [o.name for o in vqa.operators] == ["ExtractImageFeature", "SpeechRecognition", "VQA"]
    assert all(o.rate == pytest.approx(40.0) for o in vqa.operators)
    assert vqa.operator("ExtractImageFeature").variants == (
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
    assert vqa.operator("VQA").variants == ("default",)
    assert [e.name for e in vqa.edges] == [
        "ReadImage->ExtractImageFeature", "ReadSpeech->SpeechRecognition",
        "ExtractImageFeature->VQA", "SpeechRecognition->VQA"]
    image, _, features, text = vqa.edges
    assert image.rate == pytest.approx(40.0)
    assert image.item_kb == pytest.approx(794.0348300933838)
    assert image.size("default", "resnet50") == pytest.approx(794.0348300933838)
    assert features.size("resnet18", "default") == pytest.approx(2.00390625)
    assert features.size("resnet152", "default") == pytest.approx(8.00390625)
    assert text.size("wav2vec2-base-960h", "default") == pytest.approx(0.10)


def test_vqa_links_follow_the_tiers(vqa: Problem) -> None:
    # COMM_COST_SCALING_FACTOR 0.1 in config.yaml × 1.0 $/GB in the csv files.
    assert link(vqa, "sources", "workflow-compute-gpu-1").cost_per_gb == pytest.approx(0.1)
    assert link(vqa, "sources", "workflow-compute-cpu-1").cost_per_gb == 0.0  # tier 0: free
    assert link(vqa, "workflow-compute-cpu-2", "workflow-compute-gpu-3").cost_per_gb == pytest.approx(0.1)
    assert link(vqa, "workflow-compute-cpu-1", "workflow-compute-cpu-5").cost_per_gb == 0.0  # same tier
    assert link(vqa, "workflow-compute-gpu-1", "workflow-compute-cpu-6").cost_per_gb == 0.0  # same tier
    # The csv prices gpu-1 -> cpu-1 at 10 $/GB, but no traffic goes to a lower tier.
    assert link(vqa, "workflow-compute-gpu-1", "workflow-compute-cpu-1") is None
    assert len(vqa.links) == 9 + 5 * 4 + 5 * 4 + 4 * 3


def test_vqa_capabilities_and_accuracy(vqa: Problem) -> None:
    cap = vqa.capability("VQA", "default", "workflow-compute-gpu-1")
    assert cap.latency_ms == pytest.approx(4.585967833333333)
    assert cap.capacity == pytest.approx(1000 / 4.585967833333333)
    # Line 5 of execution_profile.csv ends in a trailing comma and still counts.
    assert vqa.capability("SpeechRecognition", "wav2vec2-base-960h", "workflow-compute-cpu-3").latency_ms == \
        pytest.approx(107.50537608333333)
    assert len(vqa.capabilities) == 9 * (2 + 5 + 1)
    assert vqa.accuracy.target == 56.0
    (table,) = vqa.accuracy.tables
    assert table.operators == ("ExtractImageFeature", "SpeechRecognition")
    assert len(table.rows) == 10
    assert table.rows[("resnet18", "wav2vec2-large-960h-lv60-self")] == pytest.approx(56.59)
    assert vqa.accuracy.of({"ExtractImageFeature": "resnet152", "SpeechRecognition": "wav2vec2-base-960h",
                            "VQA": "default"}) == pytest.approx(55.76)


def test_vqa_known_optimum_costs_what_the_readme_says(vqa: Problem) -> None:
    """The README's exact optimum (7.4850 $/h) priced with the imported data only."""
    sr, ext = "wav2vec2-large-960h-lv60-self", "resnet18"
    cpu = dict(zip(range(1, 7), CPU))
    # ExtractImageFeature on cpu-5, cpu-2, cpu-1 (tier 0); SpeechRecognition on gpu-1 and cpu-4;
    # VQA on cpu-6. cpu-4 runs at its capacity, gpu-1 takes the rest.
    assert sum(vqa.capability("ExtractImageFeature", ext, cpu[i]).capacity for i in (5, 2, 1)) >= 40
    on_cpu4 = vqa.capability("SpeechRecognition", sr, cpu[4]).capacity
    on_gpu1 = 40 - on_cpu4
    assert on_gpu1 <= vqa.capability("SpeechRecognition", sr, GPU[0]).capacity
    assert vqa.capability("VQA", "default", cpu[6]).capacity >= 40
    compute = sum(vqa.pool(w).price for w in (cpu[5], cpu[2], cpu[1], cpu[4], GPU[0], cpu[6]))
    image, speech, features, text = vqa.edges
    kb_cost = [  # (KB/s, $/GB of the link used)
        (on_gpu1 * speech.size("default", sr), link(vqa, "sources", GPU[0]).cost_per_gb),
        (on_cpu4 * speech.size("default", sr), link(vqa, "sources", cpu[4]).cost_per_gb),
        (40 * image.size("default", ext), link(vqa, "sources", cpu[5]).cost_per_gb),
        (40 * features.size(ext, "default"), link(vqa, cpu[5], cpu[6]).cost_per_gb),
        (on_cpu4 * text.size(sr, "default"), link(vqa, cpu[4], cpu[6]).cost_per_gb),
        (on_gpu1 * text.size(sr, "default"), link(vqa, GPU[0], cpu[6]).cost_per_gb),
    ]
    network = sum(kb * KB_PER_S_TO_GB_PER_H * cost for kb, cost in kb_cost)
    assert compute == pytest.approx(6.242)
    assert network == pytest.approx(1.2430, abs=5e-5)
    assert compute + network == pytest.approx(7.4850, abs=5e-5)


def test_other_execution_profile(vqa_copy: Path) -> None:
    p = load_jellybean_inputs(vqa_copy, profile="execution_profile_p90.csv")
    assert p.capability("VQA", "default", "workflow-compute-gpu-1").latency_ms == pytest.approx(5.175540833333332)


# -- config.yaml -------------------------------------------------------------------------------
def test_latency_overestimate_ratio_scales_latency(vqa_copy: Path) -> None:
    (vqa_copy / "config.yaml").write_text(
        "INPUT:\n  LATENCY_OVERESTIMATE_RATIO: 2.0\n  COMM_COST_SCALING_FACTOR: 0.5\n")
    p = load_jellybean_inputs(vqa_copy)
    cap = p.capability("VQA", "default", "workflow-compute-gpu-1")
    assert cap.latency_ms == pytest.approx(2 * 4.585967833333333)
    assert cap.capacity == pytest.approx(1000 / (2 * 4.585967833333333))
    assert link(p, "sources", "workflow-compute-gpu-1").cost_per_gb == pytest.approx(0.5)


def test_without_config_the_prototype_defaults_apply(vqa_copy: Path) -> None:
    (vqa_copy / "config.yaml").unlink()
    p = load_jellybean_inputs(vqa_copy)
    assert link(p, "workflow-compute-cpu-1", "workflow-compute-gpu-1").cost_per_gb == pytest.approx(1.0)
    assert p.capability("VQA", "default", "workflow-compute-gpu-1").latency_ms == pytest.approx(4.585967833333333)


def test_bad_config_key_is_named(vqa_copy: Path) -> None:
    (vqa_copy / "config.yaml").write_text("INPUT:\n  COMM_COST_SCALING_FACTR: 0.1\n")
    with pytest.raises(SpecError) as err:
        load_jellybean_inputs(vqa_copy)
    assert ("config.yaml: INPUT.COMM_COST_SCALING_FACTR: unknown key; did you mean 'COMM_COST_SCALING_FACTOR'"
            in str(err.value))


# -- csv parsing -------------------------------------------------------------------------------
def test_trailing_commas_are_accepted(vqa_copy: Path) -> None:
    path = vqa_copy / "execution_profile.csv"
    path.write_text("".join(line.rstrip(",") + ",\n" for line in path.read_text().splitlines()))
    sizes = vqa_copy / "message_sizes.csv"
    sizes.write_text(sizes.read_text().replace("\n", ",\n"))
    p = load_jellybean_inputs(vqa_copy)
    assert len(p.capabilities) == 72
    assert p.edges[2].size("resnet18", "default") == pytest.approx(2.00390625)


def test_row_with_missing_field_names_file_and_line(vqa_copy: Path) -> None:
    path = vqa_copy / "execution_profile.csv"
    lines = path.read_text().splitlines()
    lines[6] = "SpeechRecognition,workflow-compute-cpu-4,107.827109"
    path.write_text("\n".join(lines))
    with pytest.raises(SpecError) as err:
        load_jellybean_inputs(vqa_copy)
    message = str(err.value)
    assert (f"{path}: line 7: expected 4 comma-separated fields (operator, worker, variant, latency_ms), found 3"
            in message)
    assert "Traceback" not in message


def test_non_number_names_file_line_and_field(vqa_copy: Path) -> None:
    path = vqa_copy / "workers_specs.csv"
    path.write_text(path.read_text().replace("workflow-compute-cpu-2,0.192", "workflow-compute-cpu-2,cheap"))
    with pytest.raises(SpecError) as err:
        load_jellybean_inputs(vqa_copy)
    assert f"{path}: line 2: price_per_hour 'cheap' is not a number; write a number" in str(err.value)


def test_unknown_worker_is_named_with_a_hint(vqa_copy: Path) -> None:
    path = vqa_copy / "sources_workers_link.csv"
    path.write_text(path.read_text() + "\nReadImage,workflow-compute-gpu-7,1.0\n")
    with pytest.raises(SpecError) as err:
        load_jellybean_inputs(vqa_copy)
    assert f"{path}: line 9: unknown worker 'workflow-compute-gpu-7'; did you mean" in str(err.value)


def test_unknown_operator_in_execution_profile(vqa_copy: Path) -> None:
    path = vqa_copy / "execution_profile.csv"
    path.write_text(path.read_text() + "\nVQAA,workflow-compute-gpu-1,default,4.5\n")
    with pytest.raises(SpecError) as err:
        load_jellybean_inputs(vqa_copy)
    assert "unknown operator 'VQAA'; did you mean 'VQA'?" in str(err.value)


def test_cycle_is_refused(vqa_copy: Path) -> None:
    path = vqa_copy / "logical_graph.csv"
    path.write_text(path.read_text() + "\nVQA,Extra\nExtra,ExtractImageFeature\n")
    with pytest.raises(SpecError) as err:
        load_jellybean_inputs(vqa_copy)
    assert f"{path}: line 3: the edges among ExtractImageFeature, VQA, Extra contain a cycle" in str(err.value)


def test_missing_file_is_named(vqa_copy: Path) -> None:
    (vqa_copy / "message_sizes.csv").unlink()
    with pytest.raises(SpecError) as err:
        load_jellybean_inputs(vqa_copy)
    assert f"{vqa_copy / 'message_sizes.csv'}: (file): not found" in str(err.value)


def test_bad_json_is_named(vqa_copy: Path) -> None:
    (vqa_copy / "workers_partition.json").write_text('[["workflow-compute-cpu-1",]]')
    with pytest.raises(SpecError) as err:
        load_jellybean_inputs(vqa_copy)
    assert "workers_partition.json: line 1, column 28: invalid JSON" in str(err.value)


def test_worker_in_no_tier_is_named(vqa_copy: Path) -> None:
    (vqa_copy / "workers_partition.json").write_text(
        '[["workflow-compute-cpu-1", "workflow-compute-cpu-2", "workflow-compute-cpu-3", "workflow-compute-cpu-4"],'
        ' ["workflow-compute-cpu-6", "workflow-compute-gpu-1", "workflow-compute-gpu-2", "workflow-compute-gpu-3"]]')
    with pytest.raises(SpecError) as err:
        load_jellybean_inputs(vqa_copy)
    assert "worker 'workflow-compute-cpu-5' (from workers_specs.csv) is in no tier" in str(err.value)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found or not a directory"):
        load_jellybean_inputs(tmp_path / "nope")


# -- the pickle --------------------------------------------------------------------------------
class _RunsCommand:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Evaluates:
    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return (builtins.eval, (self.code,))


def test_pickle_naming_os_system_is_refused_and_not_run(vqa_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = vqa_copy / "nodes_accuracy_profiles.pkl"
    path.write_bytes(pickle.dumps({"end_to_end_profile": _RunsCommand(f"touch {marker}")}))
    with pytest.raises(SpecError) as err:
        load_jellybean_inputs(vqa_copy)
    message = str(err.value)
    assert str(path) in message
    assert f"refuses to load '{os.system.__module__}.system'" in message
    assert "Traceback" not in message
    assert not marker.exists()


def test_pickle_naming_builtins_eval_is_refused_and_not_run(vqa_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = vqa_copy / "nodes_accuracy_profiles.pkl"
    path.write_bytes(pickle.dumps(_Evaluates(f"__import__('pathlib').Path({str(marker)!r}).touch()")))
    with pytest.raises(JellyBeanError) as err:
        load_jellybean_inputs(vqa_copy)
    assert isinstance(err.value, SpecError)
    assert "refuses to load 'builtins.eval'" in str(err.value)
    assert not marker.exists()


def test_truncated_pickle_is_a_clear_error(vqa_copy: Path) -> None:
    path = vqa_copy / "nodes_accuracy_profiles.pkl"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SpecError) as err:
        load_jellybean_inputs(vqa_copy)
    assert f"{path}: (pickle): not a readable accuracy profile pickle" in str(err.value)


def test_pickle_without_end_to_end_profile_is_refused(vqa_copy: Path) -> None:
    path = vqa_copy / "nodes_accuracy_profiles.pkl"
    path.write_bytes(pickle.dumps([]))
    with pytest.raises(SpecError, match="no end-to-end profile"):
        load_jellybean_inputs(vqa_copy)


# -- classes of identical workers --------------------------------------------------------------
def _rewrite_workers(d: Path, specs: dict[str, float], tiers: list[list[str]], latency_of, links: list[str],
                     source_links: list[str]) -> None:
    """Replace the VQA infrastructure by ``specs`` keeping the workflow and profiles."""
    (d / "workers_specs.csv").write_text("".join(f"{w},{p}\n" for w, p in specs.items()))
    (d / "workers_partition.json").write_text(repr(tiers).replace("'", '"'))
    variants = {"ExtractImageFeature": ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"],
                "SpeechRecognition": ["wav2vec2-base-960h", "wav2vec2-large-960h-lv60-self"], "VQA": ["default"]}
    (d / "execution_profile.csv").write_text("".join(
        f"{op},{w},{v},{latency_of(w, op, v)}\n" for op, vs in variants.items() for w in specs for v in vs))
    (d / "workers_workers_link.csv").write_text("\n".join(links))
    (d / "sources_workers_link.csv").write_text("\n".join(source_links))


def test_identical_workers_form_one_pool(vqa_copy: Path) -> None:
    specs = {"edge-a": 0.1, "gpu-1": 2.5, "edge-b": 0.1, "gpu-2": 2.5, "gpu-3": 2.5, "gpu-x": 3.0}
    edge, gpu = ["edge-a", "edge-b"], ["gpu-1", "gpu-2", "gpu-3", "gpu-x"]
    links = [f"{e},{g},1.0" for e in edge for g in gpu]
    links.append("gpu-1,edge-a,10.0")  # backwards: never used, so it does not split the class
    _rewrite_workers(vqa_copy, specs, [edge, gpu], lambda w, op, v: 50.0 if w.startswith("edge") else 5.0,
                     links, [f"{s},{g},1.0" for s in ("ReadImage", "ReadSpeech") for g in gpu])
    p = load_jellybean_inputs(vqa_copy)
    assert [(pl.name, pl.count, pl.members) for pl in p.pools] == [
        ("edge-a+1", 2, ("edge-a", "edge-b")),
        ("gpu-1+2", 3, ("gpu-1", "gpu-2", "gpu-3")),
        ("gpu-x", 1, ("gpu-x",)),
    ]
    assert [loc.name for loc in p.locations] == ["sources", "edge-a+1", "gpu-1+2", "gpu-x"]
    assert p.pool("gpu-1+2").hardware == "gpu-1"
    assert p.capability("VQA", "default", "gpu-1").capacity == pytest.approx(200.0)
    assert link(p, "edge-a+1", "gpu-1+2").cost_per_gb == pytest.approx(0.1)
    assert link(p, "gpu-1+2", "gpu-x").cost_per_gb == 0.0
    assert link(p, "gpu-1+2", "edge-a+1") is None


def test_workers_with_different_links_stay_apart(vqa_copy: Path) -> None:
    specs = {"edge-a": 0.1, "edge-b": 0.1, "gpu-1": 2.5, "gpu-2": 2.5, "gpu-3": 2.5}
    edge, gpu = ["edge-a", "edge-b"], ["gpu-1", "gpu-2", "gpu-3"]
    links = [f"{e},{g},{2.0 if (e, g) == ('edge-b', 'gpu-2') else 1.0}" for e in edge for g in gpu]
    _rewrite_workers(vqa_copy, specs, [edge, gpu], lambda w, op, v: 50.0 if w.startswith("edge") else 5.0,
                     links, [])
    p = load_jellybean_inputs(vqa_copy)
    assert [(pl.name, pl.count) for pl in p.pools] == [
        ("edge-a", 1), ("edge-b", 1), ("gpu-1+1", 2), ("gpu-2", 1)]
    assert link(p, "edge-b", "gpu-2").cost_per_gb == pytest.approx(0.2)
    assert link(p, "edge-b", "gpu-1+1").cost_per_gb == pytest.approx(0.1)


def test_workers_numbers_expand_into_one_pool(vqa_copy: Path) -> None:
    _rewrite_workers(vqa_copy, {"edge": 0.1, "gpu": 2.5}, [["edge"], ["gpu"]],
                     lambda w, op, v: 50.0 if w == "edge" else 5.0, ["edge,gpu,1.0"], ["ReadImage,gpu,1.0"])
    (vqa_copy / "workers_numbers.csv").write_text("edge,3\ngpu,2\n")
    p = load_jellybean_inputs(vqa_copy)
    assert [(pl.name, pl.count, pl.members) for pl in p.pools] == [
        ("edge_0+2", 3, ("edge_0", "edge_1", "edge_2")), ("gpu_0+1", 2, ("gpu_0", "gpu_1"))]
    # ReadImage pays to reach the gpus, ReadSpeech does not: two source locations.
    assert [(s.source, s.location) for s in p.streams] == [
        ("ReadImage", "sources/ReadImage"), ("ReadSpeech", "sources/ReadSpeech")]
    assert link(p, "sources/ReadImage", "gpu_0+1").cost_per_gb == pytest.approx(0.1)
    assert link(p, "sources/ReadSpeech", "gpu_0+1").cost_per_gb == 0.0


# -- message sizes, ratios ---------------------------------------------------------------------
def test_message_size_fallback_follows_the_prototype(vqa_copy: Path) -> None:
    (vqa_copy / "message_sizes.csv").write_text(
        "ReadImage,ExtractImageFeature,default,default,100\n"
        "ReadSpeech,SpeechRecognition,default,default,10\n"
        "ExtractImageFeature,VQA,default,default,1\n"
        "ExtractImageFeature,VQA,resnet50,default,5\n"
        "SpeechRecognition,VQA,wav2vec2-base-960h,default,7\n"
        "SpeechRecognition,VQA,default,default,3\n"
    )
    p = load_jellybean_inputs(vqa_copy)
    features, text = p.edges[2], p.edges[3]
    assert features.size("resnet50", "default") == 5
    assert features.size("resnet18", "default") == 1
    assert text.size("wav2vec2-base-960h", "default") == 7
    assert text.size("wav2vec2-large-960h-lv60-self", "default") == 3


def test_message_size_prefers_default_source_variant(vqa_copy: Path) -> None:
    """(default, b) comes before (a, default), as in the prototype's assign_model_variants."""
    (vqa_copy / "logical_graph.csv").write_text(
        "ReadImage,ExtractImageFeature\nReadSpeech,SpeechRecognition\nExtractImageFeature,SpeechRecognition\n"
        "ExtractImageFeature,VQA\nSpeechRecognition,VQA\n")
    (vqa_copy / "message_sizes.csv").write_text(
        "ReadImage,ExtractImageFeature,default,default,100\nReadSpeech,SpeechRecognition,default,default,10\n"
        "ExtractImageFeature,SpeechRecognition,resnet18,default,11\n"
        "ExtractImageFeature,SpeechRecognition,default,wav2vec2-base-960h,22\n"
        "ExtractImageFeature,SpeechRecognition,default,default,33\n"
        "ExtractImageFeature,VQA,default,default,1\nSpeechRecognition,VQA,default,default,3\n")
    p = load_jellybean_inputs(vqa_copy)
    e = next(e for e in p.edges if e.name == "ExtractImageFeature->SpeechRecognition")
    assert e.size("resnet18", "wav2vec2-base-960h") == 22
    assert e.size("resnet18", "wav2vec2-large-960h-lv60-self") == 11
    assert e.size("resnet50", "wav2vec2-large-960h-lv60-self") == 33


def test_missing_message_size_is_named(vqa_copy: Path) -> None:
    path = vqa_copy / "message_sizes.csv"
    path.write_text("\n".join(line for line in path.read_text().splitlines() if "resnet152" not in line))
    with pytest.raises(SpecError) as err:
        load_jellybean_inputs(vqa_copy)
    assert "edge ExtractImageFeature -> VQA has no message size for variants (resnet152, default)" in str(err.value)


def test_rates_take_the_least_input(vqa_copy: Path) -> None:
    (vqa_copy / "input_injection_rates.csv").write_text("ReadImage,40\nReadSpeech,30\n")
    (vqa_copy / "throughput_normalization_ratios.csv").write_text(
        "ReadImage,ExtractImageFeature,2.0\nExtractImageFeature,VQA,0.5\n")
    p = load_jellybean_inputs(vqa_copy)
    assert p.operator("ExtractImageFeature").rate == pytest.approx(80.0)
    assert p.operator("SpeechRecognition").rate == pytest.approx(30.0)
    assert p.operator("VQA").rate == pytest.approx(30.0)  # min(80 × 0.5, 30 × 1)
    assert [e.rate for e in p.edges] == pytest.approx([80.0, 30.0, 30.0, 30.0])


def test_ratio_for_unknown_edge_is_named(vqa_copy: Path) -> None:
    path = vqa_copy / "throughput_normalization_ratios.csv"
    path.write_text("ReadImage,VQA,1.0\n")
    with pytest.raises(SpecError) as err:
        load_jellybean_inputs(vqa_copy)
    assert f"{path}: line 1: there is no edge ReadImage -> VQA in logical_graph.csv" in str(err.value)


# -- jellybean_json ----------------------------------------------------------------------------
def _group(pool: str, operator: str, variant: str, count: int, load: float, capacity: float,
           members: tuple[str, ...]) -> dict:
    return {"location": pool, "tier": "tier-1", "pool": pool, "hardware": members[0] if members else pool,
            "operator": operator, "variant": variant, "count": count, "load": load, "capacity": capacity,
            "price_per_hour": 1.0, "members": members}


def test_jellybean_json_splits_groups_over_their_workers(vqa: Problem) -> None:
    gpus = ("g1", "g2", "g3")
    plan = Plan.model_validate({
        "name": "vqa", "strategy": "optimal",
        "solver": {"status": "OPTIMAL", "gap": 0.0, "seconds": 1.5},
        "variants": {"ExtractImageFeature": "resnet18", "SpeechRecognition": "wav2vec2-large-960h-lv60-self",
                     "VQA": "default"},
        "workers": [
            # 50 items/s over 2 workers of 30 each: 30 + 20.
            _group("pool-a", "SpeechRecognition", "wav2vec2-large-960h-lv60-self", 2, 50.0, 60.0, gpus),
            # The same pool's members again: g1 and g2 are taken, so g3 serves.
            _group("pool-a", "VQA", "default", 1, 40.0, 200.0, gpus),
            _group("pool-b", "ExtractImageFeature", "resnet18", 3, 40.0, 45.0, ("c1", "c2", "c3")),
        ],
        "cost": {"compute": 6.242, "network": 1.243, "total": 7.485},
        "predicted": {"accuracy": 56.59, "accuracy_target": 56.0},
    })
    out = jellybean_json(plan, vqa)
    assert set(out) == {"compute_cost", "communication_cost", "total_cost", "end_to_end_accuracy",
                        "model_assignment", "worker_assignment", "solver"}
    assert (out["compute_cost"], out["communication_cost"], out["total_cost"]) == (6.242, 1.243, 7.485)
    assert out["end_to_end_accuracy"] == 56.59
    assert out["model_assignment"] == plan.variants
    wa = out["worker_assignment"]
    assert list(wa) == ["ExtractImageFeature", "SpeechRecognition", "VQA"]  # operators only
    assert wa["SpeechRecognition"] == pytest.approx({"g1": 30.0, "g2": 20.0})
    assert wa["VQA"] == pytest.approx({"g3": 40.0})
    assert wa["ExtractImageFeature"] == pytest.approx({"c1": 15.0, "c2": 15.0, "c3": 10.0})
    assert all(rate > 0 for served in wa.values() for rate in served.values())
    assert out["solver"] == {"status": "OPTIMAL", "gap": 0.0, "seconds": 1.5}


def test_jellybean_json_accuracy_falls_back_to_the_table(vqa: Problem) -> None:
    plan = Plan.model_validate({
        "name": "vqa", "strategy": "greedy", "solver": {"status": "HEURISTIC"},
        "variants": {"ExtractImageFeature": "resnet50", "SpeechRecognition": "wav2vec2-base-960h", "VQA": "default"},
        "workers": [_group("workflow-compute-gpu-1", "VQA", "default", 1, 40.0, 218.0, ())],
        "cost": {"compute": 1.0, "network": 0.5, "total": 1.5},
        "predicted": {},
    })
    out = jellybean_json(plan, vqa)
    assert out["end_to_end_accuracy"] == pytest.approx(55.42)
    # No member names in the plan: the pool's own members name the workers.
    assert out["worker_assignment"]["VQA"] == pytest.approx({"workflow-compute-gpu-1": 40.0})
    assert out["worker_assignment"]["ExtractImageFeature"] == {}
    assert out["solver"] == {"status": "HEURISTIC", "gap": None, "seconds": 0.0}


def test_null_partition_is_a_clear_error(vqa_copy: Path) -> None:
    (vqa_copy / "workers_partition.json").write_text("null\n")
    with pytest.raises(SpecError) as err:
        load_jellybean_inputs(vqa_copy)
    assert f"{vqa_copy / 'workers_partition.json'}: (top level): holds null; write the workers' tiers" in str(err.value)
