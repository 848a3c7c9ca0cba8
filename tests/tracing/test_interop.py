"""Traceway spans and OpenTelemetry SDK spans nest both ways; traceparent joins processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, TraceFlags

import traceway
from traceway.tracing.span import FinishedSpan
from traceway.tracing.tracer import Tracer

Exported = Callable[[], list[FinishedSpan]]


@pytest.fixture
def otel() -> Iterator[tuple[otel_trace.Tracer, InMemorySpanExporter]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider.get_tracer("app"), memory
    provider.shutdown()


def ids(span: ReadableSpan) -> tuple[str, str, str | None]:
    context = span.get_span_context()
    parent = span.parent
    return (
        format(context.trace_id, "032x"),
        format(context.span_id, "016x"),
        format(parent.span_id, "016x") if parent is not None else None,
    )


def test_otel_span_inside_traceway_span_is_its_child(
    exported: Exported, otel: tuple[otel_trace.Tracer, InMemorySpanExporter]
) -> None:
    tracer, memory = otel

    @traceway.trace
    def handler() -> None:
        with tracer.start_as_current_span("db.query"):
            pass

    handler()
    [ours] = exported()
    [theirs] = memory.get_finished_spans()
    assert ids(theirs)[0] == ours.trace_id
    assert ids(theirs)[2] == ours.span_id


def test_traceway_span_inside_otel_span_shares_its_trace(
    exported: Exported, otel: tuple[otel_trace.Tracer, InMemorySpanExporter]
) -> None:
    tracer, memory = otel

    @traceway.trace
    def step() -> str:
        return "ok"

    with tracer.start_as_current_span("http.request"):
        step()
        traceway.update_current_trace(tags={"env": "test"})

    [ours] = exported()
    [theirs] = memory.get_finished_spans()
    trace_id, span_id, _ = ids(theirs)
    assert (ours.trace_id, ours.parent_span_id) == (trace_id, span_id)
    # The root is not ours: trace tags go on the current (OpenTelemetry) span.
    assert theirs.attributes == {"traceway.trace.tags": '{"env":"test"}'}


def test_traceparent_round_trip_continues_the_trace(exported: Exported) -> None:
    headers: dict[str, str] = {}
    traceway.inject_traceparent(headers)
    assert headers == {}
    with traceway.start_span("client") as span:
        traceway.inject_traceparent(headers)
    assert headers == {"traceparent": f"00-{span.trace_id}-{span.span_id}-01"}

    remote = traceway.parse_traceparent(headers["traceparent"])
    assert remote == SpanContext(int(span.trace_id, 16), int(span.span_id, 16), True, TraceFlags(1))
    tracer = Tracer(traceway.tracing.config.get_tracer().processor)
    server_span = tracer.start_span("gateway", "GATEWAY", parent=remote)
    server_span.end()

    client, server = exported()
    assert (server.trace_id, server.parent_span_id) == (client.trace_id, client.span_id)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
    ],
)
def test_invalid_traceparent_values_are_ignored(value: str | None) -> None:
    assert traceway.parse_traceparent(value) is None


def test_future_traceparent_versions_are_read_and_unsampled_parents_respected(
    exported: Exported,
) -> None:
    future = traceway.parse_traceparent(
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-more"
    )
    assert future is not None and not future.trace_flags.sampled

    token = otel_context.attach(otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(future)))
    try:
        with traceway.start_span("not sampled upstream") as span:
            assert not span.is_recording()
            assert traceway.get_active_trace_id() is None
    finally:
        otel_context.detach(token)
    assert exported() == []


def test_suppressed_instrumentation_records_nothing(exported: Exported) -> None:
    from traceway.tracing._internal import SUPPRESS_INSTRUMENTATION_KEY

    @traceway.trace
    def work() -> int:
        return 1

    token = otel_context.attach(otel_context.set_value(SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        assert work() == 1
    finally:
        otel_context.detach(token)
    assert exported() == []
