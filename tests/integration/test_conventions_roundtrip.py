"""Spans written by other SDKs' conventions come back as first-class spans."""

from __future__ import annotations

import json

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.live_server import RunningServer


def send_one(server: RunningServer, experiment: str, attributes: dict[str, object]) -> dict:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("other-sdk").start_as_current_span("call") as span:
        span.set_attributes(attributes)  # type: ignore[arg-type]
        trace_id = format(span.get_span_context().trace_id, "032x")
    exporter = OTLPSpanExporter(
        endpoint=f"{server.url}/v1/traces", headers={"x-traceway-experiment": experiment}
    )
    assert exporter.export(memory.get_finished_spans()) == SpanExportResult.SUCCESS
    [stored] = server.get(f"/api/traces/{trace_id}").json()["spans"]
    return stored


def fields(span: dict) -> dict:
    keys = ("span_type", "inputs", "outputs", "input_tokens", "output_tokens", "total_tokens")
    return {key: span[key] for key in keys}


def test_mlflow_attributes(server: RunningServer, experiment: str) -> None:
    span = send_one(
        server,
        experiment,
        {
            "mlflow.spanType": json.dumps("CHAT_MODEL"),
            "mlflow.spanInputs": json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
            "mlflow.spanOutputs": json.dumps({"choices": [{"message": {"content": "hello"}}]}),
            "mlflow.chat.tokenUsage": json.dumps(
                {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
            ),
        },
    )
    assert fields(span) == {
        "span_type": "CHAT_MODEL",
        "inputs": {"messages": [{"role": "user", "content": "hi"}]},
        "outputs": {"choices": [{"message": {"content": "hello"}}]},
        "input_tokens": 3,
        "output_tokens": 2,
        "total_tokens": 5,
    }


def test_openinference_attributes(server: RunningServer, experiment: str) -> None:
    span = send_one(
        server,
        experiment,
        {
            "openinference.span.kind": "LLM",
            "input.value": json.dumps({"prompt": "2+2?"}),
            "output.value": "4",
            "llm.token_count.prompt": 7,
            "llm.token_count.completion": 1,
            "llm.token_count.total": 8,
        },
    )
    assert fields(span) == {
        "span_type": "LLM",
        "inputs": {"prompt": "2+2?"},
        "outputs": "4",
        "input_tokens": 7,
        "output_tokens": 1,
        "total_tokens": 8,
    }


def test_secrets_are_redacted_before_storage(server: RunningServer, experiment: str) -> None:
    span = send_one(
        server,
        experiment,
        {"http.request.header.authorization": "Bearer sk-live-123", "api_key": "sk-live-456"},
    )
    stored = json.dumps(span)
    assert "sk-live-123" not in stored
    assert "sk-live-456" not in stored
