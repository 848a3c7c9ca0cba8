"""The gateway's spans, exported to memory: structure, parents, trace joining, no secrets."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from itertools import count
from typing import Any

import httpx
import orjson
import pytest

from tests.gateway.conftest import API_KEY, RunningGateway, serve, settings
from tests.gateway.fakes.openai_server import FakeOpenAI, Reply
from traceway.gateway import Gateway
from traceway.gateway.providers.mock import MockProvider
from traceway.gateway.tracing import GatewayTracer
from traceway.tracing.export import SimpleProcessor
from traceway.tracing.span import FinishedSpan
from traceway.tracing.testing import FakeClock, IncrementalIdGenerator, InMemoryExporter
from traceway.tracing.tracer import Tracer

NOW = 1_700_000_000
MESSAGES = [{"role": "user", "content": "hello there"}]
TRACE = "00000000000000000000000000000001"


@pytest.fixture
def traced(start_gateway: Callable[..., RunningGateway]) -> Iterator[RunningGateway]:
    """A traced gateway with a fake clock, incremental ids and a deterministic mock."""
    exporter = InMemoryExporter()
    tracer = Tracer(
        SimpleProcessor(exporter), id_generator=IncrementalIdGenerator(), clock=FakeClock()
    )
    numbers = count()
    mock = MockProvider(clock=lambda: float(NOW), ids=lambda prefix: f"{prefix}{next(numbers)}")
    running = start_gateway(settings(), tracer=GatewayTracer(tracer=tracer), providers=[mock])
    running.exporter = exporter
    yield running


def chat(gw: RunningGateway, body: dict[str, Any], **headers: str) -> httpx.Response:
    with httpx.Client(base_url=gw.base_url) as http:
        return http.post(
            "/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {API_KEY}", **headers},
        )


def by_start(spans: list[FinishedSpan]) -> list[FinishedSpan]:
    return sorted(spans, key=lambda s: s.start_time_ns)


def test_a_request_is_a_gateway_span_with_an_attempt_span(traced: RunningGateway) -> None:
    body = {"model": "echo", "messages": MESSAGES, "temperature": 0.5, "max_tokens": 20}
    response = chat(traced, body, **{"x-traceway-metadata": '{"user_id": "u1"}'})
    assert response.headers["x-traceway-trace-id"] == TRACE
    gateway_span, attempt = by_start(traced.spans(2))
    answer = response.content.decode()
    assert asdict(gateway_span) == {
        "trace_id": TRACE,
        "span_id": "0000000000000001",
        "parent_span_id": None,
        "name": "gateway chat/completions",
        "span_type": "GATEWAY",
        "start_time_ns": 1000,
        "end_time_ns": 4000,
        "status": "OK",
        "status_message": "",
        "attributes": {
            "traceway.gateway.route": "default",
            "traceway.gateway.strategy": "single",
            "traceway.trace.metadata": {"user_id": "u1"},
            "http.response.status_code": 200,
        },
        "events": [],
        "inputs": orjson.dumps(body).decode(),
        "outputs": answer,
        "experiment": None,
    }
    assert asdict(attempt) == {
        "trace_id": TRACE,
        "span_id": "0000000000000002",
        "parent_span_id": "0000000000000001",
        "name": "chat echo",
        "span_type": "CHAT_MODEL",
        "start_time_ns": 2000,
        "end_time_ns": 3000,
        "status": "OK",
        "status_message": "",
        "attributes": {
            "gen_ai.provider.name": "mock",
            "traceway.gateway.option_index": "config",
            "traceway.gateway.retry": 0,
            "gen_ai.request.model": "echo",
            "gen_ai.response.model": "echo",
            "gen_ai.usage.input_tokens": 9,
            "gen_ai.usage.output_tokens": 2,
            "gen_ai.response.finish_reasons": ["stop"],
            "traceway.cost.usd": 0.0,  # the mock's price
            "http.response.status_code": 200,
            "traceway.gateway.latency_ms": 0.001,
        },
        "events": [],
        "inputs": None,
        "outputs": None,
        "experiment": None,
    }


def test_streams_are_aggregated_into_the_outputs(traced: RunningGateway) -> None:
    body = {
        "model": "echo",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert chat(traced, body).status_code == 200
    gateway_span, attempt = by_start(traced.spans(2))
    expected = {
        "id": "chatcmpl-0",
        "model": "echo",
        "created": NOW,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello there"},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 2,
            "total_tokens": 11,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
    }
    assert json.loads(gateway_span.outputs or "") == expected
    assert attempt.outputs is None  # the request span holds the answer
    assert gateway_span.attributes["traceway.gateway.stream"] is True
    assert attempt.attributes["gen_ai.usage.output_tokens"] == 2
    assert attempt.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert (attempt.parent_span_id, attempt.status) == (gateway_span.span_id, "OK")


def test_fallback_and_retries_are_attempt_spans(
    traced: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Reply.error(503, "busy"), Reply.error(500, "down"))
    config = {
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "openai", "custom_host": fake_openai.url, "retry": {"attempts": 1}},
            {"provider": "mock", "override_params": {"model": "echo"}},
        ],
    }
    response = chat(
        traced,
        {"model": "gpt-4o", "messages": MESSAGES},
        **{"x-traceway-config": json.dumps(config)},
    )
    assert response.status_code == 200
    gateway_span, *attempts = by_start(traced.spans(4))
    summary = [
        (
            a.name,
            a.parent_span_id,
            a.status,
            a.status_message,
            a.attributes["gen_ai.provider.name"],
            a.attributes["traceway.gateway.option_index"],
            a.attributes["traceway.gateway.retry"],
            a.attributes.get("traceway.gateway.fallback_reason"),
            a.attributes["http.response.status_code"],
        )
        for a in attempts
    ]
    assert summary == [
        ("chat gpt-4o", "0000000000000001", "ERROR", "HTTP 503: busy", "openai",
         "config.targets[0]", 0, None, 503),
        ("chat gpt-4o", "0000000000000001", "ERROR", "HTTP 500: down", "openai",
         "config.targets[0]", 1, None, 500),
        ("chat echo", "0000000000000001", "OK", "", "mock",
         "config.targets[1]", 0, "config.targets[0] answered 500", 200),
    ]  # fmt: skip
    assert json.loads(attempts[0].outputs or "")["error"]["message"] == "busy"
    # The overridden body is what the last attempt sent.
    assert json.loads(attempts[2].inputs or "")["model"] == "echo"
    assert gateway_span.attributes["traceway.gateway.attempts"] == 3
    assert gateway_span.attributes["traceway.gateway.strategy"] == "fallback"
    assert gateway_span.attributes["traceway.gateway.route"] == "inline"


def test_an_incoming_traceparent_is_continued(traced: RunningGateway) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = chat(traced, {"model": "echo", "messages": MESSAGES}, traceparent=parent)
    gateway_span, attempt = by_start(traced.spans(2))
    assert (gateway_span.trace_id, gateway_span.parent_span_id) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )
    assert attempt.trace_id == gateway_span.trace_id
    assert attempt.parent_span_id == gateway_span.span_id
    assert response.headers["x-traceway-trace-id"] == "0af7651916cd43dd8448eb211c80319c"


def test_an_unsampled_traceparent_records_nothing(traced: RunningGateway) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    assert chat(traced, {"model": "echo", "messages": MESSAGES}, traceparent=parent).is_success
    assert chat(traced, {"model": "echo", "messages": MESSAGES}).is_success
    assert {s.trace_id for s in traced.spans(2)} == {TRACE}


def test_the_trace_id_header_is_recorded_and_echoed(traced: RunningGateway) -> None:
    response = chat(
        traced, {"model": "echo", "messages": MESSAGES}, **{"x-portkey-trace-id": "r-1"}
    )
    assert response.headers["x-traceway-trace-id"] == "r-1"
    gateway_span, _ = by_start(traced.spans(2))
    assert gateway_span.attributes["traceway.gateway.trace_id"] == "r-1"


def test_no_secret_reaches_a_span(traced: RunningGateway, fake_openai: FakeOpenAI) -> None:
    config = {
        "strategy": {"mode": "fallback"},
        "targets": [
            {
                "provider": "openai",
                "custom_host": fake_openai.url.replace("http://", "http://user:hunter2@"),
                "api_key": "sk-config-secret",
            },
            {"provider": "mock", "api_key": "sk-mock-secret", "virtual_key": "vk-secret"},
        ],
    }
    fake_openai.script(Reply.error(500))
    with httpx.Client(base_url=traced.base_url) as http:
        response = http.post(
            "/chat/completions",
            json={"model": "echo", "messages": MESSAGES, "api_key": "sk-body-secret"},
            headers={
                "authorization": "Bearer sk-header-secret",
                "x-portkey-api-key": "gw-secret",
                "x-portkey-virtual-key": "vk-header-secret",
                "x-traceway-config": json.dumps(config),
            },
        )
    assert response.status_code == 200
    exported = orjson.dumps([asdict(s) for s in traced.spans(3)], default=str).decode()
    for secret in (
        "sk-config-secret",
        "sk-mock-secret",
        "vk-secret",
        "sk-header-secret",
        "gw-secret",
        "vk-header-secret",
        "hunter2",
        "sk-body-secret",
    ):
        assert secret not in exported


def test_rejected_requests_are_traced_too(traced: RunningGateway) -> None:
    with httpx.Client(base_url=traced.base_url) as http:
        response = http.post("/chat/completions", content=b"{oops")
    (span,) = traced.spans(1)
    assert response.headers["x-traceway-trace-id"] == span.trace_id
    assert (span.name, span.span_type, span.status, span.parent_span_id) == (
        "gateway chat/completions",
        "GATEWAY",
        "ERROR",
        None,
    )
    assert span.inputs == '"{oops"'
    assert json.loads(span.outputs or "") == response.json()
    assert span.attributes["http.response.status_code"] == 400


def test_the_span_exporter_argument_and_shutdown_flush() -> None:
    exporter = InMemoryExporter()
    gateway = Gateway(settings(), span_exporter=exporter)
    with serve(gateway) as url, httpx.Client(base_url=url) as http:
        for model in ("echo", "mock"):
            http.post("/v1/embeddings", json={"model": model, "input": "x", "dimensions": 2})
    # Leaving ``serve`` ran the lifespan shutdown, which flushed the batch processor.
    spans = exporter.spans
    assert exporter.shut_down
    assert sorted((s.name, s.span_type) for s in spans) == [
        ("embeddings echo", "EMBEDDING"),
        ("embeddings mock", "EMBEDDING"),
        ("gateway embeddings", "GATEWAY"),
        ("gateway embeddings", "GATEWAY"),
    ]
    attempt = next(s for s in spans if s.name == "embeddings echo")
    assert attempt.attributes["gen_ai.usage.input_tokens"] == 1


def test_a_failing_span_pipeline_never_fails_the_request(
    start_gateway: Callable[..., RunningGateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken:
        def on_end(self, span: object) -> None:
            raise RuntimeError("processor is broken")

        def force_flush(self, timeout: float = 10.0) -> bool:
            return True

        def shutdown(self, timeout: float = 10.0) -> None:
            pass

    # Production behaviour: internal errors are logged, not raised.
    monkeypatch.setattr("traceway.tracing._internal.RAISE_INTERNAL_ERRORS", False)
    gw = start_gateway(settings(), tracer=GatewayTracer(tracer=Tracer(Broken())))  # type: ignore[arg-type]
    for stream in (False, True):
        response = chat(gw, {"model": "echo", "messages": MESSAGES, "stream": stream})
        assert response.status_code == 200
        assert "hello" in response.text


def test_unsampled_requests_record_nothing_but_keep_a_trace_id() -> None:
    exporter = InMemoryExporter()
    gateway = Gateway(settings(trace_sample_rate=0.0), span_exporter=exporter)
    with serve(gateway) as url, httpx.Client(base_url=url) as http:
        response = http.post("/v1/chat/completions", json={"model": "echo", "messages": MESSAGES})
    assert response.status_code == 200
    assert len(response.headers["x-traceway-trace-id"]) == 32
    assert exporter.spans == []
