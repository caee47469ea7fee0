"""The operations kit in configs/ops: the Prometheus configuration, the Grafana dashboard, the
systemd unit and the container recipe, checked with the real tools where this machine has them
(promtool, systemd-analyze) and against the real command line otherwise."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer.main
import yaml

from jellybean.cli.main import app

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "configs" / "ops"
CONTROLLER_PORT = 9400          # configs/ops/prometheus.yml: the controller; agents on the next ports

try:
    from .ops_promql import metric_names
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from ops_promql import metric_names


def _agent_options() -> set[str]:
    command = typer.main.get_command(app).commands["agent"]
    return {o for p in command.params for o in p.opts}


# -- Prometheus ------------------------------------------------------------------------------------
def prometheus_targets(path: Path = OPS / "prometheus.yml") -> tuple[int, dict[str, int]]:
    """The controller's port and each agent's (by its `agent` label) in the scrape configuration."""
    config = yaml.safe_load(path.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"jellybean-controller", "jellybean-agents"}, set(jobs)
    (controller,) = [t for sc in jobs["jellybean-controller"]["static_configs"] for t in sc["targets"]]
    agents = {}
    for sc in jobs["jellybean-agents"]["static_configs"]:
        (target,) = sc["targets"]
        assert sc["labels"]["agent"] and sc["labels"]["site"], sc
        agents[sc["labels"]["agent"]] = int(target.rsplit(":", 1)[1])
    return int(controller.rsplit(":", 1)[1]), agents


def test_prometheus_config_follows_the_port_scheme_of_up():
    """Controller on P, agents on P+1, ... in agent name order, as `up --controller-metrics-port P
    --metrics-port P+1` puts them; the agents are the sites the shipped example's plan uses."""
    from jellybean.agents.deployment import sites_needed
    from jellybean.planner.build import build_problem, load_inputs
    from jellybean.planner.strategies import make_plan

    controller, agents = prometheus_targets()
    assert controller == CONTROLLER_PORT
    assert [agents[name] for name in sorted(agents)] == list(range(controller + 1, controller + 1 + len(agents)))
    example = REPO / "examples" / "aicity"
    inputs = load_inputs(example / "workflow.yaml", example / "zoo.yaml", example / "infrastructure.yaml")
    plan = make_plan(build_problem(inputs), "optimal", time_limit=20, inputs=inputs.paths)
    assert sorted(agents) == sorted(sites_needed(plan))
    # The command in its header is the one that matches it.
    assert (f"jellybean up examples/aicity --controller-metrics-port {controller} --metrics-port {controller + 1}"
            in (OPS / "prometheus.yml").read_text())


def test_promtool_accepts_the_prometheus_config(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus); the YAML is checked above")
    ok = subprocess.run([promtool, "check", "config", str(OPS / "prometheus.yml")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # ... and it does refuse a broken one (so the check above means something).
    bad = tmp_path / "prometheus.yml"
    bad.write_text((OPS / "prometheus.yml").read_text().replace("scrape_interval: 5s", "scrape_interval: soon"))
    assert subprocess.run([promtool, "check", "config", str(bad)], capture_output=True).returncode != 0


# -- Grafana ---------------------------------------------------------------------------------------
def dashboard_exprs(path: Path = OPS / "grafana-dashboard.json") -> list[str]:
    board = json.loads(path.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def test_dashboard_is_a_grafana_dashboard_with_the_panels_operations_need():
    board = json.loads((OPS / "grafana-dashboard.json").read_text())
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert board["uid"] and board["schemaVersion"] >= 30
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    for p in panels:
        assert {"h", "w", "x", "y"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), p["title"]
    names = set().union(*map(metric_names, dashboard_exprs()))
    exprs = " ".join(dashboard_exprs())
    # items/s, queue depth, latency percentiles, drops by reason, link bytes, and the controller's figures
    for needed in ("jellybean_items_out_total", "jellybean_queue_depth", "jellybean_processing_latency_ms_bucket",
                   "jellybean_items_dropped_total", "jellybean_bytes_out_total",
                   "jellybean_controller_link_bytes_total", "jellybean_controller_plan_cost_dollars_per_hour",
                   "jellybean_controller_assignment_version", "jellybean_controller_replans_total",
                   "jellybean_controller_agents"):
        assert needed in names, needed
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le, operator) (rate(jellybean_processing_latency_ms_bucket" in exprs
    assert "sum by (operator, reason)" in exprs


def test_promql_names_are_found_and_only_names():
    assert metric_names('histogram_quantile(0.99, sum by (le, operator) (rate(x_ms_bucket{job="a b", le!="1"}[5m])))') \
        == {"x_ms_bucket"}
    assert metric_names("sum(rate(a_total[$__range])) / on (agent) group_left (site) b + 1e3 * count(c) offset 5m") \
        == {"a_total", "b", "c"}
    assert metric_names("1 - up") == {"up"}


# -- systemd ---------------------------------------------------------------------------------------
UNIT = OPS / "jellybean-agent.service"


def _exec_start(unit: str) -> list[str]:
    line = re.search(r"^ExecStart=(.*?)(?<!\\)$", unit.replace("\\\n", " "), re.M).group(1)
    return shlex.split(line)


def test_unit_runs_jellybean_agent_with_real_options_and_no_secret_in_argv():
    text = UNIT.read_text()
    argv = _exec_start(text)
    assert argv[0].endswith("/bin/jellybean") and argv[1] == "agent"
    options = [a for a in argv if a.startswith("--")]
    assert set(options) <= _agent_options(), set(options) - _agent_options()
    assert {"--name", "--hardware", "--broker", "--password-file", "--metrics-port"} <= set(options)
    # The password comes from a systemd credential, as a file the agent reads.
    assert argv[argv.index("--password-file") + 1] == "%d/broker-password"
    assert re.search(r"^LoadCredential=broker-password:/", text, re.M)
    assert "JELLYBEAN_BROKER_PASSWORD" not in text and "password=" not in text.lower()
    # Every variable it uses is set by the example environment file, which holds no secret.
    env = dict(line.split("=", 1) for line in (OPS / "agent.env.example").read_text().splitlines()
               if line and not line.startswith("#"))
    used = set(re.findall(r"\$\{(\w+)\}", " ".join(argv)))
    assert used and used <= set(env), used - set(env)
    assert not any("PASSWORD" in k for k in env) and ":" not in env["JELLYBEAN_BROKER"].split("@")[0].split("//")[1]
    assert env["JELLYBEAN_METRICS_HOST"] == "0.0.0.0"


def test_systemd_analyze_verifies_the_unit(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd); the unit's command line "
                    "is checked against `jellybean agent` above")
    # The unit names the installed command (/opt/jellybean/bin/jellybean), which verify requires to
    # exist: here it is this checkout's. Nothing else is changed.
    installed = _exec_start(UNIT.read_text())[0]
    here = Path(sys.executable).parent / "jellybean"
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(installed, str(here)))

    def verify(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([tool, "verify", str(path)], capture_output=True, text=True, timeout=120)

    result = verify(unit)
    # verify exits 0 on unknown keys and bad values too, and says so: any word about the unit fails.
    assert result.returncode == 0 and unit.name not in result.stdout + result.stderr, result.stdout + result.stderr
    broken = tmp_path / "broken" / UNIT.name
    broken.parent.mkdir()
    broken.write_text(unit.read_text().replace("LoadCredential=", "LoadCredentials="))
    result = verify(broken)
    assert result.returncode != 0 or UNIT.name in result.stdout + result.stderr


# -- the container recipe --------------------------------------------------------------------------
CONTAINERFILE = OPS / "Containerfile"


def instructions(path: Path = CONTAINERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1].strip()) for ln in joined.splitlines() if ln.strip()]


def test_containerfile_builds_from_the_repository_as_a_non_root_jellybean_agent():
    steps = instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    # Everything it copies is in the build context (the repository root).
    copies = [shlex.split(args) for op, args in steps if op == "COPY"]
    assert copies
    for *sources, _dest in copies:
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    order = [op for op, _ in steps]
    install = next(i for i, (op, args) in enumerate(steps) if op == "RUN" and "pip install ." in args)
    user = max(i for i, op in enumerate(order) if op == "USER")
    assert install < user < order.index("ENTRYPOINT")
    assert dict(steps)["USER"] not in ("root", "0")
    assert "useradd" in " ".join(args for op, args in steps if op == "RUN")
    entrypoint = json.loads(dict(steps)["ENTRYPOINT"])
    assert entrypoint == ["jellybean", "agent"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint[0] in scripts
    # The entrypoint is a real command: the console script runs `agent`.
    run = subprocess.run([str(Path(sys.executable).parent / entrypoint[0]), *entrypoint[1:], "--help"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "--password-file" in run.stdout, run.stdout + run.stderr
    # The endpoint is reachable from outside the container.
    assert any("JELLYBEAN_METRICS_HOST=0.0.0.0" in args.split() for op, args in steps if op == "ENV")


def test_what_the_containerfile_copies_is_a_complete_package(tmp_path):
    """`pip install .` in the image sees only what it copied: its metadata must build from that
    (setuptools egg_info: the readme, the packages, the console script), without the network."""
    context = tmp_path / "context"
    context.mkdir()
    for op, args in instructions():
        if op == "COPY":
            *sources, dest = shlex.split(args)
            for source in sources:
                target = context / (Path(dest) / Path(source).name if dest.endswith("/") else dest)
                if (REPO / source).is_dir():
                    shutil.copytree(REPO / source, target,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(REPO / source, target)
    out = tmp_path / "egg"
    out.mkdir()
    built = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "egg_info", "-e", str(out)],
                           cwd=context, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0 and "cannot be found" not in built.stderr, built.stderr
    (info,) = out.glob("*.egg-info")
    assert "jellybean = jellybean.cli.main:app" in (info / "entry_points.txt").read_text()
    sources = (info / "SOURCES.txt").read_text().split()
    for module in ("jellybean/cli/main.py", "jellybean/agents/agent.py", "jellybean/agents/telemetry.py"):
        assert module in sources

