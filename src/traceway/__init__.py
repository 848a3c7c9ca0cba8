"""Traceway: trace LLM applications and route their calls through one gateway.

>>> import traceway
>>> traceway.set_experiment("support-bot")
>>> @traceway.trace(span_type=traceway.SpanType.CHAIN)
... def answer(question: str) -> str:
...     return "42"
>>> answer("life?")
'42'
>>> traceway.flush(timeout=0.5)  # doctest: +SKIP
True
"""

import importlib
from types import ModuleType

from traceway.tracing.api import (
    get_active_trace_id,
    get_current_active_span,
    get_last_active_trace_id,
    start_span,
    update_current_trace,
)
from traceway.tracing.client import Span, Trace, TraceInfo, get_trace, search_traces
from traceway.tracing.config import (
    configure,
    disable,
    enable,
    flush,
    get_experiment,
    get_tracking_uri,
    is_enabled,
    set_experiment,
    set_tracking_uri,
)
from traceway.tracing.context import ContextThreadPoolExecutor, wrap_context
from traceway.tracing.decorator import trace
from traceway.tracing.errors import TracewayConnectionError, TracewayError, TracewayHTTPError
from traceway.tracing.propagation import inject_traceparent, parse_traceparent
from traceway.tracing.span import FinishedSpan, LiveSpan, SpanStatusCode, SpanType

__all__ = [
    "ContextThreadPoolExecutor",
    "FinishedSpan",
    "LiveSpan",
    "Span",
    "SpanStatusCode",
    "SpanType",
    "Trace",
    "TraceInfo",
    "TracewayConnectionError",
    "TracewayError",
    "TracewayHTTPError",
    "configure",
    "disable",
    "enable",
    "flush",
    "get_active_trace_id",
    "get_current_active_span",
    "get_experiment",
    "get_last_active_trace_id",
    "get_trace",
    "get_tracking_uri",
    "inject_traceparent",
    "is_enabled",
    "parse_traceparent",
    "search_traces",
    "set_experiment",
    "set_tracking_uri",
    "start_span",
    "trace",
    "update_current_trace",
    "wrap_context",
]


def __getattr__(name: str) -> ModuleType:
    # ``traceway.openai`` imports the openai client library, so only on first use.
    if name == "openai":
        return importlib.import_module("traceway.openai")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
