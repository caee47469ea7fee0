"""The replay result contract (JSON round trip) and its reports: rich tables and the HTML page."""

from __future__ import annotations

import re

import pytest
from rich.console import Console

from jellybean.errors import SpecError
from jellybean.replay.report import render_terminal, write_html_report
from jellybean.replay.results import CameraCounts, LinkMeasure, Rate, Replan, ReplayResult, Segment, Stats
from jellybean.replay.tracking_metrics import CameraTracking, TrackingMetrics
from jellybean.spec.plan import Costs, LinkUse, Plan, Prediction, SolverInfo, WorkerGroup

PNGS = ("latency_cdf.png", "latency_stages.png", "links.png", "throughput.png", "drops.png", "plan.png")


def make_plan() -> Plan:
    def group(location, tier, hardware, operator, variant, count, price):
        return WorkerGroup(location=location, tier=tier, pool=f"{location}/{hardware}", hardware=hardware,
                           operator=operator, variant=variant, count=count, load=8.0, capacity=12.0 * count,
                           price_per_hour=price)

    return Plan(
        name="aicity", strategy="optimal", solver=SolverInfo(status="OPTIMAL", gap=0.0),
        variants={"detect": "yolo-int8", "reid": "osnet-fp16"},
        tiers={"cam-1": 0, "hub-a": 1, "cloud": 3},
        workers=(group("cam-1", "edge", "jetson", "detect", "yolo-int8", 1, 0.02),
                 group("hub-a", "hub", "hub-cpu", "detect", "yolo-int8", 2, 0.1),
                 group("hub-a", "hub", "hub-cpu", "reid", "osnet-fp16", 1, 0.1),
                 group("cloud", "cloud", "cloud-gpu", "reid", "osnet-fp16", 1, 0.5)),
        links=(LinkUse(**{"from": "cam-1", "to": "hub-a", "kb_per_s": 400.0, "bandwidth_mbps": 100.0}),
               LinkUse(**{"from": "hub-a", "to": "cloud", "kb_per_s": 12.0})),
        cost=Costs(compute=0.82, network=0.01, total=0.83),
        predicted=Prediction(accuracy=0.7, throughput={"detect": 20.0, "reid": 110.0}, latency_ms=95.0,
                             latency_bound_ms=500.0),
    )


def _stats(mean: float, n: int = 100) -> Stats:
    return Stats(n=n, mean=mean, p5=mean * 0.5, p25=mean * 0.8, p50=mean, p75=mean * 1.2, p95=mean * 2, p99=mean * 3,
                 max=mean * 4)


def make_result(**changes) -> ReplayResult:
    tracking = TrackingMetrics(
        scenario="train/S01", idf1=0.8, idp=0.9, idr=0.72, idtp=72, idfp=8, idfn=28, gt_boxes=100,
        predicted_boxes=80,
        per_camera={"S01/c001": CameraTracking(mota=0.9, idf1=0.85, ids=1, precision=0.95, recall=0.9, frames=30,
                                                gt_boxes=60, predicted_boxes=57),
                    "S01/c002": CameraTracking(mota=None, idf1=0.0, ids=0, precision=0.0, recall=0.0, frames=30,
                                                gt_boxes=0, predicted_boxes=3)},
        cameras_evaluated=["S01/c001", "S01/c002"], cameras_skipped={"S01/c003": "ground truth unusable: gt.txt: line 9"},
        frame_offsets={"S01/c001": 0, "S01/c002": 30}, predictions_removed={"single_camera": 4})
    result = ReplayResult(
        scenario="train/S01", mode="local", speed=2.0, seconds=15.5,
        cameras={"S01/c001": CameraCounts(frames_in=30, frames_out=29, dropped=1),
                 "S01/c002": CameraCounts(frames_in=30, frames_out=30, duplicates=2, late=3)},
        latency_ms=[float(v) for v in range(1, 101)],
        links=[LinkMeasure(**{"from": "cam-1", "to": "hub-a", "bytes": 6_000_000, "kb_per_s": 380.0,
                              "predicted_kb_per_s": 400.0}),
               LinkMeasure(from_="hub-a", to="cloud", bytes=180_000, kb_per_s=11.3)],
        throughput=[(0.5 * k, 6.0 + (k % 3)) for k in range(20)],
        plan_cost_per_hour=0.83, plan_predicted_accuracy=0.7,
        plan_summary={"variants": {"detect": "yolo-int8"}, "workers": {"edge": 1, "hub": 3, "cloud": 1}},
        tracking=tracking, latency_predicted_ms=95.0, latency_slo_ms=500.0, load=0.5,
        rates=[Rate(name="frames per stream", unit="frames", planned=10.0, expected=10.0, measured=9.97),
               Rate(name="frames in, all streams", unit="frames", planned=20.0, measured=10.0),
               Rate(name="detect, received", planned=20.0, expected=10.0, measured=10.0),
               Rate(name="reid, received", planned=110.0, expected=55.0, note="no counters from its agents"),
               Rate(name="frames delivered", unit="frames", planned=20.0, expected=10.0, measured=9.8)],
        segments=[Segment(kind="hop", name="camera → detect", sites="cam-1 → cam-1", order=0, ms=_stats(1.5),
                          predicted_ms=0.0),
                  Segment(kind="stage", name="detect", sites="cam-1", order=1, ms=_stats(40.0), predicted_ms=30.0),
                  Segment(kind="hop", name="detect → reid", sites="cam-1 → hub-a", order=2, ms=_stats(4.25),
                          predicted_ms=3.0),
                  Segment(kind="stage", name="reid", sites="hub-a", order=3, ms=_stats(4.75)),
                  Segment(kind="hop", name="reid → sink", sites="hub-a → replay", order=4, ms=_stats(0.5))],
        drops={"late at reid": [(2.0, 3), (3.0, 1)], "queue full at detect": [(3.0, 2)]},
        replans=[Replan(t=4.5, version=7, plan="aicity", cost_per_hour=0.91)],
    )
    return result.model_copy(update=changes)


def test_json_round_trip():
    result = make_result()
    result.add_problem("data/train/S01/c003/vdo.avi: missing video for train/S01/c003")
    text = result.to_json()
    assert '"from": "cam-1"' in text
    back = ReplayResult.from_json(text)
    assert back == result
    assert back.partial and back.links[1].predicted_kb_per_s is None and back.throughput[3] == (1.5, 6.0)
    assert back.tracking.per_camera["S01/c002"].mota is None


def test_reading_a_bad_result_names_the_file_and_field(tmp_path):
    path = tmp_path / "result.json"
    path.write_text('{"scenario": "S01", "mode": "cloud"}')
    with pytest.raises(SpecError, match=rf"{re.escape(str(path))}: mode: input should be 'local' or 'broker'"):
        ReplayResult.read(path)
    result = make_result()
    assert ReplayResult.read(result.write(tmp_path / "ok" / "r.json")) == result


def test_latency_percentiles_and_totals():
    pct = make_result().latency_percentiles()
    assert pct["p50"] == pytest.approx(50.5) and pct["p99"] == pytest.approx(99.01)
    assert pct["mean"] == pytest.approx(50.5) and pct["max"] == 100.0
    assert set(ReplayResult(scenario="S01", mode="broker").latency_percentiles().values()) == {None}
    assert make_result().totals() == CameraCounts(frames_in=60, frames_out=59, dropped=1, duplicates=2, late=3)


def test_html_report_with_plots(tmp_path):
    result = make_result(scenario="train/S01 <b>&", problems=["c003: gt <truncated>"], partial=True)
    index = write_html_report(result, tmp_path / "report", plan=make_plan())
    assert index == tmp_path / "report" / "index.html"
    page = index.read_text()
    for name in PNGS:
        png = tmp_path / "report" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f'src="{name}"' in page
    assert '<div class="problems">' in page and "c003: gt &lt;truncated&gt;" in page
    assert "train/S01 &lt;b&gt;&amp;" in page and "<b>&" not in page
    assert "80.0 %" in page                                   # IDF1
    assert "ground truth unusable" in page                    # the skipped camera is named
    assert "0.83" in page and "osnet-fp16" in page
    assert "400.0" in page and "12.0" in page                 # predicted KB/s: the driver's, and the plan's
    assert "200.0" in page and "12,207" in page               # 400 KB/s at the load replayed; the capacity
    assert "late at reid" in page and "v7" in page and "0.9100" in page   # drops and the re-plan
    assert "detect → reid" in page and "cam-1 → hub-a" in page            # a hop of the latency split
    assert "planner&#x27;s accuracy (zoo product)" in page and "not IDF1" in page


def test_html_report_without_data_leaves_plots_out(tmp_path):
    directory = tmp_path / "r"
    write_html_report(make_result(), directory, plan=make_plan())
    result = ReplayResult(scenario="S01", mode="local")
    page = write_html_report(result, directory).read_text()
    assert not any((directory / name).exists() for name in PNGS)      # stale plots removed
    assert "<img" not in page and "No latencies measured." in page and "No plan given." in page
    assert '<div class="problems">' not in page


def test_terminal_report():
    console = Console(record=True, width=140, color_system=None)
    render_terminal(make_result(problems=["c003: gt [truncated]"], partial=True), console, plan=make_plan())
    text = console.export_text()
    for expected in ("Replay of train/S01", "Partial results", "c003: gt [truncated]", "Frames per camera",
                     "p95", "cam-1", "1.90×", "IDF1", "80.0 %", "S01/c002", "0.8300 $/h",
                     "not scored S01/c003: ground truth unusable", "500.0", "95.0", "late at reid",
                     "reid → sink", "12,207"):
        assert expected in text, expected


def test_the_plan_accuracy_and_idf1_are_named_and_compared_only_when_alike():
    """The planner's accuracy is the zoo's product of its own metrics: never set beside IDF1 as if
    comparable, unless the zoo's accuracy was measured as IDF1."""
    def text_of(result):
        console = Console(record=True, width=140, color_system=None)
        render_terminal(result, console, plan=make_plan())
        return console.export_text()

    product = text_of(make_result())
    assert "planner's accuracy (zoo product)" in product and "0.700 (not IDF1)" in product
    assert "measured IDF1" in product and "planner's IDF1" not in product and "different metrics" in product
    idf1 = text_of(make_result(plan_accuracy_metric="IDF1"))
    assert "planner's predicted IDF1" in idf1 and "70.0 %" in idf1 and "planner's IDF1" in idf1
    assert "measured / predicted IDF1" in idf1 and "1.14×" in idf1 and "different metrics" not in idf1
    named = text_of(make_result(plan_accuracy_metric="mAP"))
    assert "planner's accuracy (mAP, zoo product)" in named and "measured / predicted" not in named


def test_bytes_between_sites_without_a_link_are_booked_on_the_links_they_cross():
    from jellybean.replay.outcome import along_links
    from jellybean.spec.plan import LinkUse

    class _Plan:  # only the links matter here
        links = (LinkUse(**{"from": "int-01"}, to="hub-1", kb_per_s=1, bandwidth_mbps=100),
                 LinkUse(**{"from": "hub-1"}, to="edc", kb_per_s=1, bandwidth_mbps=1000),
                 LinkUse(**{"from": "edc"}, to="cloud", kb_per_s=1, bandwidth_mbps=1000),
                 LinkUse(**{"from": "hub-1"}, to="cloud", kb_per_s=0, bandwidth_mbps=10))

    booked = along_links({("int-01", "hub-1"): 100, ("hub-1", "cloud"): 7, ("int-01", "cloud"): 5,
                          ("cloud", "mars"): 3}, _Plan())
    # hub-1 -> cloud has a link of its own; int-01 -> cloud takes the widest path, through the edc.
    assert booked == {("int-01", "hub-1"): 105, ("hub-1", "cloud"): 7, ("hub-1", "edc"): 5, ("edc", "cloud"): 5,
                      ("cloud", "mars"): 3}
