"""The injectable tracer: starts :class:`LiveSpan` objects and sends ended ones to a processor.

The SDK's global API (``@traceway.trace``, ``traceway.start_span``) uses one
``Tracer`` built from the global configuration.  Other parts of the product build
their own, with their own exporter, independent of that configuration::

    from opentelemetry import trace as otel_trace
    from traceway.tracing.export import BatchProcessor
    from traceway.tracing.otlp import OtlpHttpExporter, traces_url
    from traceway.tracing.tracer import Tracer

    tracer = Tracer(BatchProcessor(OtlpHttpExporter(traces_url("http://localhost:5000"))))
    span = tracer.start_span("chat gpt-4o", "GATEWAY", parent=parse_traceparent(header))
    with otel_trace.use_span(span, end_on_exit=True):  # current while the block runs
        span.set_inputs(request_body)
        ...

``parent`` is an OpenTelemetry ``Context``, a ``SpanContext`` (for example from
:func:`traceway.tracing.propagation.parse_traceparent`) or ``None`` for the
current context; pass an empty ``opentelemetry.context.Context()`` to start a
new trace.  Sampling is decided at the root (``sampling_ratio``); children follow
their parent's decision, remote parents included.  Ids and the clock are
injectable for deterministic tests (:mod:`traceway.tracing.testing`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import SpanContext

from traceway.tracing.serialize import DEFAULT_MAX_CHARS
from traceway.tracing.span import LiveSpan, SpanType

if TYPE_CHECKING:
    from traceway.tracing.export import SpanProcessor

__all__ = ["IdGenerator", "RandomIdGenerator", "Tracer"]

_get_current_span = otel_trace.get_current_span


class IdGenerator(Protocol):
    def new_trace_id(self) -> int: ...

    def new_span_id(self) -> int: ...


class RandomIdGenerator:
    """Random 128-bit trace ids and 64-bit span ids (never zero)."""

    def new_trace_id(self) -> int:
        return random.getrandbits(128) or 1

    def new_span_id(self) -> int:
        return random.getrandbits(64) or 1


class Tracer:
    """Starts spans and hands ended ones to ``processor`` (see the module docstring)."""

    def __init__(
        self,
        processor: SpanProcessor,
        *,
        id_generator: IdGenerator | None = None,
        clock: Callable[[], int] = time.time_ns,
        sampling_ratio: float = 1.0,
        max_value_chars: int = DEFAULT_MAX_CHARS,
        experiment: str | None = None,
    ) -> None:
        self.processor = processor
        self.clock = clock
        self.sampling_ratio = sampling_ratio
        self.max_value_chars = max_value_chars
        #: The experiment new traces are recorded in (``None``: the exporter's default).
        self.experiment = experiment
        ids = id_generator or RandomIdGenerator()
        self._new_trace_id = ids.new_trace_id
        self._new_span_id = ids.new_span_id

    def start_span(
        self,
        name: str,
        span_type: str = SpanType.UNKNOWN,
        parent: otel_context.Context | SpanContext | None = None,
        attributes: Mapping[str, Any] | None = None,
        start_time_ns: int | None = None,
    ) -> LiveSpan:
        """Start a span under ``parent`` without making it current."""
        if isinstance(parent, SpanContext):
            parent_span: otel_trace.Span | None = otel_trace.NonRecordingSpan(parent)
        else:
            parent_span = _get_current_span(parent)
        return self.start(
            name, span_type, parent_span, dict(attributes) if attributes else {}, start_time_ns
        )

    def start(
        self,
        name: str,
        span_type: str,
        parent: otel_trace.Span | None,
        attributes: dict[str, Any],
        start_time_ns: int | None = None,
    ) -> LiveSpan:
        """The hot path: start a span under ``parent`` (a span, not a context).

        ``attributes`` is owned by the new span afterwards.
        """
        if parent is None or (type(parent) is not LiveSpan and not isinstance(parent, LiveSpan)):
            # A new trace, or a remote parent.  (The exact type test first: isinstance
            # against an ABC such as LiveSpan's base costs more than the rest of this.)
            context = parent.get_span_context() if parent is not None else None
            if context is not None and context.is_valid:
                trace_id = context.trace_id
                parent_id = context.span_id
                recording = context.trace_flags.sampled
            else:
                trace_id = self._new_trace_id()
                parent_id = 0
                ratio = self.sampling_ratio
                recording = ratio >= 1.0 or random.random() < ratio
            return LiveSpan(
                self,
                name,
                span_type,
                trace_id,
                self._new_span_id(),
                parent_id,
                start_time_ns or self.clock(),
                recording,
                None,
                True,
                self.experiment,
                attributes,
            )
        return LiveSpan(
            self,
            name,
            span_type,
            parent._trace_id,
            self._new_span_id(),
            parent._span_id,
            start_time_ns or self.clock(),
            parent._recording,
            parent._root or parent.root,
            False,
            parent._experiment,
            attributes,
        )
