"""The stock OpenTelemetry SDK and OTLP/HTTP exporter against a real server."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence

import httpx
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tests.support.live_server import RunningServer


def record_app_trace(experiment: str) -> tuple[list[ReadableSpan], str]:
    """An instrumented 'app': a root with two children, one of them with a grandchild."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"traceway.experiment": experiment}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("handle_request") as root:
        root.set_attribute("traceway.span.type", "CHAIN")
        root.set_attribute("traceway.span.inputs", json.dumps({"question": "why?"}))
        root.set_attribute("traceway.span.outputs", json.dumps("because"))
        with tracer.start_as_current_span("retrieve") as retrieve:
            retrieve.set_attribute("traceway.span.type", "RETRIEVER")
        with tracer.start_as_current_span("llm") as llm:
            llm.set_attribute("gen_ai.operation.name", "chat")
            llm.set_attribute("gen_ai.request.model", "gpt-4o")
            llm.set_attribute("gen_ai.usage.input_tokens", 12)
            llm.set_attribute("gen_ai.usage.output_tokens", 5)
            with tracer.start_as_current_span("parse") as parse:
                parse.set_status(Status(StatusCode.ERROR, "bad json"))
    trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    return list(memory.get_finished_spans()), trace_id


def assert_tree(server: RunningServer, trace_id: str, experiment: str) -> None:
    response = server.get(f"/api/traces/{trace_id}")
    assert response.status_code == 200, response.text
    trace = response.json()
    spans = {span["name"]: span for span in trace["spans"]}
    assert set(spans) == {"handle_request", "retrieve", "llm", "parse"}
    parent_of = {
        name: next((n for n, s in spans.items() if s["span_id"] == span["parent_span_id"]), None)
        for name, span in spans.items()
    }
    assert parent_of == {
        "handle_request": None,
        "retrieve": "handle_request",
        "llm": "handle_request",
        "parse": "llm",
    }
    assert {name: s["span_type"] for name, s in spans.items()} == {
        "handle_request": "CHAIN",
        "retrieve": "RETRIEVER",
        "llm": "CHAT_MODEL",
        "parse": "UNKNOWN",
    }
    assert spans["handle_request"]["inputs"] == {"question": "why?"}
    assert spans["handle_request"]["outputs"] == "because"
    assert spans["parse"]["status"] == "ERROR"
    assert spans["parse"]["status_message"] == "bad json"
    assert (spans["llm"]["input_tokens"], spans["llm"]["output_tokens"]) == (12, 5)
    info = trace["info"]
    assert info["trace_id"] == trace_id
    assert info["name"] == "handle_request"
    assert info["span_count"] == 4
    assert info["status"] == "OK"
    assert (info["input_tokens"], info["output_tokens"], info["total_tokens"]) == (12, 5, 17)
    listed = server.get("/api/traces", params={"experiment": experiment}).json()["traces"]
    assert [t["trace_id"] for t in listed] == [trace_id]


def exporter(server: RunningServer, **kwargs: object) -> OTLPSpanExporter:
    return OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", **kwargs)  # type: ignore[arg-type]


def test_stock_exporter_protobuf(server: RunningServer, experiment: str) -> None:
    spans, trace_id = record_app_trace(experiment)
    assert exporter(server).export(spans) == SpanExportResult.SUCCESS
    assert_tree(server, trace_id, experiment)


def test_stock_exporter_gzip(server: RunningServer, experiment: str) -> None:
    spans, trace_id = record_app_trace(experiment)
    assert exporter(server, compression=Compression.Gzip).export(spans) == SpanExportResult.SUCCESS
    assert_tree(server, trace_id, experiment)


def test_spans_split_across_requests_root_last(server: RunningServer, experiment: str) -> None:
    spans, trace_id = record_app_trace(experiment)
    root = next(s for s in spans if s.parent is None)
    children = [s for s in spans if s.parent is not None]
    sender = exporter(server)
    for span in children:  # one request per span, the root after all of them
        assert sender.export([span]) == SpanExportResult.SUCCESS
    in_progress = server.get(f"/api/traces/{trace_id}").json()["info"]
    assert in_progress["status"] == "IN_PROGRESS"
    assert sender.export([root]) == SpanExportResult.SUCCESS
    assert_tree(server, trace_id, experiment)


def test_same_spans_sent_twice_are_stored_once(server: RunningServer, experiment: str) -> None:
    spans, trace_id = record_app_trace(experiment)
    sender = exporter(server)
    assert sender.export(spans) == SpanExportResult.SUCCESS
    assert sender.export(spans) == SpanExportResult.SUCCESS
    assert_tree(server, trace_id, experiment)


def otlp_json(spans: Sequence[ReadableSpan]) -> bytes:
    """OTLP/JSON as the specification defines it: hex ids, camelCase names."""
    payload = json_format.MessageToDict(encode_spans(spans))
    for resource_spans in payload["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if span.get(key):
                        span[key] = _b64_to_hex(span[key])
    return json.dumps(payload).encode()


def _b64_to_hex(value: str) -> str:
    import base64

    return base64.b64decode(value).hex()


def test_json_encoding(server: RunningServer, experiment: str) -> None:
    spans, trace_id = record_app_trace(experiment)
    response = httpx.post(
        f"{server.url}/v1/traces",
        content=otlp_json(spans),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert_tree(server, trace_id, experiment)


def test_json_encoding_gzip(server: RunningServer, experiment: str) -> None:
    spans, trace_id = record_app_trace(experiment)
    response = httpx.post(
        f"{server.url}/v1/traces",
        content=gzip.compress(otlp_json(spans)),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert_tree(server, trace_id, experiment)


def test_experiment_header_wins_and_unknown_names_are_created(
    server: RunningServer, experiment: str
) -> None:
    spans, trace_id = record_app_trace("named-by-resource")
    header_named = f"{experiment}-header"
    sent = exporter(server, headers={"x-traceway-experiment": header_named}).export(spans)
    assert sent == SpanExportResult.SUCCESS
    found = server.get(f"/api/experiments/by-name/{header_named}")
    assert found.status_code == 200
    listed = server.get("/api/traces", params={"experiment": header_named}).json()["traces"]
    assert [t["trace_id"] for t in listed] == [trace_id]


def test_no_experiment_means_default(server: RunningServer) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("lonely") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert exporter(server).export(memory.get_finished_spans()) == SpanExportResult.SUCCESS
    listed = server.get(
        "/api/traces", params={"experiment": "Default", "filter": f"trace_id = '{trace_id}'"}
    ).json()["traces"]
    assert [t["name"] for t in listed] == ["lonely"]
