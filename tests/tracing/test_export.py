"""OTLP encoding and delivery over HTTP, including a tracking server that is down."""

from __future__ import annotations

import base64
import gzip
import logging
import time
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import traceway
from traceway.tracing import config
from traceway.tracing._http import HttpResponse, HttpTransport
from traceway.tracing.otlp import OtlpHttpExporter, encode_spans, traces_url
from traceway.tracing.span import SpanEvent

from .builders import finished
from .http_fakes import OtlpSink, free_port, serve


def b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def test_encode_spans_builds_the_whole_otlp_request() -> None:
    spans = [
        finished(
            2,
            "retrieve",
            2000,
            3000,
            parent=1,
            span_type="RETRIEVER",
            status="ERROR",
            status_message="TimeoutError: slow",
            attributes={
                "k": 3,
                "ratio": 0.5,
                "flag": True,
                "ids": ["a", "b"],
                "filters": {"lang": "en"},
                "huge": 2**70,
                "none": None,
            },
            events=[SpanEvent("exception", 2500, {"exception.type": "TimeoutError"})],
            inputs='{"query":"q"}',
        ),
        finished(1, "agent", 1000, 4000, outputs='"done"'),
    ]
    request = encode_spans(spans, {"service.name": "svc", "traceway.experiment": "exp"})

    def string(key: str, value: str) -> dict[str, Any]:
        return {"key": key, "value": {"stringValue": value}}

    assert MessageToDict(request) == {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        string("service.name", "svc"),
                        string("traceway.experiment", "exp"),
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "traceway"},
                        "spans": [
                            {
                                "traceId": b64("0" * 31 + "1"),
                                "spanId": b64("0" * 15 + "2"),
                                "parentSpanId": b64("0" * 15 + "1"),
                                "name": "retrieve",
                                "kind": "SPAN_KIND_INTERNAL",
                                "startTimeUnixNano": "2000",
                                "endTimeUnixNano": "3000",
                                "attributes": [
                                    {"key": "k", "value": {"intValue": "3"}},
                                    {"key": "ratio", "value": {"doubleValue": 0.5}},
                                    {"key": "flag", "value": {"boolValue": True}},
                                    {
                                        "key": "ids",
                                        "value": {
                                            "arrayValue": {
                                                "values": [
                                                    {"stringValue": "a"},
                                                    {"stringValue": "b"},
                                                ]
                                            }
                                        },
                                    },
                                    string("filters", '{"lang":"en"}'),
                                    string("huge", str(2**70)),
                                    string("traceway.span.type", "RETRIEVER"),
                                    string("traceway.span.inputs", '{"query":"q"}'),
                                ],
                                "events": [
                                    {
                                        "timeUnixNano": "2500",
                                        "name": "exception",
                                        "attributes": [string("exception.type", "TimeoutError")],
                                    }
                                ],
                                "status": {
                                    "message": "TimeoutError: slow",
                                    "code": "STATUS_CODE_ERROR",
                                },
                            },
                            {
                                "traceId": b64("0" * 31 + "1"),
                                "spanId": b64("0" * 15 + "1"),
                                "name": "agent",
                                "kind": "SPAN_KIND_INTERNAL",
                                "startTimeUnixNano": "1000",
                                "endTimeUnixNano": "4000",
                                "attributes": [
                                    string("traceway.span.type", "UNKNOWN"),
                                    string("traceway.span.outputs", '"done"'),
                                ],
                                "status": {"code": "STATUS_CODE_OK"},
                            },
                        ],
                    }
                ],
            }
        ]
    }


def test_sdk_posts_protobuf_with_the_experiment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    sink = OtlpSink()
    with serve(sink) as url:
        traceway.set_tracking_uri(url)
        traceway.set_experiment("exp-1")

        @traceway.trace(span_type=traceway.SpanType.TOOL)
        def lookup(sku: str) -> dict[str, int]:
            return {"stock": 4}

        lookup("A-1")
        assert traceway.flush(timeout=10)
        config.reset()  # closes the kept-alive connection before the server stops

    [request] = sink.requests
    assert (request.method, request.path) == ("POST", "/v1/traces")
    # Not compressed: the server is on this machine (see the compression test below).
    assert {k: request.headers.get(k) for k in ("content-type", "content-encoding")} == {
        "content-type": "application/x-protobuf",
        "content-encoding": None,
    }
    assert request.headers["x-traceway-experiment"] == "exp-1"
    [decoded] = sink.decoded()
    resource = {
        kv.key: kv.value.string_value for kv in decoded.resource_spans[0].resource.attributes
    }
    assert resource["service.name"] == "checkout"
    assert resource["traceway.experiment"] == "exp-1"
    assert resource["telemetry.sdk.name"] == "traceway"
    [span] = decoded.resource_spans[0].scope_spans[0].spans
    assert span.name == "lookup"
    assert {kv.key: kv.value.string_value for kv in span.attributes} == {
        "traceway.span.type": "TOOL",
        "traceway.span.inputs": '{"sku":"A-1"}',
        "traceway.span.outputs": '{"stock":4}',
    }


def test_changing_the_tracking_uri_redirects_later_exports() -> None:
    first, second = OtlpSink(), OtlpSink()
    with serve(first) as first_url, serve(second) as second_url:
        traceway.set_tracking_uri(first_url)
        with traceway.start_span("one"):
            pass
        assert traceway.flush()
        traceway.set_tracking_uri(second_url)
        with traceway.start_span("two"):
            pass
        assert traceway.flush()
        config.reset()
    assert (first.span_names(), second.span_names()) == (["one"], ["two"])


class RecordingTransport(HttpTransport):
    """Answers 200 to everything and keeps each request's URL, headers and body."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, dict[str, str], bytes]] = []

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResponse:
        self.sent.append((url, dict(headers or {}), body or b""))
        return HttpResponse(200)


@pytest.mark.parametrize(
    ("endpoint", "compression", "gzipped"),
    [
        ("https://traces.example.com/v1/traces", "auto", True),
        ("http://10.1.2.3:5000/v1/traces", "auto", True),
        ("http://127.0.0.1:5000/v1/traces", "auto", False),
        ("http://127.8.0.1:5000/v1/traces", "auto", False),
        ("http://[::1]:5000/v1/traces", "auto", False),
        ("http://localhost:5000/v1/traces", "auto", False),
        ("http://127.0.0.1:5000/v1/traces", "gzip", True),
        ("https://traces.example.com/v1/traces", "none", False),
    ],
)
def test_gzip_unless_the_endpoint_is_on_this_machine(
    endpoint: str, compression: Any, gzipped: bool
) -> None:
    transport = RecordingTransport()
    exporter = OtlpHttpExporter(
        endpoint,
        compression=compression,
        resource_attributes={"service.name": "s"},
        transport=transport,
    )
    assert exporter.export([finished(1, "s", 1, 2)])
    [(url, headers, body)] = transport.sent
    assert (url, headers.get("Content-Encoding")) == (endpoint, "gzip" if gzipped else None)
    raw = gzip.decompress(body) if gzipped else body
    expected = encode_spans([finished(1, "s", 1, 2)], {"service.name": "s"})
    assert ExportTraceServiceRequest.FromString(raw) == expected


def test_changing_the_endpoint_decides_compression_again() -> None:
    transport = RecordingTransport()
    exporter = OtlpHttpExporter("http://127.0.0.1:1/v1/traces", transport=transport)
    exporter.export([finished(1, "s", 1, 2)])
    exporter.endpoint = "https://traces.example.com/v1/traces"
    exporter.export([finished(2, "t", 1, 2)])
    assert [headers.get("Content-Encoding") for _, headers, _ in transport.sent] == [None, "gzip"]


def exporter_for(url: str, **options: Any) -> OtlpHttpExporter:
    return OtlpHttpExporter(traces_url(url), backoff_s=0.01, **options)


def test_transient_errors_are_retried_with_backoff() -> None:
    sink = OtlpSink(statuses=[503, 429])
    with serve(sink) as url:
        exporter = exporter_for(url)
        assert exporter.export([finished(1, "s", 1, 2)]) is True
        exporter.shutdown()
    assert len(sink.requests) == 3
    assert sink.span_names() == ["s", "s", "s"]


def test_permanent_errors_are_not_retried_and_warn_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = OtlpSink(statuses=[400, 400])
    with caplog.at_level(logging.INFO, logger="traceway"), serve(sink) as url:
        exporter = exporter_for(url)
        assert exporter.export([finished(1, "s", 1, 2)]) is False
        assert exporter.export([finished(2, "t", 1, 2)]) is False
        assert exporter.export([finished(3, "u", 1, 2)]) is True
        exporter.shutdown()
    assert len(sink.requests) == 3
    assert [(r.levelname, r.getMessage().split(" (")[0]) for r in caplog.records] == [
        ("WARNING", f"traceway: cannot export spans to {url}/v1/traces"),
        ("INFO", f"traceway: span export to {url}/v1/traces resumed"),
    ]


def test_one_request_per_experiment_naming_it_where_it_can() -> None:
    sink = OtlpSink()
    with serve(sink) as url:
        exporter = exporter_for(url, experiment="default-exp", headers={"x-team": "ml"})
        spans = [
            finished(1, "a", 1, 2, experiment="exp-a"),
            finished(2, "b", 1, 2),
            finished(3, "c", 1, 2, experiment="équipe"),
            finished(4, "d", 1, 2, experiment="exp-a"),
        ]
        assert exporter.export(spans)
        exporter.shutdown()

    def resource_experiment(index: int) -> str:
        attributes = sink.decoded()[index].resource_spans[0].resource.attributes
        return next(kv.value.string_value for kv in attributes if kv.key == "traceway.experiment")

    assert [
        (r.headers.get("x-traceway-experiment"), r.headers["x-team"], resource_experiment(i))
        for i, r in enumerate(sink.requests)
    ] == [
        ("exp-a", "ml", "exp-a"),
        ("default-exp", "ml", "default-exp"),
        (None, "ml", "équipe"),  # not a valid header value: the resource attribute names it
    ]
    assert sink.span_names() == ["a", "d", "b", "c"]


def test_unreachable_server_costs_one_warning_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    traceway.set_tracking_uri(f"http://127.0.0.1:{port}")

    @traceway.trace
    def handle(i: int) -> int:
        return i + 1

    with caplog.at_level(logging.INFO, logger="traceway"):
        for i in range(100_000):
            handle(i)
        stats = traceway.tracing.export_stats()
        assert stats is not None and stats.queued <= 2048
        # Wait until the exporter has given up retrying (and warned) before the server starts.
        deadline = time.monotonic() + 30
        while not stats.dropped_export_failed and time.monotonic() < deadline:
            time.sleep(0.05)
            stats = traceway.tracing.export_stats()
            assert stats is not None
        assert stats.dropped_export_failed > 0

        sink = OtlpSink()
        with serve(sink, port=port):
            with traceway.start_span("after-recovery"):
                handle(-1)
            assert traceway.flush(timeout=30)
            config.reset()

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert (
        warnings[0]
        .getMessage()
        .startswith(f"traceway: cannot export spans to http://127.0.0.1:{port}/v1/traces")
    )
    assert any(r.getMessage().endswith("resumed") for r in caplog.records)
    assert sink.span_names()[-2:] == ["handle", "after-recovery"]
