"""OTLP trace requests written straight to protobuf bytes.

Building ``opentelemetry-proto`` message objects field by field costs several
Python calls per field and dominated the export thread's time.  The OTLP trace
schema is small and fixed, so this module writes its wire format directly:
varints, fixed64 timestamps and length-delimited sub-messages, in field-number
order and without proto3 default values, which is exactly what
``SerializeToString`` of the equivalent message produces (tests compare both,
byte for byte, over generated spans).

Attribute key/value pairs repeat from span to span (span types, model names,
providers, routes, status codes), so the encoded ``attributes`` field of a short
string, integer or boolean value is cached per key, and a double's is built
from a cached prefix.  Every cache is bounded; the hot loop in :func:`_span`
looks them up inline, because a Python call per attribute would cost more than
the encoding itself.

Schema used (``opentelemetry/proto/...``; field numbers in brackets)::

    ExportTraceServiceRequest: resource_spans[1]
    ResourceSpans: resource[1] scope_spans[2]      Resource: attributes[1]
    ScopeSpans: scope[1] spans[2]                  InstrumentationScope: name[1]
    Span: trace_id[1] span_id[2] parent_span_id[4] name[5] kind[6]
          start_time_unix_nano[7] end_time_unix_nano[8] attributes[9] events[11] status[15]
    Span.Event: time_unix_nano[1] name[2] attributes[3]
    Status: message[2] code[3]                     KeyValue: key[1] value[2]
    AnyValue: string[1] bool[2] int[3] double[4] array[5] bytes[7]
    ArrayValue: values[1]
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

from traceway.tracing import semconv
from traceway.tracing.serialize import to_json
from traceway.tracing.span import FinishedSpan, LiveSpan, SpanEvent

__all__ = ["encode_live_request", "encode_request"]

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_UINT64_MASK: Final = 2**64 - 1

# Tags: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited).
_REQUEST_RESOURCE_SPANS: Final = b"\x0a"
_RESOURCE_SPANS_RESOURCE: Final = b"\x0a"
_RESOURCE_SPANS_SCOPE_SPANS: Final = b"\x12"
_RESOURCE_ATTRIBUTES: Final = b"\x0a"
_SCOPE_SPANS_SPANS: Final = b"\x12"
_SPAN_TRACE_ID: Final = b"\x0a"
_SPAN_SPAN_ID: Final = b"\x12"
_SPAN_PARENT_ID: Final = b"\x22"
_SPAN_NAME: Final = b"\x2a"
_SPAN_KIND_INTERNAL: Final = b"\x30\x01"
_SPAN_START: Final = b"\x39"
_SPAN_END: Final = b"\x41"
_SPAN_ATTRIBUTES: Final = b"\x4a"
_SPAN_EVENTS: Final = b"\x5a"
_SPAN_STATUS: Final = b"\x7a"
_EVENT_TIME: Final = b"\x09"
_EVENT_NAME: Final = b"\x12"
_EVENT_ATTRIBUTES: Final = b"\x1a"
_STATUS_MESSAGE: Final = b"\x12"
_STATUS_CODE: Final = b"\x18"
_KEY_VALUE_KEY: Final = b"\x0a"
_KEY_VALUE_VALUE: Final = b"\x12"
_ANY_STRING: Final = b"\x0a"
_ANY_BOOL: Final = b"\x10"
_ANY_INT: Final = b"\x18"
_ANY_DOUBLE: Final = b"\x21"
_ANY_ARRAY: Final = b"\x2a"
_ANY_BYTES: Final = b"\x3a"
_ARRAY_VALUES: Final = b"\x0a"

# ScopeSpans.scope: InstrumentationScope(name="traceway"), always the same bytes.
_SCOPE: Final = b"\x0a\x0a\x0a\x08traceway"
_STATUS_CODES: Final = {"UNSET": 0, "OK": 1, "ERROR": 2}
# trace_id and span_id of the usual sizes, with their tags, in one call.
_IDS: Final = struct.Struct("<2s16s2s8s").pack
_PARENT_ID: Final = struct.Struct("<2s8s").pack
# The same from integer ids: a trace id as its high and low 64 bits, all big-endian.
_IDS_INTS: Final = struct.Struct(">2sQQ2sQ").pack
_IDS_PARENT: Final = struct.Struct(">2sQQ2sQ2sQ").pack
_TIMES: Final = struct.Struct("<sQsQ").pack
_FIXED64: Final = struct.Struct("<Q").pack
_DOUBLE: Final = struct.Struct("<d").pack

#: One-byte varints, indexed by value.
_SMALL: Final = tuple(bytes((i,)) for i in range(128))

# Caches, each bounded: emptied when it reaches _MAX_ENTRIES keys, and at most
# _MAX_VALUES_PER_KEY values are kept per key (so ids or token counts cannot grow them).
_MAX_ENTRIES: Final = 1024
_MAX_VALUES_PER_KEY: Final = 64
_MAX_CACHED_CHARS: Final = 96
# key -> value -> the encoded ``Span.attributes`` field.
_str_fields: dict[str, dict[str, bytes]] = {}
_int_fields: dict[str, dict[int, bytes]] = {}
# key -> the only item of a one-string list -> the encoded field.
_one_str_lists: dict[str, dict[str, bytes]] = {}
# key -> ``Span.attributes`` field of a double (a boolean) up to its 8 value bytes (1 byte).
_double_prefixes: dict[str, bytes] = {}
_bool_prefixes: dict[str, bytes] = {}
# key -> its ``KeyValue.key`` field.
_key_fields: dict[str, bytes] = {}
# span name -> its ``Span.name`` field.
_name_fields: dict[str, bytes] = {}


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        # Lone surrogates cannot travel as protobuf strings; keep the rest of the text.
        return text.encode(errors="replace")


def _delimited(tag: bytes, payload: bytes) -> bytes:
    size = len(payload)
    return tag + (_SMALL[size] if size < 0x80 else _varint(size)) + payload


def _optional(tag: bytes, payload: bytes) -> bytes:
    """A proto3 bytes or string field: left out when empty."""
    return _delimited(tag, payload) if payload else b""


def _bounded(cache: dict[str, Any]) -> dict[str, Any]:
    if len(cache) >= _MAX_ENTRIES:
        cache.clear()
    return cache


def _key_field(key: str) -> bytes:
    field = _key_fields.get(key)
    if field is None:
        field = _bounded(_key_fields)[key] = _optional(_KEY_VALUE_KEY, _utf8(key))
    return field


def _any_value(value: Any) -> bytes | None:
    """The encoded ``AnyValue`` for ``value``; ``None`` for an empty array (left unset)."""
    if isinstance(value, str):
        return _delimited(_ANY_STRING, _utf8(value))
    if isinstance(value, bool):
        return _ANY_BOOL + _SMALL[value]
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return _ANY_INT + _varint(value & _UINT64_MASK)
        return _delimited(_ANY_STRING, str(value).encode())
    if isinstance(value, float):
        return _ANY_DOUBLE + _DOUBLE(value)
    if isinstance(value, bytes):
        return _delimited(_ANY_BYTES, value)
    if isinstance(value, list | tuple) and all(
        isinstance(v, str | bool | int | float) for v in value
    ):
        if not value:
            return None
        items = [_delimited(_ARRAY_VALUES, _any_value(v) or b"") for v in value]
        return _delimited(_ANY_ARRAY, b"".join(items))
    # Maps and mixed values travel as JSON text, which every backend can show.
    return _delimited(_ANY_STRING, _utf8(to_json(value)))


def _key_value(tag: bytes, key: str, value: Any) -> bytes:
    """One ``KeyValue`` as the length-delimited field ``tag`` of its parent."""
    any_value = _any_value(value)
    payload = _key_field(key)
    if any_value is not None:
        payload += _delimited(_KEY_VALUE_VALUE, any_value)
    return _delimited(tag, payload)


def _text_attribute(key_field: bytes, data: bytes) -> bytes:
    """A string ``Span.attributes`` field from UTF-8 ``data``: long text, never cached."""
    size = _varint(len(data))
    any_size = 1 + len(size) + len(data)
    any_size_bytes = _varint(any_size)
    kv_size = len(key_field) + 1 + len(any_size_bytes) + any_size
    return b"".join(
        (
            _SPAN_ATTRIBUTES,
            _varint(kv_size),
            key_field,
            _KEY_VALUE_VALUE,
            any_size_bytes,
            _ANY_STRING,
            size,
            data,
        )
    )


def _span_attribute(key: str, value: Any) -> bytes:
    """``Span.attributes`` field for ``value``, through the caches where they apply."""
    cls = type(value)
    if cls is str:
        if len(value) > _MAX_CACHED_CHARS:
            return _text_attribute(_key_field(key), _utf8(value))
        str_values = _str_fields.get(key)
        if str_values is None:
            str_values = _bounded(_str_fields)[key] = {}
        field = _key_value(_SPAN_ATTRIBUTES, key, value)
        if len(str_values) < _MAX_VALUES_PER_KEY:
            str_values[value] = field
        return field
    if cls is int:
        int_values = _int_fields.get(key)
        if int_values is None:
            int_values = _bounded(_int_fields)[key] = {}
        field = _key_value(_SPAN_ATTRIBUTES, key, value)
        if len(int_values) < _MAX_VALUES_PER_KEY:
            int_values[value] = field
        return field
    if cls is float:
        prefix = _double_prefixes.get(key)
        if prefix is None:
            prefix = _key_value(_SPAN_ATTRIBUTES, key, 0.0)[:-8]
            _bounded(_double_prefixes)[key] = prefix
        return prefix + _DOUBLE(value)
    if cls is bool:
        prefix = _bool_prefixes.get(key)
        if prefix is None:
            prefix = _key_value(_SPAN_ATTRIBUTES, key, False)[:-1]
            _bounded(_bool_prefixes)[key] = prefix
        return prefix + _SMALL[value]
    if (cls is list or cls is tuple) and len(value) == 1 and type(value[0]) is str:
        # A one-string list, such as finish reasons ["stop"].
        lists = _one_str_lists.get(key)
        if lists is None:
            lists = _bounded(_one_str_lists)[key] = {}
        cached: bytes | None = lists.get(value[0])
        if cached is not None:
            return cached
        field = _key_value(_SPAN_ATTRIBUTES, key, value)
        if len(lists) < _MAX_VALUES_PER_KEY:
            lists[value[0]] = field
        return field
    return _key_value(_SPAN_ATTRIBUTES, key, value)


def _event(event: SpanEvent) -> bytes:
    parts = [_EVENT_TIME + _FIXED64(event.timestamp_ns)] if event.timestamp_ns else []
    if event.name:
        parts.append(_delimited(_EVENT_NAME, _utf8(event.name)))
    parts += [
        _key_value(_EVENT_ATTRIBUTES, k, v) for k, v in event.attributes.items() if v is not None
    ]
    return _delimited(_SPAN_EVENTS, b"".join(parts))


def _status(code_name: str, message: str) -> bytes:
    payload = _delimited(_STATUS_MESSAGE, _utf8(message)) if message else b""
    code = _STATUS_CODES.get(code_name, 0)
    if code:
        payload += _STATUS_CODE + _SMALL[code]
    return _delimited(_SPAN_STATUS, payload)


_OK_STATUS: Final = _status("OK", "")
_INPUTS_KEY: Final = _optional(_KEY_VALUE_KEY, semconv.SPAN_INPUTS.encode())
_OUTPUTS_KEY: Final = _optional(_KEY_VALUE_KEY, semconv.SPAN_OUTPUTS.encode())


def _name_field(name: str) -> bytes:
    field = _name_fields.get(name)
    if field is None:
        field = _optional(_SPAN_NAME, _utf8(name))
        if len(name) <= _MAX_CACHED_CHARS:
            _bounded(_name_fields)[name] = field
    return field


def _ids(span: FinishedSpan) -> bytes:
    trace_id = bytes.fromhex(span.trace_id)
    span_id = bytes.fromhex(span.span_id)
    if len(trace_id) == 16 and len(span_id) == 8:
        ids = _IDS(b"\x0a\x10", trace_id, b"\x12\x08", span_id)
    else:
        ids = _optional(_SPAN_TRACE_ID, trace_id) + _optional(_SPAN_SPAN_ID, span_id)
    if span.parent_span_id:
        parent_id = bytes.fromhex(span.parent_span_id)
        if len(parent_id) == 8:
            return ids + _PARENT_ID(b"\x22\x08", parent_id)
        return ids + _optional(_SPAN_PARENT_ID, parent_id)
    return ids


def _times(start: int, end: int) -> bytes:
    if start and end:
        return _TIMES(_SPAN_START, start, _SPAN_END, end)
    # proto3 leaves zero out.
    return (_SPAN_START + _FIXED64(start) if start else b"") + (
        _SPAN_END + _FIXED64(end) if end else b""
    )


def _span_body(
    parts: list[bytes],
    attributes: Mapping[str, Any],
    span_type: str,
    inputs: bytes | None,
    outputs: bytes | None,
    events: Sequence[SpanEvent] | None,
    status: str,
    status_message: str,
) -> bytes:
    """The encoded ``Span``: ``parts`` (ids, name, kind, times) and the fields after them."""
    append = parts.append
    str_fields = _str_fields
    int_fields = _int_fields
    double_prefixes = _double_prefixes
    pack_double = _DOUBLE
    for key, value in attributes.items():
        # The common cases inline: one or two dict lookups and no call.
        cls = type(value)
        if cls is str:
            values = str_fields.get(key)
            field = values.get(value) if values is not None else None
        elif cls is int:
            int_values = int_fields.get(key)
            field = int_values.get(value) if int_values is not None else None
        elif cls is float:
            prefix = double_prefixes.get(key)
            field = prefix + pack_double(value) if prefix is not None else None
        elif value is None:
            continue
        else:
            field = None
        append(field or _span_attribute(key, value))
    types = str_fields.get(semconv.SPAN_TYPE)
    field = types.get(span_type) if types is not None else None
    append(field or _span_attribute(semconv.SPAN_TYPE, span_type))
    if inputs is not None:
        append(_text_attribute(_INPUTS_KEY, inputs))
    if outputs is not None:
        append(_text_attribute(_OUTPUTS_KEY, outputs))
    if events:
        parts += [_event(event) for event in events]
    if status != "UNSET":
        append(
            _OK_STATUS if status == "OK" and not status_message else _status(status, status_message)
        )
    return b"".join(parts)


def _span(span: FinishedSpan) -> bytes:
    """The encoded ``Span`` message of a :class:`FinishedSpan` (without tag and length)."""
    name = span.name
    parts = [
        _ids(span),
        _name_fields.get(name) or _name_field(name),
        _SPAN_KIND_INTERNAL,
        _times(span.start_time_ns, span.end_time_ns),
    ]
    inputs = span.inputs
    outputs = span.outputs
    return _span_body(
        parts,
        span.attributes,
        span.span_type,
        _utf8(inputs) if inputs is not None else None,
        _utf8(outputs) if outputs is not None else None,
        span.events,
        span.status,
        span.status_message,
    )


def _live_span(span: LiveSpan) -> bytes:
    """The same for an ended :class:`LiveSpan`, read without converting it first."""
    trace_id = span._trace_id
    parent_id = span._parent_id
    if parent_id:
        ids = _IDS_PARENT(
            b"\x0a\x10",
            trace_id >> 64,
            trace_id & _UINT64_MASK,
            b"\x12\x08",
            span._span_id,
            b"\x22\x08",
            parent_id,
        )
    else:
        ids = _IDS_INTS(
            b"\x0a\x10", trace_id >> 64, trace_id & _UINT64_MASK, b"\x12\x08", span._span_id
        )
    name = span.name
    parts = [
        ids,
        _name_fields.get(name) or _name_field(name),
        _SPAN_KIND_INTERNAL,
        _times(span._start_ns, span._end_ns),
    ]
    return _span_body(
        parts,
        span._attributes,
        span.span_type,
        _valid_utf8(span._inputs),
        _valid_utf8(span._outputs),
        span._events,
        span._status,
        span._status_message,
    )


def _valid_utf8(data: bytes | None) -> bytes | None:
    if data is None or data.isascii():
        return data
    # Text recorded as raw bytes: protobuf strings must be valid UTF-8.
    return data.decode(errors="replace").encode()


def _request(span_fields: list[bytes], resource_attributes: Mapping[str, Any]) -> bytes:
    """The request around ``span_fields``, each an encoded ``Span`` without tag and length."""
    # Spans are copied once, into the final join; only the headers are computed here.
    parts = [_SCOPE]
    append = parts.append
    for body in span_fields:
        size = len(body)
        append(_SCOPE_SPANS_SPANS + (_SMALL[size] if size < 0x80 else _varint(size)))
        append(body)
    scope_spans_size = sum(map(len, parts))
    resource = b"".join(
        [
            _key_value(_RESOURCE_ATTRIBUTES, k, v)
            for k, v in resource_attributes.items()
            if v is not None
        ]
    )
    # An empty Resource is left out, as protobuf leaves out unset sub-messages.
    resource_field = _delimited(_RESOURCE_SPANS_RESOURCE, resource) if resource else b""
    scope_spans_header = _RESOURCE_SPANS_SCOPE_SPANS + _varint(scope_spans_size)
    resource_spans_size = len(resource_field) + len(scope_spans_header) + scope_spans_size
    parts[0:0] = (
        _REQUEST_RESOURCE_SPANS,
        _varint(resource_spans_size),
        resource_field,
        scope_spans_header,
    )
    return b"".join(parts)


def encode_request(spans: Sequence[FinishedSpan], resource_attributes: Mapping[str, Any]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` holding ``spans`` under one resource."""
    return _request([_span(span) for span in spans], resource_attributes)


def encode_live_request(spans: Sequence[LiveSpan], resource_attributes: Mapping[str, Any]) -> bytes:
    """:func:`encode_request` for ended spans that no hook needs to see as :class:`FinishedSpan`."""
    return _request([_live_span(span) for span in spans], resource_attributes)
