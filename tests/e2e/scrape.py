"""Read what a page shows, for tests: table rows and elements' text, whitespace folded."""

from __future__ import annotations

from html.parser import HTMLParser

__all__ = ["table_rows", "texts"]

#: Elements that start a new line on screen: their text never runs into the text before.
_BLOCKS = {"div", "p", "li", "pre", "h1", "h2", "h3", "h4", "dt", "dd", "section", "header", "br"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr"}


class _Collector(HTMLParser):
    """Collects the text of every element whose class list holds ``css_class``."""

    def __init__(self, css_class: str) -> None:
        super().__init__(convert_charrefs=True)
        self.css_class = css_class
        self.found: list[str] = []
        self._depth = 0  # open elements inside the current match (0: not in one)
        self._parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._depth and tag in _BLOCKS:
            self._parts.append(" ")
        if tag in _VOID:
            return
        if self._depth:
            self._depth += 1
            return
        classes = (dict(attrs).get("class") or "").split()
        if self.css_class in classes:
            self._depth = 1
            self._parts = []

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or not self._depth:
            return
        self._depth -= 1
        if self._depth == 0:
            self.found.append(" ".join("".join(self._parts).split()))

    def handle_data(self, data: str) -> None:
        if self._depth:
            self._parts.append(data)


def texts(html: str, css_class: str) -> list[str]:
    """The text of every element with class ``css_class``, in document order."""
    collector = _Collector(css_class)
    collector.feed(html)
    return collector.found


class _Rows(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag in ("td", "th") and self._in_body and self.rows:
            self._cell = []
        elif tag in _BLOCKS and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str) -> list[list[str]]:
    """The cell texts of every body row of every table (or bare rows) in ``html``."""
    parser = _Rows()
    parser.feed(html if "<tbody" in html else f"<tbody>{html}</tbody>")
    return parser.rows
