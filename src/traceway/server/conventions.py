"""Attribute conventions: one OpenTelemetry span's pieces to a :class:`SpanRecord`.

Traces reach the server from Traceway's SDK and from other SDKs, each spelling
the same facts differently.  Every field is taken from the first convention that
gives it a usable value, in this order:

1. Traceway's own ``traceway.*`` attributes (:mod:`traceway.tracing.semconv`);
2. MLflow's (``mlflow.spanType``, ``mlflow.spanInputs``, ... - JSON-encoded);
3. OpenInference's (``openinference.span.kind``, ``input.value``, ``llm.*``);
4. the OpenTelemetry GenAI semantic conventions (``gen_ai.*``).

Odd values (wrong types, bad JSON) never raise: a field that cannot be read is
left empty and the next convention is tried.  Attributes that only carry payload
already copied to a field (inputs, outputs, trace tags, metadata and previews)
are dropped from ``attributes``; everything else is kept, with the values of
secret-looking keys replaced by ``"[REDACTED]"``.

Example::

    >>> record = span_record(
    ...     trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331",
    ...     parent_span_id=None, name="chat", start_time_ns=1, end_time_ns=2,
    ...     status_code=1, status_message="",
    ...     attributes={"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 3},
    ...     events=[])
    >>> record.span_type, record.input_tokens, record.total_tokens, record.status
    ('CHAT_MODEL', 3, 3, 'OK')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

import orjson

from traceway.store.records import STATUS_ERROR, STATUS_OK, STATUS_UNSET, SpanRecord
from traceway.tracing import semconv as sc

__all__ = ["REDACTED", "SPAN_TYPES", "is_secret_key", "span_record"]

REDACTED: Final = "[REDACTED]"

#: Every span type a stored span can have.
SPAN_TYPES: Final = frozenset(
    (
        "LLM",
        "CHAT_MODEL",
        "CHAIN",
        "AGENT",
        "TOOL",
        "RETRIEVER",
        "EMBEDDING",
        "RERANKER",
        "PARSER",
        "MEMORY",
        "GUARDRAIL",
        "CACHE",
        "GATEWAY",
        "UNKNOWN",
    )
)
_UNKNOWN: Final = "UNKNOWN"

# Names read here and nowhere else, so they are not part of the shared semconv.
_MLFLOW_SESSION: Final = "mlflow.trace.session"
_MLFLOW_USER: Final = "mlflow.trace.user"
_MLFLOW_METADATA: Final = (
    (sc.METADATA_SESSION_ID, _MLFLOW_SESSION),
    (sc.METADATA_USER_ID, _MLFLOW_USER),
)
_OPENINFERENCE_INPUT_MIME: Final = "input.mime_type"
_OPENINFERENCE_OUTPUT_MIME: Final = "output.mime_type"
_GEN_AI_USAGE_PROMPT_TOKENS: Final = "gen_ai.usage.prompt_tokens"
_GEN_AI_USAGE_COMPLETION_TOKENS: Final = "gen_ai.usage.completion_tokens"
_GEN_AI_USAGE_TOTAL_TOKENS: Final = "gen_ai.usage.total_tokens"

# OpenInference kinds are spelled like our types, except these pipeline steps that
# have no closer type; the original kind stays in the attributes, so nothing is lost.
_TYPE_ALIASES: Final = {"EVALUATOR": "CHAIN", "PROMPT": "CHAIN"}
_GEN_AI_OPERATIONS: Final = {
    "chat": "CHAT_MODEL",
    "text_completion": "LLM",
    "generate_content": "LLM",
    "embeddings": "EMBEDDING",
    "execute_tool": "TOOL",
    "invoke_agent": "AGENT",
    "create_agent": "AGENT",
}

_SPAN_TYPE_KEYS: Final = (sc.SPAN_TYPE, sc.MLFLOW_SPAN_TYPE, sc.OPENINFERENCE_SPAN_KIND)
_INPUT_TOKEN_KEYS: Final = (
    sc.OPENINFERENCE_TOKEN_PROMPT,
    sc.GEN_AI_USAGE_INPUT_TOKENS,
    _GEN_AI_USAGE_PROMPT_TOKENS,
)
_OUTPUT_TOKEN_KEYS: Final = (
    sc.OPENINFERENCE_TOKEN_COMPLETION,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS,
    _GEN_AI_USAGE_COMPLETION_TOKENS,
)
_TOTAL_TOKEN_KEYS: Final = (sc.OPENINFERENCE_TOKEN_TOTAL, _GEN_AI_USAGE_TOTAL_TOKENS)
# The response names the model that actually answered, so it wins over the request.
_MODEL_KEYS: Final = (
    sc.OPENINFERENCE_MODEL_NAME,
    sc.GEN_AI_RESPONSE_MODEL,
    sc.GEN_AI_REQUEST_MODEL,
)
_PROVIDER_KEYS: Final = (sc.OPENINFERENCE_PROVIDER, sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_SYSTEM)
_OPENINFERENCE_INPUT: Final = (sc.OPENINFERENCE_INPUT_VALUE, _OPENINFERENCE_INPUT_MIME)
_OPENINFERENCE_OUTPUT: Final = (sc.OPENINFERENCE_OUTPUT_VALUE, _OPENINFERENCE_OUTPUT_MIME)
_NO_USAGE: Final[Mapping[str, Any]] = MappingProxyType({})

#: Attributes whose whole value is moved into a field of the record.
_PAYLOAD_KEYS: Final = frozenset(
    {
        sc.SPAN_INPUTS,
        sc.SPAN_OUTPUTS,
        sc.MLFLOW_SPAN_INPUTS,
        sc.MLFLOW_SPAN_OUTPUTS,
        sc.OPENINFERENCE_INPUT_VALUE,
        sc.OPENINFERENCE_OUTPUT_VALUE,
        sc.TRACE_TAGS,
        sc.TRACE_METADATA,
        sc.TRACE_REQUEST_PREVIEW,
        sc.TRACE_RESPONSE_PREVIEW,
    }
)
#: Every attribute :func:`span_record` reads; a span with none of them needs no mapping.
_MAPPED_KEYS: Final = _PAYLOAD_KEYS | {
    sc.COST_USD,
    sc.MLFLOW_CHAT_TOKEN_USAGE,
    _MLFLOW_SESSION,
    _MLFLOW_USER,
    sc.GEN_AI_OPERATION_NAME,
    *_SPAN_TYPE_KEYS,
    *_INPUT_TOKEN_KEYS,
    *_OUTPUT_TOKEN_KEYS,
    *_TOTAL_TOKEN_KEYS,
    *_MODEL_KEYS,
    *_PROVIDER_KEYS,
}

# "x-api-key" is covered by "api-key".
_SECRET_SUFFIXES: Final = ("authorization", "api_key", "api-key", "password", "secret", "token")
# Singular token counts some instrumentations use; they end in "token" but hold numbers.
_TOKEN_COUNT_SUFFIXES: Final = tuple(
    f"{word}_token" for word in ("input", "output", "prompt", "completion", "total", "max")
)
_STATUSES: Final = {0: STATUS_UNSET, 1: STATUS_OK, 2: STATUS_ERROR}

# What to do with an attribute, by key.  Keys repeat across nearly every span, so
# the decision is remembered; the bound keeps hostile key names from growing it.
_KEEP: Final = 0
_KEEP_MAPPED: Final = 1
_DROP: Final = 2
_REDACT: Final = 3
_KEY_ACTIONS: dict[str, int] = {}
_KEY_ACTIONS_LIMIT: Final = 4096
#: Counts beyond a signed 64-bit integer are not counts anyone produced.
_MAX_COUNT: Final = 2**63 - 1


def span_record(
    *,
    trace_id: str,
    span_id: str,
    parent_span_id: str | None,
    name: str,
    start_time_ns: int,
    end_time_ns: int,
    status_code: int,
    status_message: str,
    attributes: dict[str, Any],
    events: list[dict[str, Any]],
) -> SpanRecord:
    """Build the normalised record of one span from its OpenTelemetry pieces.

    ``status_code`` is OpenTelemetry's (0 unset, 1 ok, 2 error).  ``attributes``
    and ``events`` are not modified.  Never raises on odd attribute values.
    """
    kept, mapped = _kept_attributes(attributes)
    status = _STATUSES.get(status_code, STATUS_UNSET)
    redacted_events = [_redacted_event(event) for event in events] if events else []
    if not mapped:
        # Most spans from generic instrumentation (HTTP, DB, ...) carry none of
        # the attributes read below; skip the lookups for them.
        return SpanRecord(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent_span_id,
            name=name,
            span_type=_UNKNOWN,
            start_time_ns=start_time_ns,
            end_time_ns=end_time_ns,
            status=status,
            status_message=status_message,
            attributes=kept,
            events=redacted_events,
        )
    get = attributes.get

    usage_value = get(sc.MLFLOW_CHAT_TOKEN_USAGE)
    usage = _as_object(usage_value) if usage_value is not None else _NO_USAGE
    input_tokens = _first_count(usage.get("input_tokens"), get, _INPUT_TOKEN_KEYS)
    output_tokens = _first_count(usage.get("output_tokens"), get, _OUTPUT_TOKEN_KEYS)
    total_tokens = _first_count(usage.get("total_tokens"), get, _TOTAL_TOKEN_KEYS)
    if total_tokens is None and (input_tokens is not None or output_tokens is not None):
        total_tokens = (input_tokens or 0) + (output_tokens or 0)

    tags_value = get(sc.TRACE_TAGS)
    metadata_value = get(sc.TRACE_METADATA)
    metadata = _as_str_map(metadata_value) if metadata_value is not None else {}
    for key, source in _MLFLOW_METADATA:
        source_value = get(source)
        if source_value is not None and key not in metadata:
            text = _as_text(_unquote(source_value))
            if text:
                metadata[key] = text
    cost = get(sc.COST_USD)
    request_preview = get(sc.TRACE_REQUEST_PREVIEW)
    response_preview = get(sc.TRACE_RESPONSE_PREVIEW)

    return SpanRecord(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_span_id,
        name=name,
        span_type=_span_type(get),
        start_time_ns=start_time_ns,
        end_time_ns=end_time_ns,
        status=status,
        status_message=status_message,
        attributes=kept,
        events=redacted_events,
        inputs=_payload(get, sc.SPAN_INPUTS, sc.MLFLOW_SPAN_INPUTS, _OPENINFERENCE_INPUT),
        outputs=_payload(get, sc.SPAN_OUTPUTS, sc.MLFLOW_SPAN_OUTPUTS, _OPENINFERENCE_OUTPUT),
        model=_first_text(get, _MODEL_KEYS),
        provider=_first_text(get, _PROVIDER_KEYS),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total_tokens,
        cost_usd=_as_cost(cost) if cost is not None else None,
        trace_tags=_as_str_map(tags_value) if tags_value is not None else {},
        trace_metadata=metadata,
        request_preview=_as_text(request_preview) if request_preview is not None else None,
        response_preview=_as_text(response_preview) if response_preview is not None else None,
    )


def is_secret_key(key: str) -> bool:
    """Whether an attribute named ``key`` may hold a credential (case-insensitive)."""
    lowered = key.lower()
    return lowered.endswith(_SECRET_SUFFIXES) and not lowered.endswith(_TOKEN_COUNT_SUFFIXES)


def _span_type(get: Callable[[str], Any]) -> str:
    # An explicit UNKNOWN carries no information, so a later convention may still say more.
    own, mlflow, openinference = _SPAN_TYPE_KEYS
    for candidate in (get(own), _unquote(get(mlflow)), get(openinference)):
        if isinstance(candidate, str):
            upper = candidate.upper()
            upper = _TYPE_ALIASES.get(upper, upper)
            if upper in SPAN_TYPES and upper != _UNKNOWN:
                return upper
    operation = get(sc.GEN_AI_OPERATION_NAME)
    if isinstance(operation, str) and (mapped := _GEN_AI_OPERATIONS.get(operation.lower())):
        return mapped
    return _UNKNOWN


def _kept_attributes(attributes: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The attributes to store, and whether any of them is one this module maps."""
    kept: dict[str, Any] = {}
    mapped = False
    actions = _KEY_ACTIONS
    for key, value in attributes.items():
        action = actions.get(key)
        if action is None:
            action = _key_action(key)
        if action == _KEEP:
            kept[key] = _redacted_map(value) if type(value) is dict else value
        elif action == _KEEP_MAPPED:
            kept[key] = value
            mapped = True
        elif action == _DROP:
            mapped = True
        else:
            kept[key] = REDACTED
    return kept, mapped


def _key_action(key: str) -> int:
    if key in _PAYLOAD_KEYS:
        action = _DROP
    elif key in _MAPPED_KEYS:
        action = _KEEP_MAPPED
    elif is_secret_key(key):
        action = _REDACT
    else:
        action = _KEEP
    if len(_KEY_ACTIONS) >= _KEY_ACTIONS_LIMIT:
        _KEY_ACTIONS.clear()
    _KEY_ACTIONS[key] = action
    return action


def _redacted_map(value: dict[str, Any]) -> dict[str, Any]:
    # A key-value list attribute (e.g. a headers map) can hide credentials one level down.
    result: dict[str, Any] = {}
    for key, item in value.items():
        action = _KEY_ACTIONS.get(key)
        if action is None:
            action = _key_action(key)
        if action == _REDACT:
            result[key] = REDACTED
        else:
            result[key] = _redacted_map(item) if type(item) is dict else item
    return result


def _redacted_event(event: dict[str, Any]) -> dict[str, Any]:
    attributes = event.get("attributes")
    if not isinstance(attributes, dict) or not attributes:
        return event
    return {**event, "attributes": _redacted_map(attributes)}


def _payload(
    get: Callable[[str], Any], own: str, mlflow: str, openinference: tuple[str, str]
) -> str | None:
    """JSON text of the first payload given, trying each convention in order."""
    for key in (own, mlflow):
        value = get(key)
        if value is not None:
            return _json_text(value)
    value_key, mime_key = openinference
    value = get(value_key)
    if value is None:
        return None
    if not isinstance(value, str):
        return _dumps(value)
    mime_type = get(mime_key)
    if mime_type == "application/json":
        return _json_text(value)
    if mime_type is None and value.lstrip().startswith(("{", "[")):
        # Without a mime type OpenInference means plain text, but some
        # instrumentations omit it for JSON; only a JSON object or array is
        # taken as such, so an answer like "4" stays the text it was.
        return _json_text(value)
    return _dumps(value)


def _json_text(value: Any) -> str:
    """``value`` as JSON text: kept when it is JSON text already, else encoded."""
    if isinstance(value, str):
        try:
            orjson.loads(value)
        except orjson.JSONDecodeError:
            return _dumps(value)
        return value
    return _dumps(value)


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError: a value JSON cannot hold, e.g. a lone surrogate
        text = value if isinstance(value, str) else repr(value)
        return orjson.dumps(text.encode("utf-8", "replace").decode("utf-8")).decode()


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _unquote(value: Any) -> Any:
    """Undo MLflow's JSON encoding of a string attribute (``'"CHAT_MODEL"'``)."""
    if isinstance(value, str) and value.startswith('"'):
        decoded = _loads(value)
        if isinstance(decoded, str):
            return decoded
    return value


def _as_object(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = _loads(value)
    return value if isinstance(value, dict) else {}


def _as_str_map(value: Any) -> dict[str, str]:
    """A JSON object (text, or already a mapping) with every value as a string.

    Tags and metadata are stored and shown like attributes, so they are redacted alike.
    """
    mapping = _as_object(value)
    return {
        str(key): REDACTED
        if is_secret_key(str(key))
        else (item if isinstance(item, str) else _dumps(item))
        for key, item in mapping.items()
    }


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return _dumps(value)


def _first_text(get: Callable[[str], Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _as_count(value: Any) -> int | None:
    """A non-negative integer count, or ``None`` when ``value`` is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = int(value) if value.is_integer() else None
    elif isinstance(value, str):
        stripped = value.strip()
        # The length bound keeps int() clear of its digit limit on hostile input.
        ok = stripped.isascii() and stripped.isdigit() and len(stripped) <= 19
        value = int(stripped) if ok else None
    if isinstance(value, int) and 0 <= value <= _MAX_COUNT:
        return value
    return None


def _first_count(first: Any, get: Callable[[str], Any], keys: tuple[str, ...]) -> int | None:
    """The first usable count: ``first``, then the attributes named by ``keys``."""
    if first is not None and (count := _as_count(first)) is not None:
        return count
    for key in keys:
        value = get(key)
        if value is not None and (count := _as_count(value)) is not None:
            return count
    return None


def _as_cost(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return float(value)
    return None
