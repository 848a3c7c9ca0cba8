"""What differs between SQLite and PostgreSQL, and what both refuse.

Statements are written once in SQLAlchemy Core; the few places the dialects part
ways (``INSERT ... ON CONFLICT`` lives in each dialect's own ``insert``) and the
limits they share (bound parameters per statement, text without NUL characters
or lone surrogates, indexed value lengths) are handled here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from traceway.store import schema

__all__ = ["IN_CHUNK", "chunked", "clean_key", "clean_text", "clean_value", "insert_for"]

T = TypeVar("T")
#: Most values bound in one IN list; keeps every dialect far below its limits.
IN_CHUNK = 500


def insert_for(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that understands ON CONFLICT on this dialect."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def chunked(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def clean_text(text: str) -> str:
    """Text both databases accept: no NUL characters, no lone surrogates."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            text = text.encode(errors="replace").decode()
    return text


def clean_key(key: Any) -> str:
    """A tag or metadata key as stored: text, cut to the indexed length."""
    return clean_text(str(key))[: schema.MAX_KEY_CHARS]


def clean_value(value: Any) -> str:
    """A tag or metadata value as stored: text, cut to the indexed length."""
    return clean_text(str(value))[: schema.MAX_VALUE_CHARS]
