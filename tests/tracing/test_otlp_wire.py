"""The hand-written OTLP encoder against the official protobuf classes.

The reference below builds the same request with ``opentelemetry-proto`` message
objects, field by field; the encoder must produce a request that decodes to an
equal message and serializes to the very same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from traceway.tracing import semconv
from traceway.tracing._otlp_wire import encode_live_request, encode_request
from traceway.tracing.serialize import to_json
from traceway.tracing.span import FinishedSpan, LiveSpan, SpanEvent
from traceway.tracing.testing import FakeClock, IncrementalIdGenerator
from traceway.tracing.tracer import Tracer

from .builders import finished

_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}


def reference_request(
    spans: list[FinishedSpan], resource_attributes: Mapping[str, Any]
) -> ExportTraceServiceRequest:
    """The request built with the official message classes."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    reference_attributes(resource_spans.resource.attributes, resource_attributes)
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "traceway"
    for span in spans:
        message: PbSpan = scope_spans.spans.add()
        message.trace_id = bytes.fromhex(span.trace_id)
        message.span_id = bytes.fromhex(span.span_id)
        if span.parent_span_id:
            message.parent_span_id = bytes.fromhex(span.parent_span_id)
        message.name = span.name
        message.kind = PbSpan.SPAN_KIND_INTERNAL
        message.start_time_unix_nano = span.start_time_ns
        message.end_time_unix_nano = span.end_time_ns
        extra = {semconv.SPAN_TYPE: span.span_type}
        if span.inputs is not None:
            extra[semconv.SPAN_INPUTS] = span.inputs
        if span.outputs is not None:
            extra[semconv.SPAN_OUTPUTS] = span.outputs
        reference_attributes(message.attributes, {**span.attributes, **extra})
        for event in span.events:
            event_message = message.events.add()
            event_message.name = event.name
            event_message.time_unix_nano = event.timestamp_ns
            reference_attributes(event_message.attributes, event.attributes)
        if span.status != "UNSET":
            message.status.code = _STATUS.get(span.status, Status.STATUS_CODE_UNSET)
            if span.status_message:
                message.status.message = span.status_message
    return request


def reference_attributes(target: Any, attributes: Mapping[str, Any]) -> None:
    for key, value in attributes.items():
        if value is not None:
            key_value = target.add()
            key_value.key = key
            reference_value(key_value.value, value)


def reference_value(target: AnyValue, value: Any) -> None:
    if isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        if -(2**63) <= value < 2**63:
            target.int_value = value
        else:
            target.string_value = str(value)
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, list | tuple) and all(
        isinstance(v, str | bool | int | float) for v in value
    ):
        values = target.array_value.values
        for item in value:
            reference_value(values.add(), item)
    else:
        target.string_value = to_json(value)


def assert_same_as_reference(
    spans: list[FinishedSpan], resource_attributes: Mapping[str, Any]
) -> None:
    body = encode_request(spans, resource_attributes)
    expected = reference_request(spans, resource_attributes)
    assert ExportTraceServiceRequest.FromString(body) == expected
    assert body == expected.SerializeToString(deterministic=True)


# Text protobuf can carry: any Unicode scalar value (lone surrogates are not encodable).
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=150)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
scalar = st.one_of(
    text,
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.binary(max_size=40),
    st.none(),
)
attribute_value = st.one_of(
    scalar,
    st.lists(st.one_of(text, st.booleans(), int64, st.floats(allow_nan=False)), max_size=4),
    st.tuples(text, st.integers()),
    st.dictionaries(text, st.one_of(text, int64), max_size=3),
    st.lists(st.one_of(text, st.none()), min_size=1, max_size=3),  # mixed: becomes JSON
)
# Keys repeat across spans (as real attribute names do), so the encoder's caches are hit.
keys = st.one_of(st.sampled_from(["k", "model", "gen_ai.request.model", "x" * 100]), text)
attributes = st.dictionaries(keys, attribute_value, max_size=6)
hex_id = st.integers(min_value=1, max_value=2**64 - 1).map(lambda n: format(n, "016x"))
time_ns = st.one_of(st.just(0), st.integers(min_value=1, max_value=2**64 - 1))
events = st.lists(
    st.builds(SpanEvent, st.one_of(st.just(""), text), time_ns, attributes), max_size=2
)
spans = st.builds(
    FinishedSpan,
    trace_id=st.integers(min_value=1, max_value=2**128 - 1).map(lambda n: format(n, "032x")),
    span_id=hex_id,
    parent_span_id=st.one_of(st.none(), hex_id),
    name=st.one_of(st.sampled_from(["", "chat gpt-4o", "gateway chat/completions"]), text),
    span_type=st.sampled_from(["LLM", "GATEWAY", "CHAT_MODEL", "custom kind"]),
    start_time_ns=time_ns,
    end_time_ns=time_ns,
    status=st.sampled_from(["UNSET", "OK", "ERROR", "odd"]),
    status_message=st.one_of(st.just(""), text),
    attributes=attributes,
    events=events,
    inputs=st.one_of(st.none(), text),
    outputs=st.one_of(st.none(), text),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(spans, max_size=4), attributes)
def test_encoding_matches_the_official_classes(
    span_list: list[FinishedSpan], resource: dict[str, Any]
) -> None:
    assert_same_as_reference(span_list, resource)


def test_a_gateway_batch_decodes_to_the_whole_expected_request() -> None:
    request_span = finished(
        1,
        "gateway chat/completions",
        1000,
        9000,
        span_type="GATEWAY",
        attributes={"traceway.gateway.route": "provider-header", "http.response.status_code": 200},
        inputs='{"model":"gpt-4o-mini"}',
        outputs='{"id":"chatcmpl-1"}',
    )
    attempt = finished(
        2,
        "chat gpt-4o-mini",
        2000,
        8000,
        parent=1,
        span_type="CHAT_MODEL",
        attributes={
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.response.finish_reasons": ["stop"],
            "traceway.cost.usd": 7.2e-06,
            "traceway.gateway.stream": False,
        },
        status="ERROR",
        status_message="upstream said no",
    )
    # Twice: the second batch is encoded from the caches the first one filled.
    for _ in range(2):
        body = encode_request([attempt, request_span], {"service.name": "gw"})
        decoded = ExportTraceServiceRequest.FromString(body)
        expected = reference_request([attempt, request_span], {"service.name": "gw"})
        assert decoded == expected
        assert body == expected.SerializeToString()


def test_values_that_compare_equal_keep_their_own_types() -> None:
    # 1 == True == 1.0 in Python; cached encodings must not mix them up.
    batch = [
        finished(n, "s", 1, 2, attributes={"v": value})
        for n, value in enumerate([1, True, 1.0, "1", 0, False, 0.0, "", 2, 3], start=1)
    ]
    body = encode_request(batch, {})
    spans = ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans
    kinds = [span.attributes[0].value.WhichOneof("value") for span in spans]
    assert kinds == [
        "int_value",
        "bool_value",
        "double_value",
        "string_value",
        "int_value",
        "bool_value",
        "double_value",
        "string_value",
        "int_value",
        "int_value",
    ]
    assert_same_as_reference(batch, {})


def test_special_floats_and_empty_arrays_round_trip() -> None:
    span = finished(
        1,
        "s",
        1,
        2,
        attributes={"inf": math.inf, "neg": -0.0, "empty": [], "nan": math.nan},
    )
    body = encode_request([span], {})
    reference = reference_request([span], {}).SerializeToString()
    assert body == reference  # NaN != NaN, so compare bytes only


def test_lone_surrogates_are_replaced_instead_of_failing_the_batch() -> None:
    span = finished(1, "bad \ud800 name", 1, 2, attributes={"k": "v\udfff"})
    decoded = ExportTraceServiceRequest.FromString(encode_request([span], {}))
    [message] = decoded.resource_spans[0].scope_spans[0].spans
    assert (message.name, message.attributes[0].value.string_value) == ("bad ? name", "v?")


class _Kept:
    """A processor keeping ended spans, for the live-span encoder tests."""

    def __init__(self) -> None:
        self.spans: list[LiveSpan] = []

    def on_end(self, span: LiveSpan) -> None:
        self.spans.append(span)

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self, timeout: float = 10.0) -> None:
        pass


json_value = st.one_of(st.none(), text, int64, st.dictionaries(text, text, max_size=2))
live_spans = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(["", "chat gpt-4o"]), text),  # name
        st.sampled_from(["LLM", "GATEWAY", "custom kind"]),  # span type
        attributes,
        st.one_of(st.just(None), st.tuples(json_value)),  # inputs, if recorded
        st.booleans(),  # record outputs
        st.sampled_from(["UNSET", "OK", "ERROR"]),
        st.one_of(st.just(""), text),  # status message
        events,
        st.booleans(),  # child of the previous span
    ),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(live_spans, st.one_of(st.none(), text))
def test_live_spans_encode_as_their_finished_form(
    drawn: list[tuple[Any, ...]], experiment: str | None
) -> None:
    kept = _Kept()
    tracer = Tracer(
        kept, id_generator=IncrementalIdGenerator(), clock=FakeClock(), experiment=experiment
    )
    parent: LiveSpan | None = None
    for name, span_type, attrs, inputs, outputs, status, message, evts, nested in drawn:
        span = tracer.start(name, span_type, parent if nested else None, dict(attrs))
        if inputs is not None:
            span.set_inputs(inputs[0])
        if outputs:
            span.set_outputs({"answer": name})
        for event in evts:
            span.add_event(event.name, event.attributes, event.timestamp_ns or None)
        span.set_status(status, message)
        span.end()
        parent = span
    resource = {"service.name": "svc"}
    body = encode_live_request(kept.spans, resource)
    assert body == encode_request([span.to_finished() for span in kept.spans], resource)


def test_raw_bytes_recorded_as_inputs_become_valid_text() -> None:
    kept = _Kept()
    tracer = Tracer(kept, id_generator=IncrementalIdGenerator(), clock=FakeClock())
    span = tracer.start("s", "GATEWAY", None, {})
    span.set_inputs(orjson.Fragment(b'{"q":"caf\xc3\xa9 \xff"}'))  # one invalid byte
    span.end()
    decoded = ExportTraceServiceRequest.FromString(encode_live_request(kept.spans, {}))
    [message] = decoded.resource_spans[0].scope_spans[0].spans
    values = {kv.key: kv.value.string_value for kv in message.attributes}
    assert values == {
        "traceway.span.type": "GATEWAY",
        "traceway.span.inputs": '{"q":"café \ufffd"}',
    }


@pytest.mark.parametrize(
    "size", [0, 1, 100, 101, 102, 127, 128, 129, 16_000, 16_350, 16_355, 16_360, 16_384, 2**21]
)
def test_inputs_and_outputs_of_every_length_class(size: int) -> None:
    # Around the one- to two-byte and two- to three-byte varint boundaries of each length.
    span = finished(1, "s", 1, 2, inputs="i" * size, outputs="é" * (size // 2))
    assert_same_as_reference([span], {})
