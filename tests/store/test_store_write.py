"""Writing spans: idempotency, trace rollups in any arrival order, tags, experiments."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from store_helpers import MS, sid, span, tid

from traceway.store import (
    Experiment,
    ExperimentExists,
    SpanRecord,
    Store,
    StoredSpan,
    StoreError,
    TraceSummary,
    open_store,
)

CHAT_INPUT = orjson.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
        ],
    }
).decode()
CHAT_OUTPUT = orjson.dumps(
    {"choices": [{"message": {"role": "assistant", "content": "Paris."}}]}
).decode()


def agent_trace(trace: int = 1) -> list[SpanRecord]:
    """A root agent span with an LLM call and a tool call under it."""
    return [
        span(
            trace,
            1,
            name="agent",
            span_type="AGENT",
            start_ms=1_000,
            end_ms=1_900,
            inputs=CHAT_INPUT,
            outputs=CHAT_OUTPUT,
            trace_tags={"env": "prod"},
        ),
        span(
            trace,
            2,
            1,
            name="chat",
            span_type="LLM",
            start_ms=1_100,
            end_ms=1_500,
            input_tokens=20,
            output_tokens=5,
            total_tokens=25,
            cost_usd=0.25,
            model="gpt-4o-mini",
            provider="openai",
        ),
        span(
            trace,
            3,
            1,
            name="search",
            span_type="TOOL",
            start_ms=1_600,
            end_ms=2_000,
            input_tokens=4,
            output_tokens=6,
            cost_usd=0.5,
            trace_metadata={"session_id": "s-1"},
        ),
    ]


def expected_agent_summary(experiment_id: int, trace: int = 1) -> TraceSummary:
    return TraceSummary(
        trace_id=tid(trace),
        experiment_id=experiment_id,
        name="agent",
        start_time_ms=1_000,
        end_time_ms=2_000,
        duration_ms=1_000,
        status="OK",
        request_preview="Capital of France?",
        response_preview="Paris.",
        span_count=3,
        input_tokens=24,
        output_tokens=11,
        total_tokens=35,
        cost_usd=0.75,
        tags={"env": "prod"},
        metadata={"session_id": "s-1"},
    )


@pytest.fixture
def app(store: Store) -> Experiment:
    return store.get_or_create_experiment("app")


def test_a_trace_in_one_batch(store: Store, app: Experiment) -> None:
    assert store.write_spans(app.experiment_id, agent_trace()) == 3
    assert store.get_trace_summary(tid(1)) == expected_agent_summary(app.experiment_id)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_spans_one_by_one_in_any_order_give_the_same_trace(
    store: Store, app: Experiment, order: tuple[int, ...]
) -> None:
    spans = agent_trace()
    for index in order:
        store.write_spans(app.experiment_id, [spans[index]])
    assert store.get_trace_summary(tid(1)) == expected_agent_summary(app.experiment_id)


def test_before_its_root_arrives_a_trace_is_in_progress(store: Store, app: Experiment) -> None:
    root, chat, tool = agent_trace()
    store.write_spans(app.experiment_id, [tool, chat])
    assert store.get_trace_summary(tid(1)) == TraceSummary(
        trace_id=tid(1),
        experiment_id=app.experiment_id,
        name="chat",  # the earliest span stands in for the root
        start_time_ms=1_100,
        end_time_ms=2_000,
        duration_ms=900,
        status="IN_PROGRESS",
        request_preview=None,
        response_preview=None,
        span_count=2,
        input_tokens=24,
        output_tokens=11,
        total_tokens=35,
        cost_usd=0.75,
        tags={},
        metadata={"session_id": "s-1"},
    )
    store.write_spans(app.experiment_id, [root])
    assert store.get_trace_summary(tid(1)) == expected_agent_summary(app.experiment_id)


def test_writing_spans_again_stores_them_once(store: Store, app: Experiment) -> None:
    spans = agent_trace()
    assert store.write_spans(app.experiment_id, spans) == 3
    assert store.write_spans(app.experiment_id, spans) == 0
    assert (
        store.write_spans(app.experiment_id, [spans[1], spans[1], span(1, 4, 1, start_ms=3_000)])
        == 1
    )
    trace = store.get_trace(tid(1))
    assert trace is not None
    assert [s.span_id for s in trace.spans] == [sid(1), sid(2), sid(3), sid(4)]
    assert trace.info.span_count == 4


def test_a_batch_with_repeated_spans_counts_each_once(store: Store, app: Experiment) -> None:
    spans = agent_trace()
    assert store.write_spans(app.experiment_id, spans + spans) == 3
    assert store.get_trace_summary(tid(1)) == expected_agent_summary(app.experiment_id)


def test_many_traces_over_many_batches(store: Store, app: Experiment) -> None:
    spans = [s for n in range(1, 41) for s in agent_trace(n)]
    for start in range(0, len(spans), 7):  # batches cut traces apart
        store.write_spans(app.experiment_id, spans[start : start + 7][::-1])
    page, token = store.search_traces(page_size=100)
    assert token is None
    assert sorted(page, key=lambda t: t.trace_id) == [
        expected_agent_summary(app.experiment_id, n) for n in range(1, 41)
    ]


def test_status_comes_from_the_root(store: Store, app: Experiment) -> None:
    store.write_spans(
        app.experiment_id,
        [
            span(1, 1, status="ERROR"),
            span(2, 1, status="UNSET"),
            span(3, 1, status="OK"),
            span(3, 2, 1, status="ERROR"),  # a failed child does not fail the trace
        ],
    )
    statuses = {t.trace_id: t.status for t in store.search_traces()[0]}
    assert statuses == {tid(1): "ERROR", tid(2): "OK", tid(3): "OK"}


def test_totals_without_costs_or_total_tokens(store: Store, app: Experiment) -> None:
    store.write_spans(
        app.experiment_id,
        [span(1, 1), span(1, 2, 1, input_tokens=7), span(1, 3, 1, output_tokens=2)],
    )
    summary = store.get_trace_summary(tid(1))
    assert summary is not None
    assert (summary.input_tokens, summary.output_tokens, summary.total_tokens) == (7, 2, 9)
    assert summary.cost_usd is None


def test_explicit_previews_win_and_the_latest_one_counts(store: Store, app: Experiment) -> None:
    store.write_spans(
        app.experiment_id,
        [
            span(1, 1, start_ms=0, end_ms=100, inputs=CHAT_INPUT, outputs=CHAT_OUTPUT),
            span(1, 2, 1, start_ms=10, end_ms=20, request_preview="early"),
        ],
    )
    store.write_spans(
        app.experiment_id,
        [span(1, 3, 1, start_ms=30, end_ms=40, request_preview="later", response_preview="r")],
    )
    summary = store.get_trace_summary(tid(1))
    assert summary is not None
    assert (summary.request_preview, summary.response_preview) == ("later", "r")


def test_previews_are_cut_to_a_thousand_characters(store: Store, app: Experiment) -> None:
    long_text = "x" * 5_000
    store.write_spans(
        app.experiment_id,
        [
            span(1, 1, inputs=orjson.dumps(long_text).decode(), response_preview=long_text),
            span(2, 1, inputs="not json at all " * 100),
        ],
    )
    one, two = store.get_trace_summary(tid(1)), store.get_trace_summary(tid(2))
    assert one is not None and two is not None
    assert (one.request_preview, one.response_preview) == ("x" * 1000, "x" * 1000)
    assert two.request_preview == ("not json at all " * 100)[:1000]


def test_tags_and_metadata_merge_and_later_writes_win(store: Store, app: Experiment) -> None:
    store.write_spans(
        app.experiment_id,
        [
            span(1, 2, 1, trace_tags={"env": "dev", "team": "a"}),
            span(1, 3, 1, trace_tags={"env": "staging"}, trace_metadata={"user_id": "u1"}),
        ],
    )
    store.write_spans(
        app.experiment_id,
        [span(1, 1, trace_tags={"env": "prod"}, trace_metadata={"session_id": "s"})],
    )
    # A span sent again does not bring its old values back.
    store.write_spans(app.experiment_id, [span(1, 2, 1, trace_tags={"env": "dev"})])
    summary = store.get_trace_summary(tid(1))
    assert summary is not None
    assert (summary.tags, summary.metadata) == (
        {"env": "prod", "team": "a"},
        {"session_id": "s", "user_id": "u1"},
    )


def test_get_trace_returns_spans_in_start_order_with_json_parsed(
    store: Store, app: Experiment
) -> None:
    events = [{"name": "exception", "attributes": {"exception.type": "ValueError"}}]
    store.write_spans(
        app.experiment_id,
        [
            span(1, 2, 1, start_ms=5, inputs="plain text", attributes={"n": 1, "l": [1, 2]}),
            span(1, 1, start_ms=0, inputs='{"q": "hi"}', outputs="[1, 2]", events=events),
        ],
    )
    trace = store.get_trace(tid(1))
    assert trace is not None
    assert trace.spans == [
        StoredSpan(
            trace_id=tid(1),
            span_id=sid(1),
            parent_span_id=None,
            name="span-1",
            span_type="CHAIN",
            start_time_ns=0,
            end_time_ns=10 * MS,
            status="OK",
            status_message="",
            attributes={},
            events=events,
            inputs={"q": "hi"},
            outputs=[1, 2],
            model=None,
            provider=None,
            input_tokens=None,
            output_tokens=None,
            total_tokens=None,
            cost_usd=None,
        ),
        StoredSpan(
            trace_id=tid(1),
            span_id=sid(2),
            parent_span_id=sid(1),
            name="span-2",
            span_type="CHAIN",
            start_time_ns=5 * MS,
            end_time_ns=15 * MS,
            status="OK",
            status_message="",
            attributes={"n": 1, "l": [1, 2]},
            events=[],
            inputs="plain text",  # not JSON: returned as stored
            outputs=None,
            model=None,
            provider=None,
            input_tokens=None,
            output_tokens=None,
            total_tokens=None,
            cost_usd=None,
        ),
    ]


def test_unknown_traces_are_none(store: Store) -> None:
    assert store.get_trace(tid(9)) is None
    assert store.get_trace_summary(tid(9)) is None


def test_text_either_database_would_refuse_is_cleaned(store: Store, app: Experiment) -> None:
    store.write_spans(
        app.experiment_id,
        [
            span(
                1,
                1,
                name="nul\x00here",
                inputs='"lone \ud800 surrogate"',
                attributes={"k": "v\ud800"},
                trace_tags={"t\x00": "v\x00"},
            )
        ],
    )
    trace = store.get_trace(tid(1))
    assert trace is not None
    assert trace.spans[0].name == "nul\ufffdhere"
    assert trace.spans[0].inputs == "lone ? surrogate"
    assert trace.spans[0].attributes == {"k": "v\ud800"}
    assert trace.info.tags == {"t\ufffd": "v\ufffd"}


def test_writing_nothing_is_a_no_op(store: Store, app: Experiment) -> None:
    assert store.write_spans(app.experiment_id, []) == 0


def test_writing_to_an_unknown_experiment_fails(store: Store) -> None:
    with pytest.raises(StoreError, match="no experiment with id 42"):
        store.write_spans(42, agent_trace())
    assert store.search_traces() == ([], None)


def test_invalid_ids_are_refused(store: Store, app: Experiment) -> None:
    bad = SpanRecord("a" * 33, "b" * 16, None, "x", "CHAIN", 0, 1)
    with pytest.raises(StoreError, match="invalid id"):
        store.write_spans(app.experiment_id, [bad])


# --- experiments -----------------------------------------------------------------


def test_a_trace_first_reported_to_default_moves_to_the_named_experiment(store: Store) -> None:
    default = store.get_or_create_experiment("Default")
    app = store.get_or_create_experiment("app")
    other = store.get_or_create_experiment("other")
    gateway_span, app_root = span(1, 2, 1, span_type="GATEWAY"), span(1, 1)
    store.write_spans(default.experiment_id, [gateway_span])
    assert _experiment_of(store, 1) == default.experiment_id
    store.write_spans(app.experiment_id, [app_root])
    assert _experiment_of(store, 1) == app.experiment_id
    # Once named, a trace stays: neither Default nor another name takes it back.
    store.write_spans(default.experiment_id, [span(1, 3, 1)])
    store.write_spans(other.experiment_id, [span(1, 4, 1)])
    assert _experiment_of(store, 1) == app.experiment_id


def test_a_trace_first_written_to_a_named_experiment_stays(store: Store) -> None:
    default = store.get_or_create_experiment("Default")
    app = store.get_or_create_experiment("app")
    store.write_spans(app.experiment_id, [span(1, 1)])
    store.write_spans(default.experiment_id, [span(1, 2, 1)])
    assert _experiment_of(store, 1) == app.experiment_id


def test_the_move_from_default_also_happens_for_resent_spans(store: Store) -> None:
    default = store.get_or_create_experiment("Default")
    app = store.get_or_create_experiment("app")
    store.write_spans(default.experiment_id, [span(1, 1)])
    assert store.write_spans(app.experiment_id, [span(1, 1)]) == 0
    assert _experiment_of(store, 1) == app.experiment_id


def _experiment_of(store: Store, trace: int) -> int:
    summary = store.get_trace_summary(tid(trace))
    assert summary is not None
    return summary.experiment_id


def test_experiments_are_created_once_and_listed_with_counts(store: Store) -> None:
    app = store.create_experiment("app")
    assert store.get_or_create_experiment("app") == app
    other = store.get_or_create_experiment("other")
    with pytest.raises(ExperimentExists, match="an experiment named 'app' already exists"):
        store.create_experiment("app")
    store.write_spans(
        app.experiment_id,
        [span(1, 1, start_ms=5_000), span(2, 1, start_ms=9_000, status="ERROR")],
    )
    counted = Experiment(app.experiment_id, "app", app.created_at_ms, 2, 1, 9_000)
    assert store.list_experiments() == [counted, other]
    assert store.get_experiment(app.experiment_id) == counted
    assert store.get_experiment_by_name("app") == counted
    assert store.get_experiment(999) is None
    assert store.get_experiment_by_name("missing") is None
    assert app.created_at_ms < other.created_at_ms


@pytest.mark.parametrize("name", ["", "   ", "x" * 257])
def test_experiment_names_must_be_sensible(store: Store, name: str) -> None:
    with pytest.raises(StoreError):
        store.create_experiment(name)
    with pytest.raises(StoreError):
        store.get_or_create_experiment(name)


def test_get_or_create_finds_experiments_made_elsewhere(store: Store) -> None:
    elsewhere = open_store(store.url)  # another process, say
    created = elsewhere.create_experiment("shared")
    elsewhere.close()
    assert store.get_or_create_experiment("shared") == created


# --- concurrency -----------------------------------------------------------------


def test_concurrent_writers_of_one_trace_lose_no_span(store: Store, app: Experiment) -> None:
    spans = [span(1, 1, start_ms=0, end_ms=1_000)] + [
        span(1, n, 1, start_ms=n, input_tokens=1, cost_usd=0.5) for n in range(2, 41)
    ]
    batches = [spans[n::8] for n in range(8)]  # every batch has spans of the trace
    stores = [store, open_store(store.url)]  # two writers on one database, as two processes
    with ThreadPoolExecutor(max_workers=8) as pool:
        written = sum(
            pool.map(lambda n: stores[n % 2].write_spans(app.experiment_id, batches[n]), range(8))
        )
    stores[1].close()
    assert written == 40
    summary = store.get_trace_summary(tid(1))
    assert summary is not None
    assert (summary.span_count, summary.input_tokens, summary.cost_usd, summary.status) == (
        40,
        39,
        19.5,
        "OK",
    )


def test_concurrent_get_or_create_yields_one_experiment(store: Store) -> None:
    stores = [store] + [open_store(store.url) for _ in range(3)]  # one database
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(lambda n: stores[n % 4].get_or_create_experiment("race"), range(16)))
    for other in stores[1:]:
        other.close()
    assert len({experiment.experiment_id for experiment in found}) == 1
    assert [e.name for e in store.list_experiments()] == ["race"]


def call_reported_twice(trace: int) -> list[SpanRecord]:
    """An app's chat span (autolog) → the gateway's request span → a failed and a good attempt.

    The app span and the answering attempt both report the same call's usage.
    """
    return [
        span(trace, 1, name="agent", span_type="CHAIN", start_ms=0, end_ms=100),
        span(
            trace,
            2,
            1,
            name="chat",
            span_type="CHAT_MODEL",
            start_ms=1,
            end_ms=90,
            input_tokens=20,
            output_tokens=5,
            cost_usd=0.25,
        ),
        span(trace, 3, 2, name="gateway", span_type="GATEWAY", start_ms=2, end_ms=89),
        span(trace, 4, 3, name="attempt 1", span_type="CHAT_MODEL", start_ms=3, end_ms=10),
        span(
            trace,
            5,
            3,
            name="attempt 2",
            span_type="CHAT_MODEL",
            start_ms=11,
            end_ms=88,
            input_tokens=20,
            output_tokens=5,
            cost_usd=0.25,
        ),
        # A second, separate call made by the agent itself: counted too.
        span(
            trace,
            6,
            1,
            name="chat again",
            span_type="LLM",
            start_ms=91,
            end_ms=99,
            input_tokens=3,
            output_tokens=1,
        ),
    ]


@pytest.mark.parametrize("arrival", ["one batch", "span by span, app last"])
def test_usage_reported_by_app_and_gateway_is_counted_once(store: Store, arrival: str) -> None:
    experiment = store.get_or_create_experiment("usage")
    spans = call_reported_twice(1)
    if arrival == "one batch":
        store.write_spans(experiment.experiment_id, spans)
    else:
        for record in reversed(spans):
            store.write_spans(experiment.experiment_id, [record])
    summary = store.get_trace_summary(tid(1))
    assert summary is not None
    usage = (summary.input_tokens, summary.output_tokens, summary.total_tokens, summary.cost_usd)
    assert usage == (23, 6, 29, 0.25)
