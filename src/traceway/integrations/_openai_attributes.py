"""What an autologged ``openai`` call records: its endpoint, request, response and error.

Everything here reads plain values off the request keyword arguments and off the
client's response objects (pydantic models or, for aggregated streams, dicts);
nothing serialises a whole body.  Bodies become span inputs and outputs through
:class:`DeferredJson`, which the export thread turns into JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import pydantic
from openai._types import NotGiven, Omit  # not both exported by the package before 1.5x

from traceway.tracing import semconv
from traceway.tracing.serialize import dumps
from traceway.tracing.span import LiveSpan, SpanType

__all__ = [
    "CHAT",
    "COMPLETION",
    "EMBEDDING",
    "ERROR_TYPE",
    "HTTP_STATUS",
    "LLM_ERROR_CODE",
    "LLM_ERROR_TYPE",
    "RESPONSE",
    "STREAM",
    "STREAM_ABANDONED",
    "STREAM_CHUNKS",
    "TIME_TO_FIRST_TOKEN_MS",
    "DeferredJson",
    "Endpoint",
    "error_details",
    "plain",
    "record_failure",
    "request_attributes",
    "request_inputs",
    "response_attributes",
]

# Names not in the shared semconv: OpenTelemetry's general ones, then Traceway's own.
ERROR_TYPE: Final = "error.type"
HTTP_STATUS: Final = "http.response.status_code"
STREAM: Final = "traceway.llm.stream"
TIME_TO_FIRST_TOKEN_MS: Final = "traceway.llm.time_to_first_token_ms"
STREAM_CHUNKS: Final = "traceway.llm.stream_chunks"
STREAM_ABANDONED: Final = "traceway.llm.stream_abandoned"
LLM_ERROR_TYPE: Final = "traceway.llm.error_type"
LLM_ERROR_CODE: Final = "traceway.llm.error_code"
_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
_SEED: Final = "gen_ai.request.seed"
_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
_DIMENSIONS: Final = "gen_ai.embeddings.dimension.count"

# Endpoint kinds: how a response (or a stream of it) is read.
CHAT: Final = "chat"
COMPLETION: Final = "completion"
EMBEDDING: Final = "embedding"
RESPONSE: Final = "response"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One traced client method: the span it records and how to read its answers."""

    name: str  # the span name: the method as the user calls it
    span_type: str
    operation: str  # gen_ai.operation.name
    kind: str  # CHAT, COMPLETION, EMBEDDING or RESPONSE

    @classmethod
    def of(cls, name: str, kind: str) -> Endpoint:
        span_type, operation = _KINDS[kind]
        return cls(name, span_type, operation, kind)


_KINDS: Final = {
    CHAT: (SpanType.CHAT_MODEL, "chat"),
    RESPONSE: (SpanType.CHAT_MODEL, "chat"),
    COMPLETION: (SpanType.LLM, "text_completion"),
    EMBEDDING: (SpanType.EMBEDDING, "embeddings"),
}


class DeferredJson:
    """A value whose JSON is produced when the span is exported, off the caller's thread.

    A :class:`~traceway.tracing.span.LiveSpan` keeps its inputs and outputs as
    JSON bytes and its export step only calls ``decode()`` on them, so this
    stands in for those bytes.  Only values the client does not change after the
    call may be deferred: response objects, and request values copied by
    :func:`request_inputs`.
    """

    __slots__ = ("_max_chars", "_value")

    def __init__(self, value: Any, max_chars: int) -> None:
        self._value = value
        self._max_chars = max_chars

    def decode(self) -> str:
        try:
            value = plain(self._value)
        except Exception:
            # Never fail the export batch: ``dumps`` has its own fallbacks for the object.
            value = self._value
        return dumps(value, self._max_chars).decode()


# ``exclude_unset`` leaves out the fields the client's models merely default to None,
# and aliases restore the wire's names, so outputs match what the server sent.
# Serializer warnings (``parsed`` is loosely typed) must not reach the application's
# log; pydantic 1, which openai 1.x allows, neither warns nor takes the argument.
_DUMP_OPTIONS: Final[dict[str, Any]] = {"exclude_unset": True, "by_alias": True}
if not pydantic.VERSION.startswith("1."):
    _DUMP_OPTIONS["warnings"] = False


def plain(value: Any) -> Any:
    """A client model as the JSON the server sent; anything else as it is."""
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and not isinstance(value, type):
        return model_dump(**_DUMP_OPTIONS)
    return value


# Keyword arguments that configure the HTTP call rather than form the request body.
_TRANSPORT_ARGUMENTS: Final = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})
# The client's "not given" markers: the ``stream()`` helpers pass every parameter, unset
# ones as these.
_UNSET: Final = (NotGiven, Omit)
_CLASS_ARGUMENTS: Final = ("response_format", "text_format")


def request_inputs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The request body the call sends, captured cheaply enough for every call.

    The dict is copied and so is every top-level list, because applications
    commonly append the answer to the very ``messages`` list they passed in.
    """
    inputs = {
        key: list(value) if type(value) is list else value
        for key, value in kwargs.items()
        if key not in _TRANSPORT_ARGUMENTS and not isinstance(value, _UNSET)
    }
    extra_body = kwargs.get("extra_body")
    if isinstance(extra_body, Mapping):
        inputs.update(extra_body)
    for key in _CLASS_ARGUMENTS:
        value = inputs.get(key)
        if isinstance(value, type):
            # ``.parse(response_format=Model)``: the class stands for its JSON schema.
            inputs[key] = value.__qualname__
    return inputs


_NUMBER_PARAMETERS: Final = {
    "temperature": semconv.GEN_AI_REQUEST_TEMPERATURE,
    "top_p": semconv.GEN_AI_REQUEST_TOP_P,
    "max_tokens": semconv.GEN_AI_REQUEST_MAX_TOKENS,
    "max_completion_tokens": semconv.GEN_AI_REQUEST_MAX_TOKENS,
    "max_output_tokens": semconv.GEN_AI_REQUEST_MAX_TOKENS,
    "frequency_penalty": _FREQUENCY_PENALTY,
    "presence_penalty": _PRESENCE_PENALTY,
    "seed": _SEED,
    "n": _CHOICE_COUNT,
    "dimensions": _DIMENSIONS,
}


def request_attributes(
    endpoint: Endpoint, kwargs: Mapping[str, Any], provider: str, base_url: Any
) -> dict[str, Any]:
    """GenAI attributes of a request: provider, operation, model, parameters, server host.

    ``base_url`` is the client's URL object; only its host and port are read,
    never its credentials or the client's API key.
    """
    attributes: dict[str, Any] = {
        semconv.GEN_AI_PROVIDER_NAME: provider,
        semconv.GEN_AI_OPERATION_NAME: endpoint.operation,
    }
    # One pass over the few arguments given, not over every parameter there is.
    for key, value in kwargs.items():
        name = _NUMBER_PARAMETERS.get(key)
        if name is not None:
            if isinstance(value, int | float) and not isinstance(value, bool):
                attributes[name] = value
        elif key == "model":
            if isinstance(value, str):
                attributes[semconv.GEN_AI_REQUEST_MODEL] = value
        elif key == "stop":
            if isinstance(value, str):
                attributes[_STOP_SEQUENCES] = [value]
            elif isinstance(value, list | tuple) and all(isinstance(s, str) for s in value):
                attributes[_STOP_SEQUENCES] = list(value)
        elif key == "encoding_format":
            if isinstance(value, str):
                attributes[_ENCODING_FORMATS] = [value]
        elif key == "stream" and value is True:
            attributes[STREAM] = True
    host = getattr(base_url, "host", None)
    if host:
        attributes[semconv.SERVER_ADDRESS] = host
        port = getattr(base_url, "port", None)
        if isinstance(port, int):
            attributes[semconv.SERVER_PORT] = port
    return attributes


def _get(source: Any, name: str) -> Any:
    if isinstance(source, dict):
        return source.get(name)
    return getattr(source, name, None)


def response_attributes(response: Any) -> dict[str, Any]:
    """Model, id, token usage and finish reasons of a response object or aggregated dict."""
    attributes: dict[str, Any] = {}
    model = _get(response, "model")
    if isinstance(model, str):
        attributes[semconv.GEN_AI_RESPONSE_MODEL] = model
    response_id = _get(response, "id")
    if isinstance(response_id, str):
        attributes[semconv.GEN_AI_RESPONSE_ID] = response_id
    usage = _get(response, "usage")
    if usage is not None:
        input_tokens = _get(usage, "prompt_tokens")
        if input_tokens is None:
            input_tokens = _get(usage, "input_tokens")
        output_tokens = _get(usage, "completion_tokens")
        if output_tokens is None:
            output_tokens = _get(usage, "output_tokens")
        if isinstance(input_tokens, int):
            attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
        if isinstance(output_tokens, int):
            attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
    reasons = _finish_reasons(response)
    if reasons:
        attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
    return attributes


def _finish_reasons(response: Any) -> list[str]:
    choices = _get(response, "choices")
    if isinstance(choices, list):
        return [str(r) for r in (_get(c, "finish_reason") for c in choices) if r]
    status = _get(response, "status")
    if isinstance(status, str):
        # Responses API: "completed", or why the answer stopped short.
        reason = _get(_get(response, "incomplete_details"), "reason")
        return [str(reason) if status == "incomplete" and reason else status]
    return []


def error_details(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """The span status message and attributes for a failed call.

    OpenAI's errors carry the HTTP status and the error body's ``message``,
    ``type`` and ``code``; anything else (a timeout from the transport, a bug)
    is named by its class.
    """
    name = type(exc).__name__
    attributes: dict[str, Any] = {ERROR_TYPE: name}
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        attributes[HTTP_STATUS] = status
    error_type = getattr(exc, "type", None)
    if isinstance(error_type, str):
        attributes[LLM_ERROR_TYPE] = error_type
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        attributes[LLM_ERROR_CODE] = code
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message:
        message = str(exc)
    where = f" (HTTP {status})" if isinstance(status, int) else ""
    return f"{name}{where}: {message}", attributes


def record_failure(span: LiveSpan, exc: BaseException) -> None:
    """Mark ``span`` failed by ``exc``: ERROR status, error attributes, exception event."""
    message, attributes = error_details(exc)
    span.set_attributes(attributes)
    span.record_exception(exc)
    span.set_status("ERROR", message)
