"""Ordering and keyset pagination of trace searches.

``order_by`` is ``"<field> [ASC|DESC]"`` (direction ASC when omitted, as in SQL);
without one, traces come newest first.  ``trace_id`` breaks ties in the same
direction, so a page boundary is one point ``(sort value, trace_id)`` and the next
page is ``WHERE (col, trace_id) < (:value, :trace_id)`` (``>`` ascending), which an
index on ``(experiment_id, col, trace_id)`` answers without scanning.

A page token is that point plus the ordering it belongs to, as URL-safe base64 of
JSON.  It is opaque to callers but not secret; it is checked on the way back in.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, func, literal, tuple_

from traceway.store import schema
from traceway.store.errors import FilterError

__all__ = ["DEFAULT_ORDER", "Ordering", "parse_order_by"]

DEFAULT_ORDER = "start_time DESC"
MAX_PAGE_SIZE = 1000

_traces = schema.traces.c
# Field -> (sort expression, type of its values).  Traces without a cost sort as
# -1, below every real cost, so a keyset comparison never meets a NULL.
_FIELDS: dict[str, tuple[ColumnElement[Any], type]] = {
    "start_time": (_traces.start_time_ms, int),
    "duration_ms": (_traces.duration_ms, int),
    "name": (_traces.name, str),
    "status": (_traces.status, str),
    "total_tokens": (_traces.total_tokens, int),
    "span_count": (_traces.span_count, int),
    "cost_usd": (func.coalesce(_traces.cost_usd, literal(-1.0)), float),
}
_ORDER_BY = re.compile(r"\s*(?P<field>\S+)(?:\s+(?P<direction>\S+))?\s*(?P<rest>.*)", re.DOTALL)
_TRACE_ID = re.compile(r"[0-9a-f]{1,32}")


@dataclass(frozen=True, slots=True)
class Ordering:
    """A parsed ``order_by``: which field, which way."""

    field: str
    descending: bool

    @property
    def key(self) -> ColumnElement[Any]:
        """The expression rows are sorted by (before the ``trace_id`` tiebreaker)."""
        return _FIELDS[self.field][0]

    def order_by(self) -> list[ColumnElement[Any]]:
        """ORDER BY clauses: the field, then ``trace_id``, both in the same direction."""
        columns = [self.key, _traces.trace_id]
        return [column.desc() if self.descending else column.asc() for column in columns]

    def after(self, value: Any, trace_id: str) -> ColumnElement[bool]:
        """The condition that selects rows after the point ``(value, trace_id)``."""
        row = tuple_(self.key, _traces.trace_id)
        point = tuple_(literal(value), literal(trace_id))
        return row < point if self.descending else row > point

    def sort_value(self, row: Any) -> Any:
        """The sort value of a result row (a ``traces`` row mapping)."""
        if self.field == "start_time":
            return row.start_time_ms
        if self.field == "cost_usd":
            return -1.0 if row.cost_usd is None else float(row.cost_usd)
        return getattr(row, self.field)

    def encode_token(self, value: Any, trace_id: str) -> str:
        """The page token for the page that starts after ``(value, trace_id)``."""
        payload = orjson.dumps([self.field, "DESC" if self.descending else "ASC", value, trace_id])
        return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()

    def decode_token(self, token: str) -> tuple[Any, str]:
        """The ``(value, trace_id)`` point a token names; FilterError if it is not ours."""
        try:
            padded = token + "=" * (-len(token) % 4)
            payload = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        except (ValueError, binascii.Error, UnicodeEncodeError, orjson.JSONDecodeError):
            raise FilterError("invalid page token: it is not one this server issued") from None
        if not (isinstance(payload, list) and len(payload) == 4):
            raise FilterError("invalid page token: it is not one this server issued")
        field, direction, value, trace_id = payload
        if [field, direction] != [self.field, "DESC" if self.descending else "ASC"]:
            raise FilterError(
                "invalid page token: it belongs to a search with a different order_by "
                f"({field} {direction}); start again without a page token"
            )
        kind = _FIELDS[self.field][1]
        valid_value = (
            isinstance(value, int | float) and not isinstance(value, bool)
            if kind is float
            else type(value) is kind
        )
        if not valid_value or not (isinstance(trace_id, str) and _TRACE_ID.fullmatch(trace_id)):
            raise FilterError("invalid page token: it is not one this server issued")
        return value, trace_id


def parse_order_by(text: str | None) -> Ordering:
    """Parse ``"<field> [ASC|DESC]"``; ``None`` or blank means newest first.

    >>> parse_order_by("duration_ms DESC")
    Ordering(field='duration_ms', descending=True)
    """
    if text is None or not text.strip():
        text = DEFAULT_ORDER
    match = _ORDER_BY.fullmatch(text)
    assert match is not None  # the pattern matches any non-blank text
    field, direction, rest = match.group("field", "direction", "rest")
    if field not in _FIELDS:
        raise FilterError(
            f"cannot order by {field!r} at position {match.start('field')}; "
            f"use one of {', '.join(_FIELDS)}",
            match.start("field"),
        )
    if direction is not None and direction.upper() not in ("ASC", "DESC"):
        raise FilterError(
            f"expected ASC or DESC after {field!r}, got {direction!r} at position "
            f"{match.start('direction')}",
            match.start("direction"),
        )
    if rest:
        raise FilterError(
            f"unexpected {rest!r} at position {match.start('rest')}; order_by is "
            "one field and an optional ASC or DESC",
            match.start("rest"),
        )
    return Ordering(field, descending=direction is not None and direction.upper() == "DESC")


def check_page_size(page_size: int) -> None:
    """Raise FilterError unless ``1 <= page_size <= MAX_PAGE_SIZE``."""
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise FilterError(f"page_size must be an integer, not {page_size!r}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise FilterError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
