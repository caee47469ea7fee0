"""What a replay measured becomes like-for-like figures: latency split by stage and hop from the
items' traces, drops per second by reason, re-plans on the time axis, items/s per operator from the
agents' counters and per stream from the frames' capture times, the plan's figures at the load replayed."""

from __future__ import annotations

import pytest

from jellybean.agents.items import Item
from jellybean.agents.messages import Metrics, OperatorMetrics
from jellybean.replay.cityflow import Scenario
from jellybean.replay.driver import RunData
from jellybean.replay.outcome import build_result
from jellybean.replay.report import write_html_report
from jellybean.spec.plan import Costs, LinkUse, Plan, Prediction, SolverInfo, StreamRate, WorkerGroup

T0 = 1_800_000_000.0


def plan() -> Plan:
    def group(location, operator, latency):
        return WorkerGroup(location=location, tier=location, pool=location, hardware="cpu", operator=operator,
                           variant="v", count=1, load=20.0, capacity=40.0, latency_ms=latency)

    return Plan(name="p", strategy="optimal", solver=SolverInfo(status="OPTIMAL", gap=0.0),
                variants={"detect": "v", "reid": "v"}, tiers={"edge": 0, "cloud": 3},
                streams=(StreamRate(source="camera", location="edge", rate=40.0, count=4),),
                workers=(group("edge", "detect", 30.0), group("cloud", "reid", 5.0)),
                links=(LinkUse(**{"from": "edge", "to": "cloud", "kb_per_s": 800.0, "bandwidth_mbps": 8.192,
                                  "latency_ms": 20.0}),),
                cost=Costs(compute=1.0, network=0.1, total=1.1),
                predicted=Prediction(accuracy=0.6, throughput={"reid": 160.0, "detect": 40.0}, latency_ms=60.0,
                                     latency_bound_ms=250.0))


def item(cam: str, frame: int, *, dropped: str | None = None) -> Item:
    """Frame `frame` of `cam`, captured at 10 fps: 2 ms to detect at the edge, which takes 30 ms;
    20 ms over the link; 5 ms at reid in the cloud; 3 ms to the replay."""
    c = T0 + (frame - 1) / 10
    trace = [["edge", "detect", c + 0.002, c + 0.032]] + ([] if dropped else [["cloud", "reid", c + 0.052, c + 0.057]])
    return Item(stream=cam, frame=frame, capture_ts=c, kind="tracks", meta={"boxes": [[0, 0, 1, 1]], "ids": [1]},
                dropped=dropped, trace=trace)


def metrics(agent: str, site: str, sent: float, **arrivals: float) -> Metrics:
    return Metrics(agent=agent, site=site, interval_s=2.0, sent_at=sent,
                   operators=[OperatorMetrics(operator=op, arrivals=n) for op, n in arrivals.items()])


def run_data() -> RunData:
    data = RunData(mode="broker", speed=1.0, started_at=T0 - 1, seconds=5.0, media_seconds=2.0, clock_start=T0)
    for cam in ("S01/c001", "S01/c002"):
        data.camera_sites[cam] = "edge"
        for frame in range(1, 21):
            data.published[cam].add(frame)
            late = cam == "S01/c002" and frame in (12, 13, 15)
            it = item(cam, frame, dropped="late at reid" if late else None)
            data.sink.add(it, it.capture_ts + (0.040 if late else 0.060))
    data.timeline = [(0.5 * k, 5 * k) for k in range(1, 9)]
    data.link_bytes[("edge", "cloud")] = 1_536_000
    data.routes_log = [(T0 - 5, 3, "p", 1.1, 0.52), (T0 + 1.25, 4, "p", 1.3, 0.61)]
    data.metrics_at_start = {"a-edge": metrics("a-edge", "edge", T0 - 1, detect=500.0),
                             "a-cloud": metrics("a-cloud", "cloud", T0 - 1, reid=1000.0)}
    data.agent_metrics = {"a-edge": metrics("a-edge", "edge", T0 + 4, detect=540.0),
                          "a-cloud": metrics("a-cloud", "cloud", T0 + 4, reid=1150.0)}
    return data


def test_latency_split_by_stage_and_hop_adds_up_to_end_to_end():
    result = build_result(run_data(), Scenario("train", "S01", ()), plan(), evaluate=False)
    split = [(s.name, s.sites, s.ms.n, round(s.ms.p50, 3), s.predicted_ms) for s in result.segments]
    assert split == [("camera → detect", "edge → edge", 37, 2.0, 0.0),
                     ("detect", "edge", 37, 30.0, 30.0),
                     ("detect → reid", "edge → cloud", 37, 20.0, 20.0),
                     ("reid", "cloud", 37, 5.0, 5.0),
                     ("reid → sink", "cloud → replay", 37, 3.0, None)]
    assert sum(s.ms.mean for s in result.segments) == pytest.approx(result.latency_percentiles()["mean"])
    assert result.latency_predicted_ms == 60.0 and result.latency_slo_ms == 250.0


def test_drops_per_second_by_reason_and_replans_on_the_time_axis():
    result = build_result(run_data(), Scenario("train", "S01", ()), plan(), evaluate=False)
    assert result.drops == {"late at reid": [(1.0, 3)]}
    assert [(r.t, r.version, r.cost_per_hour) for r in result.replans] == [(1.25, 4, 1.3)]
    # The plan in effect over time: the first version from the start, with its $/h and accuracy.
    assert [(r.t, r.version, r.cost_per_hour, r.accuracy) for r in result.plans] == [
        (0.0, 3, 1.1, 0.52), (1.25, 4, 1.3, 0.61)]


def test_the_plan_over_time_is_drawn_when_it_changed(tmp_path):
    from jellybean.replay import report_plots

    result = build_result(run_data(), Scenario("train", "S01", ()), plan(), evaluate=False)
    assert report_plots.plot_plans_over_time(result, tmp_path / "plans.png")
    assert (tmp_path / "plans.png").stat().st_size > 1000
    steady = result.model_copy(update={"replans": [], "plans": result.plans[:1], "trace": None})
    assert not report_plots.plot_plans_over_time(steady, tmp_path / "steady.png")


def test_rates_compare_the_plan_at_the_load_replayed_with_what_was_measured():
    result = build_result(run_data(), Scenario("train", "S01", ()), plan(), evaluate=False)
    rates = {r.name: r for r in result.rates}
    # 2 cameras at 10 fps over 2 s of video: 20 frames/s of the plan's 40 (4 streams), load 0.5.
    assert result.load == pytest.approx(0.5)
    assert rates["frames per stream"].planned == 10.0 and rates["frames per stream"].measured == pytest.approx(10.0)
    assert rates["frames in, all streams"].measured == pytest.approx(20.0)
    # Operators in the order items pass them; the agents' counters over the replay, per second of video.
    assert [r.name for r in result.rates][2:4] == ["detect, received", "reid, received"]
    assert rates["detect, received"].expected == pytest.approx(20.0) and rates["detect, received"].measured == 20.0
    assert rates["reid, received"].expected == pytest.approx(80.0) and rates["reid, received"].measured == 75.0
    assert rates["frames delivered"].measured == pytest.approx(18.5)
    # 1,536,000 bytes over 2 s of video: 750 KB/s, the plan's 800 at load 0.5 is 400; the link takes 1000.
    (link,) = result.links
    assert (link.kb_per_s, link.predicted_kb_per_s, link.capacity_kb_per_s) == (750.0, 800.0, pytest.approx(1000.0))
    assert link.use == pytest.approx(0.75)


def test_an_agent_heard_only_after_the_start_leaves_its_operator_unmeasured():
    data = run_data()
    del data.metrics_at_start["a-cloud"]
    result = build_result(data, Scenario("train", "S01", ()), plan(), evaluate=False)
    rates = {r.name: r for r in result.rates}
    assert rates["reid, received"].measured is None and rates["reid, received"].note
    assert rates["detect, received"].measured == 20.0


def test_the_page_shows_the_split_the_drops_and_the_replan(tmp_path):
    result = build_result(run_data(), Scenario("train", "S01", ()), plan(), evaluate=False)
    page = write_html_report(result, tmp_path, plan()).read_text()
    for name in ("latency_stages.png", "drops.png", "throughput.png", "latency_cdf.png"):
        assert (tmp_path / name).is_file(), name
    assert "late at reid" in page and "camera → detect" in page and "250.0" in page and "60.0" in page
    assert "400.0" in page and "1.88×" in page and "75.0 %" in page    # the link: plan at this load, ratio, use


def test_outputs_rebuilt_from_parity_are_counted_per_operator_and_second_and_drawn(tmp_path):
    from jellybean.replay import report_plots
    from jellybean.replay.report import sections

    data = run_data()
    for frame in (3, 4, 14):          # these frames' re-ID outputs came from the parity decoder
        it = item("S01/c001", frame)
        it.meta["reconstructed"] = ["reid"]
        data.sink.items.pop(("S01/c001", frame))
        data.sink.add(it, it.capture_ts + 0.060)
    result = build_result(data, Scenario("train", "S01", ()), plan(), evaluate=False)
    # Per second of arrival: frames 3 and 4 arrive in second 0 (of 19 delivered there), 14 in second 1.
    assert result.reconstructed == {"reid": [(0.0, 2, 10 + 10), (1.0, 1, 10 + 7)]}
    (section,) = [s for s in sections(result) if s.title.startswith("Outputs rebuilt")]
    assert section.rows[0][:3] == ["reid", 3, 37]
    assert report_plots.plot_reconstructed(result, tmp_path / "r.png") and (tmp_path / "r.png").stat().st_size > 1000
    plain = build_result(run_data(), Scenario("train", "S01", ()), plan(), evaluate=False)
    assert plain.reconstructed == {} and not report_plots.plot_reconstructed(plain, tmp_path / "none.png")
    assert result.resent == {} and not [s for s in sections(result) if s.title.startswith("Outputs served")]


def test_outputs_served_from_re_sent_copies_are_counted_per_operator_and_second_and_drawn(tmp_path):
    from jellybean.replay import report_plots
    from jellybean.replay.report import sections

    data = run_data()
    for frame in (5, 15, 16):         # these frames' re-ID outputs came from copies sent again
        it = item("S01/c001", frame)
        it.meta["resent"] = ["reid"]
        data.sink.items.pop(("S01/c001", frame))
        data.sink.add(it, it.capture_ts + 0.060)
    result = build_result(data, Scenario("train", "S01", ()), plan(), evaluate=False)
    assert result.resent == {"reid": [(0.0, 1, 10 + 10), (1.0, 2, 10 + 7)]} and result.reconstructed == {}
    (section,) = [s for s in sections(result) if s.title.startswith("Outputs served from re-sent")]
    assert section.rows[0][:3] == ["reid", 3, 37]
    assert report_plots.plot_resent(result, tmp_path / "s.png") and (tmp_path / "s.png").stat().st_size > 1000


def test_what_a_sampled_re_id_embedded_is_counted_against_the_crops_delivered(tmp_path):
    from jellybean.replay.report import sections

    data = run_data()
    counts = {1: 2, 2: 0, 3: 1, 4: True, 5: -1, 6: "3"}   # the last three are bad values from the wire: not counted
    for frame, embedded in counts.items():
        it = item("S01/c001", frame)
        it.meta["boxes"], it.meta["ids"] = [[0, 0, 1, 1]] * 3, [1, 2, 3]
        it.meta["embedded"] = embedded
        data.sink.items.pop(("S01/c001", frame))
        data.sink.add(it, it.capture_ts + 0.060)
    dropped = item("S01/c002", 12, dropped="late at reid")   # a dropped frame's result is not counted
    dropped.meta["embedded"] = 5
    data.sink.items.pop(("S01/c002", 12))
    data.sink.add(dropped, dropped.capture_ts + 0.040)
    result = build_result(data, Scenario("train", "S01", ()), plan(), evaluate=False)
    assert (result.sampling.frames, result.sampling.crops, result.sampling.embedded) == (3, 9, 3)
    (section,) = [s for s in sections(result) if s.title.startswith("Sampled re-ID")]
    assert section.rows[0] == [3, 9, 3, "33.33", "3.00×"]
    plain = build_result(run_data(), Scenario("train", "S01", ()), plan(), evaluate=False)
    assert plain.sampling is None and not [s for s in sections(plain) if s.title.startswith("Sampled re-ID")]


def test_a_links_prediction_is_scaled_by_the_load_of_the_streams_upstream_of_it():
    from jellybean.replay.report import sections

    two_sites = plan().model_copy(update={
        "streams": (StreamRate(source="camera", location="a", rate=40.0, count=4),
                    StreamRate(source="camera", location="b", rate=40.0, count=4)),
        "links": tuple(LinkUse(**{"from": x, "to": y, "kb_per_s": kb, "bandwidth_mbps": 100.0, "latency_ms": 5.0})
                       for x, y, kb in (("a", "hub", 400.0), ("b", "hub", 400.0), ("hub", "cloud", 100.0)))})
    data = run_data()                       # 2 cameras x 20 frames over 2 s of video: 20 frames/s
    data.camera_sites = {cam: "a" for cam in data.camera_sites}
    data.link_bytes = {("a", "hub"): 20 * 10 * 1024 * 2, ("hub", "cloud"): 5 * 10 * 1024 * 2}
    result = build_result(data, Scenario("train", "S01", ()), two_sites, evaluate=False)
    assert result.load == pytest.approx(20 / 80)
    loads = {(link.from_, link.to): link.load for link in result.links}
    # Site a's uplink carries all that was replayed (20 of its 40 frames/s); the hub's, 20 of all 80.
    assert loads[("a", "hub")] == pytest.approx(20 / 40) and loads[("hub", "cloud")] == pytest.approx(20 / 80)
    (section,) = [s for s in sections(result, two_sites) if s.title.startswith("Links")]
    scaled = {row[0]: row[4] for row in section.rows}
    assert scaled == {"a → hub": "200.0", "hub → cloud": "25.0"}
