"""OTLP trace requests written straight to protobuf bytes.

Building ``opentelemetry-proto`` message objects field by field costs several
Python calls per field and dominated the export thread's time.  The OTLP trace
schema is small and fixed, so this module writes its wire format directly:
varints, fixed64 timestamps and length-delimited sub-messages, in field-number
order and without proto3 default values, which is exactly what
``SerializeToString`` of the equivalent message produces (tests compare both,
byte for byte, over generated spans).  Attribute encodings are cached
(:mod:`traceway.tracing._otlp_values`); the loop over a span's attributes reads
those caches inline, since a Python call per attribute would cost more than the
lookups themselves.

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
from traceway.tracing._otlp_values import (
    DOUBLE,
    SMALL_VARINTS,
    UINT64_MASK,
    delimited,
    double_prefixes,
    int_fields,
    key_value,
    one_str_lists,
    optional,
    span_attribute,
    str_fields,
    text_attribute_writer,
    utf8,
    varint,
)
from traceway.tracing.span import FinishedSpan, LiveSpan, SpanEvent

__all__ = ["encode_live_request", "encode_request"]

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
_SPAN_EVENTS: Final = b"\x5a"
_SPAN_STATUS: Final = b"\x7a"
_EVENT_TIME: Final = b"\x09"
_EVENT_NAME: Final = b"\x12"
_EVENT_ATTRIBUTES: Final = b"\x1a"
_STATUS_MESSAGE: Final = b"\x12"
_STATUS_CODE: Final = b"\x18"

# ScopeSpans.scope: InstrumentationScope(name="traceway"), always the same bytes.
_SCOPE: Final = b"\x0a\x0a\x0a\x08traceway"
_STATUS_CODES: Final = {"UNSET": 0, "OK": 1, "ERROR": 2}
_SMALL: Final = SMALL_VARINTS
# trace_id[1] (16 bytes) and span_id[2] (8 bytes) with their tags, and parent_span_id[4].
_IDS: Final = struct.Struct("<2s16s2s8s").pack
_PARENT_ID: Final = struct.Struct("<2s8s").pack
# The same from integer ids: a trace id as its high and low 64 bits, all big-endian.
_INT_IDS: Final = struct.Struct(">2sQQ2sQ").pack
_INT_IDS_PARENT: Final = struct.Struct(">2sQQ2sQ2sQ").pack
# The kind, then start_time[7] and end_time[8] (fixed64), each with its tag.
_KIND_TIMES: Final = struct.Struct("<2ssQsQ").pack
_FIXED64: Final = struct.Struct("<Q").pack
_inputs_field: Final = text_attribute_writer(semconv.SPAN_INPUTS)
_outputs_field: Final = text_attribute_writer(semconv.SPAN_OUTPUTS)
_SPAN_TYPE: Final = semconv.SPAN_TYPE

_MAX_NAMES: Final = 1024
_MAX_NAME_CHARS: Final = 96
# span name -> its ``Span.name`` field; span type -> its attribute field.
_name_fields: dict[str, bytes] = {}
_type_fields: dict[str, bytes] = {}
# resource attributes -> the encoded ``ResourceSpans.resource`` field.
_resources: dict[tuple[tuple[str, str], ...], bytes] = {}


def _name_field(name: str) -> bytes:
    field = _name_fields.get(name)
    if field is None:
        field = optional(_SPAN_NAME, utf8(name))
        if len(name) <= _MAX_NAME_CHARS:
            if len(_name_fields) >= _MAX_NAMES:
                _name_fields.clear()
            _name_fields[name] = field
    return field


def _type_field(span_type: str) -> bytes:
    field = span_attribute(_SPAN_TYPE, span_type)
    if len(_type_fields) < _MAX_NAMES:
        _type_fields[span_type] = field
    return field


def _kind_times(start: int, end: int) -> bytes:
    # proto3 leaves a zero out.
    return b"".join(
        (
            _SPAN_KIND_INTERNAL,
            _SPAN_START + _FIXED64(start) if start else b"",
            _SPAN_END + _FIXED64(end) if end else b"",
        )
    )


def _event(event: SpanEvent) -> bytes:
    parts = [_EVENT_TIME + _FIXED64(event.timestamp_ns)] if event.timestamp_ns else []
    if event.name:
        parts.append(delimited(_EVENT_NAME, utf8(event.name)))
    for key, value in event.attributes.items():
        if value is not None:
            parts.append(key_value(_EVENT_ATTRIBUTES, key, value))
    return delimited(_SPAN_EVENTS, b"".join(parts))


def _status(code_name: str, message: str) -> bytes:
    payload = delimited(_STATUS_MESSAGE, utf8(message)) if message else b""
    code = _STATUS_CODES.get(code_name, 0)
    if code:
        payload += _STATUS_CODE + _SMALL[code]
    return delimited(_SPAN_STATUS, payload)


_OK_STATUS: Final = _status("OK", "")


def _span_field(
    ids: bytes,
    name: str,
    start: int,
    end: int,
    attributes: Mapping[str, Any],
    span_type: str,
    inputs: bytes | None,
    outputs: bytes | None,
    events: Sequence[SpanEvent] | None,
    status: str,
    status_message: str,
) -> bytes:
    """One ``ScopeSpans.spans`` field: the encoded ``Span`` with its tag and length."""
    try:
        name_field = _name_fields[name]
    except KeyError:
        name_field = _name_field(name)
    if start and end:
        times = _KIND_TIMES(_SPAN_KIND_INTERNAL, _SPAN_START, start, _SPAN_END, end)
    else:
        times = _kind_times(start, end)
    parts = [ids, name_field, times]
    append = parts.append
    str_values = str_fields
    int_values = int_fields
    prefixes = double_prefixes
    pack_double = DOUBLE
    for key, value in attributes.items():
        # The common cases inline, as subscripts (no call); a KeyError is a cache miss.
        cls = type(value)
        try:
            if cls is str:
                field = str_values[key][value]
            elif cls is int:
                field = int_values[key][value]
            elif cls is float:
                field = prefixes[key] + pack_double(value)
            elif value is None:
                continue
            elif cls is list and len(value) == 1 and type(value[0]) is str:
                field = one_str_lists[key][value[0]]
            else:
                field = span_attribute(key, value)
        except KeyError:
            field = span_attribute(key, value)
        append(field)
    try:
        append(_type_fields[span_type])
    except KeyError:
        append(_type_field(span_type))
    if inputs is not None:
        append(_inputs_field(inputs))
    if outputs is not None:
        append(_outputs_field(outputs))
    if events:
        for event in events:
            append(_event(event))
    if status != "UNSET":
        append(
            _OK_STATUS if status == "OK" and not status_message else _status(status, status_message)
        )
    body = b"".join(parts)
    size = len(body)
    return _SCOPE_SPANS_SPANS + (_SMALL[size] if size < 0x80 else varint(size)) + body


def _span(span: FinishedSpan) -> bytes:
    trace_id = bytes.fromhex(span.trace_id)
    span_id = bytes.fromhex(span.span_id)
    if len(trace_id) == 16 and len(span_id) == 8:
        ids = _IDS(b"\x0a\x10", trace_id, b"\x12\x08", span_id)
    else:
        ids = optional(_SPAN_TRACE_ID, trace_id) + optional(_SPAN_SPAN_ID, span_id)
    if span.parent_span_id:
        parent_id = bytes.fromhex(span.parent_span_id)
        if len(parent_id) == 8:
            ids += _PARENT_ID(b"\x22\x08", parent_id)
        else:
            ids += optional(_SPAN_PARENT_ID, parent_id)
    inputs = span.inputs
    outputs = span.outputs
    return _span_field(
        ids,
        span.name,
        span.start_time_ns,
        span.end_time_ns,
        span.attributes,
        span.span_type,
        utf8(inputs) if inputs is not None else None,
        utf8(outputs) if outputs is not None else None,
        span.events,
        span.status,
        span.status_message,
    )


def _live_span(span: LiveSpan) -> bytes:
    trace_id = span._trace_id
    parent_id = span._parent_id
    if parent_id:
        ids = _INT_IDS_PARENT(
            b"\x0a\x10",
            trace_id >> 64,
            trace_id & UINT64_MASK,
            b"\x12\x08",
            span._span_id,
            b"\x22\x08",
            parent_id,
        )
    else:
        ids = _INT_IDS(
            b"\x0a\x10", trace_id >> 64, trace_id & UINT64_MASK, b"\x12\x08", span._span_id
        )
    inputs = span._inputs
    outputs = span._outputs
    return _span_field(
        ids,
        span.name,
        span._start_ns,
        span._end_ns,
        span._attributes,
        span.span_type,
        inputs if inputs is None or inputs.isascii() else _valid_utf8(inputs),
        outputs if outputs is None or outputs.isascii() else _valid_utf8(outputs),
        span._events,
        span._status,
        span._status_message,
    )


def _valid_utf8(data: bytes) -> bytes:
    # Recorded as raw bytes (orjson.Fragment): protobuf strings must be valid UTF-8.
    return data.decode(errors="replace").encode()


def _resource_field(attributes: Mapping[str, Any]) -> bytes:
    # Cached only when every value is a string: 1 == True == 1.0 as dict keys.
    cache_key = None
    field = None
    if all(type(v) is str for v in attributes.values()):
        cache_key = tuple(attributes.items())
        field = _resources.get(cache_key)
    if field is None:
        resource = b"".join(
            [key_value(_RESOURCE_ATTRIBUTES, k, v) for k, v in attributes.items() if v is not None]
        )
        # An empty Resource is left out, as protobuf leaves out unset sub-messages.
        field = delimited(_RESOURCE_SPANS_RESOURCE, resource) if resource else b""
        if cache_key is not None:
            if len(_resources) >= _MAX_NAMES:
                _resources.clear()
            _resources[cache_key] = field
    return field


def _request(span_fields: list[bytes], resource_attributes: Mapping[str, Any]) -> bytes:
    """The request around ``span_fields`` (from :func:`_span_field`)."""
    span_fields.insert(0, _SCOPE)
    scope_spans_size = sum(map(len, span_fields))
    resource = _resource_field(resource_attributes)
    scope_spans_header = _RESOURCE_SPANS_SCOPE_SPANS + varint(scope_spans_size)
    resource_spans_size = len(resource) + len(scope_spans_header) + scope_spans_size
    # The spans are copied once, here; only the headers above were built separately.
    span_fields[0:0] = (
        _REQUEST_RESOURCE_SPANS,
        varint(resource_spans_size),
        resource,
        scope_spans_header,
    )
    return b"".join(span_fields)


def encode_request(spans: Sequence[FinishedSpan], resource_attributes: Mapping[str, Any]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` holding ``spans`` under one resource."""
    return _request(list(map(_span, spans)), resource_attributes)


def encode_live_request(spans: Sequence[LiveSpan], resource_attributes: Mapping[str, Any]) -> bytes:
    """:func:`encode_request` for ended spans that no hook needs as :class:`FinishedSpan`."""
    return _request(list(map(_live_span, spans)), resource_attributes)
