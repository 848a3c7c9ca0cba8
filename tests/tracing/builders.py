"""Expected spans, written compactly: ids and times are the small integers tests inject."""

from __future__ import annotations

from typing import Any

from traceway.tracing.span import FinishedSpan, SpanEvent


def trace_hex(n: int) -> str:
    return format(n, "032x")


def span_hex(n: int) -> str:
    return format(n, "016x")


def finished(
    span_id: int,
    name: str,
    start: int,
    end: int,
    *,
    parent: int | None = None,
    trace: int = 1,
    **fields: Any,
) -> FinishedSpan:
    """A FinishedSpan with status OK and UNKNOWN type unless ``fields`` say otherwise."""
    fields.setdefault("span_type", "UNKNOWN")
    fields.setdefault("status", "OK")
    return FinishedSpan(
        trace_id=trace_hex(trace),
        span_id=span_hex(span_id),
        parent_span_id=span_hex(parent) if parent is not None else None,
        name=name,
        start_time_ns=start,
        end_time_ns=end,
        **fields,
    )


def without_stacktraces(spans: list[FinishedSpan]) -> list[FinishedSpan]:
    """The spans with each exception event's stacktrace replaced by its last line."""
    for span in spans:
        events = []
        for event in span.events:
            attributes = dict(event.attributes)
            if "exception.stacktrace" in attributes:
                attributes["exception.stacktrace"] = attributes["exception.stacktrace"].strip()
                attributes["exception.stacktrace"] = attributes[
                    "exception.stacktrace"
                ].splitlines()[-1]
            events.append(SpanEvent(event.name, event.timestamp_ns, attributes))
        span.events = events
    return spans
