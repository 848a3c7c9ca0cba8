"""Spans: the live recorder on the caller's thread, and the finished record.

:class:`LiveSpan` is what ``@traceway.trace`` and ``start_span`` hand out.  It
subclasses ``opentelemetry.trace.Span`` so it sits in the OpenTelemetry context
(``set_span_in_context``, ``get_current_span``) and other instrumentation nests
under it, but it is a lean ``__slots__`` recorder: integer ids, ``time_ns``
timestamps, inputs and outputs as JSON bytes.  Ending it hands it to its
processor and does nothing else; the export thread turns it into a
:class:`FinishedSpan` (hex ids, decoded JSON, event records), the one shape
exporters, span hooks and the gateway's in-process store writer consume.

Status codes are ``"UNSET"``, ``"OK"`` and ``"ERROR"`` (:class:`SpanStatusCode`).
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace as otel_trace
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from traceway.tracing.serialize import dumps

if TYPE_CHECKING:
    from traceway.tracing.tracer import Tracer

__all__ = [
    "FinishedSpan",
    "LiveSpan",
    "SpanEvent",
    "SpanStatusCode",
    "SpanType",
    "last_trace_id",
]


class SpanType:
    """Span kinds Traceway knows; any other string is accepted as a span type too."""

    LLM: Final = "LLM"
    CHAT_MODEL: Final = "CHAT_MODEL"
    CHAIN: Final = "CHAIN"
    AGENT: Final = "AGENT"
    TOOL: Final = "TOOL"
    RETRIEVER: Final = "RETRIEVER"
    EMBEDDING: Final = "EMBEDDING"
    RERANKER: Final = "RERANKER"
    PARSER: Final = "PARSER"
    MEMORY: Final = "MEMORY"
    GUARDRAIL: Final = "GUARDRAIL"
    CACHE: Final = "CACHE"
    GATEWAY: Final = "GATEWAY"
    UNKNOWN: Final = "UNKNOWN"


class SpanStatusCode(StrEnum):
    UNSET = "UNSET"
    OK = "OK"
    ERROR = "ERROR"


_UNSET: Final = "UNSET"
_OK: Final = "OK"
_ERROR: Final = "ERROR"
_FROM_OTEL: Final = {StatusCode.UNSET: _UNSET, StatusCode.OK: _OK, StatusCode.ERROR: _ERROR}
_CODES: Final = {_UNSET: _UNSET, _OK: _OK, _ERROR: _ERROR}
_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED: Final = TraceFlags(TraceFlags.DEFAULT)


@dataclass(frozen=True, slots=True)
class SpanEvent:
    name: str
    timestamp_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class FinishedSpan:
    """An ended span as exporters see it.

    ``inputs``/``outputs`` are JSON text; ``attributes`` excludes them and the
    span type (exporters add ``traceway.span.*`` attributes themselves).  Span
    hooks may change fields in place or return a ``dataclasses.replace`` copy.
    """

    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex
    parent_span_id: str | None
    name: str
    span_type: str
    start_time_ns: int
    end_time_ns: int
    status: str = _UNSET
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    inputs: str | None = None
    outputs: str | None = None
    #: The experiment the trace belongs to; ``None`` means the exporter's default.
    experiment: str | None = None


class _LastTrace(threading.local):
    trace_id: int = 0


_last_in_thread: Final = _LastTrace()
_last_in_process: list[int] = [0]


def last_trace_id(thread_local: bool = False) -> str | None:
    """Hex id of the last trace whose local root span ended (in this thread, or process)."""
    trace_id = _last_in_thread.trace_id if thread_local else _last_in_process[0]
    return format(trace_id, "032x") if trace_id else None


class LiveSpan(otel_trace.Span):
    """A span being recorded.  Created by a :class:`~traceway.tracing.tracer.Tracer`.

    Setters are no-ops once the span has ended or when it was not sampled, so
    code may call them unconditionally.
    """

    __slots__ = (
        "_attributes",
        "_end_ns",
        "_events",
        "_experiment",
        "_inputs",
        "_local_top",
        "_outputs",
        "_parent_id",
        "_recording",
        "_root",
        "_span_context",
        "_span_id",
        "_start_ns",
        "_status",
        "_status_message",
        "_trace_id",
        "_tracer",
        "name",
        "span_type",
    )

    def __init__(
        self,
        tracer: Tracer,
        name: str,
        span_type: str,
        trace_id: int,
        span_id: int,
        parent_id: int,
        start_ns: int,
        recording: bool,
        root: LiveSpan | None,
        local_top: bool,
        experiment: str | None,
        attributes: dict[str, Any],
    ) -> None:
        self._tracer = tracer
        self.name = name
        self.span_type = span_type
        self._trace_id = trace_id
        self._span_id = span_id
        self._parent_id = parent_id
        self._start_ns = start_ns
        self._end_ns = 0
        self._recording = recording
        # The trace's root span when it is in this process and is not this span (a root
        # does not refer to itself: the cycle would leave every root to the cyclic GC).
        self._root = root
        self._local_top = local_top
        self._experiment = experiment
        self._attributes = attributes
        self._events: list[SpanEvent] | None = None
        self._inputs: bytes | None = None
        self._outputs: bytes | None = None
        self._status = _UNSET
        self._status_message = ""
        self._span_context: SpanContext | None = None

    # -- identity -------------------------------------------------------------

    # Ids are kept as integers; bytes.hex is the cheapest way to their hex form.
    @property
    def trace_id(self) -> str:
        return self._trace_id.to_bytes(16, "big").hex()

    @property
    def span_id(self) -> str:
        return self._span_id.to_bytes(8, "big").hex()

    @property
    def parent_span_id(self) -> str | None:
        return self._parent_id.to_bytes(8, "big").hex() if self._parent_id else None

    @property
    def root(self) -> LiveSpan | None:
        """The trace's root span if it was started in this process."""
        if self._root is not None:
            return self._root
        return self if self._local_top and not self._parent_id else None

    @property
    def status(self) -> str:
        return self._status

    @property
    def attributes(self) -> Mapping[str, Any]:
        return self._attributes

    def get_span_context(self) -> SpanContext:
        context = self._span_context
        if context is None:
            flags = _SAMPLED if self._recording else _NOT_SAMPLED
            context = SpanContext(self._trace_id, self._span_id, False, flags)
            self._span_context = context
        return context

    def is_recording(self) -> bool:
        return self._recording and not self._end_ns

    # -- Traceway's recording API --------------------------------------------

    def set_inputs(self, inputs: Any) -> None:
        """Record the span's inputs (any value; serialised to JSON now)."""
        if self._recording and not self._end_ns:
            self._inputs = dumps(inputs, self._tracer.max_value_chars)

    def set_outputs(self, outputs: Any) -> None:
        """Record the span's outputs (any value; serialised to JSON now)."""
        if self._recording and not self._end_ns:
            self._outputs = dumps(outputs, self._tracer.max_value_chars)

    def set_attribute(self, key: str, value: Any) -> None:
        if self._recording and not self._end_ns:
            self._attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._recording and not self._end_ns:
            self._attributes.update(attributes)

    def add_event(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
    ) -> None:
        if self._recording and not self._end_ns:
            event = SpanEvent(name, timestamp or self._tracer.clock(), dict(attributes or {}))
            if self._events is None:
                self._events = [event]
            else:
                self._events.append(event)

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        """Links are not recorded; accepted so OpenTelemetry callers keep working."""

    def update_name(self, name: str) -> None:
        if not self._end_ns:
            self.name = name

    def set_status(
        self,
        status: str | SpanStatusCode | StatusCode | Status,
        message: str | None = "",
    ) -> None:
        """Set ``"OK"`` / ``"ERROR"`` (or ``"UNSET"``), optionally with a message.

        OpenTelemetry ``Status`` and ``StatusCode`` values are accepted too.
        """
        if self._end_ns:
            return
        code = _CODES.get(status) if type(status) is str else None  # the usual call, fast
        if code is None:
            if isinstance(status, Status):
                message = status.description or message
                status = status.status_code
            if isinstance(status, StatusCode):
                code = _FROM_OTEL.get(status)
            else:
                code = _CODES.get(str(status).upper())
            if code is None:
                raise ValueError(f"unknown span status {status!r}: use 'OK' or 'ERROR'")
        self._status = code
        self._status_message = (message or "") if code is _ERROR else ""

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Add an ``exception`` event (OpenTelemetry's attribute names)."""
        if not self._recording or self._end_ns:
            return
        event_attributes = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
        }
        if attributes:
            event_attributes.update(attributes)
        self.add_event("exception", event_attributes, timestamp)

    def record_error(self, exception: BaseException) -> None:
        """Mark the span failed by ``exception``: ERROR status and an exception event."""
        if self._recording and not self._end_ns:
            self.record_exception(exception)
            self._status = _ERROR
            self._status_message = f"{type(exception).__qualname__}: {exception}"

    def end(self, end_time: int | None = None) -> None:
        """End the span (once; later calls are ignored) and hand it to the processor."""
        if self._end_ns:
            return
        self._end_ns = end_time or self._tracer.clock()
        if self._recording:
            if self._local_top:
                _last_in_thread.trace_id = self._trace_id
                _last_in_process[0] = self._trace_id
            self._tracer.processor.on_end(self)

    def __repr__(self) -> str:
        return f"LiveSpan(name={self.name!r}, trace_id={self.trace_id}, span_id={self.span_id})"

    # -- conversion (export thread) ----------------------------------------

    def to_finished(self) -> FinishedSpan:
        """The ended span as a :class:`FinishedSpan`."""
        inputs = self._inputs
        outputs = self._outputs
        parent_id = self._parent_id
        # Positional: this runs once per exported span, and keywords cost more.
        return FinishedSpan(
            self._trace_id.to_bytes(16, "big").hex(),
            self._span_id.to_bytes(8, "big").hex(),
            parent_id.to_bytes(8, "big").hex() if parent_id else None,
            self.name,
            self.span_type,
            self._start_ns,
            self._end_ns,
            self._status,
            self._status_message,
            dict(self._attributes),
            list(self._events) if self._events else [],
            inputs.decode() if inputs is not None else None,
            outputs.decode() if outputs is not None else None,
            self._experiment,
        )
