"""The Grafana dashboard and the Prometheus configuration against a real `jellybean up`: real
Mosquitto, real agent processes, the real controller, frames replayed through them; every metric
the dashboard queries is one they expose, on the ports the configuration scrapes."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from jellybean.agents.broker import find_mosquitto
from conftest import free_run

try:
    from .ops_promql import exposed_names, metric_names
    from .test_ops_kit import dashboard_exprs, prometheus_targets
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from ops_promql import exposed_names, metric_names
    from test_ops_kit import dashboard_exprs, prometheus_targets

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity"




def _wait(pred, timeout: float, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(f"`jellybean up` exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out; `jellybean up` said:\n{log.read_text()[-3000:]}")


def _get(url: str) -> str:
    return urllib.request.urlopen(url, timeout=10).read().decode()


def test_dashboard_queries_only_what_a_real_up_exposes_on_the_configured_ports(tmp_path):
    from jellybean.replay.cityflow import open_dataset
    from jellybean.replay.driver import BrokerReplay
    from jellybean.replay.scene import SceneConfig, write_scene

    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: this test needs the real broker (make test installs it)",
                    pytrace=False)
    write_scene(tmp_path / "scene", SceneConfig(cameras=1, seconds=4, seed=5))
    scene = open_dataset(tmp_path / "scene").scenarios[0]
    config_controller, config_agents = prometheus_targets()
    base = free_run(1 + len(config_agents))
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jellybean", "up", str(EXAMPLE), "--workdir", str(tmp_path / "up"),
             "--controller-metrics-port", str(base), "--metrics-port", str(base + 1), "--for", "900", "-q"],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        def printed() -> str | None:
            t = log.read_text()
            return t if re.search(r"^metrics: .*\n", t, re.M) else None

        text = _wait(printed, 300, proc, log)
        broker = re.search(r"broker: \w+ at (mqtt://\S+)", text).group(1)
        controller = re.search(r"controller metrics at (http://\S+)", text).group(1)
        agents = dict(re.findall(r"([\w-]+) (http://127\.0\.0\.1:\d+/metrics)",
                                 re.search(r"^metrics: (.*)$", text, re.M).group(1)))

        # The ports follow the configuration's scheme: the controller first, then the agents by name.
        def port(url: str) -> int:
            return int(url.rsplit(":", 1)[1].split("/")[0])
        assert port(controller) - base == config_controller - config_controller == 0
        assert {n: port(u) - base for n, u in agents.items()} == \
            {n: p - config_controller for n, p in config_agents.items()}

        # Frames through the deployment, so that histograms, byte counters and link figures have samples.
        data = BrokerReplay(broker, speed=2.0, limit_s=3.0, drain_s=30).run(scene)
        assert data.sink.snapshot(), "no frame came out of the deployment"
        _wait(lambda: 'jellybean_controller_link_bytes_total{' in _get(controller), 60, proc, log)

        pages = {"controller": _get(controller), **{n: _get(u) for n, u in agents.items()}}
        exposed = set().union(*(exposed_names(p) for p in pages.values()))
        used = set().union(*map(metric_names, dashboard_exprs()))
        assert len(used) >= 15, used
        assert used <= exposed, f"the dashboard queries metrics nobody exposes: {sorted(used - exposed)}"
        # Beyond declared families: the figures the replay produced are real samples.
        samples = {line.split("{")[0].split(" ")[0] for p in pages.values() for line in p.splitlines()
                   if line and not line.startswith("#")}
        for name in ("jellybean_items_out_total", "jellybean_processing_latency_ms_bucket",
                     "jellybean_bytes_out_total", "jellybean_controller_link_bytes_total",
                     "jellybean_controller_agent_latency_ms", "jellybean_controller_plan_cost_dollars_per_hour"):
            assert name in samples, name
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
