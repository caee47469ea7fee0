"""`jellybean deploy`, `agent` and `up` through the real app: clear errors, no tracebacks."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from jellybean.cli.main import app

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity"
runner = CliRunner()


def _plan(tmp_path: Path) -> Path:
    out = tmp_path / "plan.yaml"
    result = runner.invoke(app, ["plan", "-w", str(EXAMPLE / "workflow.yaml"), "-z", str(EXAMPLE / "zoo.yaml"),
                                 "-i", str(EXAMPLE / "infrastructure.yaml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_deploy_names_the_sites_without_an_agent(mosquitto, tmp_path):
    result = runner.invoke(app, ["deploy", str(_plan(tmp_path)), "--broker", mosquitto, "--wait", "1", "--quiet"])
    assert result.exit_code == 1
    for site in ("crossing", "hub", "cloud"):
        assert site in result.output
    assert "jellybean agent" in result.output and "Traceback" not in result.output


def test_deploy_without_a_broker_says_so(tmp_path):
    from jellybean.agents.broker import free_port

    result = runner.invoke(app, ["deploy", str(_plan(tmp_path)), "--broker", f"mqtt://127.0.0.1:{free_port()}",
                                 "--quiet"])
    assert result.exit_code == 1 and "could not connect to the broker" in result.output


def test_deploy_finds_a_missing_input_file(tmp_path):
    plan = _plan(tmp_path)
    text = plan.read_text().replace(str(EXAMPLE / "zoo.yaml"), "gone/zoo.yaml")
    plan.write_text(text)
    result = runner.invoke(app, ["deploy", str(plan), "--broker", "mqtt://127.0.0.1:1", "--quiet"])
    assert result.exit_code == 2 and "inputs.zoo" in result.output and "--zoo" in result.output


def test_agent_rejects_a_name_that_is_not_a_topic_level():
    result = runner.invoke(app, ["agent", "--name", "edge/1", "--hardware", "x", "--broker", "mqtt://127.0.0.1:1"])
    assert result.exit_code == 1 and "edge/1" in result.output and "topic level" in result.output


def test_up_needs_an_example_directory(tmp_path):
    result = runner.invoke(app, ["up", str(tmp_path)])
    assert result.exit_code == 2 and "workflow.yaml" in result.output


def test_broker_secrets_options_fail_clearly_and_never_echo_the_password(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("topsecret\n")
    plan = _plan(tmp_path)
    result = runner.invoke(app, ["deploy", str(plan), "--broker", "mqtts://controller:inline-secret@127.0.0.1:1",
                                 "--password-file", str(secret), "--quiet"])
    assert result.exit_code == 1 and "give it once" in result.output
    assert "inline-secret" not in result.output and "controller:***@" in result.output
    result = runner.invoke(app, ["agent", "--name", "a1", "--hardware", "x", "--broker", "mqtts://a1@127.0.0.1:1",
                                 "--password-file", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "cannot read the broker password" in result.output
    result = runner.invoke(app, ["agent", "--name", "a1", "--hardware", "x", "--broker", "mqtts://127.0.0.1:1",
                                 "--cert", str(tmp_path / "a1.crt")])
    assert result.exit_code == 1 and "a1.crt does not exist" in result.output
    result = runner.invoke(app, ["agent", "--name", "a1", "--hardware", "x", "--broker", "mqtt://127.0.0.1:1",
                                 "--cert", str(tmp_path / "a1.crt")])
    assert result.exit_code == 1 and "plain MQTT" in result.output
    result = runner.invoke(app, ["replay", str(tmp_path), "--local", "--plan", str(plan),
                                 "--password-file", str(secret)])
    assert result.exit_code == 1 and "--local uses no broker" in result.output


def test_deploy_hint_names_the_agents_user_not_the_controllers_password(mosquitto, tmp_path, monkeypatch):
    monkeypatch.setenv("JELLYBEAN_BROKER_PASSWORD", "env-secret")
    url = mosquitto.replace("mqtt://", "mqtt://controller@")  # the plain broker takes any user
    result = runner.invoke(app, ["deploy", str(_plan(tmp_path)), "--broker", url, "--wait", "1", "--quiet"])
    assert result.exit_code == 1 and "env-secret" not in result.output
    hint = mosquitto.replace("mqtt://", "mqtt://SITE@") + " --password-file SITE.password"
    assert hint in " ".join(result.output.split()), result.output


def test_up_prints_every_agents_metrics_endpoint_on_the_ports_asked(tmp_path):
    """`up --metrics-port P`: agents serve Prometheus on P, P+1, ... and `up` prints where."""
    import re
    import subprocess
    import sys

    from jellybean.agents.broker import find_mosquitto

    if find_mosquitto() is None:
        import pytest

        pytest.skip("needs Mosquitto (make test installs it)")
    from conftest import free_run


    base = free_run(3)
    proc = subprocess.run([sys.executable, "-m", "jellybean", "up", str(EXAMPLE), "--workdir", str(tmp_path / "up"),
                           "--metrics-port", str(base), "--for", "3", "-q"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    urls = dict(re.findall(r"(\w[\w-]*) (http://127\.0\.0\.1:\d+)", proc.stderr.split("metrics: ", 1)[1].splitlines()[0]))
    assert sorted(urls) == ["cloud", "crossing", "hub"]
    assert sorted(int(u.rsplit(":", 1)[1]) for u in urls.values()) == [base, base + 1, base + 2]
    assert "Traceback" not in proc.stderr


def test_up_replays_the_approximate_example_through_agents_and_shows_what_sampling_saved(tmp_path):
    """examples/aicity-approx end to end: one agent per site, the sampled re-ID embeds a fraction of
    the crops (issue 16: at least 3x fewer inferences), and every frame is still accounted for."""
    import re

    import pytest

    from jellybean.agents.broker import find_mosquitto
    from jellybean.replay.scene import SceneConfig, write_scene

    if find_mosquitto() is None:
        pytest.skip("needs Mosquitto (make test installs it)")
    write_scene(tmp_path / "scene", SceneConfig(cameras=4, seconds=8, seed=7, width=320, height=180))
    out = runner.invoke(app, ["up", str(REPO / "examples" / "aicity-approx"), "--workdir", str(tmp_path / "up"),
                              "--replay", str(tmp_path / "scene"), "--quiet"])
    assert out.exit_code == 0, out.output
    assert "Traceback" not in out.output
    total = re.search(r"│ total\s+│\s+(\d+) │\s+(\d+) │\s+(\d+) │\s+(\d+) │\s+(\d+) │\s+(\d+) │", out.output)
    assert total is not None, out.output
    frames_in, frames_out, dropped, _late, lost, duplicates = map(int, total.groups())
    assert frames_in == 4 * 8 * 10 and lost == 0 and duplicates == 0 and frames_out + dropped == frames_in
    sampled = re.search(r"Sampled re-ID.*?│ (\d+)\s+│\s+(\d+) │\s+(\d+) │", out.output, re.S)
    assert sampled is not None, out.output
    frames, crops, embedded = map(int, sampled.groups())
    assert frames == frames_out and crops > 0
    assert 0 < embedded * 3 <= crops, (crops, embedded)
    idf1 = re.search(r"Tracking: measured IDF1.*?│\s+([\d.]+) %", out.output, re.S)
    assert idf1 is not None and float(idf1.group(1)) >= 70.0, out.output
