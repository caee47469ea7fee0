"""The replay's terminal tables never cut a number or a name: at 80, 100 and 140 columns, on a
terminal and piped (issue 12: `S01/c0…` in a piped replay, `ID switch…` and `precisi…` in the demo)."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from rich.console import Console

from jellybean.replay.report import _summary_rows, render_terminal, sections
from jellybean.replay.results import CameraCounts, LinkMeasure
from jellybean.replay.tracking_metrics import CameraTracking
from tests.replay.test_report import make_plan, make_result

FIGURE = re.compile(r"^-?[\d,]+(?:\.\d+)?[×%]?$")
SPLIT = re.compile(r"[\s│┃┏┓┗┛┡┩└┘┌┐├┤┬┴┼━─╇╈╋┳┻╭╮╯╰]+")


def wide_result():
    """The shared example, with the names and figures that used to be cut."""
    base = make_result()
    cams = {f"train/S01/c{k:03d}": CameraCounts(frames_in=123_456, frames_out=120_001, dropped=3_455, late=1_200)
            for k in range(1, 5)}
    per_camera = {f"S01/c{k:03d}": CameraTracking(mota=0.9876, idf1=0.8123, ids=12_345, precision=0.9991,
                                                  recall=0.9012, frames=123_456, gt_boxes=1_234_567,
                                                  predicted_boxes=1_200_345) for k in range(1, 5)}
    links = [*base.links, LinkMeasure(**{"from": "edge-datacenter-frankfurt-1", "to": "cloud-region-eu-west-1",
                                         "bytes": 98_765_432_101, "kb_per_s": 123_456.789,
                                         "predicted_kb_per_s": 234_567.8, "capacity_kb_per_s": 1_220_703.125})]
    return base.model_copy(update={"cameras": cams, "links": links, "tracking": base.tracking.model_copy(
        update={"per_camera": per_camera})})


def figures(result, plan) -> set[str]:
    """Every figure the tables show, as the report formats it (the summary's figures too)."""
    found = set()
    for section in sections(result, plan):
        for row in section.rows:
            for cell in row[section.left:]:
                found.update(t for t in str(cell).split() if FIGURE.match(t))
    for _, value in _summary_rows(result):
        found.update(t for t in value.split() if FIGURE.match(t))
    return found


def render(result, plan, **console) -> str:
    out = StringIO()
    render_terminal(result, Console(file=out, color_system=None, **console), plan)
    return out.getvalue()


CONSOLES = {"80": {"width": 80}, "100": {"width": 100}, "140": {"width": 140},
            "80 on a terminal": {"width": 80, "force_terminal": True},
            "piped": {}}


@pytest.mark.parametrize("console", list(CONSOLES), ids=list(CONSOLES))
@pytest.mark.parametrize("which", ["example", "wide"])
def test_every_figure_whole_and_no_ellipsis(console, which, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)       # piped: rich's default width, as in `replay | less`
    result = make_result() if which == "example" else wide_result()
    plan = make_plan()
    text = render(result, plan, **CONSOLES[console])
    assert "…" not in text and "..." not in text
    tokens = set(SPLIT.split(text))
    expected = figures(result, plan)
    assert {"6,000,000", "380.0", "200.0", "12,207", "1.90×", "80.0"} <= expected  # the sample is real
    missing = sorted(expected - tokens)
    assert not missing, f"cut at {console}: {missing}\n{text}"
    # Names: whole wherever the terminal has room for them (they fold, never cut, where it has not).
    if which == "example" or console == "140":
        for name in [*result.cameras, *result.tracking.per_camera, *(link.from_ for link in result.links), "IDs"]:
            assert name in tokens, name


def test_abbreviated_headers_come_with_their_legend():
    text = render(make_result(), make_plan(), width=80)
    assert "IDs: ID switches" in text and "prec: precision" in text and "gt: ground-truth boxes" in text
