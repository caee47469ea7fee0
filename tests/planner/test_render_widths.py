"""`plan` and `explain` print every number whole at 80, 100 and 140 columns and piped (issue 12, item 2)."""

from __future__ import annotations

import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from jellybean.planner.build import build_problem, load_inputs
from jellybean.planner.jellybean_format import load_jellybean_inputs
from jellybean.planner.render import render_explain, render_summary, write_plan
from jellybean.planner.strategies import make_plan

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)?%?")


@pytest.fixture(scope="module")
def aicity_plan():
    inputs = load_inputs(*(ROOT / "configs/aicity" / f"{k}.yaml" for k in ("workflow", "zoo", "infrastructure")))
    return make_plan(build_problem(inputs), "optimal", time_limit=60, inputs=inputs.paths)


@pytest.fixture(scope="module")
def vqa_plan():
    problem = load_jellybean_inputs(ROOT / "examples/vqa/prototype_inputs")
    return make_plan(problem, "optimal", time_limit=60)


def _render(show, plan, width: int) -> str:
    console = Console(width=width, file=StringIO(), color_system=None)
    show(plan, console)
    return console.file.getvalue()


def _numbers_in_tables(text: str) -> set[str]:
    """The numbers in table cells (between box lines), where a cut would show."""
    cells = set()
    for line in text.splitlines():
        if "│" in line:
            cells.update(c.strip() for c in line.split("│"))
    # a figure is a whole cell, or the percentage after a bar
    return {cell.split()[-1] for cell in cells if cell and NUMBER.fullmatch(cell.split()[-1])}


@pytest.mark.parametrize("width", [80, 100, 140])
@pytest.mark.parametrize("which", ["explain aicity", "summary vqa"])
def test_every_number_is_whole(which, width, aicity_plan, vqa_plan):
    show, plan = (render_explain, aicity_plan) if which == "explain aicity" else (render_summary, vqa_plan)
    wide = _render(show, plan, 400)
    expected = _numbers_in_tables(wide)
    assert len(expected) >= 10, "the wide render holds the figures to look for"
    narrow = _render(show, plan, width)
    assert "…" not in narrow
    assert max(len(line) for line in narrow.splitlines()) <= width
    words = set(re.split(r"[\s│┃━─┏┓┗┛┡┩└┘╇╈┳┻╭╮╯╰]+", narrow))
    missing = {n for n in expected if n not in words}
    assert not missing, f"cut at {width} columns: {sorted(missing)}\n{narrow}"


def test_explain_piped_cuts_nothing(aicity_plan, tmp_path):
    path = tmp_path / "plan.yaml"
    write_plan(aicity_plan, path)
    proc = subprocess.run([sys.executable, "-m", "jellybean", "explain", str(path)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "80"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    assert "1600.0/1600.0" in proc.stdout or "1600.0/" in proc.stdout
    for link in aicity_plan.links:
        assert f"{link.mbps:.2f}" in proc.stdout
