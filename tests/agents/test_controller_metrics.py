"""The controller's Prometheus endpoint against a real Mosquitto and real (in-process) agents: its
figures are the controller's own, they follow a lost agent and the re-plan, and `deploy
--metrics-port` serves and prints it."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from jellybean.adapt.runtime import AdaptOptions, Adapter
from jellybean.agents import topics
from jellybean.agents.agent import Agent, AgentOptions
from jellybean.agents.controller import Controller
from jellybean.agents.deployment import Deployment
from jellybean.agents.items import Item, encode_item
from jellybean.agents.messages import OperatorMetrics
from jellybean.agents.transport import MqttLink
from jellybean.cli.main import app
from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.render import write_plan
from jellybean.planner.strategies import make_plan

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity"
SITES = (("crossing", "jetson-orin-nano-8gb"), ("hub", "hub-x86-minipc"), ("cloud", "c6i.xlarge"))


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    inputs = load_inputs(EXAMPLE / "workflow.yaml", EXAMPLE / "zoo.yaml", EXAMPLE / "infrastructure.yaml")
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    return Deployment(plan=plan, inputs=inputs, zoo_dir=EXAMPLE)


def _wait(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample at `url`: (name, sorted labels) -> value."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _jpeg() -> bytes:
    import cv2
    import numpy as np

    ok, data = cv2.imencode(".jpg", np.full((360, 640, 3), 120, np.uint8))
    return data.tobytes()


def test_controller_endpoint_reports_plan_agents_links_and_a_replan(mosquitto, tmp_path, deployment):
    agents = {site: Agent(AgentOptions(name=site, hardware=hw, broker=mosquitto, model_dirs=(EXAMPLE,),
                                       cache_dir=tmp_path / f"cache-{site}", threads=1, heartbeat_s=0.3,
                                       metrics_s=0.6)).start()
              for site, hw in SITES}
    ctl = Controller(deployment, mosquitto, heartbeat_s=0.3)
    feeder = MqttLink(mosquitto, "feeder", clean=True).start()
    stop = [False]
    watcher = threading.Thread(target=ctl.run, kwargs={"until": lambda: stop[0]}, daemon=True)
    try:
        url = ctl.serve_metrics(0)
        assert url.startswith("http://127.0.0.1:") and url == ctl.metrics_url
        ctl.connect()
        assert ctl.wait_for_agents(20) == []
        first = ctl.publish()
        assert ctl.wait_ready(60), ctl.errors()
        watcher.start()

        m = scrape(url)
        plan = deployment.plan
        assert value(m, "jellybean_controller_assignment_version") == first
        cost = lambda part: value(m, "jellybean_controller_plan_cost_dollars_per_hour", part=part)  # noqa: E731
        assert cost("total") == pytest.approx(plan.cost.total)
        assert cost("network") == pytest.approx(plan.cost.network)
        assert value(m, "jellybean_controller_agents", state="online") == 3
        assert value(m, "jellybean_controller_replans_total") == 0
        assert value(m, "jellybean_controller_broker_connected") == 1
        for site, _ in SITES:
            assert value(m, "jellybean_controller_agent_online", agent=site, site=site) == 1
            assert value(m, "jellybean_controller_site_lost", site=site) == 0
        for op, rate in plan.predicted.throughput.items():
            assert value(m, "jellybean_controller_operator_planned_items_per_second",
                         operator=op) == pytest.approx(rate)
        for link in plan.links:
            assert value(m, "jellybean_controller_link_planned_bytes_per_second", from_site=link.from_,
                         to_site=link.to) == pytest.approx(link.kb_per_s * 1024)

        # A frame through the detector at the crossing: its output crosses the crossing -> hub link,
        # and the controller counts the bytes the crossing agent reports sending there.
        feeder.wait_connected()
        feeder.publish(topics.data("crossing", "detect"), encode_item(Item("cam", 1, time.time(), "frame",
                                                                            blobs=[_jpeg()])))
        sent = lambda: agents["crossing"].telemetry.bytes_out.get("hub", 0)  # noqa: E731
        assert _wait(lambda: sent() > 0)
        assert _wait(lambda: value(scrape(url), "jellybean_controller_link_bytes_total", agent="crossing",
                                   from_site="crossing", to_site="hub") == sent())
        m = scrape(url)
        assert value(m, "jellybean_controller_agent_items_per_second", agent="crossing", operator="detect") is not None
        assert value(m, "jellybean_controller_agent_served_per_second", agent="crossing", operator="detect") >= 0
        # Without --adapt nothing corrects capacities, and no factor is reported.
        assert not any(name == "jellybean_controller_capacity_factor" for name, _ in m)
        assert value(m, "jellybean_controller_agent_latency_ms", agent="crossing", operator="detect",
                     quantile="0.99") > 0

        # The hub crashes: the endpoint shows it lost, the site planned around, one re-plan, the new plan.
        agents["hub"].stop(graceful=False)
        assert _wait(lambda: ctl.lost == {"hub"} and ctl.version > first)
        m = scrape(url)
        assert value(m, "jellybean_controller_agent_online", agent="hub", site="hub") == 0
        assert value(m, "jellybean_controller_agents", state="offline") == 1
        assert value(m, "jellybean_controller_site_lost", site="hub") == 1
        assert value(m, "jellybean_controller_replans_total") == 1
        assert value(m, "jellybean_controller_assignment_version") == ctl.version
        assert value(m, "jellybean_controller_plan_cost_dollars_per_hour", part="total") == \
            pytest.approx(ctl.current.plan.cost.total)
        assert ctl.current.plan.cost.total != pytest.approx(plan.cost.total)
        # The lost agent's per-operator figures are no longer shown as current.
        assert value(m, "jellybean_controller_agent_items_per_second", agent="hub", operator="reid") is None
    finally:
        stop[0] = True
        feeder.stop()
        ctl.stop()
        for a in agents.values():
            a.stop()
    # Stopping the controller closes its endpoint.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


runner = CliRunner()


def test_deploy_serves_and_prints_the_controllers_endpoint_on_the_port_asked(mosquitto, tmp_path, deployment):
    """No agent comes: deploy fails after --wait, but it printed its endpoint first, on the port asked."""
    from jellybean.agents.broker import free_port

    plan = tmp_path / "plan.yaml"
    write_plan(deployment.plan, plan)
    port = free_port()
    result = runner.invoke(app, ["deploy", str(plan), "--broker", mosquitto, "--wait", "1", "--quiet",
                                 "--metrics-port", str(port)])
    assert result.exit_code == 1, result.output
    assert f"controller metrics at http://127.0.0.1:{port}/metrics" in result.output
    # ... and released the port on the way out.
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_deploy_on_a_taken_metrics_port_is_one_clear_error(mosquitto, tmp_path, deployment):
    plan = tmp_path / "plan.yaml"
    write_plan(deployment.plan, plan)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["deploy", str(plan), "--broker", mosquitto, "--wait", "1", "--quiet",
                                     "--metrics-port", str(port)])
    assert result.exit_code == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.output and "--metrics-port" in result.output
    assert "Traceback" not in result.output


def test_metrics_listen_on_loopback_unless_jellybean_metrics_host_says_otherwise(monkeypatch):
    from prometheus_client import CollectorRegistry, Counter

    from jellybean.agents.telemetry import METRICS_HOST_ENV, serve_registry

    registry = CollectorRegistry()
    Counter("probe", "a probe", registry=registry).inc()
    monkeypatch.delenv(METRICS_HOST_ENV, raising=False)
    url, server = serve_registry(registry, 0)
    try:
        assert server.server_address[0] == "127.0.0.1" and url.startswith("http://127.0.0.1:")
        assert "probe_total 1.0" in urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv(METRICS_HOST_ENV, "0.0.0.0")    # as the container and the systemd example set it
    url, server = serve_registry(registry, 0)
    try:
        assert server.server_address[0] == "0.0.0.0"
        assert url == f"http://{socket.gethostname()}:{server.server_port}/metrics"
        assert "probe_total 1.0" in urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics",
                                                           timeout=10).read().decode()
    finally:
        server.shutdown()
        server.server_close()


def test_the_endpoint_reports_the_capacity_factor_adapt_plans_with(mosquitto, deployment):
    adapter = Adapter(deployment, AdaptOptions(elastic=False))
    ctl = Controller(deployment, mosquitto, heartbeat_s=0.3, adapter=adapter)
    try:
        url = ctl.serve_metrics(0)
        site = next(w.location for w in deployment.plan.workers if w.operator == "detect" and w.count > 0)
        planned = sum(w.capacity for w in deployment.plan.workers if w.location == site and w.operator == "detect")
        # A backlogged report: the site served 60 % of what the plan gives it.
        adapter.observe(deployment.plan, {site: [OperatorMetrics(
            operator="detect", served_per_s=0.6 * planned, items_per_s=0.6 * planned,
            arrivals_per_s=planned, queue_depth=int(planned))]}, now=0.0)
        m = scrape(url)
        assert value(m, "jellybean_controller_capacity_factor", site=site, operator="detect") == pytest.approx(0.6)
    finally:
        ctl.stop()
