"""`jellybean up --adapt --replay`: the controller decides while the replay runs, says what it
decided and why, and the replay still accounts for every frame."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from jellybean.cli.main import app
from jellybean.replay.scene import SceneConfig, write_scene

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "aicity"


def test_up_adapts_during_the_replay_and_loses_nothing(tmp_path):
    write_scene(tmp_path / "scene", SceneConfig(cameras=4, seconds=8, seed=3, width=320, height=180))
    # 1x for 2 s, then 3x: the example's crossing cannot keep its detector at three times the load.
    trace = tmp_path / "trace.csv"
    trace.write_text("t,multiplier\n0,1\n2,3\n")
    out = CliRunner().invoke(app, ["up", str(EXAMPLE), "--workdir", str(tmp_path / "up"), "--adapt", "--deadlines",
                                   "--adapt-period", "1", "--replay", str(tmp_path / "scene"), "--trace", str(trace),
                                   "--quiet"])
    assert out.exit_code == 0, out.output
    assert "Traceback" not in out.output
    assert "decisions (s since the replay started):" in out.output, out.output
    decided = re.findall(r"^\s+\d+\.\d\s+adapt \((hardware|accuracy|overload)\): (.+)$", out.output, re.M)
    assert decided, out.output
    # The first decision is the plan's load at the target; 3x pushes it to scale accuracy.
    assert decided[0][0] == "hardware"
    assert any(phase in ("accuracy", "overload") for phase, _ in decided), out.output
    total = re.search(r"│ total\s+│\s+(\d+) │\s+(\d+) │\s+(\d+) │\s+(\d+) │\s+(\d+) │", out.output)
    assert total is not None, out.output
    frames_in, frames_out, dropped, _late, lost = map(int, total.groups())
    assert frames_in > 0 and lost == 0 and frames_out + dropped == frames_in
