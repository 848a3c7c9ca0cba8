"""The gateway's spans: one GATEWAY span per request, child spans per attempt and policy.

This is the only module of the gateway that knows the tracing SDK; the request
path talks to :class:`RequestSpan` and :class:`AttemptSpan` only.  With no
exporter the gateway gets :data:`NOOP_TRACER`, whose spans do nothing.

Cost on the request path is kept to creating the spans and filling attribute
dicts: request and response bodies are handed over as the JSON bytes already in
hand (``orjson.Fragment``), never re-serialised; a stream is aggregated once it
has ended.  The request span holds the request and the answer; attempt spans hold
what differs (the body a target's ``override_params`` changed, a failed attempt's
error) plus the GenAI attributes, so nothing big is recorded twice.

Policies add their own children: a CACHE span for the cache lookup
(``traceway.cache.status``) and a GUARDRAIL span per guardrail hook that ran
(``traceway.guardrail.verdict``: ``pass`` or ``fail``, its check results as
outputs).  The attempt that answered carries the call's ``traceway.cost.usd``;
the request span does not, so the store counts the cost once.

Keys and other secrets are never put on a span: the provider key, virtual key and
gateway key stay in :class:`RequestOptions`, which is not recorded, and custom
hosts are not recorded either (they may carry credentials).  When input
guardrails run, the request span records the request as the guardrails let it
through (redacted), never the raw body; guardrail results are recorded without
the excerpts of checked text some checks report.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import orjson
from opentelemetry.trace import NonRecordingSpan

from traceway.gateway.config import Route
from traceway.gateway.errors import GatewayError
from traceway.gateway.genai import error_message, parse_body, response_attributes
from traceway.gateway.headers import RequestOptions
from traceway.gateway.keys import GatewayKeyInfo
from traceway.gateway.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, UpstreamResponse
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
KEY_ID = "traceway.gateway.key_id"
KEY_NAME = "traceway.gateway.key_name"
# Read by the UI's gateway dashboard (traceway.store.dashboard): keep the names.
CACHE_STATUS = "traceway.cache.status"
GUARDRAIL_VERDICT = "traceway.guardrail.verdict"
CACHE_MODE = "traceway.cache.mode"
CACHE_SIMILARITY = "traceway.cache.similarity"
GUARDRAIL_HOOK = "traceway.guardrail.hook"
GUARDRAIL_EVENT = "traceway.guardrail.event"
GUARDRAIL_DENY = "traceway.guardrail.deny"
#: Keys of a check's ``data`` that repeat the checked text: not recorded.
_TEXT_KEYS = frozenset({"textExcerpt", "matchDetails"})

_SPAN_TYPES = {CHAT: SpanType.CHAT_MODEL, COMPLETIONS: SpanType.LLM, EMBEDDINGS: SpanType.EMBEDDING}
_OPERATIONS = {CHAT: "chat", COMPLETIONS: "text_completion", EMBEDDINGS: "embeddings"}


def scrub_hook_results(results: Any) -> Any:
    """Guardrail results (a list of hooks, or Portkey's ``hook_results``) without text excerpts."""
    if isinstance(results, dict):
        return {key: scrub_hook_results(value) for key, value in results.items()}
    if not isinstance(results, list):
        return results
    hooks = []
    for hook in results:
        if isinstance(hook, dict) and isinstance(hook.get("checks"), list):
            checks = [
                {**check, "data": {k: v for k, v in check["data"].items() if k not in _TEXT_KEYS}}
                if isinstance(check, dict) and isinstance(check.get("data"), dict)
                else check
                for check in hook["checks"]
            ]
            hook = {**hook, "checks": checks}
        hooks.append(hook)
    return hooks


def _has_excerpts(body: bytes) -> bool:
    return b'"textExcerpt"' in body or b'"matchDetails"' in body


def _excerpted(hook: dict[str, Any]) -> bool:
    checks = hook.get("checks")
    return isinstance(checks, list) and any(
        isinstance(c, dict)
        and isinstance(c.get("data"), dict)
        and not _TEXT_KEYS.isdisjoint(c["data"])
        for c in checks
    )


class AttemptSpan:
    """One try of one target.  The no-op base class records nothing."""

    __slots__ = ()

    def end(
        self,
        response: UpstreamResponse,
        *,
        result: Any = None,
        cost_usd: float | None = None,
        ended_ns: int = 0,
    ) -> None:
        """End with a complete (non-streaming or error) response.

        ``ended_ns`` is when the answer arrived (:meth:`RequestSpan.now`), when the
        span is ended later than that; 0 means now.

        ``result`` is the answer already parsed (it is parsed here otherwise);
        ``cost_usd`` what the call cost.
        """

    def end_stream(
        self, result: dict[str, Any] | None, error: str | None, cost_usd: float | None = None
    ) -> None:
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
        guarded: bool = False,
    ) -> None:
        """End the request: ``body`` is the JSON sent back, ``result`` an aggregated stream.

        ``guarded``: the body may hold guardrail ``hook_results`` (recorded scrubbed).
        """

    def now(self) -> int:
        """The tracer's clock (ns), to time a policy step; 0 when not recording."""
        return 0

    def set_request(self, body: dict[str, Any] | None) -> None:
        """Record ``body`` as the request: what the input guardrails let through.

        ``None``: they let the request through unchanged (recorded as it arrived).
        """

    def record_cache(
        self, started_ns: int, status: str, mode: str, similarity: float | None = None
    ) -> None:
        """Record a cache lookup that began at ``started_ns`` as a CACHE span."""

    def record_guardrails(self, started_ns: int, event: str, results: list[dict[str, Any]]) -> None:
        """Record each guardrail hook that ran (Portkey-shaped results) as a GUARDRAIL span."""


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

    def _finish(
        self, status: int, attributes: dict[str, Any], error: str | None, ended_ns: int = 0
    ) -> None:
        span = self._span
        now = ended_ns or self._clock()
        attributes[HTTP_STATUS] = status
        attributes[LATENCY_MS] = (now - self._started) / 1_000_000
        span.set_attributes(attributes)
        if error is not None:
            span.set_status("ERROR", error)
        else:
            span.set_status("OK")
        span.end(now)

    @_telemetry(_nothing)
    def end(
        self,
        response: UpstreamResponse,
        *,
        result: Any = None,
        cost_usd: float | None = None,
        ended_ns: int = 0,
    ) -> None:
        if result is None:
            result = parse_body(response.body)
        if 200 <= response.status < 300:
            attributes = response_attributes(result)
            if cost_usd is not None:
                attributes[semconv.COST_USD] = cost_usd
            self._finish(response.status, attributes, None, ended_ns)
            return
        # A failed attempt's answer appears nowhere else: keep it.
        if response.body:
            self._span.set_outputs(orjson.Fragment(response.body))
        self._finish(response.status, {}, error_message(result, response.status), ended_ns)

    @_telemetry(_nothing)
    def end_stream(
        self, result: dict[str, Any] | None, error: str | None, cost_usd: float | None = None
    ) -> None:
        attributes = response_attributes(result) if result is not None else {}
        if cost_usd is not None:
            attributes[semconv.COST_USD] = cost_usd
        self._finish(200, attributes, error)


class _LiveRequest(RequestSpan):
    __slots__ = ("_body", "_endpoint", "_raw", "_span", "_tracer")

    recording = True

    def __init__(
        self,
        tracer: Tracer,
        span: LiveSpan,
        endpoint: str,
        body: dict[str, Any],
        trace_id: str,
        raw: bytes = b"",
    ) -> None:
        super().__init__(trace_id)
        self._tracer = tracer
        self._span = span
        self._endpoint = endpoint
        self._body = body
        self._raw = raw  # kept only while the inputs wait for the input guardrails

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
        guarded: bool = False,
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
            # Parsed again only when some check reported excerpts of the checked text.
            parsed = parse_body(body) if guarded and _has_excerpts(body) else None
            if isinstance(parsed, dict) and "hook_results" in parsed:
                parsed["hook_results"] = scrub_hook_results(parsed["hook_results"])
                span.set_outputs(parsed)
            else:
                span.set_outputs(orjson.Fragment(body))
        if error is None and status < 400:
            span.set_status("OK")
        else:
            span.set_status("ERROR", error or error_message(parse_body(body or b""), status))
        span.end()

    def now(self) -> int:
        return self._tracer.clock()

    @_telemetry(_nothing)
    def set_request(self, body: dict[str, Any] | None) -> None:
        if body is None:
            self._span.set_inputs(orjson.Fragment(self._raw))
            return
        self._span.set_inputs(body)
        self._body = body  # attempts that send this body need not record it again

    def _child(
        self, name: str, span_type: str, attributes: dict[str, Any], started_ns: int
    ) -> LiveSpan:
        return self._tracer.start(name, span_type, self._span, attributes, started_ns or None)

    @_telemetry(_nothing)
    def record_cache(
        self, started_ns: int, status: str, mode: str, similarity: float | None = None
    ) -> None:
        attributes: dict[str, Any] = {CACHE_STATUS: status, CACHE_MODE: mode}
        if similarity is not None:
            attributes[CACHE_SIMILARITY] = similarity
        span = self._child("cache lookup", SpanType.CACHE, attributes, started_ns)
        span.set_status("OK")
        span.end()

    @_telemetry(_nothing)
    def record_guardrails(self, started_ns: int, event: str, results: list[dict[str, Any]]) -> None:
        ended = self._tracer.clock()
        for result in results:
            if result.get("skipped"):
                continue  # it did not run
            passed = bool(result.get("verdict"))
            attributes: dict[str, Any] = {
                GUARDRAIL_VERDICT: "pass" if passed else "fail",
                GUARDRAIL_HOOK: str(result.get("id")),
                GUARDRAIL_EVENT: event,
            }
            if result.get("deny"):
                attributes[GUARDRAIL_DENY] = True
            span = self._child(
                f"guardrail {result.get('id')}", SpanType.GUARDRAIL, attributes, started_ns
            )
            span.set_outputs(scrub_hook_results([result])[0] if _excerpted(result) else result)
            if passed:
                span.set_status("OK")
            else:
                span.set_status("ERROR", "denied" if result.get("deny") else "checks failed")
            span.end(ended)


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
            # No redaction hook: gateway spans never hold keys (see the module docstring),
            # and without hooks ended spans are encoded as they are, with no conversion.
            processor = BatchProcessor(exporter, hooks=())
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
        record_inputs: bool = True,
        key: GatewayKeyInfo | None = None,
    ) -> RequestSpan:
        """Start the GATEWAY span of a request (continuing its ``traceparent``, if any).

        ``record_inputs=False`` leaves the inputs to :meth:`RequestSpan.set_request`
        (input guardrails may redact the request); ``key`` is the verified gateway key.
        """
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
        if key is not None:
            attributes[KEY_ID] = key.key_id
            attributes[KEY_NAME] = key.name
        span = tracer.start(
            f"gateway {endpoint}", SpanType.GATEWAY, self._parent(options), attributes
        )
        if not span.is_recording():  # not sampled: nothing more to pay for
            return RequestSpan(options.trace_id or span.trace_id)
        trace_id = options.trace_id or span.trace_id
        if record_inputs:
            span.set_inputs(orjson.Fragment(raw_body))
            return _LiveRequest(tracer, span, endpoint, body, trace_id)
        return _LiveRequest(tracer, span, endpoint, body, trace_id, raw_body)

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
