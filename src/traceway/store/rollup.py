"""Deriving trace rows from their spans.

A trace row is never written by hand.  Its columns come from a :class:`Rollup` of
its spans: times and totals, the root span (the earliest span without a parent),
or the earliest span while the root has not arrived, and any preview a span sets
explicitly (the one that ended last wins).

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

from sqlalchemy import BindParameter, Connection, bindparam, func, select, update

from traceway.store import schema
from traceway.store.bulk import BulkStatement
from traceway.store.previews import PREVIEW_MAX_CHARS, request_preview, response_preview
from traceway.store.records import STATUS_ERROR, STATUS_IN_PROGRESS, STATUS_OK, SpanRecord
from traceway.store.sql import IN_CHUNK

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


def rollup_batch(spans: Iterable[SpanRecord]) -> dict[str, Rollup]:
    """Rollups of the traces of these spans, counting only these spans (no duplicates)."""
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
        rollup.input_tokens += span.input_tokens or 0
        rollup.output_tokens += span.output_tokens or 0
        rollup.total_tokens += (
            span.total_tokens
            if span.total_tokens is not None
            else (span.input_tokens or 0) + (span.output_tokens or 0)
        )
        if span.cost_usd is not None:
            rollup.cost_usd = (rollup.cost_usd or 0.0) + span.cost_usd
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
_TOTAL_TOKENS = func.coalesce(
    _spans.total_tokens,
    func.coalesce(_spans.input_tokens, 0) + func.coalesce(_spans.output_tokens, 0),
)
_TOTALS = (
    select(
        _spans.trace_pk,
        func.min(_spans.start_time_ns).label("start_ns"),
        func.max(_spans.end_time_ns).label("end_ns"),
        func.count().label("span_count"),
        func.coalesce(func.sum(_spans.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(_spans.output_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(_TOTAL_TOKENS), 0).label("total_tokens"),
        # SUM of only NULLs is NULL: a trace without any cost has no cost.
        func.sum(_spans.cost_usd).label("cost_usd"),
    )
    .where(_spans.trace_pk.in_(_PKS))
    .group_by(_spans.trace_pk)
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
                input_tokens=int(row.input_tokens),
                output_tokens=int(row.output_tokens),
                total_tokens=int(row.total_tokens),
                cost_usd=None if row.cost_usd is None else float(row.cost_usd),
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
