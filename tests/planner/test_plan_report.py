"""The plan report (jellybean/planner/report_html.py) holds the plan's own figures: every site, each
link's planned traffic, per-tier costs that add up to the total, and a baseline's cost beside it.

The 40-camera AI City city (configs/aicity) plans in about a second, and greedy costs more there."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

try:
    from .report_page import read_page
except ImportError:
    from report_page import read_page

from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.render import write_plan
from jellybean.planner.report import tier_costs
from jellybean.planner.report_html import write_plan_report
from jellybean.planner.strategies import make_plan

CITY = Path(__file__).resolve().parents[2] / "configs" / "aicity"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """The optimal and greedy plans of the city, written as YAML, and the optimal plan's report
    with greedy beside it."""
    out = tmp_path_factory.mktemp("city")
    problem = build_problem(load_inputs(CITY / "workflow.yaml", CITY / "zoo.yaml", CITY / "infrastructure.yaml"))
    optimal = make_plan(problem, "optimal", time_limit=60)
    greedy = make_plan(problem, "greedy", time_limit=60)
    write_plan(optimal, out / "optimal.yaml")
    write_plan(greedy, out / "greedy.yaml")
    write_plan_report(optimal, out / "report", compare=greedy)
    return out


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_the_report_names_every_site_and_its_pictures_exist(city):
    plan = _yaml(city / "optimal.yaml")
    page = read_page(city / "report")
    for image in ("infrastructure.png", "tier_costs.png"):
        assert image in page.images
        assert (city / "report" / image).read_bytes()[:8] == PNG
    named = {row["site"][0] for row in page.rows("sites")}
    expected = set(plan["tiers"]) | {w["location"] for w in plan["workers"]} | {
        end for l in plan["links"] for end in (l["from"], l["to"])}
    assert len(expected) == 15  # 10 intersections, 3 hubs, the edge DC and the cloud region
    assert named == expected
    # ... and every one is placed in the infrastructure picture, in its tier's column.
    from jellybean.planner.render import read_plan
    from jellybean.planner.report_plots import layout

    placed = layout(read_plan(city / "optimal.yaml"))
    assert set(placed) == expected
    column = {rank: x for name, (x, _) in placed.items() for rank in [plan["tiers"][name]]}
    assert all(placed[name][0] == column[plan["tiers"][name]] for name in expected)
    assert sorted(column, key=column.get) == sorted(column)
    # Each worker group of the plan is a row at its site, with its variant and count.
    rows = {(r["site"][0], r["operator"][0]): r for r in page.rows("sites") if r["operator"][0] != "no workers"}
    assert len(rows) == len(plan["workers"])
    for w in plan["workers"]:
        row = rows[w["location"], w["operator"]]
        assert row["variant"][0] == w["variant"] and row["workers"][1] == w["count"]


def test_each_links_planned_traffic_is_the_plans(city):
    plan = _yaml(city / "optimal.yaml")
    rows = {(r["from"][0], r["to"][0]): r for r in read_page(city / "report").rows("links")}
    assert set(rows) == {(l["from"], l["to"]) for l in plan["links"]}
    carried = 0
    for l in plan["links"]:
        row = rows[l["from"], l["to"]]
        mbps = l["kb_per_s"] * 8 * 1024 / 1e6
        assert row["planned KB/s"][1] == l["kb_per_s"]
        assert row["planned KB/s"][0] == f"{l['kb_per_s']:,.3f}"
        assert row["planned Mbps"][1] == pytest.approx(mbps, rel=1e-12)
        assert row["bandwidth Mbps"][1] == l["bandwidth_mbps"]
        assert row["$/h"][1] == l["cost_per_hour"]
        used, capacity = row["label"][0].removesuffix(" Mbps").split("/")
        assert float(capacity) == l["bandwidth_mbps"]
        assert float(used) == pytest.approx(mbps, abs=0.051)
        carried += l["kb_per_s"] > 0
    assert carried >= 10  # the city's plan moves frames over many links, so this compares real traffic


def test_the_tiers_costs_add_up_to_the_plans(city):
    plan = _yaml(city / "optimal.yaml")
    rows = read_page(city / "report").rows("tier-costs")
    tiers, total = rows[:-1], rows[-1]
    assert [r["tier"][0] for r in tiers] == ["edge", "hub", "edge-dc", "cloud"]
    assert total["tier"][0] == "plan total"
    cost = plan["cost"]
    assert math.fsum(r["total $/h"][1] for r in tiers) == pytest.approx(cost["total"], abs=1e-9)
    assert math.fsum(r["compute $/h"][1] for r in tiers) == pytest.approx(cost["compute"], abs=1e-9)
    assert math.fsum(r["network $/h"][1] for r in tiers) == pytest.approx(cost["network"], abs=1e-9)
    assert (total["compute $/h"][1], total["network $/h"][1], total["total $/h"][1]) == (
        cost["compute"], cost["network"], cost["total"])
    for r in tiers:
        assert r["total $/h"][1] == pytest.approx(r["compute $/h"][1] + r["network $/h"][1], abs=1e-12)
        assert r["total $/h"][0] == f"{r['total $/h'][1]:,.6f}"
    # Both kinds of cost are spread over tiers: the check above adds more than one term of each.
    assert sum(r["compute $/h"][1] > 0 for r in tiers) >= 2 and sum(r["network $/h"][1] > 0 for r in tiers) >= 2


def test_greedy_beside_the_plan_shows_both_costs_and_their_difference(city):
    optimal, greedy = _yaml(city / "optimal.yaml"), _yaml(city / "greedy.yaml")
    page = read_page(city / "report")
    rows = {r[""][0]: r for r in page.rows("compare")}
    total = rows["total $/h"]
    assert total["optimal"][1] == optimal["cost"]["total"]
    assert total["greedy"][1] == greedy["cost"]["total"]
    difference = greedy["cost"]["total"] - optimal["cost"]["total"]
    assert difference > 0.1  # greedy places per tier and pays for it here
    assert total["difference (greedy − optimal)"][1] == pytest.approx(difference, abs=1e-12)
    assert page.values["cost-difference"] == pytest.approx(difference, abs=1e-12)
    assert f"{difference:,.6f}" in "".join(page.text)
    assert rows["workers"]["greedy"][1] == sum(w["count"] for w in greedy["workers"])
    for op, variant in greedy["variants"].items():
        assert rows[f"{op} variant"]["greedy"][0] == variant
        assert rows[f"{op} variant"]["optimal"][0] == optimal["variants"][op]
    assert rows["accuracy"]["greedy"][1] == greedy["predicted"]["accuracy"]


def test_network_cost_counts_towards_the_sending_tier(city):
    from jellybean.planner.render import read_plan

    plan = read_plan(city / "optimal.yaml")
    by_tier = {t.tier: t for t in tier_costs(plan)}
    edge_dc_uplink = next(l for l in plan.links if (l.from_, l.to) == ("edge-dc", "aws-us-east-1"))
    assert edge_dc_uplink.cost_per_hour > 0
    assert by_tier["edge-dc"].network == pytest.approx(edge_dc_uplink.cost_per_hour, abs=1e-12)
    assert by_tier["cloud"].network == 0.0


def test_headroom_lists_every_limit_of_the_plan_tightest_first(city):
    plan = _yaml(city / "optimal.yaml")
    rows = read_page(city / "report").rows("headroom")
    limited = [l for l in plan["links"] if l["bandwidth_mbps"]]
    assert len(rows) == 2 + len(limited) + len(plan["workers"])
    by_name = {r["limit"][0]: r for r in rows}
    accuracy = by_name["accuracy (at least)"]
    assert (accuracy["planned"][1], accuracy["limit value"][1]) == (
        plan["predicted"]["accuracy"], plan["predicted"]["accuracy_target"])
    latency = by_name["latency ms (at most)"]
    assert latency["slack"][1] == pytest.approx(plan["predicted"]["latency_bound_ms"] - plan["predicted"]["latency_ms"])
    for l in limited:
        row = by_name[f"link {l['from']} → {l['to']} Mbps"]
        assert row["planned"][1] == pytest.approx(l["kb_per_s"] * 8 * 1024 / 1e6, rel=1e-12)
        assert row["limit value"][1] == l["bandwidth_mbps"]
    fractions = [r["slack of limit"][1] for r in rows]
    assert all(b >= a - 1e-9 for a, b in zip(fractions, fractions[1:]))
    # The workers that the plan runs at capacity are at the top.
    full = [w for w in plan["workers"] if w["load"] >= w["capacity"] * 0.999]
    assert full and all(r["slack"][1] == pytest.approx(0, abs=1e-6) for r in rows[:len(full)])
