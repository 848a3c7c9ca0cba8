"""The gateway's spans: one GATEWAY span per request, one child span per attempt.

This is the only module of the gateway that knows the tracing SDK; the request
path talks to :class:`RequestSpan` and :class:`AttemptSpan` only.  With no
exporter the gateway gets :data:`NOOP_TRACER`, whose spans do nothing.

Cost on the request path is kept to creating the spans and filling attribute
dicts: request and response bodies are handed over as the JSON bytes already in
hand (``orjson.Fragment``), never re-serialised; a stream is aggregated once it
has ended.  The request span holds the request and the answer; attempt spans hold
what differs (the body a target's ``override_params`` changed, a failed attempt's
error) plus the GenAI attributes, so nothing big is recorded twice.

Keys and other secrets are never put on a span: the provider key, virtual key and
gateway key stay in :class:`RequestOptions`, which is not recorded, and custom
hosts are not recorded either (they may carry credentials).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import orjson
from opentelemetry.trace import NonRecordingSpan

from traceway.gateway.config import Route
from traceway.gateway.errors import GatewayError
from traceway.gateway.genai import error_message, parse_body, response_attributes
from traceway.gateway.headers import RequestOptions
from traceway.gateway.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, UpstreamResponse
from traceway.gateway.streams import aggregate_stream
from traceway.tracing import semconv
from traceway.tracing._internal import handle_internal_error
from traceway.tracing.export import BatchProcessor, SpanExporter, SpanProcessor
from traceway.tracing.propagation import parse_traceparent
from traceway.tracing.span import LiveSpan, SpanType
from traceway.tracing.tracer import Tracer

__all__ = [
    "NOOP_TRACER",
    "AttemptSpan",
    "GatewayTracer",
    "RequestSpan",
]

# Gateway attributes (the GenAI and Traceway ones come from semconv).
ROUTE = "traceway.gateway.route"
STRATEGY = "traceway.gateway.strategy"
TRACE_ID_HEADER = "traceway.gateway.trace_id"
STREAM = "traceway.gateway.stream"
OPTION_INDEX = "traceway.gateway.option_index"
RETRY = "traceway.gateway.retry"
RETRY_COUNT = "traceway.gateway.retry_attempt_count"
ATTEMPTS = "traceway.gateway.attempts"
FALLBACK_REASON = "traceway.gateway.fallback_reason"
LATENCY_MS = "traceway.gateway.latency_ms"
HTTP_STATUS = "http.response.status_code"

_SPAN_TYPES = {CHAT: SpanType.CHAT_MODEL, COMPLETIONS: SpanType.LLM, EMBEDDINGS: SpanType.EMBEDDING}
_OPERATIONS = {CHAT: "chat", COMPLETIONS: "text_completion", EMBEDDINGS: "embeddings"}


class AttemptSpan:
    """One try of one target.  The no-op base class records nothing."""

    __slots__ = ()

    def end(self, response: UpstreamResponse) -> None:
        """End with a complete (non-streaming or error) response."""

    def end_stream(self, result: dict[str, Any] | None, error: str | None) -> None:
        """End after the stream this attempt answered with has been relayed."""


class RequestSpan:
    """The request's span.  The no-op base class records nothing."""

    __slots__ = ("trace_id",)

    recording = False

    def __init__(self, trace_id: str) -> None:
        #: Sent back as ``x-traceway-trace-id``.
        self.trace_id = trace_id

    def attempt(
        self,
        *,
        provider: str,
        target: str,
        model: str | None,
        retry: int,
        fallback_reason: str | None,
        body: dict[str, Any],
    ) -> AttemptSpan:
        """Start the span of one attempt."""
        return _NOOP_ATTEMPT

    def end(
        self,
        *,
        status: int,
        body: bytes | None = None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        retries: int = 0,
        attempts: int = 0,
    ) -> None:
        """End the request: ``body`` is the JSON sent back, ``result`` an aggregated stream."""

    def end_stream(
        self, endpoint: str, pieces: Sequence[bytes], attempt: AttemptSpan | None, error: str | None
    ) -> dict[str, Any] | None:
        """Aggregate a relayed stream for the spans; returns the aggregate (``None`` here)."""
        if attempt is not None:
            attempt.end_stream(None, error)
        return None


_NOOP_ATTEMPT = AttemptSpan()

P = ParamSpec("P")
R = TypeVar("R")


def _telemetry(fallback: Callable[P, R]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Never let recording break a request: report a failure, then use ``fallback``.

    Reports are logged in production and raised under pytest, so bugs stay visible.
    """

    def wrap(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(*args, **kwargs)
            except Exception:
                handle_internal_error("recording a gateway span")
                return fallback(*args, **kwargs)

        return guarded

    return wrap


def _nothing(*args: Any, **kwargs: Any) -> Any:
    return None


def _noop_attempt(*args: Any, **kwargs: Any) -> AttemptSpan:
    return _NOOP_ATTEMPT


def _noop_request(*args: Any, **kwargs: Any) -> RequestSpan:
    options: RequestOptions = kwargs["options"]
    return RequestSpan(options.trace_id or os.urandom(16).hex())


def _fresh_trace_id(*args: Any, **kwargs: Any) -> str:
    options: RequestOptions = kwargs["options"]
    return options.trace_id or os.urandom(16).hex()


class _LiveAttempt(AttemptSpan):
    __slots__ = ("_clock", "_span", "_started")

    def __init__(self, span: LiveSpan, clock: Callable[[], int], started_ns: int) -> None:
        self._span = span
        self._clock = clock
        self._started = started_ns

    def _finish(self, status: int, attributes: dict[str, Any], error: str | None) -> None:
        span = self._span
        now = self._clock()
        attributes[HTTP_STATUS] = status
        attributes[LATENCY_MS] = (now - self._started) / 1_000_000
        span.set_attributes(attributes)
        if error is not None:
            span.set_status("ERROR", error)
        else:
            span.set_status("OK")
        span.end(now)

    @_telemetry(_nothing)
    def end(self, response: UpstreamResponse) -> None:
        result = parse_body(response.body)
        if 200 <= response.status < 300:
            self._finish(response.status, response_attributes(result), None)
            return
        # A failed attempt's answer appears nowhere else: keep it.
        if response.body:
            self._span.set_outputs(orjson.Fragment(response.body))
        self._finish(response.status, {}, error_message(result, response.status))

    @_telemetry(_nothing)
    def end_stream(self, result: dict[str, Any] | None, error: str | None) -> None:
        self._finish(200, response_attributes(result) if result is not None else {}, error)


class _LiveRequest(RequestSpan):
    __slots__ = ("_body", "_endpoint", "_span", "_tracer")

    recording = True

    def __init__(
        self,
        tracer: Tracer,
        span: LiveSpan,
        endpoint: str,
        body: dict[str, Any],
        trace_id: str,
    ) -> None:
        super().__init__(trace_id)
        self._tracer = tracer
        self._span = span
        self._endpoint = endpoint
        self._body = body

    @_telemetry(_noop_attempt)
    def attempt(
        self,
        *,
        provider: str,
        target: str,
        model: str | None,
        retry: int,
        fallback_reason: str | None,
        body: dict[str, Any],
    ) -> AttemptSpan:
        endpoint = self._endpoint
        operation = _OPERATIONS.get(endpoint, endpoint)
        # Every attribute costs at export, on the gateway's core: only what the
        # request span and the span type do not already say.
        attributes: dict[str, Any] = {
            semconv.GEN_AI_PROVIDER_NAME: provider,
            OPTION_INDEX: target,
            RETRY: retry,
        }
        if model is not None:
            attributes[semconv.GEN_AI_REQUEST_MODEL] = model
        if fallback_reason is not None:
            attributes[FALLBACK_REASON] = fallback_reason
        tracer = self._tracer
        started = tracer.clock()
        span = tracer.start(
            f"{operation} {model}" if model else operation,
            _SPAN_TYPES.get(endpoint, SpanType.LLM),
            self._span,
            attributes,
            started,
        )
        if body is not self._body:
            # override_params changed what was sent; otherwise the request span has it.
            span.set_inputs(body)
        return _LiveAttempt(span, tracer.clock, started)

    @_telemetry(_nothing)
    def end(
        self,
        *,
        status: int,
        body: bytes | None = None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        retries: int = 0,
        attempts: int = 0,
    ) -> None:
        span = self._span
        # Provider, target and model are on the attempt spans.
        attributes: dict[str, Any] = {HTTP_STATUS: status}
        if attempts > 1:
            attributes[ATTEMPTS] = attempts
        if retries:
            attributes[RETRY_COUNT] = retries
        span.set_attributes(attributes)
        if result is not None:
            span.set_outputs(result)
        elif body:
            span.set_outputs(orjson.Fragment(body))
        if error is None and status < 400:
            span.set_status("OK")
        else:
            span.set_status("ERROR", error or error_message(parse_body(body or b""), status))
        span.end()

    @_telemetry(_nothing)
    def end_stream(
        self, endpoint: str, pieces: Sequence[bytes], attempt: AttemptSpan | None, error: str | None
    ) -> dict[str, Any] | None:
        result = aggregate_stream(endpoint, pieces)
        if attempt is not None:
            attempt.end_stream(result, error)
        return result


class GatewayTracer:
    """Creates the request spans; a no-op when built without an exporter or tracer."""

    def __init__(
        self,
        exporter: SpanExporter | None = None,
        *,
        tracer: Tracer | None = None,
        processor: SpanProcessor | None = None,
        experiment: str | None = None,
        sample_rate: float = 1.0,
    ) -> None:
        if tracer is None and processor is None and exporter is not None:
            processor = BatchProcessor(exporter)
        if tracer is None and processor is not None:
            tracer = Tracer(processor, experiment=experiment, sampling_ratio=sample_rate)
        self._tracer = tracer
        self._processor = (
            processor
            if processor is not None
            else (tracer.processor if tracer is not None else None)
        )

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @_telemetry(_noop_request)
    def start_request(
        self,
        *,
        endpoint: str,
        raw_body: bytes,
        body: dict[str, Any],
        options: RequestOptions,
        route: Route,
    ) -> RequestSpan:
        """Start the GATEWAY span of a request (continuing its ``traceparent``, if any)."""
        tracer = self._tracer
        if tracer is None:
            return RequestSpan(options.trace_id or os.urandom(16).hex())
        # The endpoint is in the span name; attributes cost at export, so no duplicates.
        attributes: dict[str, Any] = {ROUTE: route.source, STRATEGY: route.strategy}
        if body.get("stream"):
            attributes[STREAM] = True
        if options.trace_id:
            attributes[TRACE_ID_HEADER] = options.trace_id
        if options.metadata:
            attributes[semconv.TRACE_METADATA] = options.metadata
        span = tracer.start(
            f"gateway {endpoint}", SpanType.GATEWAY, self._parent(options), attributes
        )
        if not span.is_recording():  # not sampled: nothing more to pay for
            return RequestSpan(options.trace_id or span.trace_id)
        span.set_inputs(orjson.Fragment(raw_body))
        return _LiveRequest(tracer, span, endpoint, body, options.trace_id or span.trace_id)

    @_telemetry(_fresh_trace_id)
    def record_rejected(
        self,
        *,
        endpoint: str,
        raw_body: bytes,
        options: RequestOptions,
        error: GatewayError,
    ) -> str:
        """Record a request refused before routing (bad JSON, bad config); returns its trace id."""
        tracer = self._tracer
        if tracer is None:
            return options.trace_id or os.urandom(16).hex()
        attributes: dict[str, Any] = {
            HTTP_STATUS: error.status,
        }
        if options.trace_id:
            attributes[TRACE_ID_HEADER] = options.trace_id
        if options.metadata:
            attributes[semconv.TRACE_METADATA] = options.metadata
        span = tracer.start(
            f"gateway {endpoint}", SpanType.GATEWAY, self._parent(options), attributes
        )
        # The body may not be JSON: keep it as text.
        span.set_inputs(raw_body.decode(errors="replace"))
        span.set_outputs(orjson.Fragment(error.body()))
        span.set_status("ERROR", error.message)
        span.end()
        return options.trace_id or span.trace_id

    @staticmethod
    def _parent(options: RequestOptions) -> NonRecordingSpan | None:
        if options.traceparent:
            context = parse_traceparent(options.traceparent)
            if context is not None:
                return NonRecordingSpan(context)
        return None

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Export every ended span now; False on timeout."""
        return self._processor.force_flush(timeout) if self._processor is not None else True

    def shutdown(self, timeout: float = 10.0) -> None:
        """Flush and stop the exporter (safe to call twice)."""
        if self._processor is not None:
            self._processor.shutdown(timeout)


NOOP_TRACER = GatewayTracer()
