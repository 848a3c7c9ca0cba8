"""OTLP/HTTP export bodies, as real exporters send them, become span records."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Sequence
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ResourceProto
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Status as SdkStatus
from opentelemetry.trace import StatusCode

from traceway.server.otlp import (
    DecodedBatch,
    OtlpDecodeError,
    PayloadTooLarge,
    UnsupportedMediaType,
    decode_request,
    encode_partial_success,
)
from traceway.store.records import SpanRecord

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
LIMIT = 1 << 20
TRACE_ID = "00000000000000000000000000000001"
ROOT_ID = "0000000000000001"
CHILD_ID = "0000000000000002"


class CountingIds(IdGenerator):
    """Ids 1, 2, 3, ... so expected records can be written down."""

    def __init__(self) -> None:
        self._trace = 0
        self._span = 0

    def generate_trace_id(self) -> int:
        self._trace += 1
        return self._trace

    def generate_span_id(self) -> int:
        self._span += 1
        return self._span


def app_spans() -> Sequence[ReadableSpan]:
    """An agent span and its failed chat call, recorded by the real OpenTelemetry SDK."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource({"service.name": "app", "traceway.experiment": "demo"}),
        id_generator=CountingIds(),
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests")
    root = tracer.start_span("agent", start_time=1_000)
    root.set_attributes(
        {
            "traceway.span.type": "AGENT",
            "traceway.span.inputs": '{"question": "hi"}',
            "traceway.span.outputs": '"hello"',
            "traceway.trace.tags": '{"env": "test"}',
        }
    )
    child = tracer.start_span(
        "chat gpt-4o", context=trace.set_span_in_context(root), start_time=1_100
    )
    child.set_attributes(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 5,
            "gen_ai.usage.output_tokens": 2,
            "gen_ai.request.temperature": 0.5,
            "gen_ai.response.finish_reasons": ("stop",),
            "http.request.header.authorization": ("Bearer sk-1",),
            "stream": False,
        }
    )
    child.add_event("gen_ai.content.chunk", {"index": 0}, timestamp=1_150)
    child.set_status(SdkStatus(StatusCode.ERROR, "rate limited"))
    child.end(end_time=1_900)
    root.set_status(SdkStatus(StatusCode.OK))
    root.end(end_time=2_000)
    provider.shutdown()
    return memory.get_finished_spans()


APP_RECORDS = [
    SpanRecord(
        trace_id=TRACE_ID,
        span_id=CHILD_ID,
        parent_span_id=ROOT_ID,
        name="chat gpt-4o",
        span_type="CHAT_MODEL",
        start_time_ns=1_100,
        end_time_ns=1_900,
        status="ERROR",
        status_message="rate limited",
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 5,
            "gen_ai.usage.output_tokens": 2,
            "gen_ai.request.temperature": 0.5,
            "gen_ai.response.finish_reasons": ["stop"],
            "http.request.header.authorization": "[REDACTED]",
            "stream": False,
        },
        events=[
            {"name": "gen_ai.content.chunk", "time_unix_nano": 1_150, "attributes": {"index": 0}}
        ],
        model="gpt-4o",
        provider="openai",
        input_tokens=5,
        output_tokens=2,
        total_tokens=7,
    ),
    SpanRecord(
        trace_id=TRACE_ID,
        span_id=ROOT_ID,
        parent_span_id=None,
        name="agent",
        span_type="AGENT",
        start_time_ns=1_000,
        end_time_ns=2_000,
        status="OK",
        attributes={"traceway.span.type": "AGENT"},
        inputs='{"question": "hi"}',
        outputs='"hello"',
        trace_tags={"env": "test"},
    ),
]


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON as the specification spells it: hex ids, integer enums."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document).encode()


def decode(body: bytes, content_type: str = PROTOBUF, encoding: str | None = None) -> DecodedBatch:
    return decode_request(
        body, content_type=content_type, content_encoding=encoding, max_body_bytes=LIMIT
    )


def any_value(value: Any) -> AnyValue:
    if isinstance(value, AnyValue):
        return value
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    return AnyValue(double_value=value)


def proto_span(name: str = "s", **fields: Any) -> Span:
    attributes = fields.pop("attributes", {})
    pieces: dict[str, Any] = {
        "trace_id": bytes.fromhex(TRACE_ID),
        "span_id": bytes.fromhex(ROOT_ID),
        "start_time_unix_nano": 10,
        "end_time_unix_nano": 20,
    }
    pieces.update(fields)
    kvs = [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()]
    return Span(name=name, attributes=kvs, **pieces)


def proto_request(*resources: tuple[dict[str, Any], list[Span]]) -> bytes:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=ResourceProto(
                    attributes=[KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]
                ),
                scope_spans=[ScopeSpans(spans=spans)],
            )
            for attrs, spans in resources
        ]
    ).SerializeToString()


def plain_record(name: str = "s", **fields: Any) -> SpanRecord:
    pieces: dict[str, Any] = {
        "trace_id": TRACE_ID,
        "span_id": ROOT_ID,
        "parent_span_id": None,
        "name": name,
        "span_type": "UNKNOWN",
        "start_time_ns": 10,
        "end_time_ns": 20,
    }
    pieces.update(fields)
    return SpanRecord(**pieces)


def test_sdk_spans_as_protobuf() -> None:
    body = encode_spans(app_spans()).SerializeToString()
    assert decode(body) == DecodedBatch({"demo": APP_RECORDS}, 0, "")


@pytest.mark.parametrize(
    "content_type", [JSON, "application/json; charset=utf-8", "Application/JSON"]
)
def test_sdk_spans_as_otlp_json(content_type: str) -> None:
    body = otlp_json(encode_spans(app_spans()))
    assert decode(body, content_type) == DecodedBatch({"demo": APP_RECORDS}, 0, "")


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        (None, lambda b: b),
        ("identity", lambda b: b),
        ("gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("gzip", lambda b: gzip.compress(b[:100]) + gzip.compress(b[100:])),
    ],
)
@pytest.mark.parametrize("content_type", [PROTOBUF, "application/x-protobuf; proto=v1", JSON])
def test_content_encodings(encoding: str | None, compress: Any, content_type: str) -> None:
    request = encode_spans(app_spans())
    raw = otlp_json(request) if content_type == JSON else request.SerializeToString()
    batch = decode(compress(raw), content_type, encoding)
    assert batch == DecodedBatch({"demo": APP_RECORDS}, 0, "")


def test_every_attribute_value_kind() -> None:
    nested = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                KeyValue(key="list", value=AnyValue(array_value=ArrayValue(values=[any_value(1)]))),
                KeyValue(key="empty", value=AnyValue()),
            ]
        )
    )
    attributes = {
        "s": "text",
        "b": True,
        "i": -(2**63),
        "d": 1.5,
        "nan": float("nan"),
        "inf": float("inf"),
        "-inf": float("-inf"),
        "bytes": AnyValue(bytes_value=b"\x01\xab"),
        "array": AnyValue(array_value=ArrayValue(values=[any_value("a"), any_value(2.0)])),
        "kvlist": nested,
        "unset": AnyValue(),
    }
    body = proto_request(({}, [proto_span(attributes=attributes)]))
    expected_attributes = {
        "s": "text",
        "b": True,
        "i": -(2**63),
        "d": 1.5,
        "nan": "NaN",
        "inf": "Infinity",
        "-inf": "-Infinity",
        "bytes": "01ab",
        "array": ["a", 2.0],
        "kvlist": {"list": [1], "empty": None},
        "unset": None,
    }
    expected = DecodedBatch({None: [plain_record(attributes=expected_attributes)]}, 0, "")
    assert decode(body) == expected
    request = ExportTraceServiceRequest.FromString(body)
    assert decode(otlp_json(request), JSON) == expected


def test_handwritten_otlp_json() -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "traceway.experiment", "value": {"stringValue": " evals "}}
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "handwritten"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "parentSpanId": "",
                                "name": "lookup",
                                "kind": 3,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": 1544712661000000000,
                                "attributes": [
                                    {"key": "n", "value": {"intValue": "42"}},
                                    {"key": "m", "value": {"intValue": 7}},
                                    {"key": "d", "value": {"doubleValue": "NaN"}},
                                    {"key": "e", "value": {"doubleValue": 3}},
                                    {"key": "raw", "value": {"bytesValue": "q80="}},
                                    {"key": "url", "value": {"bytesValue": "-_8"}},
                                    {"key": "none", "value": {}},
                                    {"key": "null"},
                                    {
                                        "key": "kv",
                                        "value": {
                                            "kvlistValue": {
                                                "values": [
                                                    {
                                                        "key": "ok",
                                                        "value": {"boolValue": False},
                                                    }
                                                ]
                                            }
                                        },
                                    },
                                ],
                                "events": [{"timeUnixNano": "1544712660500000000", "name": "hit"}],
                                "links": [{"traceId": "nothex", "spanId": 5}],
                                "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
                                "futureField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    assert decode(json.dumps(body).encode(), JSON) == DecodedBatch(
        {
            "evals": [
                SpanRecord(
                    trace_id="5b8efff798038103d269b633813fc60c",
                    span_id="eee19b7ec3c1b174",
                    parent_span_id=None,
                    name="lookup",
                    span_type="UNKNOWN",
                    start_time_ns=1544712660000000000,
                    end_time_ns=1544712661000000000,
                    status="ERROR",
                    status_message="boom",
                    attributes={
                        "n": 42,
                        "m": 7,
                        "d": "NaN",
                        "e": 3.0,
                        "raw": "abcd",
                        "url": "fbff",
                        "none": None,
                        "null": None,
                        "kv": {"ok": False},
                    },
                    events=[
                        {"name": "hit", "time_unix_nano": 1544712660500000000, "attributes": {}}
                    ],
                )
            ]
        },
        0,
        "",
    )


def test_spans_are_grouped_by_the_experiment_their_resource_names() -> None:
    body = proto_request(
        ({"traceway.experiment": "a"}, [proto_span("a1")]),
        ({"service.name": "svc"}, [proto_span("none1")]),
        ({"traceway.experiment": "b"}, [proto_span("b1"), proto_span("b2")]),
        ({"traceway.experiment": "   "}, [proto_span("blank")]),
        ({"traceway.experiment": 3}, [proto_span("number")]),
        ({"traceway.experiment": "a"}, [proto_span("a2")]),
        ({"traceway.experiment": "c"}, []),
    )
    expected = {
        "a": [plain_record("a1"), plain_record("a2")],
        None: [plain_record("none1"), plain_record("blank"), plain_record("number")],
        "b": [plain_record("b1"), plain_record("b2")],
    }
    batch = decode(body)
    assert batch == DecodedBatch(expected, 0, "")
    assert decode(otlp_json(ExportTraceServiceRequest.FromString(body)), JSON) == batch


def test_invalid_spans_are_rejected_and_the_rest_kept() -> None:
    good_parent = bytes.fromhex(CHILD_ID)
    body = proto_request(
        (
            {},
            [
                proto_span("ok", parent_span_id=good_parent),
                proto_span("zero trace", trace_id=bytes(16)),
                proto_span("short trace", trace_id=b"\x01" * 8),
                proto_span("no span id", span_id=b""),
                proto_span("zero span id", span_id=bytes(8)),
                proto_span("short parent", parent_span_id=b"\x01\x02"),
                proto_span("zero parent", parent_span_id=bytes(8)),
            ],
        )
    )
    expected = DecodedBatch(
        {None: [plain_record("ok", parent_span_id=CHILD_ID), plain_record("zero parent")]},
        5,
        "rejected 5 invalid span(s); first: span 'zero trace': "
        "trace_id must be 16 bytes (32 hex characters) and not all zero",
    )
    assert decode(body) == expected
    assert decode(otlp_json(ExportTraceServiceRequest.FromString(body)), JSON) == expected


def test_unreadable_json_ids_reject_only_their_span() -> None:
    spans = [
        {"traceId": TRACE_ID, "spanId": ROOT_ID, "name": "ok"},
        {"traceId": "not hex at all!", "spanId": ROOT_ID, "name": "bad trace"},
        {"traceId": TRACE_ID, "spanId": 12, "name": "bad span"},
        {"traceId": TRACE_ID, "spanId": ROOT_ID, "parentSpanId": "zz", "name": "bad parent"},
        {"spanId": ROOT_ID, "name": "missing trace"},
    ]
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).encode()
    assert decode(body, JSON) == DecodedBatch(
        {None: [plain_record("ok", start_time_ns=0, end_time_ns=0)]},
        4,
        "rejected 4 invalid span(s); first: span 'bad trace': "
        "trace_id must be 16 bytes (32 hex characters) and not all zero",
    )


def test_end_before_start_or_missing_becomes_start() -> None:
    body = proto_request(
        (
            {},
            [
                proto_span("backwards", start_time_unix_nano=50, end_time_unix_nano=40),
                proto_span("unfinished", start_time_unix_nano=50, end_time_unix_nano=0),
            ],
        )
    )
    assert decode(body).spans_by_experiment == {
        None: [
            plain_record("backwards", start_time_ns=50, end_time_ns=50),
            plain_record("unfinished", start_time_ns=50, end_time_ns=50),
        ]
    }


def test_an_empty_request_decodes_to_nothing() -> None:
    assert decode(b"") == DecodedBatch({}, 0, "")
    assert decode(b"{}", JSON) == DecodedBatch({}, 0, "")
    assert decode(b'{"resourceSpans": null}', JSON) == DecodedBatch({}, 0, "")


@pytest.mark.parametrize(
    ("content_type", "encoding", "message"),
    [
        (
            "text/plain",
            None,
            "unsupported content type 'text/plain': use application/x-protobuf or application/json",
        ),
        ("", None, "unsupported content type '': use application/x-protobuf or application/json"),
        (
            "application/protobuf",
            None,
            "unsupported content type 'application/protobuf': "
            "use application/x-protobuf or application/json",
        ),
        (PROTOBUF, "br", "unsupported content encoding 'br': use gzip or identity"),
    ],
)
def test_unsupported_media(content_type: str, encoding: str | None, message: str) -> None:
    with pytest.raises(UnsupportedMediaType) as raised:
        decode(b"", content_type, encoding)
    assert str(raised.value) == message


def test_bodies_over_the_limit() -> None:
    with pytest.raises(PayloadTooLarge, match=f"^request body exceeds {LIMIT} bytes$"):
        decode(b"\0" * (LIMIT + 1))
    bomb = gzip.compress(b"\0" * (LIMIT * 64))
    assert len(bomb) < LIMIT // 10
    with pytest.raises(PayloadTooLarge, match=f"^decompressed request body exceeds {LIMIT} bytes$"):
        decode(bomb, PROTOBUF, "gzip")
    two_halves = gzip.compress(b"\0" * (LIMIT // 2 + 1)) * 2
    with pytest.raises(PayloadTooLarge):
        decode(two_halves, PROTOBUF, "gzip")
    exactly = b"\n\0" * (LIMIT // 2)  # empty resource_spans entries, LIMIT bytes in all
    assert decode(gzip.compress(exactly), PROTOBUF, "gzip") == DecodedBatch({}, 0, "")


def _valid_proto() -> bytes:
    return encode_spans(app_spans()).SerializeToString()


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "message"),
    [
        (b"not gzip", PROTOBUF, "gzip", "invalid gzip body: "),
        (gzip.compress(b"abc")[:-3], PROTOBUF, "gzip", "truncated gzip body"),
        (gzip.compress(b"") + b"trailing", PROTOBUF, "gzip", "invalid gzip body: "),
        (b"\x0a\xff\xff\xff", PROTOBUF, None, "invalid protobuf body: "),
        (b"\xff" * 16, PROTOBUF, None, "invalid protobuf body: "),
        (b"{", JSON, None, "invalid JSON body: "),
        (b"\xff", JSON, None, "invalid JSON body: "),
        (b"[]", JSON, None, "invalid OTLP/JSON body: the request must be an object"),
        (b'{"resourceSpans": {}}', JSON, None, "invalid OTLP/JSON body: resourceSpans must be"),
        (b'{"resourceSpans": [1]}', JSON, None, "invalid OTLP/JSON body: every item of"),
    ],
)
def test_undecodable_bodies(
    body: bytes, content_type: str, encoding: str | None, message: str
) -> None:
    with pytest.raises(OtlpDecodeError) as raised:
        decode(body, content_type, encoding)
    assert str(raised.value).startswith(message)


def _json_span(**fields: Any) -> bytes:
    span = {"traceId": TRACE_ID, "spanId": ROOT_ID, **fields}
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


def _attribute(value: Any) -> bytes:
    return _json_span(attributes=[{"key": "k", "value": value}])


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(depth):
        value = {"arrayValue": {"values": [value]}}
    return value


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (_json_span(name=5), "name must be a string"),
        (_json_span(startTimeUnixNano="soon"), "startTimeUnixNano must be an integer"),
        (_json_span(endTimeUnixNano=-1), "endTimeUnixNano is out of range"),
        (_json_span(startTimeUnixNano=str(2**64)), "startTimeUnixNano is out of range"),
        (_json_span(attributes={"k": "v"}), "attributes must be an array"),
        (_json_span(attributes=[{"key": 1, "value": {}}]), "an attribute key must be a string"),
        (_json_span(events=[{"timeUnixNano": True}]), "timeUnixNano must be an integer"),
        (_json_span(status="ok"), "status must be an object"),
        (_json_span(status=False), "status must be an object"),
        (_json_span(status={"code": "GREEN"}), "status code must be an integer"),
        (_attribute("v"), "an attribute value must be an object"),
        (_attribute({"stringValue": 1}), "stringValue must be a string"),
        (_attribute({"intValue": "1.5"}), "intValue must be an integer"),
        (_attribute({"intValue": str(2**63)}), "intValue is out of range"),
        (_attribute({"intValue": "9" * 5000}), "intValue must be an integer"),
        (_attribute({"boolValue": "yes"}), "boolValue must be true or false"),
        (_attribute({"doubleValue": "fast"}), "doubleValue must be a number"),
        (_attribute({"bytesValue": "%%%"}), "bytesValue must be base64"),
        (_attribute({"arrayValue": []}), "arrayValue must be an object"),
        (_attribute({"kvlistValue": {"values": [3]}}), "every item of values must be an object"),
        (_attribute(_nested(65)), "attribute values nest deeper than 64 levels"),
    ],
)
def test_malformed_otlp_json(body: bytes, problem: str) -> None:
    with pytest.raises(OtlpDecodeError) as raised:
        decode(body, JSON)
    assert str(raised.value) == f"invalid OTLP/JSON body: {problem}"


def test_nesting_up_to_the_limit_is_accepted() -> None:
    batch = decode(_attribute(_nested(64)), JSON)
    value: Any = batch.spans_by_experiment[None][0].attributes["k"]
    depth = 0
    while isinstance(value, list):
        [value] = value
        depth += 1
    assert (depth, value) == (64, "leaf")


def test_partial_success_responses() -> None:
    message = "rejected 2 invalid span(s); first: ..."
    as_proto = ExportTraceServiceResponse.FromString(
        encode_partial_success(2, message, as_json=False)
    )
    assert (as_proto.partial_success.rejected_spans, as_proto.partial_success.error_message) == (
        2,
        message,
    )
    assert json.loads(encode_partial_success(2, message, as_json=True)) == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": message}
    }
    full_success = (
        encode_partial_success(0, "", as_json=False),
        json.loads(encode_partial_success(0, "", as_json=True)),
    )
    assert full_success == (b"", {})
    warning = json.loads(encode_partial_success(0, "slow down", as_json=True))
    assert warning == {"partialSuccess": {"errorMessage": "slow down"}}


# Properties: whatever arrives, the only failures are the documented ones.

ALLOWED = (OtlpDecodeError, PayloadTooLarge)
FUZZ = settings(max_examples=150, derandomize=True, database=None, deadline=None)


def _outcome(body: bytes, content_type: str, encoding: str | None) -> DecodedBatch | None:
    try:
        return decode_request(
            body, content_type=content_type, content_encoding=encoding, max_body_bytes=4096
        )
    except ALLOWED:
        return None


@FUZZ
@given(
    body=st.binary(max_size=300),
    content_type=st.sampled_from([PROTOBUF, JSON]),
    encoding=st.sampled_from([None, "gzip", "deflate"]),
)
def test_random_bytes_fail_cleanly(body: bytes, content_type: str, encoding: str | None) -> None:
    _outcome(body, content_type, encoding)


_VALID_BODIES = {PROTOBUF: _valid_proto(), JSON: otlp_json(encode_spans(app_spans()))}


@FUZZ
@given(
    content_type=st.sampled_from([PROTOBUF, JSON]),
    gzipped=st.booleans(),
    cut=st.none() | st.integers(min_value=0, max_value=4000),
    flip=st.one_of(st.none(), st.tuples(st.integers(0, 4000), st.integers(1, 255))),
)
def test_damaged_valid_bodies_fail_cleanly(
    content_type: str, gzipped: bool, cut: int | None, flip: tuple[int, int] | None
) -> None:
    body = bytearray(_VALID_BODIES[content_type])
    if gzipped:
        body = bytearray(gzip.compress(bytes(body), mtime=0))
    if flip is not None and body:
        position, mask = flip
        body[position % len(body)] ^= mask
    if cut is not None:
        del body[cut % (len(body) + 1) :]
    _outcome(bytes(body), content_type, "gzip" if gzipped else None)


_json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_json_any = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
_hexish = (
    st.sampled_from([TRACE_ID, ROOT_ID, CHILD_ID, "", "0" * 32])
    | st.text("0123456789abcdefABCDEF", max_size=34)
    | _json_any
)


def _mostly(valid: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a well-formed value, sometimes anything: so the success path is fuzzed too."""
    return st.one_of(valid, valid, valid, odd)


_uint64 = st.integers(0, 2**64 - 1)
_scalar_value = st.one_of(
    st.fixed_dictionaries({"stringValue": st.text(max_size=8)}),
    st.fixed_dictionaries({"intValue": st.integers(-(2**63), 2**63 - 1).map(str)}),
    st.fixed_dictionaries({"doubleValue": st.floats(allow_nan=False, allow_infinity=False)}),
    st.fixed_dictionaries({"boolValue": st.booleans()}),
    st.fixed_dictionaries(
        {"bytesValue": st.binary(max_size=4).map(lambda b: base64.b64encode(b).decode())}
    ),
)
_odd_value = st.fixed_dictionaries(
    {},
    optional={
        key: _json_leaf
        for key in ("stringValue", "intValue", "boolValue", "doubleValue", "bytesValue")
    },
)
_any_value = st.recursive(
    _mostly(_scalar_value, _odd_value),
    lambda inner: (
        st.fixed_dictionaries(
            {"arrayValue": st.fixed_dictionaries({"values": st.lists(inner, max_size=3)})}
        )
        | st.fixed_dictionaries(
            {
                "kvlistValue": st.fixed_dictionaries(
                    {
                        "values": st.lists(
                            st.fixed_dictionaries({"key": st.text(max_size=5), "value": inner}),
                            max_size=3,
                        )
                    }
                )
            }
        )
    ),
    max_leaves=6,
)
_key_values = st.lists(
    _mostly(
        st.fixed_dictionaries({"key": st.text(max_size=8), "value": _any_value}),
        st.fixed_dictionaries({}, optional={"key": _json_leaf, "value": _any_value | _json_any}),
    ),
    max_size=4,
)
_time = _mostly(_uint64 | _uint64.map(str), _json_leaf)
_span = st.fixed_dictionaries(
    {
        "traceId": _mostly(st.sampled_from([TRACE_ID, "ab" * 16]), _hexish),
        "spanId": _mostly(st.sampled_from([ROOT_ID, CHILD_ID]), _hexish),
    },
    optional={
        "parentSpanId": _mostly(st.sampled_from(["", CHILD_ID]), _hexish),
        "name": _mostly(st.text(max_size=8), _json_leaf),
        "startTimeUnixNano": _time,
        "endTimeUnixNano": _time,
        "attributes": _mostly(_key_values, _json_any),
        "events": _mostly(
            st.lists(
                st.fixed_dictionaries(
                    {"name": st.text(max_size=4), "timeUnixNano": _time, "attributes": _key_values}
                ),
                max_size=2,
            ),
            _json_any,
        ),
        "status": _mostly(
            st.fixed_dictionaries({"code": st.integers(0, 3), "message": st.text(max_size=4)}),
            st.fixed_dictionaries({}, optional={"code": _json_leaf, "message": _json_leaf})
            | _json_any,
        ),
    },
)
_document = st.fixed_dictionaries(
    {
        "resourceSpans": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "resource": _mostly(
                        st.fixed_dictionaries({"attributes": _key_values}), _json_any
                    ),
                    "scopeSpans": _mostly(
                        st.lists(
                            st.fixed_dictionaries({"spans": st.lists(_span, max_size=3)}),
                            max_size=2,
                        ),
                        _json_any,
                    ),
                },
            ),
            max_size=2,
        )
    }
)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(document=_document)
def test_odd_otlp_json_documents_fail_cleanly(document: dict[str, Any]) -> None:
    body = json.dumps(document).encode()
    batch = _outcome(body, JSON, None)
    if batch is not None:
        for records in batch.spans_by_experiment.values():
            for record in records:
                assert (len(record.trace_id), len(record.span_id)) == (32, 16)
