"""The traced stand-ins for the client's methods: the hot path of autolog.

Each call becomes one span, current while the request runs (so other
instrumentation nests under it) and named in the request's ``traceparent``
header (so a gateway continues the trace under it).  On the caller's thread a
call costs: starting the span, a few attribute reads off the request and the
response, a shallow copy of the request arguments, and ending the span.  The
request and response bodies are serialised later, on the export thread.

Calls made while another traced call runs (``parse`` built on ``create``, the
``stream()`` helpers) are not traced again.  Anything going wrong in here is
handled like every SDK failure: logged and swallowed (raised under pytest),
never changing what the application sees.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Final

from openai import AsyncAzureOpenAI, AsyncStream, AzureOpenAI, BaseModel, Stream
from openai._legacy_response import LegacyAPIResponse
from opentelemetry import context as otel_context

from traceway.integrations._openai_attributes import (
    DeferredJson,
    Endpoint,
    record_failure,
    request_attributes,
    request_inputs,
    response_attributes,
)
from traceway.integrations._openai_streams import instrument_async_stream, instrument_stream
from traceway.tracing._internal import handle_internal_error
from traceway.tracing._lifecycle import start_current
from traceway.tracing.propagation import TRACEPARENT_HEADER, format_traceparent
from traceway.tracing.span import LiveSpan

__all__ = ["Switch", "traced_async_method", "traced_method"]

_detach = otel_context.detach
_OPENAI: Final = "openai"
_AZURE: Final = "azure.ai.openai"
_AZURE_CLIENTS: Final = (AzureOpenAI, AsyncAzureOpenAI)
#: Set while a traced call runs, so that the calls it makes itself are not traced twice.
_IN_CALL: ContextVar[bool] = ContextVar("traceway_openai_call", default=False)
_in_call = _IN_CALL.get


class Switch:
    """Turns one generation of patches on or off (``autolog(disable=True)`` turns it off)."""

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = True


def _begin(span: LiveSpan, endpoint: Endpoint, resource: Any, kwargs: dict[str, Any]) -> None:
    """Record the request on ``span`` and name the span in the outgoing headers."""
    try:
        headers = kwargs.get("extra_headers")
        traceparent = format_traceparent(span.get_span_context())
        if span._recording:
            client = resource._client
            provider = _AZURE if isinstance(client, _AZURE_CLIENTS) else _OPENAI
            # The ``base_url`` property costs microseconds in recent clients; its store does not.
            base_url = getattr(client, "_base_url", None) or getattr(client, "base_url", None)
            span._attributes.update(request_attributes(endpoint, kwargs, provider, base_url))
            inputs = request_inputs(kwargs)
            span._inputs = DeferredJson(inputs, span._tracer.max_value_chars)  # type: ignore[assignment]
        # A new dict: the caller's headers are left as they were.
        kwargs["extra_headers"] = (
            {**headers, TRACEPARENT_HEADER: traceparent}
            if headers
            else {TRACEPARENT_HEADER: traceparent}
        )
    except Exception:
        handle_internal_error("recording an openai request")


def _end(span: LiveSpan, endpoint: Endpoint, result: Any) -> None:
    """End ``span`` with ``result``, or hand it to the stream ``result`` holds."""
    try:
        answer = result
        if isinstance(result, LegacyAPIResponse):
            # ``with_raw_response``: the client caches what ``parse()`` returns, so the
            # application gets this very object (or instrumented stream) later.
            try:
                answer = result.parse()
            except Exception:
                answer = None  # the application meets the same error when it parses
        if isinstance(answer, Stream):
            instrument_stream(answer, span, endpoint.kind)
            return
        if isinstance(answer, AsyncStream):
            instrument_async_stream(answer, span, endpoint.kind)
            return
        if span._recording:
            if isinstance(answer, BaseModel):
                span._attributes.update(response_attributes(answer))
                # Response objects are not changed by the client once returned.
                span._outputs = DeferredJson(answer, span._tracer.max_value_chars)  # type: ignore[assignment]
            span.set_status("OK")
        span.end()
    except Exception:
        span.end()
        handle_internal_error("recording an openai response")


def _fail(span: LiveSpan, exc: BaseException) -> None:
    try:
        if span._recording:
            record_failure(span, exc)
        span.end()
    except Exception:
        handle_internal_error("recording an openai error")


def traced_method(
    original: Callable[..., Any], endpoint: Endpoint, switch: Switch
) -> Callable[..., Any]:
    """``original`` (a client method) recording each call as a span while ``switch`` is on."""

    @functools.wraps(original)
    def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not switch.on or _in_call():
            return original(self, *args, **kwargs)
        started = start_current(endpoint.name, endpoint.span_type, None)
        if started is None:
            return original(self, *args, **kwargs)
        span, token = started
        _begin(span, endpoint, self, kwargs)
        in_call = _IN_CALL.set(True)
        try:
            result = original(self, *args, **kwargs)
        except BaseException as exc:
            _IN_CALL.reset(in_call)
            _detach(token)
            _fail(span, exc)
            raise
        _IN_CALL.reset(in_call)
        _detach(token)
        _end(span, endpoint, result)
        return result

    traced._traceway_autolog = True  # type: ignore[attr-defined]
    return traced


def traced_async_method(
    original: Callable[..., Any], endpoint: Endpoint, switch: Switch
) -> Callable[..., Any]:
    """The ``async`` counterpart of :func:`traced_method`."""

    @functools.wraps(original)
    async def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not switch.on or _in_call():
            return await original(self, *args, **kwargs)
        started = start_current(endpoint.name, endpoint.span_type, None)
        if started is None:
            return await original(self, *args, **kwargs)
        span, token = started
        _begin(span, endpoint, self, kwargs)
        in_call = _IN_CALL.set(True)
        try:
            result = await original(self, *args, **kwargs)
        except BaseException as exc:
            _IN_CALL.reset(in_call)
            _detach(token)
            _fail(span, exc)
            raise
        _IN_CALL.reset(in_call)
        _detach(token)
        _end(span, endpoint, result)
        return result

    traced._traceway_autolog = True  # type: ignore[attr-defined]
    return traced
