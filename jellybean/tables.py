"""Terminal tables that never cut a number, at any width and when piped.

Rich shrinks a table that does not fit by cropping cells with an ellipsis, numbers included. Here
numbers (right-justified columns) never wrap, names fold onto more lines, and a table whose numbers
alone are wider than the terminal is printed as one block of `field value` lines per row instead.
"""

from __future__ import annotations

import copy

import os

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

_FOLDED_MIN = 6  # a name column is never squeezed below this many cells before records are used
_EDGE = 4  # the table's outer border and the first column's padding


def numeric(table: Table) -> list[bool]:
    """Which columns hold numbers: the right-justified ones, as every table here lays them out."""
    return [column.justify == "right" for column in table.columns]


def _plain(cell) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return str(cell)


def _widest_line(cell) -> int:
    return max((cell_len(line) for line in _plain(cell).splitlines()), default=0)


def _stacked(header) -> Text:
    return Text("\n".join(_plain(header).split()), justify="right")


class Fitted:
    """A table that keeps its numbers whole: render it anywhere a rich renderable goes."""

    def __init__(self, table: Table) -> None:
        self.table = table
        for column, is_number in zip(table.columns, numeric(table)):
            column.no_wrap = is_number
            column.overflow = "fold"  # never an ellipsis; number columns are sized not to need it

    def minimum_width(self, stacked_headers: bool = False, padding: int = 2) -> int:
        width = _EDGE
        for column, is_number in zip(self.table.columns, numeric(self.table)):
            header = _stacked(column.header) if stacked_headers else column.header
            widest = max([_widest_line(c) for c in column.cells] + [_widest_line(header) if is_number else 0])
            width += (widest if is_number else min(widest, _FOLDED_MIN)) + 1 + padding
        return width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.minimum_width() <= options.max_width:
            yield self.table
        elif self.minimum_width(stacked_headers=True) <= options.max_width:
            yield self._with_stacked_headers()
        elif self.minimum_width(stacked_headers=True, padding=0) <= options.max_width:
            yield self._with_stacked_headers(padding=0)
        else:
            yield from self.records()

    def _with_stacked_headers(self, padding: int | None = None) -> Table:
        """The same table with each number column's header one word per line: numbers never wrap,
        and so neither do their headers; stacking them is what lets a table fit 80 columns."""
        table = copy.copy(self.table)
        table.columns = [copy.copy(c) for c in self.table.columns]
        if padding == 0:
            table.padding = (0, 0, 0, 0)
            table.pad_edge = False
        for column, is_number in zip(table.columns, numeric(table)):
            if is_number:
                column.header = _stacked(column.header)
        return table

    def records(self) -> RenderResult:
        """Each row as `header value` lines: the layout for terminals too narrow for the columns."""
        table = self.table
        if table.title:
            yield Text(_plain(table.title), style="bold")
        columns = table.columns
        for row in range(table.row_count):
            block = Table.grid(padding=(0, 2))
            block.add_column(style="dim", overflow="fold")
            block.add_column(overflow="fold")
            for column in columns:
                cells = list(column.cells)
                value = cells[row] if row < len(cells) else ""
                if _plain(value).strip():
                    block.add_row(_plain(column.header), value)
            yield block
            yield Text("")


def fit(table: Table) -> Fitted:
    return Fitted(table)


PIPED_WIDTH = 140


def stdout_console() -> Console:
    """The console commands print results on: the terminal's width; piped or logged, $COLUMNS
    when set and otherwise 140, so that a log file gets the tables as a wide terminal shows them."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=max(console.width, PIPED_WIDTH))
    return console

