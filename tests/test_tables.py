"""Tables never cut a number: at any width, piped or not (issue 12, item 2)."""

from __future__ import annotations

import re
from io import StringIO

from hypothesis import given, settings, strategies as st
from rich.console import Console
from rich.table import Table

from jellybean.tables import fit

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)?%?")


def render(renderable, width: int, terminal: bool = False) -> str:
    console = Console(width=width, file=StringIO(), force_terminal=terminal, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def tokens(text: str) -> set[str]:
    return set(re.split(r"[\s│┃┏┓┗┛┡┩└┘┌┐├┤┬┴┼━─╇╈╋┳┻╭╮╯╰]+", text))


names = st.text(alphabet="abcdefghijklmnop-_.", min_size=1, max_size=30)
numbers = st.floats(min_value=-1e7, max_value=1e7, allow_nan=False).map(lambda x: f"{x:.3f}")


@settings(max_examples=150, deadline=None)
@given(
    header_names=st.lists(names, min_size=1, max_size=5),
    number_columns=st.integers(1, 6),
    rows=st.lists(st.tuples(st.lists(names, min_size=5, max_size=5), st.lists(numbers, min_size=6, max_size=6)),
                  min_size=1, max_size=6),
    width=st.integers(30, 200),
    terminal=st.booleans(),
)
def test_every_number_is_whole_at_any_width(header_names, number_columns, rows, width, terminal):
    table = Table(title="t")
    for name in header_names:
        table.add_column(name)
    for k in range(number_columns):
        table.add_column(f"figure {k} items/s", justify="right")
    expected = set()
    for texts, figures in rows:
        shown = figures[:number_columns]
        expected.update(shown)
        table.add_row(*texts[: len(header_names)], *shown)
    out = render(fit(table), width, terminal)
    assert "…" not in out
    missing = expected - tokens(out)
    assert not missing, f"numbers cut at width {width}: {sorted(missing)}\n{out}"


def test_a_plain_rich_table_would_cut_them():
    """The failure the fitter exists for: without it rich crops numbers with an ellipsis."""
    table = Table()
    for k in range(6):
        table.add_column(f"column {k}", justify="right")
    table.add_row(*[f"{123456.789 + k:.3f}" for k in range(6)])
    assert "…" in render(table, 60)
    out = render(fit(table), 60)
    assert "…" not in out and {f"{123456.789 + k:.3f}" for k in range(6)} <= tokens(out)


def test_too_narrow_for_the_numbers_prints_records():
    table = Table(title="Workers")
    table.add_column("site")
    for k in range(8):
        table.add_column(f"c{k}", justify="right")
    table.add_row("edge-01", *[f"{1e6 + k:.2f}" for k in range(8)])
    out = render(fit(table), 50)
    assert "Workers" in out and "site" in out and "edge-01" in out
    assert all(f"{1e6 + k:.2f}" in tokens(out) for k in range(8))
    assert "┃" not in out  # the record layout, not a cropped table


def test_wide_terminals_get_the_table_unchanged():
    table = Table()
    table.add_column("name")
    table.add_column("load items/s", justify="right")
    table.add_row("detector", "25.0/25.0")
    assert render(fit(table), 140) == render(table, 140)
