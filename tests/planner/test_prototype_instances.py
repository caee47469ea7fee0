"""Generated prototype directories: deterministic, loadable, and planned to the same optimum as an
independent formulation (tests/planner/independent.py) computes from the files themselves."""

from __future__ import annotations

import filecmp
import math
from pathlib import Path

import pytest

from jellybean.planner.jellybean_format import load_jellybean_inputs
from jellybean.planner.prototype_instances import (
    generate_prototype_instance,
    main,
    write_prototype_instance,
)
from jellybean.planner.strategies import make_plan

try:
    from .independent import read_instance, solve_independent
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from independent import read_instance, solve_independent

VQA_DIR = Path(__file__).resolve().parents[2] / "examples/vqa/prototype_inputs"
VQA_OPTIMUM = 7.4850  # $/h, examples/vqa/prototype_inputs/README.md
FILES = {
    "logical_graph.csv", "input_injection_rates.csv", "throughput_normalization_ratios.csv", "execution_profile.csv",
    "message_sizes.csv", "workers_specs.csv", "workers_workers_link.csv", "sources_workers_link.csv",
    "workers_partition.json", "accuracy_requirement.json", "nodes_accuracy_profiles.pkl", "config.yaml",
}
RELATIVE = 1e-6


# -- the generator -------------------------------------------------------------------------------
def test_same_arguments_write_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    write_prototype_instance(tmp_path / "a", seed=7, workers=30, tiers=4)
    write_prototype_instance(tmp_path / "b", seed=7, workers=30, tiers=4)
    write_prototype_instance(tmp_path / "c", seed=8, workers=30, tiers=4)
    assert {f.name for f in (tmp_path / "a").iterdir()} == FILES
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", sorted(FILES), shallow=False)
    assert (mismatch, errors) == ([], [])
    _, differ, _ = filecmp.cmpfiles(tmp_path / "a", tmp_path / "c", sorted(FILES), shallow=False)
    assert "execution_profile.csv" in differ and "workers_workers_link.csv" in differ


def test_the_cli_writes_what_the_function_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([str(tmp_path / "cli"), "--seed", "3", "--workers", "20", "--tiers", "3"])
    write_prototype_instance(tmp_path / "fn", seed=3, workers=20, tiers=3)
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "cli", tmp_path / "fn", sorted(FILES), shallow=False)
    assert (mismatch, errors) == ([], [])
    assert "20 workers" in capsys.readouterr().out


@pytest.mark.parametrize("workers, tiers", [(120, 4), (105, 3)])
def test_a_large_instance_loads_with_every_worker_its_own_pool(tmp_path: Path, workers: int, tiers: int) -> None:
    write_prototype_instance(tmp_path / "big", seed=1, workers=workers, tiers=tiers)
    problem = load_jellybean_inputs(tmp_path / "big")
    # Every worker has its own latencies, so the importer's grouping of identical workers keeps them apart.
    assert len(problem.pools) == workers
    assert all(pool.count == 1 for pool in problem.pools)
    assert {loc.tier for loc in problem.locations} == set(range(tiers))
    assert [op.name for op in problem.operators] == [
        "DetectObjects", "ExtractImageFeature", "SpeechRecognition", "ParseQuestion", "VQA"]
    # The variant profiled for latency only is not offered; the accuracy profiles list the others.
    assert problem.operator("DetectObjects").variants == ("yolov8n", "yolov8s", "yolov8m")
    table = problem.accuracy.tables[0]
    meeting = [row for row, acc in table.rows.items() if acc >= problem.accuracy.target]
    assert len(table.rows) == 36 and 1 <= len(meeting) <= 20
    # Upward pairs are priced, pair by pair.
    upward = [l for l in problem.links if problem.location(l.src).tier < problem.location(l.dst).tier]
    assert len({l.cost_per_gb for l in upward}) > len(upward) // 2


def test_a_150_worker_instance_spans_every_tier_and_keeps_big_models_off_edge_devices() -> None:
    instance = generate_prototype_instance(seed=2, workers=150, tiers=4)
    assert 6 <= instance.combos_meeting <= 20
    assert {w.tier for w in instance.workers} == {0, 1, 2, 3}
    assert instance.rates["ReadSpeech"] < instance.rates["ReadImage"]
    # Edge devices cannot run the largest variants: the file says so with an empty latency.
    edge = [w for w in instance.workers if w.tier == 0]
    assert all(("SpeechRecognition", "wav2vec2-large-960h-lv60-self") not in w.latency_ms for w in edge)


def test_without_spreads_links_are_priced_per_pair_of_tiers() -> None:
    spread = generate_prototype_instance(seed=1, workers=60, tiers=4)
    flat = generate_prototype_instance(seed=1, workers=60, tiers=4, link_spread=0.0, site_spread=0.0)
    tier = {w.name: w.tier for w in flat.workers}
    by_tiers: dict[tuple[int, int], set[float]] = {}
    for (a, b), price in flat.worker_links.items():
        by_tiers.setdefault((tier[a], tier[b]), set()).add(price)
    assert all(len(prices) == 1 for prices in by_tiers.values()), by_tiers
    assert len({p for (a, b), p in spread.worker_links.items() if tier[a] == 0 and tier[b] == 3}) > 1
    # Only the prices change: the fleet, the rates and the profiles are the same instance.
    assert flat.workers == spread.workers and flat.rates == spread.rates


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="tiers"):
        generate_prototype_instance(seed=0, workers=50, tiers=7)
    with pytest.raises(ValueError, match="at least 8 workers"):
        generate_prototype_instance(seed=0, workers=5, tiers=4)
    with pytest.raises(ValueError, match="site_spread"):
        generate_prototype_instance(seed=0, workers=50, tiers=4, site_spread=-0.1)


# -- the independent formulation -----------------------------------------------------------------
@pytest.mark.skipif(not VQA_DIR.is_dir(), reason=f"the shipped VQA inputs are not at {VQA_DIR}")
@pytest.mark.parametrize("decompose", [True, False])
def test_independent_formulation_finds_the_vqa_optimum(decompose: bool) -> None:
    result = solve_independent(VQA_DIR, time_limit=60, decompose=decompose)
    assert result.status == "Optimal"
    assert result.cost == pytest.approx(VQA_OPTIMUM, abs=5e-5)
    assert result.combinations == 5  # of the 10 rows, those at 56.0 or above


def test_independent_reader_follows_the_files(tmp_path: Path) -> None:
    write_prototype_instance(tmp_path / "d", seed=4, workers=16, tiers=4, missing_links=0.2)
    inst = read_instance(tmp_path / "d")
    generated = generate_prototype_instance(seed=4, workers=16, tiers=4, missing_links=0.2)
    assert len(inst.combos) == generated.combos_meeting
    assert inst.rate["VQA"] == pytest.approx(min(inst.rate["ExtractImageFeature"] * generated.ratios[
        ("ExtractImageFeature", "VQA")], inst.rate["ParseQuestion"]))
    # Unlisted upward pairs cost nothing; listed ones carry COMM_COST_SCALING_FACTOR.
    listed = {k: v * generated.comm_scale for k, v in generated.worker_links.items()}
    for (a, b), cost in inst.pair_cost.items():
        if a in inst.tier:
            assert cost == pytest.approx(listed[(a, b)])
    upward_listed = [k for k in listed if inst.tier[k[0]] < inst.tier[k[1]]]
    assert len(upward_listed) == len([k for k in inst.pair_cost if k[0] in inst.tier])
    upward_pairs = sum(1 for a in inst.workers for b in inst.workers if inst.tier[a] < inst.tier[b])
    assert 0 < len(upward_listed) < upward_pairs  # some are missing, as asked


# -- the package's planner against it ------------------------------------------------------------
CASES = [  # workers, seed, tiers, share of upward pairs without a price; each solves in seconds
    (10, 0, 4, 0.0),
    (12, 7, 3, 0.0),
    (14, 6, 4, 0.0),
    (14, 9, 3, 0.05),
    (18, 8, 4, 0.0),
    (20, 14, 4, 0.05),
    (26, 12, 4, 0.0),
]


@pytest.mark.parametrize("workers, seed, tiers, missing", CASES)
def test_planner_and_independent_formulation_agree(tmp_path: Path, workers: int, seed: int, tiers: int,
                                                   missing: float) -> None:
    write_prototype_instance(tmp_path / "d", seed=seed, workers=workers, tiers=tiers, missing_links=missing)
    plan = make_plan(load_jellybean_inputs(tmp_path / "d"), "optimal", time_limit=60)
    reference = solve_independent(tmp_path / "d", time_limit=60)
    assert (plan.solver.status, reference.status) == ("OPTIMAL", "Optimal")
    assert math.isclose(plan.cost.total, reference.cost, rel_tol=RELATIVE), (plan.cost.total, reference.cost)


def test_decomposed_and_single_independent_models_agree(tmp_path: Path) -> None:
    write_prototype_instance(tmp_path / "d", seed=6, workers=14, tiers=4)
    decomposed = solve_independent(tmp_path / "d", time_limit=60)
    single = solve_independent(tmp_path / "d", time_limit=60, decompose=False)
    assert (decomposed.status, single.status) == ("Optimal", "Optimal")
    assert math.isclose(decomposed.cost, single.cost, rel_tol=RELATIVE)
