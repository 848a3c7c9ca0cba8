"""Merging what a client reports about a whole trace into the trace built from its spans.

Some SDKs send, besides the spans, one record describing the finished trace (MLflow's
"trace info": experiment, start time, duration, state, tags, metadata, previews).
It may arrive before the spans, between two of their batches or after all of them,
so the merge never assumes an order:

* the trace row is claimed like span ingest claims it: created from the info when
  missing (no spans yet), moved out of ``Default`` when the info names another
  experiment, and locked on PostgreSQL for the rest of the transaction;
* tags and metadata are merged key by key, the info winning a key it shares with
  a span (it is the client's last word on the trace);
* explicit previews are recorded on the root span like the previews a span sets
  itself, so every later recomputation of the trace keeps them;
* whatever the spans cannot tell yet - status, name, times and previews while
  the root span has not arrived - comes from the info until they can.

Once every span is stored the trace row is the same whichever came first, except
that explicit previews of an info that arrived before the root span give way to
previews derived from the root when it comes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, case, select, update

from traceway.store import schema
from traceway.store.errors import StoreError
from traceway.store.previews import PREVIEW_MAX_CHARS
from traceway.store.records import STATUS_ERROR, STATUS_IN_PROGRESS, STATUS_OK
from traceway.store.rollup import refresh_traces
from traceway.store.sql import clean_key, clean_text, clean_value, insert_for
from traceway.tracing.semconv import DEFAULT_EXPERIMENT

__all__ = ["TraceInfoRecord", "merge_trace_info"]

_experiments = schema.experiments.c
_spans = schema.spans.c
_traces = schema.traces.c
_STATUSES = frozenset({STATUS_OK, STATUS_ERROR, STATUS_IN_PROGRESS})


@dataclass(slots=True)
class TraceInfoRecord:
    """A client's description of one whole trace, apart from its spans.

    Every field but the ids may be missing; a missing one changes nothing.
    ``status`` is ``OK``, ``ERROR`` or ``IN_PROGRESS``.  The previews are ones the
    client set explicitly: they beat previews derived from the root span.
    """

    trace_id: str  # 32 lowercase hex
    experiment_id: int
    name: str | None = None
    start_time_ms: int | None = None
    duration_ms: int | None = None
    status: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    request_preview: str | None = None
    response_preview: str | None = None


def merge_trace_info(conn: Connection, dialect: str, info: TraceInfoRecord) -> None:
    """Merge ``info`` into its trace (created if missing) in the caller's transaction."""
    _check(info)
    default_id = _default_experiment_id(conn, info.experiment_id)
    trace_pk = _claim(conn, dialect, info, default_id)
    _merge_key_values(conn, dialect, schema.trace_tags, trace_pk, info.tags)
    _merge_key_values(conn, dialect, schema.trace_metadata, trace_pk, info.metadata)
    root = conn.execute(
        select(_spans.span_id)
        .where(_spans.trace_pk == trace_pk, _spans.parent_span_id.is_(None))
        .order_by(_spans.start_time_ns, _spans.span_id)
        .limit(1)
    ).scalar_one_or_none()
    if root is not None:
        previews = _preview_values(info)
        if previews:
            # Stored as the root's own explicit previews, they survive every recomputation.
            conn.execute(
                update(schema.spans)
                .where(_spans.trace_pk == trace_pk, _spans.span_id == root)
                .values(previews)
            )
            refresh_traces(conn, [trace_pk])
        return
    _fill_rootless(conn, trace_pk, info)


def _check(info: TraceInfoRecord) -> None:
    if not 0 < len(info.trace_id) <= 32:
        raise StoreError(f"invalid trace id {info.trace_id!r} (trace ids are 32 hex digits)")
    if info.status is not None and info.status not in _STATUSES:
        raise StoreError(f"invalid trace status {info.status!r}")


def _default_experiment_id(conn: Connection, experiment_id: int) -> int:
    """Check the experiment exists; the id of ``Default`` (-1 if there is none)."""
    rows = conn.execute(
        select(_experiments.experiment_id, _experiments.name).where(
            (_experiments.experiment_id == experiment_id)
            | (_experiments.name == DEFAULT_EXPERIMENT)
        )
    ).all()
    if not any(row.experiment_id == experiment_id for row in rows):
        raise StoreError(f"no experiment with id {experiment_id}")
    return next((row.experiment_id for row in rows if row.name == DEFAULT_EXPERIMENT), -1)


def _claim(conn: Connection, dialect: str, info: TraceInfoRecord, default_id: int) -> int:
    """The trace's key: the row is inserted from the info if missing, else moved and locked."""
    start = info.start_time_ms or 0
    duration = max(info.duration_ms or 0, 0)
    statement = insert_for(dialect, schema.traces).values(
        trace_id=info.trace_id,
        experiment_id=info.experiment_id,
        name=_text(info.name) or "",
        start_time_ms=start,
        end_time_ms=start + duration,
        duration_ms=duration,
        status=info.status or STATUS_IN_PROGRESS,
        span_count=0,
        input_tokens=0,
        output_tokens=0,
        total_tokens=0,
        cost_usd=None,
        request_preview=_preview(info.request_preview),
        response_preview=_preview(info.response_preview),
    )
    # The same rule as span ingest: a trace leaves Default for the first experiment named.
    claim = statement.on_conflict_do_update(
        index_elements=[_traces.trace_id],
        set_={
            "experiment_id": case(
                (_traces.experiment_id == default_id, statement.excluded.experiment_id),
                else_=_traces.experiment_id,
            )
        },
    ).returning(_traces.trace_pk)
    return int(conn.execute(claim).scalar_one())


def _merge_key_values(
    conn: Connection, dialect: str, table: Table, trace_pk: int, values: Mapping[str, str]
) -> None:
    if not values:
        return
    rows = {clean_key(key): clean_value(value) for key, value in values.items()}
    statement = insert_for(dialect, table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.trace_pk, table.c.key], set_={"value": statement.excluded.value}
    )
    conn.execute(
        statement,
        [{"trace_pk": trace_pk, "key": key, "value": rows[key]} for key in sorted(rows)],
    )


def _preview_values(info: TraceInfoRecord) -> dict[str, str]:
    values: dict[str, str] = {}
    if info.request_preview is not None:
        values["trace_request_preview"] = clean_text(info.request_preview)
    if info.response_preview is not None:
        values["trace_response_preview"] = clean_text(info.response_preview)
    return values


def _fill_rootless(conn: Connection, trace_pk: int, info: TraceInfoRecord) -> None:
    """Give a trace whose root span has not arrived what the info knows of it."""
    row = conn.execute(
        select(_traces.span_count, _traces.start_time_ms, _traces.end_time_ms).where(
            _traces.trace_pk == trace_pk
        )
    ).one()
    values: dict[str, Any] = {}
    if info.name:
        values["name"] = _text(info.name)
    if info.status is not None:
        values["status"] = info.status
    if info.request_preview is not None:
        values["request_preview"] = _preview(info.request_preview)
    if info.response_preview is not None:
        values["response_preview"] = _preview(info.response_preview)
    if info.start_time_ms is not None:
        end = info.start_time_ms + max(info.duration_ms or 0, 0)
        if row.span_count:
            # The info covers the root span, which encloses every span stored so far.
            start, end = min(row.start_time_ms, info.start_time_ms), max(row.end_time_ms, end)
        else:
            start = info.start_time_ms
        values.update(start_time_ms=start, end_time_ms=end, duration_ms=end - start)
    if values:
        conn.execute(update(schema.traces).where(_traces.trace_pk == trace_pk).values(values))


def _text(value: str | None) -> str | None:
    return None if value is None else clean_text(value)


def _preview(value: str | None) -> str | None:
    return None if value is None else clean_text(value)[:PREVIEW_MAX_CHARS]
