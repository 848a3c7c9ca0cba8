"""Helpers for store tests: PostgreSQL schemas, spans with readable ids and times."""

from __future__ import annotations

import os
import uuid
from typing import Any
from urllib.parse import quote

import psycopg

from traceway.store import SpanRecord

MS = 1_000_000  # ns per ms
POSTGRES_URL = os.environ.get("TRACEWAY_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")


def schema_url(schema: str) -> str:
    """The PostgreSQL URL with ``schema`` first on the search path."""
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"


def driver_url() -> str:
    return POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")


def create_schema() -> str:
    name = f"tw_store_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(driver_url(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    return name


def drop_schema(name: str) -> None:
    with psycopg.connect(driver_url(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def tid(n: int) -> str:
    """The 32-hex trace id number ``n``."""
    return f"{n:032x}"


def sid(n: int) -> str:
    """The 16-hex span id number ``n``."""
    return f"{n:016x}"


def span(
    trace: int,
    span_no: int,
    parent: int | None = None,
    *,
    name: str | None = None,
    span_type: str = "CHAIN",
    start_ms: int = 0,
    end_ms: int | None = None,
    status: str = "OK",
    **fields: Any,
) -> SpanRecord:
    """Span ``span_no`` of trace ``trace``; a root unless ``parent`` is given."""
    return SpanRecord(
        trace_id=tid(trace),
        span_id=sid(span_no),
        parent_span_id=None if parent is None else sid(parent),
        name=name if name is not None else f"span-{span_no}",
        span_type=span_type,
        start_time_ns=start_ms * MS,
        end_time_ns=(start_ms + 10 if end_ms is None else end_ms) * MS,
        status=status,
        **fields,
    )
