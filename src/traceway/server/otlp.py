"""OTLP/HTTP trace ingest: request bodies to :class:`SpanRecord` values.

Pure functions, no I/O.  :func:`decode_request` takes the body of a
``POST /v1/traces`` (protobuf or OTLP/JSON, optionally gzip) and returns the
valid spans grouped by the experiment their resource names; invalid spans are
counted, not fatal, so the caller can answer with an OTLP partial success
(:func:`encode_partial_success`).

Errors map onto the HTTP answers the OTLP specification asks for::

    UnsupportedMediaType   415  content type or content encoding not understood
    PayloadTooLarge        413  body too large, before or after decompression
    OtlpDecodeError        400  body is not a valid export request (a ValueError)

Example::

    >>> batch = decode_request(b"", content_type="application/x-protobuf",
    ...                        content_encoding=None, max_body_bytes=1 << 20)
    >>> batch.spans_by_experiment, batch.rejected
    ({}, 0)
"""

from __future__ import annotations

import base64
import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from traceway.server.conventions import span_record
from traceway.store.records import SpanRecord
from traceway.tracing.semconv import RESOURCE_EXPERIMENT

__all__ = [
    "JSON_CONTENT_TYPE",
    "PROTOBUF_CONTENT_TYPE",
    "DecodedBatch",
    "OtlpDecodeError",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "decode_request",
    "encode_partial_success",
]

PROTOBUF_CONTENT_TYPE: Final = "application/x-protobuf"
JSON_CONTENT_TYPE: Final = "application/json"

_ZERO_TRACE_ID: Final = bytes(16)
_ZERO_SPAN_ID: Final = bytes(8)
_BAD_TRACE_ID: Final = "trace_id must be 16 bytes (32 hex characters) and not all zero"
_BAD_SPAN_ID: Final = "span_id must be 8 bytes (16 hex characters) and not all zero"
_BAD_PARENT_ID: Final = "parent_span_id must be empty or 8 bytes (16 hex characters)"
# Window sizes for zlib: gzip framing, zlib framing (what HTTP calls "deflate").
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
_DEFLATE_WBITS: Final = zlib.MAX_WBITS
# A 1-byte id fails every id's length check: an unreadable id rejects its span only.
_INVALID_ID: Final = b"\xff"
_UINT64_MAX: Final = 2**64 - 1
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
#: Attribute values nested deeper than this are refused (the store's JSON has limits too).
_MAX_VALUE_DEPTH: Final = 64
_STATUS_CODE_NAMES: Final = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


class OtlpDecodeError(ValueError):
    """The body is not a valid export request; the message suits a 400 answer."""


class UnsupportedMediaType(Exception):
    """The content type or content encoding is not one OTLP/HTTP allows (415)."""


class PayloadTooLarge(Exception):
    """The body exceeds the size limit, before or after decompression (413)."""


@dataclass(slots=True)
class DecodedBatch:
    """The spans of one export request, grouped by the experiment their resource names.

    The key is the ``traceway.experiment`` resource attribute, or ``None`` when a
    resource does not name one.  ``rejected`` counts invalid spans left out, and
    ``rejection_message`` names the first reason (empty when none were rejected).
    """

    spans_by_experiment: dict[str | None, list[SpanRecord]] = field(default_factory=dict)
    rejected: int = 0
    rejection_message: str = ""


def decode_request(
    body: bytes, *, content_type: str, content_encoding: str | None, max_body_bytes: int
) -> DecodedBatch:
    """Decode the body of an OTLP/HTTP trace export request.

    ``content_type`` may carry parameters (``application/json; charset=utf-8``);
    ``content_encoding`` may be ``gzip``, ``deflate``, ``identity`` or ``None``.
    Raises :class:`UnsupportedMediaType`, :class:`PayloadTooLarge` or
    :class:`OtlpDecodeError`; invalid spans are counted in the result instead.
    """
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type not in (PROTOBUF_CONTENT_TYPE, JSON_CONTENT_TYPE):
        raise UnsupportedMediaType(
            f"unsupported content type {content_type!r}: "
            f"use {PROTOBUF_CONTENT_TYPE} or {JSON_CONTENT_TYPE}"
        )
    if len(body) > max_body_bytes:
        raise PayloadTooLarge(f"request body exceeds {max_body_bytes} bytes")
    data = _decompress(body, content_encoding, max_body_bytes)
    decode = _decode_protobuf if media_type == PROTOBUF_CONTENT_TYPE else _decode_json
    batch = decode(data)
    if batch.rejected:
        batch.rejection_message = (
            f"rejected {batch.rejected} invalid span(s); first: {batch.rejection_message}"
        )
    return batch


def encode_partial_success(rejected: int, message: str, *, as_json: bool) -> bytes:
    """The body of an ``ExportTraceServiceResponse``, in the request's encoding.

    ``partial_success`` is set only when spans were rejected or there is a
    message, as the OTLP specification asks for a full success.
    """
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=rejected, error_message=message)
        )
    if as_json:
        return json_format.MessageToJson(response, indent=None).encode()
    return response.SerializeToString()


def _decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding in ("gzip", "x-gzip"):
        wbits = _GZIP_WBITS
    elif encoding == "deflate":
        wbits = _DEFLATE_WBITS
    else:
        raise UnsupportedMediaType(
            f"unsupported content encoding {content_encoding!r}: use gzip or identity"
        )
    parts: list[bytes] = []
    size = 0
    remaining = body
    try:
        # Several gzip members may follow one another; each is inflated with a cap
        # one byte past the limit, so a small bomb cannot allocate a large buffer.
        while True:
            inflater = zlib.decompressobj(wbits)
            part = inflater.decompress(remaining, limit - size + 1)
            size += len(part)
            if size > limit:
                raise PayloadTooLarge(f"decompressed request body exceeds {limit} bytes")
            parts.append(part)
            if not inflater.eof:
                raise OtlpDecodeError(f"truncated {encoding} body")
            remaining = inflater.unused_data
            if not remaining:
                break
    except zlib.error as exc:
        raise OtlpDecodeError(f"invalid {encoding} body: {exc}") from exc
    return b"".join(parts)


def _decode_protobuf(data: bytes) -> DecodedBatch:
    try:
        request = ExportTraceServiceRequest.FromString(data)
    except DecodeError as exc:
        raise OtlpDecodeError(f"invalid protobuf body: {exc}") from exc
    batch = DecodedBatch()
    for resource_spans in request.resource_spans:
        experiment = _experiment(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                status = span.status
                _add_span(
                    batch,
                    experiment,
                    span.trace_id,
                    span.span_id,
                    span.parent_span_id,
                    span.name,
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                    status.code,
                    status.message,
                    _attributes(span.attributes),
                    [
                        {
                            "name": event.name,
                            "time_unix_nano": event.time_unix_nano,
                            "attributes": _attributes(event.attributes),
                        }
                        for event in span.events
                    ],
                )
    return batch


def _add_span(
    batch: DecodedBatch,
    experiment: str | None,
    trace_id: bytes,
    span_id: bytes,
    parent_id: bytes,
    name: str,
    start: int,
    end: int,
    status_code: int,
    status_message: str,
    attributes: dict[str, Any],
    events: list[dict[str, Any]],
) -> None:
    """Validate one decoded span and add its record to ``batch``, or count it rejected."""
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE_ID:
        reason = _BAD_TRACE_ID
    elif len(span_id) != 8 or span_id == _ZERO_SPAN_ID:
        reason = _BAD_SPAN_ID
    elif parent_id and len(parent_id) != 8:
        reason = _BAD_PARENT_ID
    else:
        reason = ""
    if reason:
        if not batch.rejected:
            batch.rejection_message = f"span {name!r}: {reason}"
        batch.rejected += 1
        return
    record = span_record(
        trace_id=trace_id.hex(),
        span_id=span_id.hex(),
        # Some exporters send an all-zero parent for a root span.
        parent_span_id=parent_id.hex() if parent_id and parent_id != _ZERO_SPAN_ID else None,
        name=name,
        start_time_ns=start,
        end_time_ns=end if end >= start else start,
        status_code=status_code,
        status_message=status_message,
        attributes=attributes,
        events=events,
    )
    records = batch.spans_by_experiment.get(experiment)
    if records is None:
        records = batch.spans_by_experiment[experiment] = []
    records.append(record)


def _experiment(resource_attributes: Any) -> str | None:
    for attribute in resource_attributes:
        if attribute.key == RESOURCE_EXPERIMENT:
            value = attribute.value
            if value.WhichOneof("value") == "string_value":
                return value.string_value.strip() or None
            return None
    return None


def _attributes(attributes: Any) -> dict[str, Any]:
    # A plain loop over the message objects: several times faster than MessageToDict.
    result: dict[str, Any] = {}
    attribute: KeyValue
    for attribute in attributes:
        result[attribute.key] = _value(attribute.value)
    return result


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return _finite_or_name(value.double_value)
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _value(item.value) for item in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return None


def _finite_or_name(number: float) -> float | str:
    # JSON cannot hold these; keep them readable, spelled as proto3's JSON mapping does.
    if math.isfinite(number):
        return number
    return "NaN" if number != number else ("Infinity" if number > 0 else "-Infinity")


# OTLP/JSON.  Parsed by hand rather than with protobuf's json_format: several
# times faster, and the ids are hex here where json_format expects base64.


def _decode_json(data: bytes) -> DecodedBatch:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise OtlpDecodeError(f"invalid JSON body: {exc}") from exc
    batch = DecodedBatch()
    for resource_spans in _json_objects(_json_object(document, "the request"), "resourceSpans"):
        resource = resource_spans.get("resource")
        experiment = None
        if resource is not None:
            resource_attributes = _json_attributes(_json_object(resource, "resource"), 0)
            value = resource_attributes.get(RESOURCE_EXPERIMENT)
            experiment = (value.strip() or None) if isinstance(value, str) else None
        for scope_spans in _json_objects(resource_spans, "scopeSpans"):
            for span in _json_objects(scope_spans, "spans"):
                status = span.get("status")
                status = {} if status is None else _json_object(status, "status")
                _add_span(
                    batch,
                    experiment,
                    _json_id(span.get("traceId")),
                    _json_id(span.get("spanId")),
                    _json_id(span.get("parentSpanId")),
                    _json_string(span, "name"),
                    _json_uint64(span, "startTimeUnixNano"),
                    _json_uint64(span, "endTimeUnixNano"),
                    _json_status_code(status.get("code")),
                    _json_string(status, "message"),
                    _json_attributes(span, 0),
                    [
                        {
                            "name": _json_string(event, "name"),
                            "time_unix_nano": _json_uint64(event, "timeUnixNano"),
                            "attributes": _json_attributes(event, 0),
                        }
                        for event in _json_objects(span, "events")
                    ],
                )
    return batch


def _json_error(problem: str) -> OtlpDecodeError:
    return OtlpDecodeError(f"invalid OTLP/JSON body: {problem}")


def _json_object(value: Any, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _json_error(f"{what} must be an object")
    return value


def _json_objects(parent: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The array of objects at ``parent[key]``; a missing or null field is empty."""
    items = parent.get(key)
    if items is None:
        return []
    if type(items) is not list:
        raise _json_error(f"{key} must be an array")
    for item in items:
        if type(item) is not dict:
            raise _json_error(f"every item of {key} must be an object")
    return items


def _json_string(message: dict[str, Any], key: str) -> str:
    value = message.get(key)
    if value is None:
        return ""
    if type(value) is not str:
        raise _json_error(f"{key} must be a string")
    return value


def _json_int(value: Any, what: str) -> int:
    """An integer given as a number or, as OTLP/JSON allows for 64-bit ones, a string."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is str and len(value) <= 24:  # short: int() is quadratic in digits
        try:
            return int(value)
        except ValueError:
            pass
    raise _json_error(f"{what} must be an integer")


def _json_uint64(message: dict[str, Any], key: str) -> int:
    value = message.get(key)
    if value is None:
        return 0
    number = _json_int(value, key)
    if not 0 <= number <= _UINT64_MAX:
        raise _json_error(f"{key} is out of range")
    return number


def _json_status_code(value: Any) -> int:
    if value is None:
        return 0
    if type(value) is str and value in _STATUS_CODE_NAMES:
        return _STATUS_CODE_NAMES[value]
    return _json_int(value, "status code")


def _json_id(value: Any) -> bytes:
    """Bytes of a hex id; anything else yields bytes that fail validation of every id."""
    if value is None or value == "":
        return b""
    if type(value) is str:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    return _INVALID_ID


def _json_attributes(message: dict[str, Any], depth: int) -> dict[str, Any]:
    """``message["attributes"]`` (or ``["values"]`` of a kvlist) as a plain dict."""
    key = "values" if depth else "attributes"
    result: dict[str, Any] = {}
    for attribute in _json_objects(message, key):
        name = attribute.get("key")
        if type(name) is not str:
            raise _json_error("an attribute key must be a string")
        result[name] = _json_value(attribute.get("value"), depth)
    return result


def _json_value(value: Any, depth: int) -> Any:
    if value is None:
        return None
    if type(value) is not dict:
        raise _json_error("an attribute value must be an object")
    if (text := value.get("stringValue")) is not None:
        if type(text) is not str:
            raise _json_error("stringValue must be a string")
        return text
    if (number := value.get("intValue")) is not None:
        integer = _json_int(number, "intValue")
        if not _INT64_MIN <= integer <= _INT64_MAX:
            raise _json_error("intValue is out of range")
        return integer
    if (flag := value.get("boolValue")) is not None:
        if type(flag) is not bool:
            raise _json_error("boolValue must be true or false")
        return flag
    if (number := value.get("doubleValue")) is not None:
        return _json_double(number)
    if depth >= _MAX_VALUE_DEPTH:
        raise _json_error(f"attribute values nest deeper than {_MAX_VALUE_DEPTH} levels")
    if (array := value.get("arrayValue")) is not None:
        items = _json_objects(_json_object(array, "arrayValue"), "values")
        return [_json_value(item, depth + 1) for item in items]
    if (kvlist := value.get("kvlistValue")) is not None:
        return _json_attributes(_json_object(kvlist, "kvlistValue"), depth + 1)
    if (encoded := value.get("bytesValue")) is not None:
        return _json_bytes(encoded).hex()
    return None


def _json_double(value: Any) -> float | str:
    if type(value) is float or type(value) is int:
        try:
            return _finite_or_name(float(value))
        except OverflowError:
            pass
    elif type(value) is str and len(value) <= 64:
        try:
            return _finite_or_name(float(value))
        except ValueError:
            pass
    raise _json_error("doubleValue must be a number")


def _json_bytes(value: Any) -> bytes:
    # Proto3's JSON mapping allows URL-safe base64 and missing padding.
    if type(value) is str:
        text = value.replace("-", "+").replace("_", "/")
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except ValueError:
            pass
    raise _json_error("bytesValue must be base64")
