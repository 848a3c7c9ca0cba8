"""Searching traces: every filter field and operator, ordering, keyset pages."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select
from store_helpers import create_schema, drop_schema, schema_url, span, tid

from traceway.store import FilterError, Store, TraceSummary, open_store, queries, schema
from traceway.store.paging import parse_order_by

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class Dataset:
    store: Store
    app: int
    other: int


@pytest.fixture(scope="module", params=BACKENDS)
def dataset(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dataset]:
    """Five traces written once per backend; the tests here only read them."""
    if request.param == "sqlite":
        url, pg_schema = f"sqlite:///{tmp_path_factory.mktemp('search') / 'search.db'}", None
    else:
        pg_schema = create_schema()
        url = schema_url(pg_schema)
    store = open_store(url)
    app = store.get_or_create_experiment("app").experiment_id
    other = store.get_or_create_experiment("other").experiment_id
    chat_in = orjson.dumps({"messages": [{"role": "user", "content": "What is 2+2?"}]}).decode()
    chat_out = orjson.dumps({"choices": [{"message": {"content": "4"}}]}).decode()
    base = 1_000_000
    store.write_spans(
        app,
        [
            # 1: a chat completion under a chain
            span(1, 1, name="chat-completion", start_ms=base, end_ms=base + 100,
                 inputs=chat_in, outputs=chat_out,
                 trace_tags={"env": "prod", "my key": "x"}, trace_metadata={"user_id": "alice"}),
            span(1, 2, 1, name="openai.chat", span_type="LLM", start_ms=base + 10,
                 end_ms=base + 90, input_tokens=10, output_tokens=5, total_tokens=15,
                 cost_usd=0.25),
            # 2: a failed agent run with a tool call
            span(2, 1, name="Chat-Agent", span_type="AGENT", start_ms=2 * base,
                 end_ms=2 * base + 2_500, status="ERROR", request_preview="plan a trip",
                 outputs='"done"', trace_tags={"env": "dev"}, trace_metadata={"user_id": "bob"}),
            span(2, 2, 1, name="search", span_type="TOOL", start_ms=2 * base + 5),
            span(2, 3, 1, name="openai.chat", span_type="LLM", start_ms=2 * base + 20,
                 input_tokens=100, output_tokens=50, total_tokens=150, cost_usd=0.5),
            # 3: a retrieval without tokens or cost
            span(3, 1, name="retrieval", span_type="RETRIEVER", start_ms=3 * base,
                 end_ms=3 * base + 40, inputs='{"query": "docs"}',
                 trace_metadata={"session_id": "s1"}),
            # 4: only a child so far: in progress
            span(4, 2, 1, name="openai.chat", span_type="LLM", start_ms=4 * base,
                 end_ms=4 * base + 700, input_tokens=1, output_tokens=1,
                 trace_tags={"env": "prod"}),
        ],
    )  # fmt: skip
    store.write_spans(
        other,
        [span(5, 1, name="other-exp", start_ms=5 * base, end_ms=5 * base + 100, cost_usd=1.0)],
    )
    yield Dataset(store, app, other)
    store.close()
    if pg_schema is not None:
        drop_schema(pg_schema)


def found(store: Store, filter: str, experiment_ids: list[int] | None = None) -> set[int]:
    page, token = store.search_traces(filter=filter, experiment_ids=experiment_ids)
    assert token is None
    return {int(t.trace_id, 16) for t in page}


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        (f"trace_id = '{tid(1)}'", {1}),
        (f"trace_id IN ('{tid(1)}', '{tid(3)}')", {1, 3}),
        (f"trace_id != '{tid(1)}'", {2, 3, 4, 5}),
        ("name = 'chat-completion'", {1}),
        ("name != 'chat-completion'", {2, 3, 4, 5}),
        ("name LIKE 'chat%'", {1}),  # LIKE is case-sensitive on both databases
        ("name ILIKE 'chat%'", {1, 2}),
        ("name LIKE '%.chat'", {4}),
        ("name IN ('retrieval', 'other-exp')", {3, 5}),
        ("name NOT IN ('retrieval', 'other-exp')", {1, 2, 4}),
        ("status = 'ERROR'", {2}),
        ("status = 'error'", {2}),
        ("status != 'OK'", {2, 4}),
        ("status IN ('OK', 'in_progress')", {1, 3, 4, 5}),
        ("status NOT IN ('OK')", {2, 4}),
        ("status LIKE 'IN%'", {4}),
        ("duration_ms = 100", {1, 5}),
        ("duration_ms != 100", {2, 3, 4}),
        ("duration_ms > 100", {2, 4}),
        ("duration_ms >= 100", {1, 2, 4, 5}),
        ("duration_ms < 100", {3}),
        ("duration_ms <= 100", {1, 3, 5}),
        ("duration_ms IN (40, 700)", {3, 4}),
        ("duration_ms NOT IN (40, 700)", {1, 2, 5}),
        ("duration_ms > 99.5", {1, 2, 4, 5}),
        ("start_time >= 3000000", {3, 4, 5}),
        ("start_time < '1970-01-01T00:50:00Z'", {1, 2}),
        ("start_time >= '1970-01-01T01:50:00+01:00'", {3, 4, 5}),
        ("start_time = '1970-01-01T00:50:00'", {3}),
        ("start_time IN (1000000, '1970-01-01T00:33:20Z')", {1, 2}),
        ("end_time > 4000000", {4, 5}),
        ("end_time <= 1000100", {1}),
        ("span_count = 3", {2}),
        ("span_count > 1", {1, 2}),
        ("total_tokens >= 15", {1, 2}),
        ("total_tokens = 2", {4}),
        ("input_tokens = 100", {2}),
        ("output_tokens < 5", {3, 4, 5}),
        ("cost_usd > 0.3", {2, 5}),
        ("cost_usd = 0.25", {1}),
        ("cost_usd <= 1", {1, 2, 5}),  # traces without a cost match no comparison
        ("request_preview = 'What is 2+2?'", {1}),
        ("request_preview LIKE 'plan%'", {2}),
        ('request_preview = \'{"query":"docs"}\'', {3}),
        ("response_preview ILIKE 'DONE'", {2}),
        ("response_preview IN ('4', 'done')", {1, 2}),
        ("tags.env = 'prod'", {1, 4}),
        ("tags.env != 'prod'", {2}),  # traces without the tag do not match
        ("tags.env IN ('dev', 'qa')", {2}),
        ("tags.env NOT IN ('dev')", {1, 4}),
        ("tags.env LIKE 'p%'", {1, 4}),
        ("tags.env ILIKE 'P%'", {1, 4}),
        ("tags.`my key` = 'x'", {1}),
        ("tags.missing = 'x'", set()),
        ("metadata.user_id = 'alice'", {1}),
        ("metadata.user_id ILIKE 'B%'", {2}),
        ("metadata.session_id = 's1'", {3}),
        ("metadata.user_id NOT IN ('alice')", {2}),
        ("span_type = 'TOOL'", {2}),
        ("span_type = 'llm'", {1, 2, 4}),
        ("span_type != 'LLM'", {3, 5}),  # has no LLM span
        ("span_type IN ('RETRIEVER', 'TOOL')", {2, 3}),
        ("span_type NOT IN ('LLM', 'CHAIN')", {3}),
        ("span_type LIKE 'RET%'", {3}),
        ("span.name = 'search'", {2}),
        ("span.name != 'openai.chat'", {3, 5}),
        ("span.name ILIKE 'OPENAI%'", {1, 2, 4}),
        ("span.name IN ('search', 'retrieval')", {2, 3}),
        ("span_type = 'LLM' AND tags.env = 'prod' AND duration_ms > 500", {4}),
        ("status = 'OK' and name like 'chat%'", {1}),
        ("name = 'x\\' OR 1=1 --'", set()),
        ("", {1, 2, 3, 4, 5}),
    ],
)
def test_filter(dataset: Dataset, filter: str, expected: set[int]) -> None:
    assert found(dataset.store, filter) == expected


def test_experiment_ids_limit_the_search(dataset: Dataset) -> None:
    store, app, other = dataset.store, dataset.app, dataset.other
    assert found(store, "duration_ms = 100", [app]) == {1}
    assert found(store, "duration_ms = 100", [other]) == {5}
    assert found(store, "duration_ms = 100", [app, other]) == {1, 5}
    assert found(store, "", []) == set()


def test_results_are_whole_trace_rows(dataset: Dataset) -> None:
    page, _ = dataset.store.search_traces(filter="name = 'chat-completion'")
    assert page == [
        TraceSummary(
            trace_id=tid(1),
            experiment_id=dataset.app,
            name="chat-completion",
            start_time_ms=1_000_000,
            end_time_ms=1_000_100,
            duration_ms=100,
            status="OK",
            request_preview="What is 2+2?",
            response_preview="4",
            span_count=2,
            input_tokens=10,
            output_tokens=5,
            total_tokens=15,
            cost_usd=0.25,
            tags={"env": "prod", "my key": "x"},
            metadata={"user_id": "alice"},
        )
    ]


def test_default_order_is_newest_first(dataset: Dataset) -> None:
    page, _ = dataset.store.search_traces()
    assert [int(t.trace_id, 16) for t in page] == [5, 4, 3, 2, 1]


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        ("start_time", [1, 2, 3, 4, 5]),
        ("start_time DESC", [5, 4, 3, 2, 1]),
        ("duration_ms desc", [2, 4, 5, 1, 3]),
        ("name ASC", [2, 1, 4, 5, 3]),
        ("status", [2, 4, 1, 3, 5]),  # ERROR < IN_PROGRESS < OK
        ("total_tokens DESC", [2, 1, 4, 5, 3]),
        ("span_count DESC", [2, 1, 5, 4, 3]),
        ("cost_usd DESC", [5, 2, 1, 4, 3]),  # no cost sorts below every cost
        ("cost_usd ASC", [3, 4, 1, 2, 5]),
    ],
)
def test_order_by(dataset: Dataset, order_by: str, expected: list[int]) -> None:
    page, _ = dataset.store.search_traces(order_by=order_by)
    assert [int(t.trace_id, 16) for t in page] == expected


@pytest.mark.parametrize(
    ("filter", "message", "position"),
    [
        ("name =", "expected a value after '=' at position 6, but the filter ends there", 6),
        ("foo = 1", "unknown field 'foo' at position 0; known fields: trace_id, name", 0),
        ("duration_ms > 'slow'", "field 'duration_ms' takes a number, not the string 'slow'", 14),
        (
            "status = 'OK' OR status = 'ERROR'",
            "expected AND or the end of the filter, got 'OR'",
            14,
        ),
    ],
)
def test_bad_filters_say_where(dataset: Dataset, filter: str, message: str, position: int) -> None:
    with pytest.raises(FilterError) as caught:
        dataset.store.search_traces(filter=filter)
    assert str(caught.value).startswith(message)
    assert caught.value.position == position


@pytest.mark.parametrize(
    ("order_by", "message"),
    [
        ("tokens", "cannot order by 'tokens' at position 0; use one of start_time, duration_ms"),
        ("name sideways", "expected ASC or DESC after 'name', got 'sideways' at position 5"),
        ("name ASC, status", "expected ASC or DESC after 'name', got 'ASC,' at position 5"),
        ("name DESC status", "unexpected 'status' at position 10"),
    ],
)
def test_bad_order_by(dataset: Dataset, order_by: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        dataset.store.search_traces(order_by=order_by)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("page_size", [0, -1, 1001])
def test_bad_page_sizes(dataset: Dataset, page_size: int) -> None:
    with pytest.raises(FilterError, match="page_size must be between 1 and 1000"):
        dataset.store.search_traces(page_size=page_size)


def test_bad_page_tokens(dataset: Dataset) -> None:
    store = dataset.store
    _, token = store.search_traces(page_size=2, order_by="duration_ms")
    assert token is not None
    for bad in ["garbage!", "AAAA", token[:-3], token + "x"]:
        with pytest.raises(FilterError, match="invalid page token"):
            store.search_traces(page_size=2, order_by="duration_ms", page_token=bad)
    with pytest.raises(FilterError, match="different order_by"):
        store.search_traces(page_size=2, order_by="name", page_token=token)


# --- pagination ------------------------------------------------------------------


@pytest.mark.parametrize(
    "order_by",
    [
        None,
        "start_time",
        "duration_ms DESC",
        "duration_ms",
        "name",
        "name DESC",
        "status",
        "total_tokens DESC",
        "span_count",
        "cost_usd DESC",
        "cost_usd",
    ],
)
def test_walking_every_page_returns_each_trace_once_in_order(
    store: Store, order_by: str | None
) -> None:
    rng = random.Random(7)
    experiment = store.get_or_create_experiment("app").experiment_id
    spans = []
    for n in range(1, 31):
        # Few distinct values: plenty of ties for the trace_id tiebreaker.
        start = rng.choice([1_000, 2_000, 3_000])
        spans.append(
            span(
                n,
                1,
                name=rng.choice(["alpha", "beta", "gamma"]),
                start_ms=start,
                end_ms=start + rng.choice([10, 20]),
                status=rng.choice(["OK", "ERROR"]),
                input_tokens=rng.choice([None, 5]),
                cost_usd=rng.choice([None, 0.5, 1.0]),
            )
        )
        if rng.random() < 0.5:
            spans.append(span(n, 2, 1, start_ms=start + 1))
    store.write_spans(experiment, spans)
    everything, _ = store.search_traces(page_size=1000)
    expected = sorted(everything, key=lambda t: t.trace_id)
    field, _, direction = (order_by or "start_time DESC").partition(" ")
    attribute = {"start_time": "start_time_ms"}.get(field, field)
    expected.sort(
        key=lambda t: (
            -1.0 if getattr(t, attribute) is None else getattr(t, attribute),
            t.trace_id,
        ),
        reverse=direction == "DESC",
    )

    walked: list[TraceSummary] = []
    token: str | None = None
    while True:
        page, token = store.search_traces(order_by=order_by, page_size=4, page_token=token)
        walked.extend(page)
        if token is None:
            break
    assert [t.trace_id for t in walked] == [t.trace_id for t in expected]
    assert len(walked) == 30


def test_a_full_last_page_has_no_next_token(store: Store) -> None:
    experiment = store.get_or_create_experiment("app").experiment_id
    store.write_spans(experiment, [span(n, 1, start_ms=n) for n in range(1, 5)])
    first, token = store.search_traces(page_size=2)
    second, last = store.search_traces(page_size=2, page_token=token)
    assert ([t.trace_id for t in first], [t.trace_id for t in second], last) == (
        [tid(4), tid(3)],
        [tid(2), tid(1)],
        None,
    )


def test_listing_newest_traces_reads_the_index_without_sorting(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'plan.db'}")
    ordering = parse_order_by(None)
    query = (
        select(schema.traces)
        .where(*queries.trace_conditions([1], None), ordering.after(5, tid(1)))
        .order_by(*ordering.order_by())
        .limit(101)
    )
    with store._db.reader.connect() as conn:
        compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        plan = [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")]
    store.close()
    assert plan == [
        "SEARCH traces USING INDEX ix_traces_experiment_id_start_time_ms_trace_id "
        "(experiment_id=? AND (start_time_ms,trace_id)<(?,?))"
    ]
