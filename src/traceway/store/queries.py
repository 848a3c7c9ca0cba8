"""Reading, deleting and tagging traces (the read side of the store).

Every function takes an open connection; the caller owns the transaction.  Trace
rows come back as :class:`TraceSummary` with their tags and metadata attached by
one query per table for the whole page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Row,
    Select,
    Table,
    bindparam,
    delete,
    literal,
    select,
    union_all,
)

from traceway.store import schema
from traceway.store.filters import compile_filter
from traceway.store.paging import Ordering
from traceway.store.records import StoredSpan, StoredTrace, TraceSummary
from traceway.store.sql import chunked, clean_key, clean_value, insert_for

__all__ = [
    "delete_matching",
    "search",
    "set_tags",
    "trace",
    "trace_conditions",
    "trace_summary",
]

_traces = schema.traces.c
_spans = schema.spans.c
_DELETE_BATCH = 500
#: The trace key, then the columns of a TraceSummary in its field order.
_SUMMARY = (
    _traces.trace_pk,
    _traces.trace_id,
    _traces.experiment_id,
    _traces.name,
    _traces.start_time_ms,
    _traces.end_time_ms,
    _traces.duration_ms,
    _traces.status,
    _traces.request_preview,
    _traces.response_preview,
    _traces.span_count,
    _traces.input_tokens,
    _traces.output_tokens,
    _traces.total_tokens,
    _traces.cost_usd,
)
_PKS: BindParameter[list[int]] = bindparam("trace_pks", expanding=True)


def trace_conditions(
    experiment_ids: Sequence[int] | None, filter: str | None
) -> list[ColumnElement[bool]]:
    """WHERE conditions on ``traces`` for an experiment list and a filter string."""
    conditions: list[ColumnElement[bool]] = []
    if experiment_ids is not None:
        ids = list(experiment_ids)
        # A single experiment (the common case) as an equality the planner matches
        # against the (experiment_id, ...) indexes directly.
        conditions.append(
            _traces.experiment_id == ids[0] if len(ids) == 1 else _traces.experiment_id.in_(ids)
        )
    compiled = compile_filter(filter)
    if compiled is not None:
        conditions.append(compiled)
    return conditions


def search(
    conn: Connection,
    conditions: list[ColumnElement[bool]],
    ordering: Ordering,
    page_size: int,
    after: tuple[Any, str] | None,
) -> tuple[list[TraceSummary], tuple[Any, str] | None]:
    """One page of traces, and the point after which the next page starts (if any)."""
    query = select(*_SUMMARY).where(*conditions)
    if after is not None:
        query = query.where(ordering.after(*after))
    query = query.order_by(*ordering.order_by()).limit(page_size + 1)
    rows = conn.execute(query).all()
    more = len(rows) > page_size
    rows = rows[:page_size]
    last = (ordering.sort_value(rows[-1]), rows[-1].trace_id) if more else None
    return _summaries(conn, rows), last


def trace_summary(conn: Connection, trace_id: str) -> TraceSummary | None:
    """The trace row of one trace, with tags and metadata."""
    rows = conn.execute(select(*_SUMMARY).where(_traces.trace_id == trace_id)).all()
    summaries = _summaries(conn, rows)
    return summaries[0] if summaries else None


def trace(conn: Connection, trace_id: str) -> StoredTrace | None:
    """One trace with all of its spans, in start-time order."""
    info = trace_summary(conn, trace_id)
    if info is None:
        return None
    rows = conn.execute(
        select(schema.spans)
        .join(schema.traces, _traces.trace_pk == _spans.trace_pk)
        .where(_traces.trace_id == trace_id)
        .order_by(_spans.start_time_ns, _spans.span_id)
    )
    return StoredTrace(info=info, spans=[_stored_span(trace_id, row) for row in rows])


def delete_matching(
    conn: Connection, conditions: list[ColumnElement[bool]], trace_ids: Sequence[str] | None
) -> int:
    """Delete the traces that match (and, if given, are among ``trace_ids``)."""
    if trace_ids is None:
        return _delete_where(conn, conditions)
    ids = sorted(set(trace_ids))
    return sum(
        _delete_where(conn, [*conditions, _traces.trace_id.in_(chunk)]) for chunk in chunked(ids)
    )


def _delete_where(conn: Connection, conditions: list[ColumnElement[bool]]) -> int:
    deleted = 0
    while True:
        query = select(_traces.trace_pk).where(*conditions).limit(_DELETE_BATCH)
        pks = list(conn.execute(query).scalars())
        if not pks:
            return deleted
        # Children first, explicitly: correct even where foreign keys are not enforced.
        for table in (schema.spans, schema.trace_tags, schema.trace_metadata):
            conn.execute(delete(table).where(table.c.trace_pk.in_(pks)))
        conn.execute(delete(schema.traces).where(_traces.trace_pk.in_(pks)))
        deleted += len(pks)


def set_tags(
    conn: Connection,
    dialect: str,
    trace_id: str,
    values: Mapping[str, str],
    remove: Sequence[str],
) -> TraceSummary | None:
    """Delete, then set, tags of one trace; ``None`` if there is no such trace."""
    trace_pk = conn.execute(
        select(_traces.trace_pk).where(_traces.trace_id == trace_id)
    ).scalar_one_or_none()
    if trace_pk is None:
        return None
    tags = schema.trace_tags
    removed = sorted({clean_key(key) for key in remove})
    updated = {clean_key(key): clean_value(value) for key, value in values.items()}
    if removed:
        conn.execute(delete(tags).where(tags.c.trace_pk == trace_pk, tags.c.key.in_(removed)))
    if updated:
        insert = insert_for(dialect, tags)
        statement = insert.on_conflict_do_update(
            index_elements=[tags.c.trace_pk, tags.c.key], set_={"value": insert.excluded.value}
        )
        conn.execute(
            statement,
            [{"trace_pk": trace_pk, "key": key, "value": updated[key]} for key in sorted(updated)],
        )
    return trace_summary(conn, trace_id)


def _summaries(conn: Connection, rows: Sequence[Any]) -> list[TraceSummary]:
    """TraceSummary values of ``_SUMMARY`` rows, with their tags and metadata."""
    if not rows:
        return []
    tags, metadata = _key_values(conn, [row[0] for row in rows])
    # Positional: the columns are in TraceSummary's field order, then tags, metadata.
    return [
        TraceSummary(*(*row[1:], tags.get(row[0], {}), metadata.get(row[0], {}))) for row in rows
    ]


def _key_value_query(table: Table, kind: int) -> Select[Any]:
    return select(literal(kind), table.c.trace_pk, table.c.key, table.c.value).where(
        table.c.trace_pk.in_(_PKS)
    )


# Tags and metadata in one round trip (kind 0 and 1).
_KEY_VALUES = union_all(
    _key_value_query(schema.trace_tags, 0), _key_value_query(schema.trace_metadata, 1)
)


def _key_values(
    conn: Connection, trace_pks: list[int]
) -> tuple[dict[int, dict[str, str]], dict[int, dict[str, str]]]:
    """The tags and the metadata of these traces, each by trace key, keys in order."""
    found: tuple[dict[int, dict[str, str]], dict[int, dict[str, str]]] = ({}, {})
    for chunk in chunked(trace_pks):
        rows: Sequence[Any] = conn.execute(_KEY_VALUES, {"trace_pks": list(chunk)}).all()
        for kind, trace_pk, key, value in sorted(rows):
            found[kind].setdefault(trace_pk, {})[key] = value
    return found


def _stored_span(trace_id: str, row: Row[Any]) -> StoredSpan:
    return StoredSpan(
        trace_id=trace_id,
        span_id=row.span_id,
        parent_span_id=row.parent_span_id,
        name=row.name,
        span_type=row.span_type,
        start_time_ns=row.start_time_ns,
        end_time_ns=row.end_time_ns,
        status=row.status,
        status_message=row.status_message,
        attributes=_parsed(row.attributes),
        events=_parsed(row.events),
        inputs=_parsed(row.inputs),
        outputs=_parsed(row.outputs),
        model=row.model,
        provider=row.provider,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        total_tokens=row.total_tokens,
        cost_usd=row.cost_usd,
    )


def _parsed(text: str | None) -> Any:
    """JSON text as a value; text that is not JSON comes back as it was stored."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        # Escaped lone surrogates are JSON the standard library reads and orjson refuses.
        return json.loads(text)
    except ValueError:
        return text
