"""``traceway demo``: a small traced "support agent" calling the gateway's mock provider.

It shows what a real application produces: CHAIN/RETRIEVER/TOOL spans from the
SDK, CHAT_MODEL spans whose requests carry ``traceparent`` so the gateway's own
spans (the GATEWAY request span and its attempts, a fallback from a failing
target) join the same trace, sessions of several turns, a streamed answer and an
error with its stack trace.  It needs nothing but the SDK and a running server.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import traceway
from traceway.tracing.propagation import inject_traceparent

__all__ = ["DEMO_EXPERIMENT", "run_demo"]

DEMO_EXPERIMENT = "demo"

_SYSTEM = "You are a concise travel assistant. Use tools for live data."
_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
_FALLBACK_CONFIG = {
    "strategy": {"mode": "fallback"},
    "targets": [
        {"provider": "mock", "override_params": {"model": "error-503"}},
        {"provider": "mock"},
    ],
}
_DOCS = {
    "paris": "Paris: museums open 9:00-18:00; metro tickets are 2.15 EUR.",
    "rome": "Rome: the Colosseum needs a timed ticket; buses run until midnight.",
    "tokyo": "Tokyo: Suica cards work on trains and in shops.",
}


class _Gateway:
    """Calls ``/v1/chat/completions`` the way an OpenAI client would, traced."""

    def __init__(self, base_url: str) -> None:
        self._url = f"{base_url.rstrip('/')}/v1/chat/completions"

    def chat(self, body: dict[str, Any], *, config: dict[str, Any] | None = None) -> Any:
        with traceway.start_span(
            "chat.completions.create", span_type=traceway.SpanType.CHAT_MODEL
        ) as span:
            span.set_inputs(body)
            span.set_attributes(
                {"gen_ai.provider.name": "openai", "gen_ai.request.model": body["model"]}
            )
            headers = {"content-type": "application/json", "x-traceway-provider": "mock"}
            if config is not None:
                headers["x-traceway-config"] = json.dumps(config)
            inject_traceparent(headers)
            request = urllib.request.Request(
                self._url, data=json.dumps(body).encode(), headers=headers, method="POST"
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
            answer = _assemble_stream(raw) if body.get("stream") else json.loads(raw)
            span.set_outputs(answer)
            usage = answer.get("usage") or {}
            span.set_attributes(
                {
                    "gen_ai.response.model": answer.get("model", body["model"]),
                    "gen_ai.usage.input_tokens": usage.get("prompt_tokens", 0),
                    "gen_ai.usage.output_tokens": usage.get("completion_tokens", 0),
                }
            )
            return answer


def _assemble_stream(raw: bytes) -> dict[str, Any]:
    """Join an SSE chat stream into one chat.completion-shaped answer."""
    content: list[str] = []
    usage: dict[str, Any] = {}
    model = ""
    for line in raw.decode().splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        model = chunk.get("model", model)
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices", []):
            content.append(choice.get("delta", {}).get("content") or "")
    message = {"role": "assistant", "content": "".join(content)}
    return {"model": model, "choices": [{"index": 0, "message": message}], "usage": usage}


@traceway.trace(span_type=traceway.SpanType.RETRIEVER)
def search_docs(query: str) -> list[str]:
    return [text for city, text in _DOCS.items() if city in query.lower()] or [_DOCS["paris"]]


@traceway.trace(span_type=traceway.SpanType.TOOL)
def get_weather(city: str) -> dict[str, Any]:
    if city.lower() == "atlantis":
        raise LookupError(f"no weather station in {city!r}")
    return {"city": city, "forecast": "light rain", "temperature_c": 14}


@traceway.trace(span_type=traceway.SpanType.AGENT)
def answer_question(gateway: _Gateway, question: str, city: str, *, stream: bool = False) -> str:
    docs = search_docs(question)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": f"{_SYSTEM}\nContext: {' '.join(docs)}"},
        {"role": "user", "content": f"{question} (use get_weather)"},
    ]
    first = gateway.chat({"model": "gpt-4o-mini", "messages": messages, "tools": [_WEATHER_TOOL]})
    message = first["choices"][0]["message"]
    messages.append(message)
    for call in message.get("tool_calls") or []:
        result = get_weather(city)
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)})
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": messages}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    final = gateway.chat(body, config=_FALLBACK_CONFIG)
    return str(final["choices"][0]["message"]["content"])


def run_demo(base_url: str = "http://localhost:5000") -> list[str]:
    """Send the demo traffic to the server at ``base_url``; returns the trace ids."""
    traceway.set_tracking_uri(base_url)
    traceway.set_experiment(DEMO_EXPERIMENT)
    gateway = _Gateway(base_url)
    conversations = [
        (
            "sess-alice",
            "u-alice",
            ["Any tips for Paris?", "What should I pack for Paris?"],
            "Paris",
        ),
        ("sess-bob", "u-bob", ["Is Rome busy at night?"], "Rome"),
        ("sess-carol", "u-carol", ["Weather in Tokyo tomorrow?"], "Tokyo"),
    ]
    trace_ids = []
    for session_id, user_id, questions, city in conversations:
        for turn, question in enumerate(questions):
            with traceway.start_span("support_turn", span_type=traceway.SpanType.CHAIN) as span:
                span.set_inputs({"question": question})
                traceway.update_current_trace(
                    session_id=session_id, user_id=user_id, tags={"app": "travel-bot"}
                )
                reply = answer_question(gateway, question, city, stream=turn == 1)
                span.set_outputs(reply)
            trace_ids.append(traceway.get_last_active_trace_id() or "")
    try:
        with traceway.start_span("support_turn", span_type=traceway.SpanType.CHAIN):
            traceway.update_current_trace(session_id="sess-dave", user_id="u-dave")
            answer_question(gateway, "What is the weather in Atlantis?", "Atlantis")
    except LookupError:
        pass  # the failure is the point: it shows up as an error trace with its stack
    trace_ids.append(traceway.get_last_active_trace_id() or "")
    traceway.flush(timeout=10)
    return trace_ids


def demo_is_reachable(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/api/health", timeout=5):
            return True
    except (urllib.error.URLError, OSError):
        return False
