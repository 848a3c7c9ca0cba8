"""What happens to spans between the caller and the exporter: sampling, hooks, the queue."""

from __future__ import annotations

import dataclasses
import gc
import os
import random
import warnings
import weakref
from collections.abc import Callable, Sequence

import pytest

import traceway
from traceway.tracing.export import BatchProcessor, ExportStats, SimpleProcessor
from traceway.tracing.redaction import REDACTED, redact_secrets
from traceway.tracing.serialize import to_json
from traceway.tracing.span import FinishedSpan, LiveSpan, SpanEvent
from traceway.tracing.testing import FakeClock, IncrementalIdGenerator, InMemoryExporter
from traceway.tracing.tracer import Tracer

from .builders import finished

Exported = Callable[[], list[FinishedSpan]]


@traceway.trace
def leaf(i: int) -> int:
    return i


@traceway.trace
def root(i: int) -> int:
    return leaf(i) + leaf(i)


def test_sampling_is_decided_at_the_root_and_followed_by_children(
    exporter: InMemoryExporter, exported: Exported
) -> None:
    traceway.configure(sampling_ratio=0.5)
    random.seed(7)
    for i in range(200):
        root(i)

    by_trace: dict[str, list[str]] = {}
    for span in exported():
        by_trace.setdefault(span.trace_id, []).append(span.name)
    assert 70 < len(by_trace) < 130
    assert all(names == ["leaf", "leaf", "root"] for names in by_trace.values())


def test_sampling_ratio_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemoryExporter, exported: Exported
) -> None:
    monkeypatch.setenv("TRACEWAY_SAMPLING_RATIO", "0")
    traceway.configure()  # rebuild the tracer with the new environment
    last_before = traceway.get_last_active_trace_id()
    root(1)
    with traceway.start_span("unsampled") as span:
        assert not span.is_recording()
        span.set_inputs("ignored")
    assert exported() == []
    assert traceway.get_last_active_trace_id() == last_before


def test_sampling_ratio_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="sampling_ratio"):
        traceway.configure(sampling_ratio=1.5)


def test_span_processors_can_change_or_drop_spans(exporter: InMemoryExporter) -> None:
    def rename(span: FinishedSpan) -> FinishedSpan:
        return dataclasses.replace(span, name=span.name.upper())

    def drop_leaves(span: FinishedSpan) -> FinishedSpan | None:
        return None if span.name == "LEAF" else span

    traceway.configure(span_processors=[rename, drop_leaves])
    root(2)
    assert traceway.flush()
    assert [s.name for s in exporter.spans] == ["ROOT"]
    assert traceway.tracing.export_stats() == ExportStats(
        queued=0, exported=1, dropped_queue_full=0, dropped_export_failed=0, dropped_by_hooks=2
    )
    assert traceway.tracing.dropped_spans() == 0


def test_secrets_are_redacted_before_spans_leave_the_process(exported: Exported) -> None:
    @traceway.trace(attributes={"http.request.header.authorization": "Bearer sk-1"})
    def call_api(prompt: str, api_key: str, options: dict[str, object]) -> dict[str, str]:
        return {"text": "ok", "client_secret": "shh"}

    call_api("hi", "sk-live-123", {"headers": [{"X-Api-Key": "k"}], "max_tokens": 5})
    with traceway.start_span("login") as span:
        span.add_event("auth", {"password": "hunter2", "user": "ann"})

    call, login = exported()
    assert call.attributes == {"http.request.header.authorization": REDACTED}
    assert call.inputs == (
        '{"prompt":"hi","api_key":"[REDACTED]",'
        '"options":{"headers":[{"X-Api-Key":"[REDACTED]"}],"max_tokens":5}}'
    )
    assert call.outputs == '{"text":"ok","client_secret":"[REDACTED]"}'
    assert login.events == [SpanEvent("auth", 4000, {"password": REDACTED, "user": "ann"})]


def test_redaction_reaches_into_truncated_inputs() -> None:
    span = FinishedSpan(
        trace_id="1" * 32,
        span_id="1" * 16,
        parent_span_id=None,
        name="s",
        span_type="LLM",
        start_time_ns=1,
        end_time_ns=2,
        inputs=to_json({"password": "hunter2", "text": "x" * 100}, max_chars=60),
    )
    redacted = redact_secrets(span).inputs or ""
    assert "hunter2" not in redacted and REDACTED in redacted


def test_long_values_are_truncated_at_the_configured_limit(exported: Exported) -> None:
    traceway.configure(max_value_chars=20)

    @traceway.trace
    def echo(text: str) -> str:
        return text

    echo("a" * 50)
    [span] = exported()
    assert span.inputs == '"{\\"text\\":\\"aaaaaaaaaaa...[truncated by traceway, total chars: 61]"'
    assert span.outputs == '"\\"aaaaaaaaaaaaaaaaaaa...[truncated by traceway, total chars: 52]"'


def test_a_full_queue_drops_the_oldest_spans_and_counts_them() -> None:
    exporter = InMemoryExporter()
    # A batch bigger than the queue and a long delay: only flush exports.
    processor = BatchProcessor(
        exporter, max_queue_size=10, export_batch_size=1000, schedule_delay_s=3600
    )
    tracer = Tracer(processor, id_generator=IncrementalIdGenerator(), clock=FakeClock())
    for i in range(25):
        tracer.start_span(f"s{i}").end()

    assert processor.stats() == ExportStats(
        queued=10, exported=0, dropped_queue_full=15, dropped_export_failed=0, dropped_by_hooks=0
    )
    assert processor.force_flush()
    assert [s.name for s in exporter.spans] == [f"s{i}" for i in range(15, 25)]
    assert processor.stats().exported == 10
    processor.shutdown()


def test_spans_ended_during_an_export_wait_for_the_next_batch() -> None:
    class ProducingExporter(InMemoryExporter):
        """Ends more spans while exporting, as busy application threads would."""

        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[int] = []

        def export(self, spans: Sequence[FinishedSpan]) -> bool:
            self.sizes.append(len(spans))
            if len(self.sizes) == 1:
                for i in range(3):
                    tracer.start_span(f"meanwhile-{i}").end()
            return super().export(spans)

    exporter = ProducingExporter()
    processor = BatchProcessor(exporter, schedule_delay_s=3600)
    tracer = Tracer(processor)
    tracer.start_span("first").end()
    assert processor.force_flush()
    # Not chased one by one: they stay queued, then leave together.
    assert (exporter.sizes, processor.stats().queued) == ([1], 3)
    assert processor.force_flush()
    assert exporter.sizes == [1, 3]
    processor.shutdown()


def test_failed_exports_are_counted_and_flush_reports_them() -> None:
    exporter = InMemoryExporter()
    exporter.fail = True
    processor = BatchProcessor(exporter)
    tracer = Tracer(processor)
    tracer.start_span("lost").end()
    assert processor.force_flush() is False
    exporter.fail = False
    tracer.start_span("kept").end()
    assert processor.force_flush() is True
    assert [s.name for s in exporter.spans] == ["kept"]
    assert processor.stats().dropped_export_failed == 1
    processor.shutdown()


def test_shutdown_flushes_is_idempotent_and_later_spans_are_dropped() -> None:
    exporter = InMemoryExporter()
    processor = BatchProcessor(exporter, schedule_delay_s=3600)
    tracer = Tracer(processor)
    tracer.start_span("before").end()
    processor.shutdown()
    processor.shutdown()
    tracer.start_span("after").end()

    assert [s.name for s in exporter.spans] == ["before"]
    assert exporter.shut_down
    assert processor.stats().dropped_queue_full == 1
    assert processor.force_flush() is True


def test_a_failing_hook_drops_its_span_and_fails_the_test_run_loudly() -> None:
    def broken(span: FinishedSpan) -> FinishedSpan:
        raise RuntimeError("hook bug")

    exporter = InMemoryExporter()
    processor = BatchProcessor(exporter, hooks=[broken])
    Tracer(processor).start_span("s").end()
    with pytest.raises(RuntimeError, match="hook bug"):
        processor.force_flush()
    assert exporter.spans == []
    processor.shutdown()


def test_hook_errors_are_logged_and_swallowed_in_production(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("traceway.tracing._internal.RAISE_INTERNAL_ERRORS", False)

    def broken(span: FinishedSpan) -> FinishedSpan:
        raise RuntimeError("hook bug")

    exporter = InMemoryExporter()
    processor = BatchProcessor(exporter, hooks=[broken])
    Tracer(processor).start_span("s").end()
    assert processor.force_flush() is True
    processor.shutdown()
    assert exporter.spans == []
    assert [r.getMessage() for r in caplog.records] == [
        "traceway: internal error while running a span hook; tracing continues"
    ]


def test_internal_errors_on_the_callers_thread_never_break_the_call_in_production(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemoryExporter
) -> None:
    monkeypatch.setattr("traceway.tracing._internal.RAISE_INTERNAL_ERRORS", False)

    def broken_clock() -> int:
        raise OSError("clock gone")

    traceway.configure(clock=broken_clock)
    assert root(3) == 6

    monkeypatch.setattr("traceway.tracing._internal.RAISE_INTERNAL_ERRORS", True)
    with pytest.raises(OSError, match="clock gone"):
        root(3)


class LiveCapableExporter(InMemoryExporter):
    """Also takes ended live spans, as the OTLP exporter does."""

    def __init__(self) -> None:
        super().__init__()
        self.live: list[LiveSpan] = []

    def export_live(self, spans: Sequence[LiveSpan]) -> bool:
        self.live.extend(spans)
        return not self.fail


@pytest.mark.parametrize("simple", [False, True])
def test_without_hooks_ended_spans_reach_the_exporter_unconverted(simple: bool) -> None:
    exporter = LiveCapableExporter()
    processor = (
        SimpleProcessor(exporter, hooks=()) if simple else BatchProcessor(exporter, hooks=())
    )
    tracer = Tracer(processor, id_generator=IncrementalIdGenerator(), clock=FakeClock())
    span = tracer.start_span("tool", "TOOL", attributes={"k": 1})
    span.end()
    assert processor.force_flush()
    assert (exporter.live, exporter.spans) == ([span], [])
    assert [s.to_finished() for s in exporter.live] == [
        finished(1, "tool", 1000, 2000, span_type="TOOL", status="UNSET", attributes={"k": 1})
    ]
    exporter.fail = True
    tracer.start_span("lost").end()
    assert processor.force_flush() is simple  # a simple processor does not report failures
    if not simple:
        assert processor.stats() == ExportStats(
            queued=0, exported=1, dropped_queue_full=0, dropped_export_failed=1, dropped_by_hooks=0
        )
    processor.shutdown()


def test_with_hooks_spans_are_converted_for_them_first() -> None:
    exporter = LiveCapableExporter()
    processor = BatchProcessor(exporter)  # the default hooks: redaction
    Tracer(processor).start_span("s", attributes={"api_key": "sk-1"}).end()
    assert processor.force_flush()
    assert exporter.live == []
    assert [s.attributes for s in exporter.spans] == [{"api_key": REDACTED}]
    processor.shutdown()


def test_ended_spans_are_freed_without_the_cyclic_collector() -> None:
    tracer = Tracer(SimpleProcessor(InMemoryExporter()))
    gc.disable()  # whatever is freed below was freed by reference counting alone
    try:
        root = tracer.start_span("root")
        child = tracer.start("child", "LLM", root, {})
        assert (child.root, root.root) == (root, root)
        refs = [weakref.ref(root), weakref.ref(child)]
        child.end()
        root.end()
        del root, child
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()


def test_simple_processor_exports_on_end() -> None:
    exporter = InMemoryExporter()
    tracer = Tracer(
        SimpleProcessor(exporter), id_generator=IncrementalIdGenerator(), clock=FakeClock()
    )
    span = tracer.start_span("tool", "TOOL", attributes={"api_key": "x"})
    span.set_inputs({"q": 1})
    span.end()
    assert exporter.spans == [
        finished(
            1,
            "tool",
            1000,
            2000,
            span_type="TOOL",
            status="UNSET",
            attributes={"api_key": REDACTED},
            inputs='{"q":1}',
        )
    ]


def test_a_forked_child_starts_with_an_empty_queue(exporter: InMemoryExporter) -> None:
    traceway.configure(schedule_delay_s=3600)  # nothing leaves the queue before the fork
    with traceway.start_span("parent-queued"):
        pass
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process that has threads; that is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report what it exports, then leave without cleanup
        try:
            with traceway.start_span("child"):
                pass
            ok = traceway.flush(timeout=5)
            names = ",".join(s.name for s in exporter.spans if s.name != "parent-queued")
            os.write(write, f"{ok}:{names}:{len(exporter.spans)}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = pipe.read()
    os.waitpid(pid, 0)
    assert report == "True:child:1"
    assert traceway.flush()
    assert [s.name for s in exporter.spans] == ["parent-queued"]
