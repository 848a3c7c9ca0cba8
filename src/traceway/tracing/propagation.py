"""W3C Trace Context: the ``traceparent`` header that joins traces across processes.

The openai autolog injects it into outgoing requests; the gateway parses it and
continues the caller's trace.

>>> headers: dict[str, str] = {}
>>> inject_traceparent(headers)  # no current span: nothing is added
>>> headers
{}
>>> parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").span_id
13235353014750950193
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Final

from opentelemetry import trace as otel_trace
from opentelemetry.trace import SpanContext, TraceFlags

__all__ = ["TRACEPARENT_HEADER", "format_traceparent", "inject_traceparent", "parse_traceparent"]

TRACEPARENT_HEADER: Final = "traceparent"
_TRACEPARENT: Final = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?"
)


def format_traceparent(span_context: SpanContext) -> str:
    """The ``traceparent`` value for ``span_context``."""
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}"
        f"-{int(span_context.trace_flags) & 0xFF:02x}"
    )


def inject_traceparent(headers: MutableMapping[str, str]) -> None:
    """Set ``headers["traceparent"]`` for the current span; no-op without a valid span."""
    span_context = otel_trace.get_current_span().get_span_context()
    if span_context.is_valid:
        headers[TRACEPARENT_HEADER] = format_traceparent(span_context)


def parse_traceparent(value: str | None) -> SpanContext | None:
    """The remote parent named by a ``traceparent`` value, or None if it is invalid."""
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    flags = TraceFlags(int(flags_hex, 16))
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
