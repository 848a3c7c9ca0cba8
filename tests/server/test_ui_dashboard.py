"""The UI's own read queries (store/dashboard.py) on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from traceway.store import Store, open_store
from traceway.store.dashboard import Dashboard, SessionSummary, SpanRow
from traceway.store.records import SpanRecord, StoredSpan

MS = 1_000_000
#: Fixed times far in the past, so other tests' traces never fall in a window.
T0_MS = 978_307_200_000  # 2001-01-01T00:00:00Z
HOUR_MS = 3_600_000


@dataclass
class Data:
    store: Store
    dashboard: Dashboard
    experiment_id: int
    prefix: str  # unique per run: trace ids, session ids


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def data(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Data]:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("dash") / "traceway.db"
        url = f"sqlite:///{path}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    store = open_store(url)
    prefix = uuid.uuid4().hex[:8]
    experiment = store.get_or_create_experiment(f"dash-{prefix}")
    try:
        yield Data(store, Dashboard.for_store(store), experiment.experiment_id, prefix)
    finally:
        store.close()


def trace_id(data: Data, n: int) -> str:
    return f"{data.prefix}{n:024x}"


def span(data: Data, trace: int, span_id: str, parent: str | None, **fields: object) -> SpanRecord:
    start_ms = int(fields.pop("start_ms", 0))  # type: ignore[call-overload]
    duration_ms = float(fields.pop("duration_ms", 1))  # type: ignore[arg-type]
    start = (T0_MS + start_ms) * MS
    return SpanRecord(
        trace_id=trace_id(data, trace),
        span_id=span_id,
        parent_span_id=parent,
        name=str(fields.pop("name", span_id)),
        span_type=str(fields.pop("span_type", "CHAIN")),
        start_time_ns=start,
        end_time_ns=start + int(duration_ms * MS),
        **fields,  # type: ignore[arg-type]
    )


def test_span_rows_and_whole_spans(data: Data) -> None:
    data.store.write_spans(
        data.experiment_id,
        [
            span(data, 1, "a" * 16, None, name="root", duration_ms=50, status="OK"),
            span(
                data,
                1,
                "b" * 16,
                "a" * 16,
                name="llm",
                span_type="CHAT_MODEL",
                start_ms=5,
                duration_ms=20,
                status="ERROR",
                status_message="boom",
                model="gpt-4o",
                provider="openai",
                input_tokens=3,
                output_tokens=4,
                total_tokens=7,
                cost_usd=0.5,
                attributes={"k": 1},
                events=[{"name": "exception", "attributes": {"exception.type": "E"}}],
                inputs='{"messages": []}',
                outputs="not json",
            ),
            span(data, 1, "c" * 16, "a" * 16, name="later", start_ms=30),
        ],
    )
    rows = sorted(data.dashboard.span_rows(trace_id(data, 1)), key=lambda r: r.span_id)
    start = T0_MS * MS
    assert rows == [
        SpanRow("a" * 16, None, "root", "CHAIN", start, start + 50 * MS, "OK", "", None, None,
                None, None, None, None),
        SpanRow("b" * 16, "a" * 16, "llm", "CHAT_MODEL", start + 5 * MS, start + 25 * MS,
                "ERROR", "boom", "gpt-4o", "openai", 3, 4, 7, 0.5),
        SpanRow("c" * 16, "a" * 16, "later", "CHAIN", start + 30 * MS, start + 31 * MS, "UNSET",
                "", None, None, None, None, None, None),
    ]  # fmt: skip
    assert data.dashboard.get_span(trace_id(data, 1), "b" * 16) == StoredSpan(
        trace_id=trace_id(data, 1),
        span_id="b" * 16,
        parent_span_id="a" * 16,
        name="llm",
        span_type="CHAT_MODEL",
        start_time_ns=start + 5 * MS,
        end_time_ns=start + 25 * MS,
        status="ERROR",
        status_message="boom",
        attributes={"k": 1},
        events=[{"name": "exception", "attributes": {"exception.type": "E"}}],
        inputs={"messages": []},
        outputs="not json",
        model="gpt-4o",
        provider="openai",
        input_tokens=3,
        output_tokens=4,
        total_tokens=7,
        cost_usd=0.5,
    )
    children = data.dashboard.child_spans(trace_id(data, 1), "a" * 16)
    assert [c.span_id for c in children] == ["b" * 16, "c" * 16]
    assert data.dashboard.get_span(trace_id(data, 1), "d" * 16) is None
    assert data.dashboard.span_rows(trace_id(data, 999)) == []
    experiment = data.dashboard.experiment(data.experiment_id)
    assert experiment is not None and experiment.name == f"dash-{data.prefix}"
    assert data.dashboard.experiment(987_654) is None
    assert experiment.name in [e.name for e in data.dashboard.experiments()]


def test_sessions_page_by_latest_activity(data: Data) -> None:
    def turn(n: int, session: str, minute: int, status: str = "OK") -> SpanRecord:
        return span(
            data,
            100 + n,
            f"{n:016x}",
            None,
            name=f"turn {n}",
            start_ms=minute * 60_000,
            duration_ms=10,
            status=status,
            total_tokens=10,
            cost_usd=0.25,
            trace_metadata={"session_id": f"{data.prefix}-{session}", "user_id": f"u-{session}"},
            request_preview=f"question {n}",
        )

    data.store.write_spans(
        data.experiment_id,
        [
            turn(1, "a", 1),
            turn(2, "b", 2),
            turn(3, "a", 3, status="ERROR"),
            turn(4, "c", 4),
            turn(5, "b", 5),
            span(data, 110, "e" * 16, None, start_ms=6 * 60_000),  # no session
        ],
    )
    seen: list[SessionSummary] = []
    token = None
    for _ in range(5):
        page = data.dashboard.list_sessions(
            experiment_id=data.experiment_id, page_size=2, page_token=token
        )
        seen += page.sessions
        token = page.next_token
        if token is None:
            break
    minute = 60_000

    def summary(name: str, turns: int, errors: int, first: int, last: int, last_n: int) -> object:
        return SessionSummary(
            session_id=f"{data.prefix}-{name}",
            trace_count=turns,
            error_count=errors,
            first_ms=T0_MS + first * minute,
            last_ms=T0_MS + last * minute,
            total_tokens=10 * turns,
            cost_usd=0.25 * turns,
            last_trace_id=trace_id(data, 100 + last_n),
            last_request_preview=f"question {last_n}",
            user_id=f"u-{name}",
        )

    assert seen == [
        summary("b", 2, 0, 2, 5, 5),
        summary("c", 1, 0, 4, 4, 4),
        summary("a", 2, 1, 1, 3, 3),
    ]
    turns = data.dashboard.session_turns(f"{data.prefix}-a")
    assert [(t.name, t.status, t.request_preview) for t in turns] == [
        ("turn 1", "OK", "question 1"),
        ("turn 3", "ERROR", "question 3"),
    ]
    assert data.dashboard.session_turns("no-such-session") == []


def test_gateway_stats(data: Data) -> None:
    base = 10 * HOUR_MS  # after the other tests' spans, in a window of its own

    def request(n: int, minute: int, duration: float, provider: str, **fields: object) -> list:
        gateway = f"{n:015x}g"
        return [
            span(
                data,
                200 + n,
                gateway,
                None,
                span_type="GATEWAY",
                start_ms=base + minute * 60_000,
                duration_ms=duration,
                provider=provider,
                model=f"{provider}-model",
                input_tokens=10,
                output_tokens=5,
                cost_usd=0.01,
                **fields,
            ),
            span(
                data,
                200 + n,
                f"{n:015x}c",
                gateway,
                span_type="CACHE",
                start_ms=base + minute * 60_000,
                attributes={"traceway.cache.status": "hit" if n % 2 else "miss"},
            ),
            span(
                data,
                200 + n,
                f"{n:015x}r",
                gateway,
                span_type="GUARDRAIL",
                start_ms=base + minute * 60_000,
                attributes={"traceway.guardrail.verdict": "fail" if n == 3 else "pass"},
            ),
        ]

    data.store.write_spans(
        data.experiment_id,
        [
            *request(1, 1, 100, "openai"),
            *request(2, 2, 200, "openai", status="ERROR"),
            *request(3, 40, 400, "anthropic"),
            *request(4, 41, 800, "openai"),
            *request(5, 200, 50, "openai"),  # after the window
        ],
    )
    since = T0_MS + base
    stats = data.dashboard.gateway_stats(since_ms=since, until_ms=since + HOUR_MS, buckets=2)
    total = stats.total
    assert (total.requests, total.errors, total.input_tokens, total.output_tokens) == (4, 1, 40, 20)
    assert total.cost_usd == pytest.approx(0.04)
    assert (total.min_ms, total.max_ms) == (100, 800)
    assert 200 * 0.88 <= (total.p50_ms or 0) <= 400 * 1.13
    assert 400 <= (total.p95_ms or 0) <= 800
    assert [(g.key, g.requests, g.errors) for g in stats.by_provider] == [
        ("openai", 3, 1),
        ("anthropic", 1, 0),
    ]
    assert [g.key for g in stats.by_model] == ["openai-model", "anthropic-model"]
    assert [(b.start_ms, b.group.requests) for b in stats.buckets] == [
        (since, 2),
        (since + HOUR_MS // 2, 2),
    ]
    # One request: its percentiles are its latency, exactly.
    anthropic = stats.by_provider[1]
    assert (anthropic.p50_ms, anthropic.p95_ms) == (400, 400)
    assert stats.cache == [("hit", 2), ("miss", 2)]
    assert stats.guardrails == [("pass", 3), ("fail", 1)]
    assert stats.cache_hit_rate == 0.5

    # Bins computed without SQL math functions are the same bins.
    plain = Dashboard.for_store(data.store)
    plain._ln = False
    again = plain.gateway_stats(since_ms=since, until_ms=since + HOUR_MS, buckets=2)
    assert again.total.histogram == total.histogram

    empty = data.dashboard.gateway_stats(since_ms=since - HOUR_MS, until_ms=since, buckets=3)
    assert (empty.total.requests, empty.cache, empty.total.p50_ms) == (0, [], None)
    assert len(empty.buckets) == 3
