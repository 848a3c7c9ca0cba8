"""The current span and trace: ``start_span``, ``update_current_trace`` and lookups.

Spans live in the OpenTelemetry context, so they nest with any other
OpenTelemetry instrumentation in the application, in both directions, and
follow asyncio tasks (``@trace`` lives in :mod:`traceway.tracing.decorator`).

>>> import traceway
>>> @traceway.trace(span_type=traceway.SpanType.TOOL)
... def add(a: int, b: int = 2) -> int:
...     return a + b
>>> with traceway.start_span("pipeline") as span:
...     span.set_inputs({"x": 1})
...     span.set_outputs(add(1))
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace

from traceway.tracing import semconv
from traceway.tracing._internal import logger
from traceway.tracing._lifecycle import end_error, end_ok, start_current
from traceway.tracing.span import LiveSpan, SpanType, last_trace_id
from traceway.tracing.tracer import Tracer

__all__ = [
    "get_active_trace_id",
    "get_current_active_span",
    "get_last_active_trace_id",
    "start_span",
    "update_current_trace",
]

_detach = otel_context.detach
_get_current_span = otel_trace.get_current_span


@contextmanager
def start_span(
    name: str,
    span_type: str = SpanType.UNKNOWN,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[LiveSpan]:
    """Record a block of code as a span, current inside the block.

    An exception in the block sets status ERROR, adds an ``exception`` event
    and propagates.  When tracing is disabled the span is a no-op.

    >>> with start_span("rerank", SpanType.RERANKER, {"k": 5}) as span:
    ...     span.set_inputs({"query": "q"})
    ...     span.set_outputs(["doc-1"])
    """
    started = start_current(name, span_type, attributes)
    if started is None:
        yield _NOOP_TRACER.start(name, span_type, None, {})
        return
    span, token = started
    try:
        yield span
    except BaseException as exc:
        _detach(token)
        end_error(span, exc)
        raise
    _detach(token)
    end_ok(span, None, has_outputs=False)


class _NullProcessor:
    def on_end(self, span: LiveSpan) -> None:
        pass

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self, timeout: float = 10.0) -> None:
        pass


# Hands out non-recording spans when tracing is off, so `with` bodies still work.
_NOOP_TRACER: Final = Tracer(_NullProcessor(), sampling_ratio=0.0)


def get_current_active_span() -> LiveSpan | None:
    """The Traceway span current here, or None (also when another SDK's span is current)."""
    span = _get_current_span()
    return span if isinstance(span, LiveSpan) else None


def get_active_trace_id() -> str | None:
    """Hex id of the trace being recorded here, or None outside a sampled trace."""
    span_context = _get_current_span().get_span_context()
    if span_context.is_valid and span_context.trace_flags.sampled:
        return format(span_context.trace_id, "032x")
    return None


def get_last_active_trace_id(thread_local: bool = False) -> str | None:
    """Hex id of the last trace whose root span ended in this process (or this thread)."""
    return last_trace_id(thread_local)


def update_current_trace(
    tags: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    request_preview: str | None = None,
    response_preview: str | None = None,
) -> None:
    """Add tags, metadata and previews to the trace being recorded here.

    They are written on the trace's root span when it runs in this process
    (else on the current span) and merged with earlier calls; the server merges
    what every span contributes.  ``session_id`` and ``user_id`` go into the
    metadata.  Values are stored as strings.

    >>> with start_span("chat"):
    ...     update_current_trace(tags={"env": "prod"}, session_id="s-1")
    """
    span = _get_current_span()
    if not span.is_recording():
        logger.warning("traceway: update_current_trace() called outside a recorded trace")
        return
    root = span.root if isinstance(span, LiveSpan) else None
    if root is not None and not root._end_ns:
        span = root
    if tags:
        _merge_json_attribute(span, semconv.TRACE_TAGS, tags)
    extra = dict(metadata or {})
    if session_id is not None:
        extra[semconv.METADATA_SESSION_ID] = session_id
    if user_id is not None:
        extra[semconv.METADATA_USER_ID] = user_id
    if extra:
        _merge_json_attribute(span, semconv.TRACE_METADATA, extra)
    if request_preview is not None:
        span.set_attribute(semconv.TRACE_REQUEST_PREVIEW, request_preview)
    if response_preview is not None:
        span.set_attribute(semconv.TRACE_RESPONSE_PREVIEW, response_preview)


def _merge_json_attribute(span: otel_trace.Span, key: str, values: Mapping[str, Any]) -> None:
    merged: dict[str, Any] = {}
    existing = (getattr(span, "attributes", None) or {}).get(key)
    if isinstance(existing, str):
        try:
            loaded = orjson.loads(existing)
        except orjson.JSONDecodeError:
            loaded = None
        if isinstance(loaded, dict):
            merged = loaded
    merged.update({str(k): v if isinstance(v, str) else str(v) for k, v in values.items()})
    span.set_attribute(key, orjson.dumps(merged).decode())
