"""The decorator and context manager applications use, on plain functions."""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable

import pytest

import traceway
from traceway import SpanType
from traceway.tracing import semconv
from traceway.tracing.span import FinishedSpan, SpanEvent
from traceway.tracing.testing import InMemoryExporter

from .builders import finished, trace_hex, without_stacktraces

Exported = Callable[[], list[FinishedSpan]]


def test_nested_calls_record_inputs_outputs_and_parents(exported: Exported) -> None:
    @traceway.trace
    def inner(x: int, y: int = 10) -> int:
        return x + y

    @traceway.trace(name="outer-step", span_type=SpanType.CHAIN, attributes={"team": "search"})
    def outer(query: str) -> int:
        return inner(len(query))

    assert outer("abc") == 13

    assert exported() == [
        finished(2, "inner", 2000, 3000, parent=1, inputs='{"x":3,"y":10}', outputs="13"),
        finished(
            1,
            "outer-step",
            1000,
            4000,
            span_type="CHAIN",
            attributes={"team": "search"},
            inputs='{"query":"abc"}',
            outputs="13",
        ),
    ]


def test_exception_sets_error_adds_event_and_propagates_unchanged(exported: Exported) -> None:
    error = ValueError("bad input 3")

    @traceway.trace
    def fails(n: int) -> None:
        raise error

    with pytest.raises(ValueError) as raised:
        fails(3)

    assert raised.value is error
    assert without_stacktraces(exported()) == [
        finished(
            1,
            "fails",
            1000,
            3000,
            status="ERROR",
            status_message="ValueError: bad input 3",
            inputs='{"n":3}',
            events=[
                SpanEvent(
                    "exception",
                    2000,
                    {
                        "exception.type": "ValueError",
                        "exception.message": "bad input 3",
                        "exception.stacktrace": "ValueError: bad input 3",
                    },
                )
            ],
        )
    ]


def test_arguments_are_bound_with_defaults_and_without_self_or_cls(exported: Exported) -> None:
    class Agent:
        @traceway.trace
        def run(self, task: str, *, retries: int = 2) -> str:
            return task.upper()

        @classmethod
        @traceway.trace
        def build(cls, name: str) -> str:
            return name

        @traceway.trace
        @staticmethod
        def helper(a: int, /, *rest: int, **options: str) -> int:
            return a + sum(rest)

    agent = Agent()
    assert agent.run("plan") == "PLAN"
    assert Agent.build(name="bond") == "bond"
    assert Agent.helper(1, 2, 3, mode="fast") == 6

    assert [(s.name, s.inputs, s.outputs) for s in exported()] == [
        ("run", '{"task":"plan","retries":2}', '"PLAN"'),
        ("build", '{"name":"bond"}', '"bond"'),
        ("helper", '{"a":1,"rest":[2,3],"options":{"mode":"fast"}}', "6"),
    ]


def test_a_call_the_function_rejects_is_recorded_raw_and_fails_as_usual(
    exported: Exported,
) -> None:
    @traceway.trace
    def pair(a: int, b: int) -> int:
        return a + b

    with pytest.raises(TypeError):
        pair(1, 2, c=3)  # type: ignore[call-arg]

    [span] = exported()
    assert (span.inputs, span.status) == ('{"args":[1,2],"kwargs":{"c":3}}', "ERROR")


def test_decorated_functions_keep_their_identity() -> None:
    def plain(a: int, b: str = "x") -> str:
        """Docs."""
        return b * a

    async def coroutine() -> None:
        pass

    def generator() -> object:
        yield 1

    async def async_generator() -> object:
        yield 1

    traced = traceway.trace(plain)
    assert (traced.__name__, traced.__doc__, traced.__wrapped__) == ("plain", "Docs.", plain)
    assert inspect.signature(traced) == inspect.signature(plain)
    assert inspect.iscoroutinefunction(traceway.trace(coroutine))
    assert inspect.isgeneratorfunction(traceway.trace(generator))
    assert inspect.isasyncgenfunction(traceway.trace(async_generator))
    assert not inspect.iscoroutinefunction(traced)
    assert traceway.trace(name="renamed")(plain).__wrapped__ is plain


def test_start_span_records_what_the_block_sets(exported: Exported) -> None:
    with traceway.start_span("rerank", SpanType.RERANKER, {"k": 5}) as span:
        span.set_inputs({"query": "q", "docs": ("a", "b")})
        span.set_attribute("model", "mini")
        span.set_attributes({"score.max": 0.5, "ids": [1, 2]})
        span.add_event("cache-miss", {"key": "q"})
        span.set_outputs(["b", "a"])
        assert (span.name, span.trace_id, span.span_id) == ("rerank", trace_hex(1), f"{1:016x}")

    assert exported() == [
        finished(
            1,
            "rerank",
            1000,
            3000,
            span_type="RERANKER",
            attributes={"k": 5, "model": "mini", "score.max": 0.5, "ids": [1, 2]},
            events=[SpanEvent("cache-miss", 2000, {"key": "q"})],
            inputs='{"query":"q","docs":["a","b"]}',
            outputs='["b","a"]',
        )
    ]


def test_start_span_keeps_an_explicit_status_and_records_exceptions(exported: Exported) -> None:
    with traceway.start_span("judged") as span:
        span.set_status("ERROR", "answer rejected")
    with pytest.raises(KeyError), traceway.start_span("lookup"):
        raise KeyError("missing")

    spans = without_stacktraces(exported())
    assert [(s.name, s.status, s.status_message) for s in spans] == [
        ("judged", "ERROR", "answer rejected"),
        ("lookup", "ERROR", "KeyError: 'missing'"),
    ]
    assert [e.attributes["exception.type"] for e in spans[1].events] == ["KeyError"]


def test_setting_an_unknown_status_is_refused(exporter: InMemoryExporter) -> None:
    with traceway.start_span("s") as span, pytest.raises(ValueError, match="unknown span status"):
        span.set_status("MAYBE")


def test_disable_stops_recording_until_enabled(exported: Exported) -> None:
    @traceway.trace
    def work(x: int) -> int:
        return x * 2

    traceway.disable()
    assert not traceway.is_enabled()
    assert work(2) == 4
    with traceway.start_span("ignored") as span:
        span.set_inputs("x")
        assert not span.is_recording()
        assert traceway.get_current_active_span() is None
    traceway.enable()
    assert work(3) == 6

    assert [(s.name, s.inputs) for s in exported()] == [("work", '{"x":3}')]


def test_update_current_trace_writes_on_the_root_and_merges(exported: Exported) -> None:
    @traceway.trace
    def step() -> None:
        traceway.update_current_trace(tags={"env": "prod"}, metadata={"n": 1}, user_id="u-7")
        traceway.update_current_trace(
            tags={"team": "ml"}, session_id="s-1", request_preview="hi", response_preview="hello"
        )

    with traceway.start_span("chat"):
        step()

    spans = {s.name: s for s in exported()}
    assert spans["step"].attributes == {}
    assert spans["chat"].attributes == {
        semconv.TRACE_TAGS: '{"env":"prod","team":"ml"}',
        semconv.TRACE_METADATA: '{"n":"1","user_id":"u-7","session_id":"s-1"}',
        semconv.TRACE_REQUEST_PREVIEW: "hi",
        semconv.TRACE_RESPONSE_PREVIEW: "hello",
    }


def test_update_current_trace_outside_a_trace_only_warns(
    exporter: InMemoryExporter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="traceway"):
        traceway.update_current_trace(tags={"a": "b"})
    assert [r.getMessage() for r in caplog.records] == [
        "traceway: update_current_trace() called outside a recorded trace"
    ]


def test_current_span_and_trace_ids(exported: Exported) -> None:
    assert traceway.get_current_active_span() is None
    assert traceway.get_active_trace_id() is None
    with traceway.start_span("root") as root:
        assert traceway.get_current_active_span() is root
        assert traceway.get_active_trace_id() == trace_hex(1)
        with traceway.start_span("child") as child:
            assert traceway.get_current_active_span() is child
    assert traceway.get_current_active_span() is None
    assert traceway.get_last_active_trace_id() == trace_hex(1)
    assert traceway.get_last_active_trace_id(thread_local=True) == trace_hex(1)

    seen: list[str | None] = []
    thread = threading.Thread(
        target=lambda: seen.append(traceway.get_last_active_trace_id(thread_local=True))
    )
    thread.start()
    thread.join()
    assert seen == [None]


def test_experiment_is_fixed_when_the_trace_starts(exported: Exported) -> None:
    traceway.set_experiment("exp-a")
    with traceway.start_span("root"):
        traceway.set_experiment("exp-b")
        with traceway.start_span("child"):
            pass
    with traceway.start_span("next"):
        pass

    assert [(s.name, s.experiment) for s in exported()] == [
        ("child", "exp-a"),
        ("root", "exp-a"),
        ("next", "exp-b"),
    ]


def test_tracking_uri_and_experiment_come_from_calls_env_or_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (traceway.get_tracking_uri(), traceway.get_experiment()) == (
        "http://localhost:5000",
        None,
    )
    monkeypatch.setenv("TRACEWAY_TRACKING_URI", "http://traces.internal:8080")
    monkeypatch.setenv("TRACEWAY_EXPERIMENT", "from-env")
    assert (traceway.get_tracking_uri(), traceway.get_experiment()) == (
        "http://traces.internal:8080",
        "from-env",
    )
    traceway.set_tracking_uri("http://127.0.0.1:9")
    traceway.set_experiment("explicit")
    assert (traceway.get_tracking_uri(), traceway.get_experiment()) == (
        "http://127.0.0.1:9",
        "explicit",
    )
