"""Shared fixtures: a small, complete set of specs written to a temporary directory."""

from __future__ import annotations

import copy
import os

# Commands print wide tables when piped and $COLUMNS is unset (jellybean.tables), and tests read
# them so. An xdist worker starts with COLUMNS=80 in its environment, which consoles made at import
# would keep: give it the controller's (set here before anything imports a console).
if "PYTEST_XDIST_WORKER" not in os.environ:
    os.environ["JELLYBEAN_TESTS_COLUMNS"] = os.environ.get("COLUMNS", "")
elif os.environ.get("JELLYBEAN_TESTS_COLUMNS"):
    os.environ["COLUMNS"] = os.environ["JELLYBEAN_TESTS_COLUMNS"]
elif "JELLYBEAN_TESTS_COLUMNS" in os.environ:
    os.environ.pop("COLUMNS", None)

from pathlib import Path

import numpy as np

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VQA_INPUTS = REPO / "examples" / "vqa" / "prototype_inputs"

HARDWARE = {
    "kind": "hardware",
    "hardware": [
        {"name": "cam-box", "tier": "edge", "price_per_hour": 0.02, "memory_mb": 2000},
        {"name": "hub-cpu", "tier": "hub", "price_per_hour": 0.10, "memory_mb": 8000},
        {"name": "cloud-gpu", "tier": "cloud", "price_per_hour": 0.50, "memory_mb": 16000},
    ],
}

WORKFLOW = {
    "kind": "workflow",
    "name": "mini",
    "sources": [{"name": "camera", "rate": 10, "item_kb": 50}],
    "operators": [
        {"name": "detect", "inputs": ["camera"]},
        {"name": "track", "inputs": ["detect"]},
    ],
    "edges": [{"from": "detect", "to": "track", "ratio": 1, "item_kb": 2}],
    "slo": {"accuracy": 0.6},
}

ZOO = {
    "kind": "model-zoo",
    "name": "mini-zoo",
    "operators": [
        {
            "name": "detect",
            "variants": [
                {"name": "small", "accuracy": 0.62, "memory_mb": 500,
                 "profiles": {"cam-box": {"latency_ms": 50}, "hub-cpu": {"latency_ms": 40},
                              "cloud-gpu": {"latency_ms": 5}}},
                {"name": "large", "accuracy": 0.80, "memory_mb": 3000,
                 "profiles": {"cam-box": {"latency_ms": 200}, "hub-cpu": {"latency_ms": 120},
                              "cloud-gpu": {"latency_ms": 10}}},
            ],
        },
        {
            "name": "track",
            "variants": [{"name": "sort", "accuracy": 1.0,
                          "profiles": {"cam-box": {"latency_ms": 5}, "hub-cpu": {"latency_ms": 2},
                                       "cloud-gpu": {"latency_ms": 2}}}],
        },
    ],
}

INFRA = {
    "kind": "infrastructure",
    "name": "mini-infra",
    "hardware_catalog": ["hardware.yaml"],
    "sites": [
        {"name": "cam-1", "tier": "edge", "hardware": {"cam-box": 1}, "sources": {"camera": 2}},
        {"name": "cam-2", "tier": "edge", "hardware": {"cam-box": 1}, "sources": {"camera": 1}},
        {"name": "hub", "tier": "hub", "hardware": {"hub-cpu": 2}},
        {"name": "cloud", "tier": "cloud", "hardware": {"cloud-gpu": 8}},
    ],
    "links": [
        {"from": "cam-1", "to": "hub", "bandwidth_mbps": 100, "latency_ms": 2},
        {"from": "cam-2", "to": "hub", "bandwidth_mbps": 100, "latency_ms": 2},
        {"from": "hub", "to": "cloud", "bandwidth_mbps": 1000, "latency_ms": 20, "cost_per_gb": 0.09},
    ],
}


class SpecSet:
    """Editable copies of the mini specs; `write()` puts them in a directory and returns paths."""

    def __init__(self, root: Path):
        self.root = root
        self.hardware = copy.deepcopy(HARDWARE)
        self.workflow = copy.deepcopy(WORKFLOW)
        self.zoo = copy.deepcopy(ZOO)
        self.infra = copy.deepcopy(INFRA)

    def write(self) -> dict[str, Path]:
        self.root.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, data in (("hardware", self.hardware), ("workflow", self.workflow), ("zoo", self.zoo),
                           ("infrastructure", self.infra)):
            path = self.root / f"{name}.yaml"
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            paths[name] = path
        return paths

    def problem(self):
        from jellybean.planner.build import build_problem, load_inputs

        p = self.write()
        return build_problem(load_inputs(p["workflow"], p["zoo"], p["infrastructure"]))


@pytest.fixture
def specs(tmp_path: Path) -> SpecSet:
    return SpecSet(tmp_path / "specs")


def tiny_cnn(path: Path, batch: int | str = "batch", seed: int = 0) -> Path:
    """Conv-Relu-Conv-Relu-GlobalAveragePool-Flatten-Gemm on 3x32x32 input, 10 outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def init(name, shape, scale):
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        [init("w1", (8, 3, 3, 3), 0.3), init("b1", (8,), 0.1), init("w2", (16, 8, 3, 3), 0.2),
         init("b2", (16,), 0.1), init("w3", (10, 16), 0.3), init("b3", (10,), 0.1)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# -- brokers ---------------------------------------------------------------------------------------
# Broker tests run against a real Mosquitto (DESIGN.md); a missing one fails them, it does not skip
# them, because `make test` (and so CI) installs it.
from jellybean.agents.broker import BrokerConfig, MosquittoBroker, find_mosquitto, free_port, write_broker_config  # noqa: E402

SECURE_AGENTS = ["edge-1", "hub-1"]


def _require_mosquitto() -> str:
    executable = find_mosquitto()
    if executable is None:
        pytest.fail("mosquitto is not installed (not on PATH nor in /usr/sbin): broker tests need the real broker; "
                    ".ci/run installs it (apt-get install mosquitto)", pytrace=False)
    return executable


@pytest.fixture
def mosquitto(tmp_path: Path):
    """A plain, anonymous Mosquitto on a free loopback port; yields its URL mqtt://127.0.0.1:PORT."""
    with MosquittoBroker(None, free_port(), workdir=tmp_path / "mosquitto", executable=_require_mosquitto()) as broker:
        yield broker.url


@pytest.fixture
def secure_broker(tmp_path: Path):
    """Mosquitto on the TLS, password and ACL configuration that write_broker_config writes for
    agents edge-1 and hub-1; yields the BrokerConfig (url, ca, credentials, url_for(user))."""
    executable = _require_mosquitto()
    config: BrokerConfig = write_broker_config(tmp_path / "broker", agents=SECURE_AGENTS, port=free_port())
    with MosquittoBroker(config.conf, workdir=tmp_path / "broker-run", executable=executable):
        yield config


def free_run(n: int) -> int:
    """A port with the next n - 1 free as well."""
    import socket

    for _ in range(50):
        base = free_port()
        try:
            for k in range(n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + k))
            return base
        except OSError:
            continue
    raise AssertionError("no run of free ports")


# --- analytics: a small generated track store (tests/analytics; one conftest per suite, since the
# test folders are not packages and a second conftest.py would shadow this one's names)

ANALYTICS_STORE = dict(intersections=4, days=1.0, rows=500_000, seed=7)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """Four intersections, one day, 5·10^5 observations, in random physical order."""
    from jellybean.analytics import generate, store

    path = tmp_path_factory.mktemp("analytics") / "small.duckdb"
    columns, hz = generate.generate(generate.config(**ANALYTICS_STORE))
    con = store.create(path, hz)
    store.insert(con, columns, shuffled=True)
    con.close()
    return path


@pytest.fixture()
def analytics_con(small_store):
    """A read-only connection to the small store."""
    from jellybean.analytics import store

    connection = store.connect(small_store)
    yield connection
    connection.close()


# `make test` runs the suite on two pytest-xdist workers, a module at a time each (--dist
# loadfile). Modules that time the machine (profiles against the deployed agents' throughput,
# bursts sized from a profile, bandwidth on shaped links), create network namespaces or write
# into the repository run alone: they hold this lock exclusively for the whole module, every
# other module holds it shared. Without xdist it is not taken.
EXCLUSIVE_MODULES = {
    "tests/adapt/test_step_burst.py",
    "tests/adapt/test_up_adapt.py",
    "tests/agents/test_capacity.py",
    "tests/agents/test_bridges.py",
    "tests/cli/test_zoo_cli.py",
    "tests/sites/test_isolated_run.py",
    "tests/sites/test_loopback_sites.py",
    "tests/sites/test_netns.py",
    "tests/test_readme.py",
    "tests/zoo/test_operator_profile.py",
    "tests/zoo/test_profile.py",
    "tests/zoo/test_zoo_to_plan.py",
}


@pytest.fixture(scope="module", autouse=True)
def _machine_lock(request, tmp_path_factory):
    if getattr(request.config, "workerinput", None) is None:
        yield
        return
    import fcntl

    module = Path(str(request.node.path)).resolve().relative_to(REPO).as_posix()
    exclusive = module in EXCLUSIVE_MODULES
    # The workers' temporary directories share a parent, which pytest clears in later runs.
    path = tmp_path_factory.getbasetemp().parent / "machine.lock"
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
