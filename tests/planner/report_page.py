"""Read a plan report's index.html back: its tables by id, each cell as (text, exact value or None)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, float | None]]]] = {}
        self.values: dict[str, float] = {}  # id -> data-value of any other element that has both
        self.images: list[str] = []
        self.text: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._value: float | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell, self._value = [], float(a["data-value"]) if "data-value" in a else None
        elif tag == "img":
            self.images.append(a["src"])
        elif "id" in a and "data-value" in a:
            self.values[a["id"]] = float(a["data-value"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append(("".join(self._cell).strip(), self._value))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def rows(self, table: str) -> list[dict[str, tuple[str, float | None]]]:
        """The table's body rows as {header: (text, value)}."""
        head, *body = self.tables[table]
        return [{h[0]: cell for h, cell in zip(head, row)} for row in body]


def read_page(directory: Path) -> Page:
    page = Page()
    page.feed((directory / "index.html").read_text(encoding="utf-8"))
    return page
