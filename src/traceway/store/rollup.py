"""Deriving trace rows from their spans.

A trace row is never written by hand.  Its columns come from a :class:`Rollup` of
its spans: times and totals, the root span (the earliest span without a parent),
or the earliest span while the root has not arrived, and any preview a span sets
explicitly (the one that ended last wins).

Token usage and cost are counted once per call.  The same LLM call is often
reported twice: by the application's span (autolog) and by the gateway it went
through, or by a framework span wrapping the client's span.  A span's usage
counts only when none of its direct children reports usage and none is a
GATEWAY span (the gateway reports the call on its attempt spans): the innermost
report wins.

There are two ways to build one, with the same result:

* :func:`rollup_batch` folds spans in Python, for a trace whose spans all arrive
  in the batch being written (the writer knows the trace is new);
* :func:`refresh_traces` recomputes traces already stored from all of their
  spans in the database: one grouped aggregate and one query for roots per
  chunk of traces, however many a batch touches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)

from traceway.store import schema
from traceway.store.bulk import BulkStatement
from traceway.store.previews import PREVIEW_MAX_CHARS, request_preview, response_preview
from traceway.store.records import STATUS_ERROR, STATUS_IN_PROGRESS, STATUS_OK, SpanRecord
from traceway.store.sql import IN_CHUNK

#: The span type of the gateway's request span; its attempts report the call's usage.
GATEWAY = "GATEWAY"

__all__ = ["DERIVED_COLUMNS", "Rollup", "refresh_traces", "rollup_batch"]

#: The trace columns a rollup produces, in the order of :meth:`Rollup.values`.
DERIVED_COLUMNS = (
    "name",
    "start_time_ms",
    "end_time_ms",
    "duration_ms",
    "status",
    "span_count",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "request_preview",
    "response_preview",
)

_spans = schema.spans.c
_traces = schema.traces.c


@dataclass(slots=True)
class Rollup:
    """What a trace row is derived from: totals, root span, explicit previews."""

    start_ns: int = 0
    end_ns: int = 0
    span_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = None
    #: (start_ns, span_id, name, status, inputs, outputs) of the root, if it arrived.
    root: tuple[int, str, str, str, str | None, str | None] | None = None
    #: (start_ns, span_id, name) of the earliest span: the name while rootless.
    first: tuple[int, str, str] | None = None
    #: kind ("request" | "response") -> (end_ns, span_id, text), the latest wins.
    explicit: dict[str, tuple[int, str, str]] = field(default_factory=dict)

    def add_usage(
        self,
        input_tokens: int | None,
        output_tokens: int | None,
        total_tokens: int | None,
        cost_usd: float | None,
    ) -> None:
        self.input_tokens += input_tokens or 0
        self.output_tokens += output_tokens or 0
        self.total_tokens += (
            total_tokens if total_tokens is not None else (input_tokens or 0) + (output_tokens or 0)
        )
        if cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + float(cost_usd)

    def offer_root(self, start_ns: int, span_id: str, *details: Any) -> None:
        if self.root is None or (start_ns, span_id) < self.root[:2]:
            self.root = (start_ns, span_id, *details)

    def offer_preview(self, kind: str, end_ns: int, span_id: str, text: str | None) -> None:
        if text is not None:
            current = self.explicit.get(kind)
            if current is None or (end_ns, span_id) > current[:2]:
                self.explicit[kind] = (end_ns, span_id, text)

    def values(self) -> tuple[Any, ...]:
        """The trace columns, in :data:`DERIVED_COLUMNS` order."""
        if self.root is None:
            name = self.first[2] if self.first else ""
            status = STATUS_IN_PROGRESS
            derived_request = derived_response = None
        else:
            name, root_status, inputs, outputs = self.root[2:]
            status = STATUS_ERROR if root_status == STATUS_ERROR else STATUS_OK
            derived_request = request_preview(inputs)
            derived_response = response_preview(outputs)
        end_ns = max(self.end_ns, self.start_ns)
        return (
            name,
            self.start_ns // 1_000_000,
            end_ns // 1_000_000,
            (end_ns - self.start_ns) // 1_000_000,
            status,
            self.span_count,
            self.input_tokens,
            self.output_tokens,
            self.total_tokens,
            self.cost_usd,
            self._preview("request", derived_request),
            self._preview("response", derived_response),
        )

    def _preview(self, kind: str, derived: str | None) -> str | None:
        explicit = self.explicit.get(kind)
        return explicit[2][:PREVIEW_MAX_CHARS] if explicit is not None else derived


def _has_usage(span: SpanRecord) -> bool:
    return (
        span.input_tokens is not None
        or span.output_tokens is not None
        or span.total_tokens is not None
        or span.cost_usd is not None
    )


def rollup_batch(spans: Iterable[SpanRecord]) -> dict[str, Rollup]:
    """Rollups of the traces of these spans, counting only these spans (no duplicates)."""
    spans = list(spans)
    # (trace id, span id) of spans whose usage a child reports again.
    reported_below = {
        (span.trace_id, span.parent_span_id)
        for span in spans
        if span.parent_span_id and (span.span_type == GATEWAY or _has_usage(span))
    }
    rollups: dict[str, Rollup] = {}
    for span in spans:
        rollup = rollups.get(span.trace_id)
        start, end = span.start_time_ns, span.end_time_ns
        if rollup is None:
            rollup = rollups[span.trace_id] = Rollup(start_ns=start, end_ns=end)
        else:
            rollup.start_ns = min(rollup.start_ns, start)
            rollup.end_ns = max(rollup.end_ns, end)
        rollup.span_count += 1
        if _has_usage(span) and (span.trace_id, span.span_id) not in reported_below:
            rollup.add_usage(
                span.input_tokens, span.output_tokens, span.total_tokens, span.cost_usd
            )
        if rollup.first is None or (start, span.span_id) < rollup.first[:2]:
            rollup.first = (start, span.span_id, span.name)
        if not span.parent_span_id:
            rollup.offer_root(
                start, span.span_id, span.name, span.status, span.inputs, span.outputs
            )
        rollup.offer_preview("request", end, span.span_id, span.request_preview)
        rollup.offer_preview("response", end, span.span_id, span.response_preview)
    return rollups


_PKS: BindParameter[list[int]] = bindparam("trace_pks", expanding=True)
_UPDATE_TRACE = BulkStatement(
    update(schema.traces)
    .where(_traces.trace_pk == bindparam("p_trace_pk"))
    .values({column: bindparam(f"p_{column}") for column in DERIVED_COLUMNS}),
    [f"p_{column}" for column in ("trace_pk", *DERIVED_COLUMNS)],
)
_TOTALS = (
    select(
        _spans.trace_pk,
        func.min(_spans.start_time_ns).label("start_ns"),
        func.max(_spans.end_time_ns).label("end_ns"),
        func.count().label("span_count"),
    )
    .where(_spans.trace_pk.in_(_PKS))
    .group_by(_spans.trace_pk)
)


def _usage_of(table: Any) -> ColumnElement[bool]:
    columns = table.c
    return or_(
        columns.input_tokens.is_not(None),
        columns.output_tokens.is_not(None),
        columns.total_tokens.is_not(None),
        columns.cost_usd.is_not(None),
    )


_child = schema.spans.alias("child")
# The spans whose usage counts: they report usage and no direct child reports it again.
_USAGE = select(
    _spans.trace_pk,
    _spans.input_tokens,
    _spans.output_tokens,
    _spans.total_tokens,
    _spans.cost_usd,
).where(
    _spans.trace_pk.in_(_PKS),
    _usage_of(schema.spans),
    ~exists().where(
        _child.c.trace_pk == _spans.trace_pk,
        _child.c.parent_span_id == _spans.span_id,
        or_(_child.c.span_type == GATEWAY, _usage_of(_child)),
    ),
)
# Roots, and any span that sets a preview on its trace.
_ROOTS_AND_PREVIEWS = select(
    _spans.trace_pk,
    _spans.span_id,
    _spans.parent_span_id,
    _spans.name,
    _spans.status,
    _spans.start_time_ns,
    _spans.end_time_ns,
    _spans.inputs,
    _spans.outputs,
    _spans.trace_request_preview,
    _spans.trace_response_preview,
).where(
    _spans.trace_pk.in_(_PKS),
    _spans.parent_span_id.is_(None)
    | _spans.trace_request_preview.is_not(None)
    | _spans.trace_response_preview.is_not(None),
)
_RANKED = (
    select(
        _spans.trace_pk,
        _spans.start_time_ns,
        _spans.span_id,
        _spans.name,
        func.row_number()
        .over(partition_by=_spans.trace_pk, order_by=(_spans.start_time_ns, _spans.span_id))
        .label("rank"),
    )
    .where(_spans.trace_pk.in_(_PKS))
    .subquery()
)
_FIRST_SPANS = select(
    _RANKED.c.trace_pk, _RANKED.c.start_time_ns, _RANKED.c.span_id, _RANKED.c.name
).where(_RANKED.c.rank == 1)


def refresh_traces(conn: Connection, trace_pks: Sequence[int]) -> None:
    """Recompute the rows of these stored traces from all of their stored spans."""
    for start in range(0, len(trace_pks), IN_CHUNK):
        chunk = {"trace_pks": list(trace_pks[start : start + IN_CHUNK])}
        rollups: dict[int, Rollup] = {}
        for row in conn.execute(_TOTALS, chunk).all():
            # PostgreSQL sums BIGINT into NUMERIC: keep plain ints and floats.
            rollups[row.trace_pk] = Rollup(
                start_ns=int(row.start_ns),
                end_ns=int(row.end_ns),
                span_count=int(row.span_count),
            )
        for row in conn.execute(_USAGE, chunk).all():
            rollups[row.trace_pk].add_usage(
                row.input_tokens, row.output_tokens, row.total_tokens, row.cost_usd
            )
        for row in conn.execute(_ROOTS_AND_PREVIEWS, chunk).all():
            rollup = rollups[row.trace_pk]
            if row.parent_span_id is None:
                rollup.offer_root(
                    row.start_time_ns, row.span_id, row.name, row.status, row.inputs, row.outputs
                )
            rollup.offer_preview("request", row.end_time_ns, row.span_id, row.trace_request_preview)
            rollup.offer_preview(
                "response", row.end_time_ns, row.span_id, row.trace_response_preview
            )
        rootless = [trace_pk for trace_pk, rollup in rollups.items() if rollup.root is None]
        if rootless:
            for row in conn.execute(_FIRST_SPANS, {"trace_pks": rootless}).all():
                rollups[row.trace_pk].first = (row.start_time_ns, row.span_id, row.name)
        _UPDATE_TRACE.execute(
            conn, [(trace_pk, *rollup.values()) for trace_pk, rollup in rollups.items()]
        )
