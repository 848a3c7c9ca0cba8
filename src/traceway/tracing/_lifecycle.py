"""Starting and ending a span around a call: the steps every traced call shares.

These never raise into the traced code: an internal failure is logged (re-raised
under pytest) and the call goes on untraced.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import Token
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace

from traceway.tracing._internal import SUPPRESS_INSTRUMENTATION_KEY, handle_internal_error
from traceway.tracing.config import SDK, get_tracer
from traceway.tracing.serialize import dumps
from traceway.tracing.signature import ArgumentBinder
from traceway.tracing.span import LiveSpan

__all__ = ["capture_inputs", "end_error", "end_ok", "start_current"]

_get_current = otel_context.get_current
_attach = otel_context.attach
_get_current_span = otel_trace.get_current_span
_set_span_in_context = otel_trace.set_span_in_context
_OK: Final = "OK"
_UNSET: Final = "UNSET"


def start_current(
    name: str, span_type: str, attributes: Mapping[str, Any] | None
) -> tuple[LiveSpan, Token[otel_context.Context]] | None:
    """Start a span under the current one and make it current; None when not tracing."""
    if not SDK.enabled:
        return None
    try:
        context = _get_current()
        if context.get(SUPPRESS_INSTRUMENTATION_KEY):
            return None
        tracer = SDK.tracer or get_tracer()
        span = tracer.start(
            name, span_type, _get_current_span(context), dict(attributes) if attributes else {}
        )
        return span, _attach(_set_span_in_context(span, context))
    except Exception:
        handle_internal_error("starting a span")
        return None


def capture_inputs(
    span: LiveSpan, binder: ArgumentBinder, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    try:
        span._inputs = dumps(binder.bind(args, kwargs), span._tracer.max_value_chars)
    except Exception:
        handle_internal_error("recording inputs")


def end_ok(span: LiveSpan, outputs: Any, has_outputs: bool = True) -> None:
    try:
        if span._recording:
            if has_outputs:
                span._outputs = dumps(outputs, span._tracer.max_value_chars)
            if span._status is _UNSET:
                span._status = _OK
        span.end()
    except Exception:
        handle_internal_error("ending a span")


def end_error(span: LiveSpan, exc: BaseException) -> None:
    try:
        span.record_error(exc)
        span.end()
    except Exception:
        handle_internal_error("ending a span")
