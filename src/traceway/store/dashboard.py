"""Read-only queries behind the web UI's views that the trace API does not cover.

- the light rows of a trace's spans (no payload, attributes or events), so a
  10,000-span trace draws its tree without reading megabytes of inputs;
- one span whole, and a span's children whole (gateway attempts), on demand;
- sessions: traces grouped by ``metadata.session_id``;
- gateway traffic: requests, errors, latency percentiles, tokens, cost, cache and
  guardrail outcomes over time.

Every query starts from an index: a trace's spans by primary-key prefix (its
``trace_pk``, found through the unique ``trace_id``), sessions by the
``(key, value, trace_pk)`` index of ``trace_metadata``, and time windows by the
``start_time_ms`` index of ``traces`` (gateway spans are then found per trace
through the ``(trace_pk, span_type)`` index), so none of them reads the whole
spans table.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Integer, and_, case, cast, func, literal, select, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import ColumnElement

from traceway.store import schema
from traceway.store.database import Database, describe_error
from traceway.store.errors import StoreError
from traceway.store.records import STATUS_ERROR, Experiment, StoredSpan
from traceway.store.store import Store

__all__ = [
    "CACHE_STATUS",
    "GUARDRAIL_VERDICT",
    "Dashboard",
    "GatewayBucket",
    "GatewayGroup",
    "GatewayStats",
    "SessionPage",
    "SessionSummary",
    "SessionTurn",
    "SpanRow",
]

#: The attributes that carry a cache lookup's outcome and a guardrail's verdict.
CACHE_STATUS = "traceway.cache.status"
GUARDRAIL_VERDICT = "traceway.guardrail.verdict"
SESSION_KEY = "session_id"
USER_KEY = "user_id"

# Latency histogram bin edges (ms), 25 % apart from 0.5 ms to ~10 min: percentiles
# come from these counts, so they are exact to within one bin (±12 %) at any volume.
_RATIO = 1.25
_EDGES: tuple[float, ...] = tuple(0.5 * _RATIO**i for i in range(64))
# Sessions are found by walking the newest traces; these bound one page's walk.
_SESSION_CHUNK = 500
_SESSION_MAX_SCAN = 20_000

_t = schema.traces.c
_s = schema.spans.c
_m = schema.trace_metadata.c


@dataclass(slots=True)
class SpanRow:
    """A span without its payload: what the tree and waterfall draw."""

    span_id: str
    parent_span_id: str | None
    name: str
    span_type: str
    start_time_ns: int
    end_time_ns: int
    status: str
    status_message: str
    model: str | None
    provider: str | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None


@dataclass(slots=True)
class SessionSummary:
    session_id: str
    trace_count: int
    error_count: int
    first_ms: int
    last_ms: int
    total_tokens: int
    cost_usd: float | None
    last_trace_id: str
    last_request_preview: str | None
    user_id: str | None


@dataclass(slots=True)
class SessionPage:
    sessions: list[SessionSummary]
    #: Pass back as ``page_token`` for older sessions; ``None`` on the last page.
    next_token: str | None


@dataclass(slots=True)
class SessionTurn:
    """One trace of a session, as a turn of the conversation."""

    trace_id: str
    name: str
    start_time_ms: int
    duration_ms: int
    status: str
    request_preview: str | None
    response_preview: str | None
    total_tokens: int
    cost_usd: float | None


@dataclass(slots=True)
class GatewayGroup:
    """Gateway requests sharing a provider, a model, or a time bucket."""

    key: str
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(_EDGES) + 1))
    min_ms: float | None = None
    max_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def p50_ms(self) -> float | None:
        return self._quantile(0.50)

    @property
    def p95_ms(self) -> float | None:
        return self._quantile(0.95)

    def _quantile(self, q: float) -> float | None:
        value = _percentile(self.histogram, q)
        if value is None or self.min_ms is None or self.max_ms is None:
            return value
        # The exact extremes tighten the estimate: one request's p50 is its latency.
        return min(max(value, self.min_ms), self.max_ms)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class GatewayBucket:
    start_ms: int
    group: GatewayGroup


@dataclass(slots=True)
class GatewayStats:
    since_ms: int
    until_ms: int
    bucket_ms: int
    total: GatewayGroup
    buckets: list[GatewayBucket]
    by_provider: list[GatewayGroup]
    by_model: list[GatewayGroup]
    #: Cache lookups and guardrail checks by outcome, most frequent first.
    cache: list[tuple[str, int]]
    guardrails: list[tuple[str, int]]

    @property
    def cache_hit_rate(self) -> float | None:
        lookups = sum(n for _, n in self.cache)
        hits = sum(n for outcome, n in self.cache if "hit" in outcome.lower())
        return hits / lookups if lookups else None


class Dashboard:
    """Read-only views over one store's database.

    >>> from traceway.store import open_store
    >>> store = open_store("sqlite://")
    >>> Dashboard.for_store(store).span_rows("0" * 32)
    []
    >>> store.close()
    """

    def __init__(self, database: Database, lock: AbstractContextManager[Any] | None = None) -> None:
        self._db = database
        # An in-memory SQLite store shares one connection: take turns with the store.
        self._lock = lock if database.single_connection and lock is not None else nullcontext()
        self._ln: bool | None = None  # whether SQL has ln(); SQLite builds may lack it

    @classmethod
    def for_store(cls, store: Store) -> Dashboard:
        """The dashboard over the same database (and connection lock) as ``store``."""
        return cls(store.database, store.write_lock)

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        try:
            with self._lock, self._db.reader.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {describe_error(exc)}") from exc

    # --- experiments -------------------------------------------------------------

    def experiment(self, experiment_id: int) -> Experiment | None:
        """An experiment's id, name and creation time, without counting its traces.

        (:meth:`Store.get_experiment` counts them, which takes a while at scale;
        page headers only need the name.)
        """
        e = schema.experiments.c
        query = select(e.experiment_id, e.name, e.created_at_ms).where(
            e.experiment_id == experiment_id
        )
        with self._connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else Experiment(int(row[0]), str(row[1]), int(row[2]))

    def experiments(self) -> list[Experiment]:
        """Every experiment by name, without counting traces (for pickers)."""
        e = schema.experiments.c
        query = select(e.experiment_id, e.name, e.created_at_ms).order_by(e.name)
        with self._connect() as conn:
            return [Experiment(int(i), str(n), int(c)) for i, n, c in conn.execute(query)]

    # --- spans -----------------------------------------------------------------

    def span_rows(self, trace_id: str) -> list[SpanRow]:
        """Every span of a trace without payload, attributes or events."""
        query = select(
            _s.span_id,
            _s.parent_span_id,
            _s.name,
            _s.span_type,
            _s.start_time_ns,
            _s.end_time_ns,
            _s.status,
            _s.status_message,
            _s.model,
            _s.provider,
            _s.input_tokens,
            _s.output_tokens,
            _s.total_tokens,
            _s.cost_usd,
        ).where(_s.trace_pk == _trace_pk(trace_id))
        with self._connect() as conn:
            return [SpanRow(**row) for row in conn.execute(query).mappings()]

    def get_span(self, trace_id: str, span_id: str) -> StoredSpan | None:
        """One span with its payload, attributes and events."""
        spans = self._full_spans(trace_id, _s.span_id == span_id)
        return spans[0] if spans else None

    def child_spans(self, trace_id: str, span_id: str) -> list[StoredSpan]:
        """The direct children of a span, whole, in start order."""
        spans = self._full_spans(trace_id, _s.parent_span_id == span_id)
        return sorted(spans, key=lambda s: (s.start_time_ns, s.span_id))

    def _full_spans(self, trace_id: str, where: ColumnElement[bool]) -> list[StoredSpan]:
        query = select(
            _s.span_id,
            _s.parent_span_id,
            _s.name,
            _s.span_type,
            _s.start_time_ns,
            _s.end_time_ns,
            _s.status,
            _s.status_message,
            _s.attributes,
            _s.events,
            _s.inputs,
            _s.outputs,
            _s.model,
            _s.provider,
            _s.input_tokens,
            _s.output_tokens,
            _s.total_tokens,
            _s.cost_usd,
        ).where(_s.trace_pk == _trace_pk(trace_id), where)
        with self._connect() as conn:
            rows = conn.execute(query).all()
        return [
            StoredSpan(
                trace_id,
                *row[:8],
                attributes=_json_or(row.attributes, {}),
                events=_json_or(row.events, []),
                inputs=_json_or(row.inputs, row.inputs),
                outputs=_json_or(row.outputs, row.outputs),
                model=row.model,
                provider=row.provider,
                input_tokens=row.input_tokens,
                output_tokens=row.output_tokens,
                total_tokens=row.total_tokens,
                cost_usd=row.cost_usd,
            )
            for row in rows
        ]

    # --- sessions --------------------------------------------------------------

    def list_sessions(
        self,
        *,
        experiment_id: int | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> SessionPage:
        """Sessions by latest activity, newest first.

        Walks the newest traces (by index) collecting distinct session ids until a
        page is full; a session is listed on the page holding its latest trace.
        """
        start = cursor = _decode_cursor(page_token)
        order: list[str] = []
        latest: dict[str, str] = {}
        next_cursor: tuple[int, str] | None = None
        scanned = 0
        with self._connect() as conn:
            while scanned < _SESSION_MAX_SCAN:
                chunk = self._session_chunk(conn, experiment_id, cursor)
                scanned += len(chunk)
                previous = cursor
                for start_ms, trace_id, session_id in chunk:
                    if session_id is not None and session_id not in latest:
                        if len(order) == page_size:
                            # The next page resumes just after the last trace taken.
                            next_cursor = previous
                            break
                        order.append(session_id)
                        latest[session_id] = trace_id
                    previous = (start_ms, trace_id)
                if next_cursor is not None or len(chunk) < _SESSION_CHUNK:
                    break
                cursor = (chunk[-1][0], chunk[-1][1])
            else:
                next_cursor = cursor
            summaries = self._session_summaries(conn, order, latest, experiment_id)
        if start is not None:
            # Listed already, on the page that holds its newer latest trace.
            summaries = [s for s in summaries if s.last_ms <= start[0]]
        token = None if next_cursor is None else _encode_cursor(next_cursor)
        return SessionPage(sessions=summaries, next_token=token)

    def _session_chunk(
        self, conn: Connection, experiment_id: int | None, cursor: tuple[int, str] | None
    ) -> list[tuple[int, str, str | None]]:
        """The next newest traces (a fixed number, by index) and their session ids."""
        recent = select(_t.trace_pk, _t.start_time_ms, _t.trace_id)
        if experiment_id is not None:
            recent = recent.where(_t.experiment_id == experiment_id)
        if cursor is not None:
            recent = recent.where(tuple_(_t.start_time_ms, _t.trace_id) < tuple_(*cursor))
        # Limit the traces first, then look each one's session up by primary key (a
        # scalar subquery), so no planner starts from every session row instead.
        chunk = (
            recent.order_by(_t.start_time_ms.desc(), _t.trace_id.desc())
            .limit(_SESSION_CHUNK)
            .subquery()
        )
        session = (
            select(_m.value)
            .where(_m.trace_pk == chunk.c.trace_pk, _m.key == SESSION_KEY)
            .scalar_subquery()
        )
        query = select(chunk.c.start_time_ms, chunk.c.trace_id, session).order_by(
            chunk.c.start_time_ms.desc(), chunk.c.trace_id.desc()
        )
        return [(int(a), str(b), c) for a, b, c in conn.execute(query)]

    def _session_summaries(
        self,
        conn: Connection,
        session_ids: Sequence[str],
        latest: dict[str, str],
        experiment_id: int | None,
    ) -> list[SessionSummary]:
        if not session_ids:
            return []
        stats = (
            select(
                _m.value,
                func.count(),
                func.sum(case((_t.status == STATUS_ERROR, 1), else_=0)),
                func.min(_t.start_time_ms),
                func.max(_t.start_time_ms),
                func.sum(_t.total_tokens),
                func.sum(_t.cost_usd),
            )
            .join_from(schema.trace_metadata, schema.traces, _m.trace_pk == _t.trace_pk)
            .where(_m.key == SESSION_KEY, _m.value.in_(session_ids))
            .group_by(_m.value)
        )
        if experiment_id is not None:
            stats = stats.where(_t.experiment_id == experiment_id)
        by_session = {row[0]: row for row in conn.execute(stats)}
        last_ids = list(latest.values())
        previews = dict(
            conn.execute(
                select(_t.trace_id, _t.request_preview).where(_t.trace_id.in_(last_ids))
            ).all()
        )
        users = dict(
            conn.execute(
                select(_t.trace_id, _m.value)
                .join_from(schema.traces, schema.trace_metadata, _m.trace_pk == _t.trace_pk)
                .where(_t.trace_id.in_(last_ids), _m.key == USER_KEY)
            ).all()
        )
        out = []
        for session_id in session_ids:
            row = by_session.get(session_id)
            if row is None:
                continue
            trace_id = latest[session_id]
            out.append(
                SessionSummary(
                    session_id=session_id,
                    trace_count=int(row[1]),
                    error_count=int(row[2] or 0),
                    first_ms=int(row[3]),
                    last_ms=int(row[4]),
                    total_tokens=int(row[5] or 0),
                    cost_usd=None if row[6] is None else float(row[6]),
                    last_trace_id=trace_id,
                    last_request_preview=previews.get(trace_id),
                    user_id=users.get(trace_id),
                )
            )
        return out

    def session_turns(self, session_id: str, limit: int = 500) -> list[SessionTurn]:
        """A session's traces, oldest first (at most ``limit``)."""
        query = (
            select(
                _t.trace_id,
                _t.name,
                _t.start_time_ms,
                _t.duration_ms,
                _t.status,
                _t.request_preview,
                _t.response_preview,
                _t.total_tokens,
                _t.cost_usd,
            )
            .join_from(schema.trace_metadata, schema.traces, _m.trace_pk == _t.trace_pk)
            .where(_m.key == SESSION_KEY, _m.value == session_id)
            .order_by(_t.start_time_ms, _t.trace_id)
            .limit(limit)
        )
        with self._connect() as conn:
            return [SessionTurn(*row) for row in conn.execute(query)]

    # --- gateway ---------------------------------------------------------------

    def gateway_stats(self, *, since_ms: int, until_ms: int, buckets: int = 48) -> GatewayStats:
        """Gateway traffic of the traces that started in ``[since_ms, until_ms)``.

        One grouped query reads the GATEWAY, CACHE and GUARDRAIL spans of those
        traces.  Trace keys are handed out in arrival order, so the window's traces
        all have keys at or above the smallest one among them: the spans are read
        as one range of the ``(trace_pk, span_type)`` index from there on, and the
        cost follows the traffic since the window opened, not the size of the store.
        """
        bucket_ms = max(1, -(-(until_ms - since_ms) // buckets))
        window = and_(_t.start_time_ms >= since_ms, _t.start_time_ms < until_ms)
        with self._connect() as conn:
            first_pk = conn.execute(select(func.min(_t.trace_pk)).where(window)).scalar()
        # "+ 0" hides the time index, so the planner reads the spans' key range and
        # checks each one's trace, instead of probing every trace in the window.
        start_ms = _t.start_time_ms + 0
        in_window = and_(_s.trace_pk >= (first_pk or 0), start_ms >= since_ms, start_ms < until_ms)
        duration_ms = (_s.end_time_ns - _s.start_time_ns) / literal(1_000_000.0)
        bucket_of = (_s.start_time_ns // 1_000_000 - since_ms) // bucket_ms
        outcome = case(
            (_s.span_type == "CACHE", self._attribute(CACHE_STATUS)),
            (_s.span_type == "GUARDRAIL", self._attribute(GUARDRAIL_VERDICT)),
        )
        keys = (
            _s.span_type,
            bucket_of,
            func.coalesce(_s.provider, ""),
            func.coalesce(_s.model, ""),
            self._latency_bin(duration_ms),
            outcome,
        )
        query = (
            select(
                *keys,
                func.count(),
                func.sum(case((_s.status == STATUS_ERROR, 1), else_=0)),
                func.sum(func.coalesce(_s.input_tokens, 0)),
                func.sum(func.coalesce(_s.output_tokens, 0)),
                func.sum(func.coalesce(_s.cost_usd, 0.0)),
                func.min(duration_ms),
                func.max(duration_ms),
            )
            .join_from(schema.spans, schema.traces, _t.trace_pk == _s.trace_pk)
            .where(in_window, _s.span_type.in_(("GATEWAY", "CACHE", "GUARDRAIL")))
            .group_by(*keys)
        )
        total = GatewayGroup("all")
        per_bucket: dict[int, GatewayGroup] = {}
        per_provider: dict[str, GatewayGroup] = {}
        per_model: dict[str, GatewayGroup] = {}
        outcomes: dict[str, dict[str, int]] = {"CACHE": {}, "GUARDRAIL": {}}
        rows: Sequence[Any] = []
        if first_pk is not None:
            with self._connect() as conn:
                rows = conn.execute(query).all()
        for span_type, bucket, prov, mod, bin_index, result, n, errors, *sums in rows:
            if span_type != "GATEWAY":
                found = outcomes[span_type]
                label = "unknown" if result is None else str(result)
                found[label] = found.get(label, 0) + int(n)
                continue
            tok_in, tok_out, spent, low, high = sums
            # A span may start a little after its trace's window closes.
            bucket = min(max(int(bucket), 0), buckets - 1)
            for group in (
                total,
                per_bucket.setdefault(bucket, GatewayGroup(str(bucket))),
                per_provider.setdefault(prov or "unknown", GatewayGroup(prov or "unknown")),
                per_model.setdefault(mod or "unknown", GatewayGroup(mod or "unknown")),
            ):
                _add(group, int(bin_index), int(n), int(errors or 0), int(tok_in), int(tok_out))
                _extend(group, float(spent or 0.0), float(low), float(high))
        return GatewayStats(
            since_ms=since_ms,
            until_ms=until_ms,
            bucket_ms=bucket_ms,
            total=total,
            buckets=[
                GatewayBucket(since_ms + i * bucket_ms, per_bucket.get(i, GatewayGroup(str(i))))
                for i in range(buckets)
            ],
            by_provider=sorted(per_provider.values(), key=lambda g: (-g.requests, g.key)),
            by_model=sorted(per_model.values(), key=lambda g: (-g.requests, g.key)),
            cache=_by_count(outcomes["CACHE"]),
            guardrails=_by_count(outcomes["GUARDRAIL"]),
        )

    def _latency_bin(self, duration_ms: ColumnElement[Any]) -> ColumnElement[Any]:
        """The histogram bin of a latency: ``i`` where ``_EDGES[i-1] <= ms < _EDGES[i]``."""
        if self._has_ln():
            # floor, not a cast: PostgreSQL rounds when casting to an integer.
            index = cast(func.floor(func.ln(duration_ms / _EDGES[0]) / math.log(_RATIO)), Integer)
            return case(
                (duration_ms < _EDGES[0], 0),
                (index + 1 > len(_EDGES), len(_EDGES)),
                else_=index + 1,
            )
        # Without SQL math functions: a comparison per edge, a few times slower.
        return case(
            *((duration_ms < edge, index) for index, edge in enumerate(_EDGES)),
            else_=len(_EDGES),
        )

    def _has_ln(self) -> bool:
        if self._ln is None:
            if self._db.dialect == "postgresql":
                self._ln = True
            else:
                try:
                    with self._connect() as conn:
                        conn.exec_driver_sql("SELECT ln(2.0)")
                    self._ln = True
                except StoreError:
                    self._ln = False
        return self._ln

    def _attribute(self, key: str) -> ColumnElement[Any]:
        """One top-level attribute of a span as text, in this database's JSON dialect."""
        if self._db.dialect == "postgresql":
            return func.jsonb_extract_path_text(cast(_s.attributes, JSONB), key)
        return func.json_extract(_s.attributes, f'$."{key}"')


def _trace_pk(trace_id: str) -> Any:
    """The surrogate key spans hang off, looked up through the unique ``trace_id``."""
    return select(_t.trace_pk).where(_t.trace_id == trace_id).scalar_subquery()


def _add(
    group: GatewayGroup, bin_index: int, n: int, errors: int, tokens_in: int, tokens_out: int
) -> None:
    group.requests += n
    group.errors += errors
    group.input_tokens += tokens_in
    group.output_tokens += tokens_out
    group.histogram[bin_index] += n


def _extend(group: GatewayGroup, spent: float, low_ms: float, high_ms: float) -> None:
    group.cost_usd += spent
    group.min_ms = low_ms if group.min_ms is None else min(group.min_ms, low_ms)
    group.max_ms = high_ms if group.max_ms is None else max(group.max_ms, high_ms)


def _by_count(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _percentile(histogram: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of a binned latency, interpolated geometrically in its bin."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    seen = 0
    for index, n in enumerate(histogram):
        if n and seen + n >= rank:
            low = _EDGES[index - 1] if index > 0 else 0.0
            high = _EDGES[index] if index < len(_EDGES) else _EDGES[-1] * 1.25
            if low == 0:
                return high * (rank - seen) / n
            return float(low * (high / low) ** ((rank - seen) / n))
        seen += n
    return _EDGES[-1]


def _json_or(text: str | None, default: Any) -> Any:
    if text is None:
        return default
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return default


def _encode_cursor(cursor: tuple[int, str]) -> str:
    return f"{cursor[0]}-{cursor[1]}"


def _decode_cursor(token: str | None) -> tuple[int, str] | None:
    if not token:
        return None
    start, _, trace_id = token.partition("-")
    if not start.isdigit() or not trace_id:
        return None
    return int(start), trace_id
