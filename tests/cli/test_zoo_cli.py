"""`jellybean zoo build | profile` on the real app: exit codes, tables, JSON, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from jellybean.cli.main import app
from jellybean.spec.base import load_model
from jellybean.spec.zoo import Zoo
from conftest import tiny_cnn

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, text: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo-cli")
    model = tiny_cnn(root / "tiny.onnx")
    result = run("zoo", "build", model, "--operator", "classify", "--task", "classification",
                 "--variants", "fp16,channel-pruned", "--no-tensorrt", "--threads", "1", "-o", root / "zoo")
    return root, result


def test_build_prints_a_table_and_writes_a_valid_zoo(built):
    root, result = built
    assert result.exit_code == 0, result.output
    for text in ("fp32", "fp16", "channel-pruned-30", "classify/fp16.onnx", "dev. vs fp32"):
        assert text in result.output
    zoo = load_model(Zoo, root / "zoo" / "manifest.yaml")
    assert [v.name for v in zoo.operator("classify").variants] == ["fp32", "fp16", "channel-pruned-30"]


def test_profile_json_and_table(built):
    root, _ = built
    fast = ["--runs", "3", "--warmup", "0", "--min-seconds", "0", "--threads", "1"]
    result = run("zoo", "profile", root / "zoo", "--hardware", "hub-x86-minipc", "--batch-sizes", "1,2",
                 "--json", *fast)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["hardware"] == "hub-x86-minipc" and len(data["profiles"]) == 3
    for p in data["profiles"]:
        assert p["latency_ms"] <= p["p90_ms"] <= p["p99_ms"] and set(p["throughput"]) == {"1", "2"}
    table = run("zoo", "profile", root / "zoo", "--batch-sizes", "1", "--operator", "classify", *fast)
    assert table.exit_code == 0, table.output
    assert "b1/s" in table.output and "classify/channel-pruned-30" in table.output
    assert "note: recorded as profiles.local-cpu; pass --hardware" in table.output
    profiles = load_model(Zoo, root / "zoo" / "manifest.yaml").operator("classify").variant("fp32").profiles
    assert set(profiles) == {"hub-x86-minipc", "local-cpu"}


def test_build_errors_are_one_line_and_write_nothing(tmp_path):
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"\x00\x01 not an onnx model")
    one_error_line(run("zoo", "build", garbage, "--operator", "det", "-o", tmp_path / "zoo"), "not an ONNX model")
    fixed = tiny_cnn(tmp_path / "fixed.onnx", batch=1)
    one_error_line(run("zoo", "build", fixed, "--operator", "det", "-o", tmp_path / "zoo"),
                   "export with a dynamic batch axis")
    model = tiny_cnn(tmp_path / "tiny.onnx")
    one_error_line(run("zoo", "build", model, "--operator", "det", "--task", "segmentation", "-o", tmp_path / "zoo"),
                   "--task: unknown task 'segmentation'")
    one_error_line(run("zoo", "build", model, "--operator", "det", "--calibration", tmp_path / "none",
                       "-o", tmp_path / "zoo"), "calibration directory not found")
    one_error_line(run("zoo", "build", model, "--operator", "det", "--variants", "fp8", "-o", tmp_path / "zoo"),
                   "unknown variant kind(s) fp8")
    assert not (tmp_path / "zoo").exists()
    missing = run("zoo", "build", model, "-o", tmp_path / "zoo")
    assert missing.exit_code == 2 and "--operator" in missing.output


def test_profile_errors_are_one_line(built, tmp_path):
    root, _ = built
    one_error_line(run("zoo", "profile", tmp_path / "nowhere"), "not a directory")
    one_error_line(run("zoo", "profile", tmp_path), "no manifest.yaml here; build the zoo first")
    one_error_line(run("zoo", "profile", root / "zoo", "--batch-sizes", "1,two"), "--batch-sizes: '1,two'")
    one_error_line(run("zoo", "profile", root / "zoo", "--hardware", "hub-x86-minpc", "--catalog", REPO / "tiers"),
                   "unknown hardware 'hub-x86-minpc'; did you mean 'hub-x86-minipc'?")
    one_error_line(run("zoo", "profile", root / "zoo", "--dim", "height"), "--dim: 'height' is not NAME=N")


def test_zoo_without_a_command_shows_help():
    result = run("zoo")
    assert "build" in result.output and "profile" in result.output


def test_eval_records_top1_in_the_manifest(built, tmp_path):
    import cv2
    import numpy as np

    root, _ = built
    rng = np.random.default_rng(0)
    for c in range(10):
        folder = tmp_path / "classes" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(folder / f"{i}.png"), (rng.random((32, 32, 3)) * 255).astype(np.uint8))
    result = run("zoo", "eval", root / "zoo", "--data", tmp_path / "classes", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    evaluated = {v["variant"]: v for v in out["variants"] if v["status"] == "evaluated"}
    assert set(evaluated) == {"fp32", "fp16", "channel-pruned-30"}
    for v in evaluated.values():
        assert 0.0 <= v["metrics"]["top1"] <= 1.0 and v["metrics"]["images"] == 20
    zoo = load_model(Zoo, root / "zoo" / "manifest.yaml")
    fp32 = zoo.operator("classify").variant("fp32")
    assert fp32.metrics["top1"] == pytest.approx(evaluated["fp32"]["metrics"]["top1"])
    table = run("zoo", "eval", root / "zoo", "--data", tmp_path / "classes")
    assert table.exit_code == 0 and "classify/fp32" in table.output and "accuracy recorded" in table.output


def test_eval_bad_data_is_one_line(built, tmp_path):
    root, _ = built
    (tmp_path / "empty").mkdir()
    one_error_line(run("zoo", "eval", root / "zoo", "--data", tmp_path / "empty"), str(tmp_path / "empty"))


def _children(pid: int) -> dict[int, str]:
    """The live child processes of `pid` and their command lines, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_a_profile_stopped_with_sigterm_stops_its_agent_and_broker(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    zoo = tmp_path / "zoo"
    built = run("zoo", "build", REPO / "model_zoo/aicity/detector_w050.onnx", "--operator", "detect",
                "--task", "detection", "--variants", "int8-dynamic", "--no-tensorrt", "-o", zoo)
    assert built.exit_code == 0, built.output
    proc = subprocess.Popen([sys.executable, "-m", "jellybean", "zoo", "profile", str(zoo), "--batch-sizes", "1",
                             "--min-seconds", "60", "--max-seconds", "60", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            children = _children(proc.pid)
            if any(" agent " in cmd for cmd in children.values()):
                break
            time.sleep(0.2)
        assert any(" agent " in cmd for cmd in children.values()), f"no agent started: {children}"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert proc.returncode != 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
            time.sleep(0.2)
        left = {pid: cmd for pid, cmd in children.items() if Path(f"/proc/{pid}").exists()
                and "(Z)" not in Path(f"/proc/{pid}/stat").read_text()}
        assert not left, f"left running after SIGTERM: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid, cmd in children.items():
            # what a failing run left behind: the PIDs seen, if they still run the same command
            try:
                if (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()) == cmd:
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


def test_an_agent_told_to_stop_with_its_parent_stops_when_the_parent_is_gone(tmp_path):
    """`zoo profile` starts its agents so: a parent interrupted inside Popen leaves none behind."""
    import subprocess
    import sys
    import time

    from jellybean.agents.broker import MosquittoBroker, find_mosquitto

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    broker = MosquittoBroker(None, None, workdir=tmp_path / "broker").start()
    broker.wait_ready()
    try:
        # A parent that starts the agent with its own PID in the variable, prints the agent's PID and exits.
        parent = subprocess.run([sys.executable, "-c", (
            "import os, subprocess, sys\n"
            "env = {**os.environ, 'JELLYBEAN_STOP_WITH_PARENT': str(os.getpid())}\n"
            f"p = subprocess.Popen([sys.executable, '-m', 'jellybean', 'agent', '--name', 'orphan', '--hardware', "
            f"'local-cpu', '--broker', '{broker.url}', '--log-level', 'warning'], env=env, "
            "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "print(p.pid)\n")], capture_output=True, text=True, timeout=60, check=True)
        agent = int(parent.stdout.strip())

        def running() -> bool:
            try:
                state = Path(f"/proc/{agent}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                return False
            return state not in ("Z", "X")

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and running():
            time.sleep(0.2)
        gone = not running()
        if not gone:
            import os
            import signal
            os.kill(agent, signal.SIGKILL)
        assert gone, "the agent outlived its parent"
    finally:
        broker.stop()
