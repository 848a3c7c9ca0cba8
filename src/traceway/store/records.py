"""The records the store keeps, independent of how they arrived.

Ingest (OTLP protobuf or JSON, from any SDK) and the in-process exporter that the
gateway uses inside ``traceway server`` both produce :class:`SpanRecord` values;
the store derives :class:`TraceSummary` rows from them.  Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Experiment",
    "SpanRecord",
    "StoredSpan",
    "StoredTrace",
    "TraceSummary",
]

#: Status values of a span and of a trace.  ``IN_PROGRESS`` is only ever a trace
#: status: the trace has spans but its root has not arrived yet.
STATUS_UNSET = "UNSET"
STATUS_OK = "OK"
STATUS_ERROR = "ERROR"
STATUS_IN_PROGRESS = "IN_PROGRESS"


@dataclass(slots=True)
class SpanRecord:
    """One span, normalised: every convention already mapped to these fields.

    ``inputs`` and ``outputs`` hold JSON text (or ``None``); ``attributes`` holds
    the remaining attributes as plain JSON-compatible values.
    """

    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex
    parent_span_id: str | None
    name: str
    span_type: str
    start_time_ns: int
    end_time_ns: int
    status: str = STATUS_UNSET
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    inputs: str | None = None
    outputs: str | None = None
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float | None = None
    #: Tags and metadata this span contributes to its trace (merged on ingest).
    trace_tags: dict[str, str] = field(default_factory=dict)
    trace_metadata: dict[str, str] = field(default_factory=dict)
    #: Previews this span sets on its trace explicitly (``update_current_trace``).
    request_preview: str | None = None
    response_preview: str | None = None


@dataclass(slots=True)
class Experiment:
    experiment_id: int
    name: str
    created_at_ms: int
    trace_count: int = 0
    error_count: int = 0
    last_trace_ms: int | None = None


@dataclass(slots=True)
class TraceSummary:
    """A trace row: derived from its spans, never written by hand."""

    trace_id: str
    experiment_id: int
    name: str
    start_time_ms: int
    end_time_ms: int
    duration_ms: int
    status: str
    request_preview: str | None
    response_preview: str | None
    span_count: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float | None
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class StoredSpan:
    """A span as read back from the store."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    span_type: str
    start_time_ns: int
    end_time_ns: int
    status: str
    status_message: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    inputs: Any
    outputs: Any
    model: str | None
    provider: str | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None


@dataclass(slots=True)
class StoredTrace:
    info: TraceSummary
    spans: list[StoredSpan]
