"""Writing spans: the ingest hot path.

One call is one transaction of a few statements, each a single driver-level
``executemany`` over the whole batch, whatever its size:

1. read which of the batch's traces and spans are stored already;
2. claim the trace rows.  A new trace is inserted with its final values, rolled
   up from this batch; a stored one moves out of ``Default`` if this write names
   another experiment.  On PostgreSQL the upsert also locks the rows, in
   trace-id order, so two writers of one trace take turns and the second
   recomputes it with the first's spans in view;
3. insert the new spans and merge their trace tags and metadata (the later span
   wins a key);
4. recompute the stored traces that got new spans from all of their spans.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import orjson
from sqlalchemy import Connection, Table, bindparam, case, select

from traceway.store import schema
from traceway.store.bulk import BulkStatement
from traceway.store.errors import StoreError
from traceway.store.records import SpanRecord
from traceway.store.rollup import DERIVED_COLUMNS, Rollup, refresh_traces, rollup_batch
from traceway.store.sql import chunked, clean_key, clean_text, clean_value, insert_for
from traceway.tracing.semconv import DEFAULT_EXPERIMENT

__all__ = ["write_spans"]

_experiments = schema.experiments.c
_spans = schema.spans.c
_traces = schema.traces.c

#: The insert values of a claim for a trace that exists already: never stored (the
#: conflict clause only moves the trace), but they must satisfy NOT NULL.
_PLACEHOLDER = Rollup().values()
_CLAIM_NAMES = ("trace_id", "experiment_id", "default_id", *DERIVED_COLUMNS)
_SPAN_COLUMNS = tuple(column.name for column in schema.spans.columns)
_KEY_VALUE_NAMES = ("trace_pk", "key", "value")


@dataclass(frozen=True, slots=True)
class _Statements:
    claim: BulkStatement
    insert_span: BulkStatement
    merge_tag: BulkStatement
    merge_metadata: BulkStatement


@cache
def _statements(dialect: str) -> _Statements:
    claim = insert_for(dialect, schema.traces).values(
        trace_id=bindparam("p_trace_id"),
        experiment_id=bindparam("p_experiment_id"),
        **{column: bindparam(f"p_{column}") for column in DERIVED_COLUMNS},
    )
    # A trace stays in the experiment of its first write, unless that was Default
    # and this write names another (the gateway may report a trace before the app).
    claim = claim.on_conflict_do_update(
        index_elements=[_traces.trace_id],
        set_={
            "experiment_id": case(
                (_traces.experiment_id == bindparam("p_default_id"), claim.excluded.experiment_id),
                else_=_traces.experiment_id,
            )
        },
    )
    insert_span = (
        insert_for(dialect, schema.spans)
        .values({name: bindparam(f"p_{name}") for name in _SPAN_COLUMNS})
        .on_conflict_do_nothing()
    )
    return _Statements(
        claim=BulkStatement(claim, _bind_names(_CLAIM_NAMES)),
        insert_span=BulkStatement(insert_span, _bind_names(_SPAN_COLUMNS)),
        merge_tag=BulkStatement(_merge(dialect, schema.trace_tags), _bind_names(_KEY_VALUE_NAMES)),
        merge_metadata=BulkStatement(
            _merge(dialect, schema.trace_metadata), _bind_names(_KEY_VALUE_NAMES)
        ),
    )


def _bind_names(names: Iterable[str]) -> list[str]:
    # Bind names must differ from column names, which SQLAlchemy reserves.
    return [f"p_{name}" for name in names]


def _merge(dialect: str, table: Table) -> Any:
    insert = insert_for(dialect, table).values(
        {name: bindparam(f"p_{name}") for name in _KEY_VALUE_NAMES}
    )
    return insert.on_conflict_do_update(
        index_elements=[table.c.trace_pk, table.c.key], set_={"value": insert.excluded.value}
    )


def write_spans(
    conn: Connection, dialect: str, experiment_id: int, spans: Sequence[SpanRecord]
) -> int:
    """Store the spans not stored yet and refresh their traces; returns how many were new."""
    if not spans:
        return 0
    _check_ids(spans)
    default_id = _default_experiment_id(conn, experiment_id)
    statements = _statements(dialect)
    trace_ids = sorted({span.trace_id for span in spans})
    trace_pks, stored = _stored_spans(conn, trace_ids)
    new: dict[tuple[str, str], SpanRecord] = {}
    for span in spans:
        key = (span.trace_id, span.span_id)
        trace_pk = trace_pks.get(span.trace_id)
        if key not in new and (trace_pk is None or (trace_pk, span.span_id) not in stored):
            new[key] = _cleaned(span)
    # Traces without a row yet are inserted with their final values, rolled up from
    # this batch; stored ones are recomputed from the database afterwards.
    fresh = rollup_batch(span for span in new.values() if span.trace_id not in trace_pks)
    statements.claim.execute(
        conn,
        [
            (
                trace_id,
                experiment_id,
                default_id,
                *(fresh[trace_id].values() if trace_id in fresh else _PLACEHOLDER),
            )
            for trace_id in trace_ids
        ],
    )
    if not new:
        return 0
    existing = sorted({trace_pks[trace_id] for trace_id, _ in new if trace_id in trace_pks})
    if fresh:
        trace_pks.update(_trace_pks(conn, sorted(fresh)))
    statements.insert_span.execute(
        conn, [_span_row(trace_pks[key[0]], new[key]) for key in sorted(new)]
    )
    statements.merge_tag.execute(conn, _merged(trace_pks, new.values(), "trace_tags"))
    statements.merge_metadata.execute(conn, _merged(trace_pks, new.values(), "trace_metadata"))
    if dialect != "sqlite":
        # Another writer may have created a "fresh" trace first (its insert then did
        # nothing here).  SQLite cannot race: the whole write holds its write lock.
        existing = sorted(trace_pks[trace_id] for trace_id in {tid for tid, _ in new})
    refresh_traces(conn, existing)
    return len(new)


def _check_ids(spans: Sequence[SpanRecord]) -> None:
    for span in spans:
        if not (0 < len(span.trace_id) <= 32 and 0 < len(span.span_id) <= 16):
            raise StoreError(
                f"span {span.span_id!r} of trace {span.trace_id!r} has an invalid id "
                "(trace ids are 32 hex digits, span ids 16)"
            )


def _default_experiment_id(conn: Connection, experiment_id: int) -> int:
    """Check the experiment exists; return the id of ``Default`` (-1 if there is none)."""
    rows = conn.execute(
        select(_experiments.experiment_id, _experiments.name).where(
            (_experiments.experiment_id == experiment_id)
            | (_experiments.name == DEFAULT_EXPERIMENT)
        )
    ).all()
    if not any(row.experiment_id == experiment_id for row in rows):
        raise StoreError(f"no experiment with id {experiment_id}")
    return next((row.experiment_id for row in rows if row.name == DEFAULT_EXPERIMENT), -1)


_STORED_SPANS = (
    select(_traces.trace_id, _traces.trace_pk, _spans.span_id)
    .select_from(schema.traces.outerjoin(schema.spans, _spans.trace_pk == _traces.trace_pk))
    .where(_traces.trace_id.in_(bindparam("trace_ids", expanding=True)))
)


def _stored_spans(
    conn: Connection, trace_ids: list[str]
) -> tuple[dict[str, int], set[tuple[int, str]]]:
    """Each trace's key, and the (trace key, span id) of every span already stored."""
    trace_pks: dict[str, int] = {}
    stored: set[tuple[int, str]] = set()
    for chunk in chunked(trace_ids):
        for trace_id, trace_pk, span_id in conn.execute(
            _STORED_SPANS, {"trace_ids": list(chunk)}
        ).all():
            trace_pks[trace_id] = trace_pk
            if span_id is not None:
                stored.add((trace_pk, span_id))
    return trace_pks, stored


def _trace_pks(conn: Connection, trace_ids: list[str]) -> dict[str, int]:
    pks: dict[str, int] = {}
    for chunk in chunked(trace_ids):
        pks.update(conn.execute(_TRACE_PKS, {"trace_ids": list(chunk)}).all())
    return pks


_TRACE_PKS = select(_traces.trace_id, _traces.trace_pk).where(
    _traces.trace_id.in_(bindparam("trace_ids", expanding=True))
)


def _merged(
    trace_pks: dict[str, int], spans: Iterable[SpanRecord], field: str
) -> list[tuple[int, str, str]]:
    """Tag or metadata rows, the later span winning a key, sorted for lock order."""
    merged: dict[tuple[int, str], str] = {}
    for span in spans:
        values: dict[str, str] = getattr(span, field)
        if values:
            trace_pk = trace_pks[span.trace_id]
            for key, value in values.items():
                merged[(trace_pk, clean_key(key))] = clean_value(value)
    return [(trace_pk, key, merged[(trace_pk, key)]) for trace_pk, key in sorted(merged)]


_TEXT_FIELDS = (
    "name",
    "span_type",
    "status",
    "status_message",
    "model",
    "provider",
    "request_preview",
    "response_preview",
    "inputs",
    "outputs",
)


def _cleaned(span: SpanRecord) -> SpanRecord:
    """The span, or a copy whose text both databases accept (see ``clean_text``)."""
    texts = (
        span.name,
        span.span_type,
        span.status,
        span.status_message,
        span.model,
        span.provider,
        span.request_preview,
        span.response_preview,
        span.inputs,
        span.outputs,
    )
    for text in texts:
        # Both checks are cheap; only odd text pays for a copy.
        if text is not None and (not text.isascii() or "\x00" in text):
            changes: dict[str, Any] = {
                name: clean_text(value)
                for name, value in zip(_TEXT_FIELDS, texts, strict=True)
                if value is not None
            }
            return replace(span, **changes)
    return span


def _span_row(trace_pk: int, span: SpanRecord) -> tuple[Any, ...]:
    """The spans row, in ``_SPAN_COLUMNS`` order."""
    return (
        trace_pk,
        span.span_id,
        span.parent_span_id or None,
        span.span_type[:32],
        span.start_time_ns,
        span.end_time_ns,
        span.status[:16],
        span.input_tokens,
        span.output_tokens,
        span.total_tokens,
        span.cost_usd,
        span.name,
        span.model,
        span.provider,
        span.status_message,
        span.request_preview,
        span.response_preview,
        _json(span.attributes) if span.attributes else "{}",
        _json(span.events) if span.events else "[]",
        span.inputs,
        span.outputs,
    )


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):
        # Lone surrogates or exotic keys: the standard library escapes what orjson refuses.
        return json.dumps(value, default=str, ensure_ascii=True, skipkeys=True)
