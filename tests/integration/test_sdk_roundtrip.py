"""The SDK against a real ``traceway server``: what the app records is what the API returns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import pytest

import traceway
from tests.support.live_server import RunningServer
from traceway.tracing import config


@pytest.fixture
def sdk(server: RunningServer, experiment: str) -> Iterator[str]:
    """The global SDK pointed at the test server and a fresh experiment."""
    config.reset()
    traceway.set_tracking_uri(server.url)
    traceway.set_experiment(experiment)
    yield experiment
    traceway.flush(timeout=10)
    config.reset()


def stored(trace_id: str) -> traceway.Trace:
    assert traceway.flush(timeout=10)
    trace = traceway.get_trace(trace_id)
    assert trace is not None
    return trace


def shape(trace: traceway.Trace) -> dict[str, object]:
    """name -> (parent name, span type, status) for every span."""
    by_id = {span.span_id: span for span in trace.spans}
    return {
        span.name: (
            by_id[span.parent_span_id].name if span.parent_span_id else None,
            span.span_type,
            span.status,
        )
        for span in trace.spans
    }


@traceway.trace(span_type=traceway.SpanType.RETRIEVER)
def retrieve(query: str, k: int = 2) -> list[str]:
    return [f"doc-{i}" for i in range(k)]


@traceway.trace(span_type=traceway.SpanType.TOOL)
def fail(reason: str) -> None:
    raise ValueError(reason)


@traceway.trace(span_type=traceway.SpanType.CHAIN)
def answer(question: str) -> str:
    docs = retrieve(question)
    with traceway.start_span("rerank", span_type=traceway.SpanType.RERANKER) as span:
        span.set_inputs({"docs": docs})
        span.set_outputs(docs[:1])
    traceway.update_current_trace(
        tags={"env": "test"}, metadata={"plan": "pro"}, session_id="s-1", user_id="u-1"
    )
    with contextlib.suppress(ValueError):
        fail("no tool")
    return f"answer to {question}"


def test_sync_tree_arrives_whole(sdk: str) -> None:
    assert answer("why?") == "answer to why?"
    trace = stored(traceway.get_last_active_trace_id())
    assert shape(trace) == {
        "answer": (None, "CHAIN", "OK"),
        "retrieve": ("answer", "RETRIEVER", "OK"),
        "rerank": ("answer", "RERANKER", "OK"),
        "fail": ("answer", "TOOL", "ERROR"),
    }
    spans = {name: trace.spans_by_name(name) for name in ("answer", "retrieve", "rerank", "fail")}
    assert spans["answer"][0].inputs == {"question": "why?"}
    assert spans["answer"][0].outputs == "answer to why?"
    assert spans["retrieve"][0].inputs == {"query": "why?", "k": 2}
    assert spans["retrieve"][0].outputs == ["doc-0", "doc-1"]
    assert spans["rerank"][0].outputs == ["doc-0"]
    [event] = spans["fail"][0].events
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ValueError"
    assert event["attributes"]["exception.message"] == "no tool"
    assert "raise ValueError(reason)" in event["attributes"]["exception.stacktrace"]
    assert trace.info.tags == {"env": "test"}
    assert trace.info.metadata == {"plan": "pro", "session_id": "s-1", "user_id": "u-1"}
    found = traceway.search_traces(experiment=sdk, filter="metadata.session_id = 's-1'")
    assert [info.trace_id for info in found] == [trace.info.trace_id]


def test_async_gather_keeps_parents(sdk: str) -> None:
    @traceway.trace(span_type=traceway.SpanType.TOOL)
    async def tool(n: int) -> int:
        await asyncio.sleep(0.01 * (3 - n))
        return n * n

    @traceway.trace(span_type=traceway.SpanType.AGENT)
    async def agent() -> list[int]:
        return list(await asyncio.gather(tool(1), tool(2), tool(3)))

    assert asyncio.run(agent()) == [1, 4, 9]
    trace = stored(traceway.get_last_active_trace_id())
    tools = trace.spans_by_name("tool")
    assert sorted(span.outputs for span in tools) == [1, 4, 9]
    assert {span.parent_span_id for span in tools} == {trace.root.span_id}
    assert trace.root.span_type == "AGENT"


def test_generators_and_threads(sdk: str) -> None:
    @traceway.trace(span_type=traceway.SpanType.LLM, output_reducer="".join)
    def stream_words() -> Iterator[str]:
        yield from ("a", "b", "c")

    @traceway.trace(span_type=traceway.SpanType.TOOL)
    def in_thread(x: int) -> int:
        return x + 1

    @traceway.trace(span_type=traceway.SpanType.CHAIN)
    def pipeline() -> tuple[str, list[int]]:
        text = "".join(stream_words())
        with traceway.ContextThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(in_thread, [1, 2]))
        return text, results

    assert pipeline() == ("abc", [2, 3])
    trace = stored(traceway.get_last_active_trace_id())
    assert shape(trace)["stream_words"] == ("pipeline", "LLM", "OK")
    assert trace.spans_by_name("stream_words")[0].outputs == "abc"
    assert [shape(trace)["in_thread"]] == [("pipeline", "TOOL", "OK")]
    assert len(trace.spans_by_name("in_thread")) == 2


def test_server_down_then_back(
    sdk: str, server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Point at a closed port: calls keep working, one warning; point back: traces arrive."""
    from tests.support.servers import free_port

    traceway.set_tracking_uri(f"http://127.0.0.1:{free_port()}")

    @traceway.trace
    def work(i: int) -> int:
        return i

    with caplog.at_level(logging.WARNING, logger="traceway"):
        for i in range(2_000):
            assert work(i) == i
        traceway.flush(timeout=5)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    traceway.set_tracking_uri(server.url)
    work(-1)
    trace = stored(traceway.get_last_active_trace_id())
    assert trace.root.outputs == -1
