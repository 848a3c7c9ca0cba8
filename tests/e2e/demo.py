"""Realistic demo traces, sent through OTLP/HTTP into a running server.

Built with the OpenTelemetry SDK as an application would, with a seeded id
generator and explicit times, so every run produces the same traces (times are
relative to ``now``):

- ``support-bot``: an agent answering questions in session ``sess-alpha`` (a CHAIN
  root, a RETRIEVER, a CHAT_MODEL that calls a tool, the TOOL span, a second
  CHAT_MODEL answering with the tool's result), a second turn of that session, a
  one-turn session ``sess-beta``, and a failing ``summarize`` trace whose PARSER
  span raised (an ``exception`` event with a stack trace);
- ``gateway``: requests through the gateway, each a GATEWAY span with a CACHE
  lookup, a GUARDRAIL check and attempt children; one falls back from openai
  (429, then 503) to anthropic;
- ``rag-eval``: a few plain traces, so the experiments list has more than one row.
"""

from __future__ import annotations

import json
import random
import time
import zlib
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Status, StatusCode

__all__ = [
    "DemoTraces",
    "send_demo_traces",
    "send_in_progress_trace",
    "send_simple_traces",
    "send_wide_trace",
]

MS = 1_000_000
STACKTRACE = """Traceback (most recent call last):
  File "/app/bot/pipeline.py", line 88, in summarize
    summary = parse_summary(raw)
  File "/app/bot/parsing.py", line 41, in parse_summary
    data = json.loads(text)
  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads
    return _default_decoder.decode(s)
json.decoder.JSONDecodeError: Expecting ',' delimiter: line 1 column 57 (char 56)"""

SYSTEM = "You are a concise travel assistant. Use tools for live data."
QUESTION = "What's the weather in Paris right now, and should I pack an umbrella?"
ANSWER = "It's 14 °C and light rain in Paris: yes, pack an umbrella."
WEATHER_CALL = {
    "id": "call_w1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})},
}
WEATHER = {"city": "Paris", "temp_c": 14, "conditions": "light rain", "wind_kph": 18}


class SeededIds(IdGenerator):
    """Random-looking but repeatable trace and span ids."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._rng.getrandbits(128) or 1


@dataclass
class DemoTraces:
    """Ids of the demo traces and spans that tests look for (32/16 hex)."""

    chat_trace: str = ""
    chat_span: str = ""
    tool_span: str = ""
    second_turn_trace: str = ""
    error_trace: str = ""
    error_span: str = ""
    gateway_trace: str = ""
    gateway_span: str = ""
    fallback_attempt_span: str = ""


def _hex_ids(span: SdkSpan | ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class _Sender:
    def __init__(self, base_url: str, experiment: str, seed: int) -> None:
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": "demo", "traceway.experiment": experiment}),
            id_generator=SeededIds(seed),
        )
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.tracer = self.provider.get_tracer("traceway-demo")
        self.url = f"{base_url}/v1/traces"

    def span(
        self,
        name: str,
        span_type: str,
        start: int,
        duration_ms: float,
        *,
        parent: SdkSpan | None = None,
        inputs: Any = None,
        outputs: Any = None,
        attributes: dict[str, Any] | None = None,
        error: str | None = None,
        end: bool = True,
    ) -> SdkSpan:
        context = otel_trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(name, context=context, start_time=start)
        assert isinstance(span, SdkSpan)
        span.set_attribute("traceway.span.type", span_type)
        if inputs is not None:
            span.set_attribute("traceway.span.inputs", json.dumps(inputs))
        if outputs is not None:
            span.set_attribute("traceway.span.outputs", json.dumps(outputs))
        for key, value in (attributes or {}).items():
            span.set_attribute(key, value)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        else:
            span.set_status(Status(StatusCode.OK))
        if end:
            span.end(end_time=start + int(duration_ms * MS))
        return span

    def flush(self) -> None:
        self.provider.shutdown()
        exporter = OTLPSpanExporter(endpoint=self.url)
        assert exporter.export(self.memory.get_finished_spans()) == SpanExportResult.SUCCESS
        exporter.shutdown()


def _chat_turn(
    sender: _Sender, start: int, session: str, question: str, answer: str, with_tool: bool
) -> tuple[str, str, str]:
    """One agent turn; returns (trace id, first chat span id, tool span id)."""
    root = sender.span(
        "answer_question",
        "CHAIN",
        start,
        1840,
        inputs={"question": question},
        outputs={"answer": answer},
        attributes={
            "traceway.trace.metadata": json.dumps({"session_id": session, "user_id": "u-42"}),
            "traceway.trace.tags": json.dumps({"env": "prod", "bot": "travel"}),
        },
        end=False,
    )
    sender.span(
        "search_docs",
        "RETRIEVER",
        start + 12 * MS,
        96,
        parent=root,
        inputs={"query": question, "k": 3},
        outputs=[{"id": "doc-7", "score": 0.82, "text": "Paris averages 11 rainy days in May."}],
    )
    first_messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
    ]
    chat_attrs = {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 182,
        "gen_ai.usage.output_tokens": 24,
        "traceway.cost.usd": 0.0000417,
        "gen_ai.request.temperature": 0.2,
    }
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    tool_span_id = ""
    if with_tool:
        chat = sender.span(
            "chat gpt-4o-mini",
            "CHAT_MODEL",
            start + 120 * MS,
            640,
            parent=root,
            inputs={"model": "gpt-4o-mini", "messages": first_messages, "tools": tools},
            outputs={
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls",
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [WEATHER_CALL],
                        },
                    }
                ]
            },
            attributes=chat_attrs,
        )
        tool = sender.span(
            "get_weather",
            "TOOL",
            start + 770 * MS,
            210,
            parent=root,
            inputs={"city": "Paris"},
            outputs=WEATHER,
        )
        tool_span_id = _hex_ids(tool)[1]
        second_messages = [
            *first_messages,
            {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
            {"role": "tool", "tool_call_id": "call_w1", "content": json.dumps(WEATHER)},
        ]
        sender.span(
            "chat gpt-4o-mini",
            "CHAT_MODEL",
            start + 1000 * MS,
            820,
            parent=root,
            inputs={"model": "gpt-4o-mini", "messages": second_messages, "tools": tools},
            outputs={
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": answer},
                    }
                ]
            },
            attributes={**chat_attrs, "gen_ai.usage.input_tokens": 241},
        )
    else:
        chat = sender.span(
            "chat gpt-4o-mini",
            "CHAT_MODEL",
            start + 120 * MS,
            1500,
            parent=root,
            inputs={"model": "gpt-4o-mini", "messages": first_messages},
            outputs={"choices": [{"message": {"role": "assistant", "content": answer}}]},
            attributes=chat_attrs,
        )
    root.end(end_time=start + 1840 * MS)
    trace_id, _ = _hex_ids(root)
    return trace_id, _hex_ids(chat)[1], tool_span_id


def _failing_summary(sender: _Sender, start: int) -> tuple[str, str]:
    root = sender.span(
        "summarize",
        "CHAIN",
        start,
        930,
        inputs={"document": "Quarterly report: revenue up 12 %, churn down to 3 %…"},
        attributes={"traceway.trace.tags": json.dumps({"env": "prod"})},
        error="JSONDecodeError: Expecting ',' delimiter",
        end=False,
    )
    sender.span(
        "chat gpt-4o",
        "CHAT_MODEL",
        start + 5 * MS,
        780,
        parent=root,
        inputs={"messages": [{"role": "user", "content": "Summarize as JSON: …"}]},
        outputs={"content": '{"revenue": "+12 %" "churn": "3 %"}'},
        attributes={"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 950},
    )
    parser = sender.span(
        "parse_summary",
        "PARSER",
        start + 800 * MS,
        40,
        parent=root,
        inputs={"text": '{"revenue": "+12 %" "churn": "3 %"}'},
        error="Expecting ',' delimiter: line 1 column 57 (char 56)",
        end=False,
    )
    parser.add_event(
        "exception",
        attributes={
            "exception.type": "json.decoder.JSONDecodeError",
            "exception.message": "Expecting ',' delimiter: line 1 column 57 (char 56)",
            "exception.stacktrace": STACKTRACE,
        },
        timestamp=start + 838 * MS,
    )
    parser.end(end_time=start + 840 * MS)
    root.end(end_time=start + 930 * MS)
    return _hex_ids(root)[0], _hex_ids(parser)[1]


def _gateway_request(
    sender: _Sender, start: int, index: int, fallback: bool
) -> tuple[str, str, str]:
    """One gateway request; returns (trace id, GATEWAY span id, last attempt span id)."""
    rng = random.Random(index)
    model = ("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku")[index % 3]
    provider = "anthropic" if model.startswith("claude") or fallback else "openai"
    latency = 180 + rng.random() * 900 + (1600 if fallback else 0)
    tokens_in, tokens_out = 90 + rng.randrange(400), 20 + rng.randrange(200)
    failed = index % 7 == 3
    cost = 0.0 if failed else round(tokens_in * 2.5e-7 + tokens_out * 1e-6, 7)
    messages = [{"role": "user", "content": f"Translate request #{index} into French."}]
    gateway = sender.span(
        "POST /v1/chat/completions",
        "GATEWAY",
        start,
        latency,
        inputs={"model": model, "messages": messages},
        outputs=None
        if failed
        else {"choices": [{"message": {"role": "assistant", "content": f"Demande n° {index}"}}]},
        attributes={
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": tokens_in,
            "gen_ai.usage.output_tokens": 0 if failed else tokens_out,
            "traceway.cost.usd": cost,
            "traceway.gateway.strategy": "fallback" if fallback else "single",
            "traceway.gateway.attempts": 3 if fallback else 1,
        },
        error="upstream timed out after 3 retries" if failed else None,
        end=False,
    )
    cached = index % 4 == 1
    sender.span(
        "cache lookup",
        "CACHE",
        start + 1 * MS,
        2,
        parent=gateway,
        attributes={"traceway.cache.status": "hit" if cached else "miss"},
    )
    sender.span(
        "input guardrail",
        "GUARDRAIL",
        start + 4 * MS,
        6,
        parent=gateway,
        attributes={"traceway.guardrail.verdict": "fail" if index % 9 == 5 else "pass"},
    )
    offset = 12.0
    last = None
    if fallback:
        for retry, code in ((0, 429), (1, 503)):
            sender.span(
                "attempt openai",
                "LLM",
                start + int(offset * MS),
                700,
                parent=gateway,
                attributes={
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "traceway.gateway.retry": retry,
                    "http.response.status_code": code,
                },
                error=f"openai answered {code}",
            )
            offset += 720
        last = sender.span(
            "attempt anthropic",
            "LLM",
            start + int(offset * MS),
            latency - offset - 5,
            parent=gateway,
            attributes={
                "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-3-5-haiku",
                "traceway.gateway.retry": 0,
                "traceway.gateway.fallback_reason": "openai failed: 503 after 2 attempts",
                "http.response.status_code": 200,
            },
        )
    else:
        last = sender.span(
            f"attempt {provider}",
            "LLM",
            start + int(offset * MS),
            max(latency - offset - 5, 1),
            parent=gateway,
            attributes={
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "traceway.gateway.retry": 0,
                "http.response.status_code": 504 if failed else 200,
            },
            error="upstream timed out" if failed else None,
        )
    gateway.end(end_time=start + int(latency * MS))
    return _hex_ids(gateway)[0], _hex_ids(gateway)[1], _hex_ids(last)[1]


def send_demo_traces(base_url: str, now_ns: int | None = None) -> DemoTraces:
    """Send every demo trace to the server at ``base_url``; returns their ids."""
    now = now_ns if now_ns is not None else time.time_ns()
    demo = DemoTraces()

    bot = _Sender(base_url, "support-bot", seed=1)
    demo.chat_trace, demo.chat_span, demo.tool_span = _chat_turn(
        bot, now - 50 * 60_000 * MS, "sess-alpha", QUESTION, ANSWER, with_tool=True
    )
    demo.second_turn_trace, _, _ = _chat_turn(
        bot,
        now - 48 * 60_000 * MS,
        "sess-alpha",
        "And tomorrow morning?",
        "Tomorrow morning looks dry, 12 °C: the umbrella can stay home.",
        with_tool=False,
    )
    _chat_turn(
        bot,
        now - 30 * 60_000 * MS,
        "sess-beta",
        "Best museum for a rainy afternoon?",
        "The Musée d'Orsay: impressionists, and it's a short walk from the metro.",
        with_tool=False,
    )
    demo.error_trace, demo.error_span = _failing_summary(bot, now - 20 * 60_000 * MS)
    bot.flush()

    gateway = _Sender(base_url, "gateway", seed=2)
    for index in range(24):
        start = now - (23 - index) * 50 * 60_000 * MS - 7 * 60_000 * MS
        trace_id, span_id, last = _gateway_request(gateway, start, index, fallback=index == 22)
        if index == 22:
            demo.gateway_trace, demo.gateway_span, demo.fallback_attempt_span = (
                trace_id,
                span_id,
                last,
            )
    gateway.flush()

    rag = _Sender(base_url, "rag-eval", seed=3)
    for index, question in enumerate(
        ("capital of France?", "tallest mountain?", "speed of light?")
    ):
        root = rag.span(
            "rag_query",
            "CHAIN",
            now - (3 - index) * 86_400_000 * MS,
            300 + 40 * index,
            inputs={"question": question},
            outputs={"answer": "…"},
            end=False,
        )
        rag.span("embed", "EMBEDDING", root.start_time or 0, 30, parent=root)
        root.end(end_time=(root.start_time or 0) + (300 + 40 * index) * MS)
    rag.flush()
    return demo


def send_wide_trace(base_url: str, spans: int, experiment: str = "big") -> str:
    """One trace of ``spans`` spans (a root, 10 steps, the rest spread below them)."""
    sender = _Sender(base_url, experiment, seed=zlib.crc32(f"{experiment}/{spans}".encode()))
    start = time.time_ns() - 60_000 * MS
    root = sender.span("batch_job", "AGENT", start, spans * 0.5, end=False)
    steps = [
        sender.span(
            f"step {i}", "CHAIN", start + i * spans * 45_000, spans * 0.045, parent=root, end=False
        )
        for i in range(10)
    ]
    for i in range(spans - 11):
        step = steps[i % 10]
        begin = (step.start_time or 0) + (i // 10) * 4000
        sender.span(f"tool call {i}", "TOOL", begin, 0.003, parent=step, inputs={"i": i})
    for i, step in enumerate(steps):
        step.end(end_time=start + i * spans * 45_000 + int(spans * 0.045 * MS))
    root.end(end_time=start + int(spans * 0.5 * MS))
    sender.flush()
    return _hex_ids(root)[0]


def send_simple_traces(base_url: str, experiment: str, count: int) -> list[str]:
    """``count`` one-span traces a second apart, oldest first; returns their ids.

    Ids are seeded by the experiment's name and ``count``: repeating a call sends
    the same traces again (which the store keeps once).
    """
    sender = _Sender(base_url, experiment, seed=zlib.crc32(f"{experiment}/{count}".encode()))
    start = time.time_ns() - (count + 60) * 1000 * MS
    ids = []
    for index in range(count):
        span = sender.span(f"job {index:03d}", "CHAIN", start + index * 1000 * MS, 5)
        ids.append(_hex_ids(span)[0])
    sender.flush()
    return ids


def send_in_progress_trace(base_url: str, experiment: str) -> str:
    """A trace whose root span is still open: only its finished child is sent."""
    sender = _Sender(base_url, experiment, seed=zlib.crc32(f"{experiment}/running".encode()))
    start = time.time_ns() - 5_000 * MS
    root = sender.span("long_job", "AGENT", start, 0, end=False)
    sender.span("first step", "TOOL", start + 10 * MS, 30, parent=root)
    sender.flush()
    return _hex_ids(root)[0]
