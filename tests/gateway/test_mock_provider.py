"""The mock provider on its own: deterministic answers in OpenAI's exact wire format."""

from __future__ import annotations

import asyncio
import base64
import struct
from itertools import count
from typing import Any

import orjson
import pytest

from traceway.gateway.providers.base import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    RESPONSES,
    UpstreamRequest,
    UpstreamResponse,
)
from traceway.gateway.providers.mock import MockProvider, parse_mock_model

NOW = 1_700_000_000
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city", "unit"],
        },
    },
}


def make_provider(sleeps: list[float] | None = None) -> MockProvider:
    numbers = count()

    async def fake_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    return MockProvider(
        clock=lambda: float(NOW), ids=lambda prefix: f"{prefix}{next(numbers)}", sleep=fake_sleep
    )


def send(request: UpstreamRequest, provider: MockProvider | None = None) -> UpstreamResponse:
    async def run() -> UpstreamResponse:
        return await (provider or make_provider()).send(None, request)  # type: ignore[arg-type]

    return asyncio.run(run())


def stream_events(response: UpstreamResponse) -> list[bytes]:
    assert response.stream is not None

    async def collect() -> list[bytes]:
        return [event async for event in response.stream]  # type: ignore[union-attr]

    return asyncio.run(collect())


def data_events(events: list[bytes]) -> list[Any]:
    out = []
    for event in events:
        assert event.endswith(b"\n\n")
        data = event.split(b"data: ", 1)[1].strip()
        out.append(data.decode() if data == b"[DONE]" else orjson.loads(data))
    return out


def chat(body: dict[str, Any], provider: MockProvider | None = None) -> UpstreamResponse:
    return send(UpstreamRequest(CHAT, body), provider)


def test_echo_chat_completion_is_openai_json() -> None:
    response = chat({"model": "echo", "messages": [{"role": "user", "content": "Hi there"}]})
    assert response.status == 200
    assert response.headers == {"content-type": "application/json"}
    assert response.json() == {
        "id": "chatcmpl-0",
        "object": "chat.completion",
        "created": NOW,
        "model": "echo",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hi there",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
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
        "service_tier": "default",
        "system_fingerprint": "fp_traceway_mock",
    }


def test_generated_answers_are_deterministic_and_follow_the_seed() -> None:
    body = {"model": "mock", "messages": [{"role": "user", "content": "Tell me a story"}]}

    def text(extra: dict[str, Any]) -> str:
        return chat({**body, **extra}).json()["choices"][0]["message"]["content"]

    assert text({}) == text({})
    assert text({"seed": 7}) == text({"seed": 7})
    assert text({"seed": 7}) != text({"seed": 8})
    assert text({}).endswith(".") and 8 <= len(text({}).split()) <= 23


def test_max_tokens_cuts_the_answer_with_finish_reason_length() -> None:
    answer = chat(
        {
            "model": "echo",
            "max_tokens": 2,
            "messages": [{"role": "user", "content": "one two three four"}],
        }
    ).json()
    assert answer["choices"][0]["message"]["content"] == "one two"
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 2


def test_streamed_chat_matches_openai_chunks_with_final_usage_chunk() -> None:
    response = chat(
        {
            "model": "echo",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Hi there"}],
        }
    )
    assert response.headers == {"content-type": "text/event-stream"}
    events = data_events(stream_events(response))
    head = {
        "id": "chatcmpl-0",
        "object": "chat.completion.chunk",
        "created": NOW,
        "model": "echo",
        "system_fingerprint": "fp_traceway_mock",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice], "usage": None}

    usage = chat({"model": "echo", "messages": [{"role": "user", "content": "Hi there"}]}).json()[
        "usage"
    ]
    assert events == [
        chunk({"role": "assistant", "content": "", "refusal": None}),
        chunk({"content": "Hi"}),
        chunk({"content": " there"}),
        chunk({}, "stop"),
        {**head, "choices": [], "usage": usage},
        "[DONE]",
    ]


def test_stream_without_include_usage_has_no_usage_key() -> None:
    response = chat(
        {"model": "echo", "stream": True, "messages": [{"role": "user", "content": "a b"}]}
    )
    events = data_events(stream_events(response))
    assert events[-1] == "[DONE]"
    assert all("usage" not in e for e in events[:-1])
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1]) == "a b"


def test_tool_call_when_the_user_names_the_tool() -> None:
    answer = chat(
        {
            "model": "mock",
            "tools": [WEATHER],
            "messages": [{"role": "user", "content": "Use get_weather for Paris"}],
        }
    ).json()
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "annotations": [],
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": '{"city":"example city","unit":"celsius"}',
                },
            }
        ],
    }


@pytest.mark.parametrize(
    ("tool_choice", "called"),
    [
        ({"type": "function", "function": {"name": "get_weather"}}, True),
        ("required", True),
        ("auto", False),
        ("none", False),
    ],
)
def test_tool_choice_forces_or_prevents_a_call(tool_choice: Any, called: bool) -> None:
    answer = chat(
        {
            "model": "mock",
            "tools": [WEATHER],
            "tool_choice": tool_choice,
            "messages": [{"role": "user", "content": "Hello"}],
        }
    ).json()
    assert (answer["choices"][0]["finish_reason"] == "tool_calls") is called


def test_after_a_tool_result_the_mock_answers_in_text() -> None:
    answer = chat(
        {
            "model": "mock",
            "tools": [WEATHER],
            "tool_choice": "required",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function"}]},
                {"role": "tool", "tool_call_id": "c1", "content": "18C and sunny"},
            ],
        }
    ).json()
    assert answer["choices"][0]["message"]["content"] == "The tool returned: 18C and sunny"
    assert answer["choices"][0]["finish_reason"] == "stop"


def test_streamed_tool_call_deltas_join_to_the_arguments() -> None:
    response = chat(
        {
            "model": "mock",
            "stream": True,
            "tools": [WEATHER],
            "tool_choice": "required",
            "messages": [{"role": "user", "content": "Hi"}],
        }
    )
    events = data_events(stream_events(response))[:-1]
    deltas = [e["choices"][0]["delta"] for e in events]
    assert deltas[1] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ]
    }
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:-1])
    assert orjson.loads(arguments) == {"city": "example city", "unit": "celsius"}
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_embeddings_are_deterministic_unit_vectors_in_float_or_base64() -> None:
    body = {"model": "mock-embedding", "input": ["a", "b"], "dimensions": 8}
    floats = send(UpstreamRequest(EMBEDDINGS, body)).json()
    again = send(UpstreamRequest(EMBEDDINGS, body)).json()
    assert floats == again
    assert [d["index"] for d in floats["data"]] == [0, 1]
    first = floats["data"][0]["embedding"]
    assert len(first) == 8
    assert sum(v * v for v in first) == pytest.approx(1.0)
    assert first != floats["data"][1]["embedding"]
    assert floats["usage"] == {"prompt_tokens": 2, "total_tokens": 2}

    encoded = send(UpstreamRequest(EMBEDDINGS, {**body, "encoding_format": "base64"})).json()
    decoded = struct.unpack("<8f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert decoded == pytest.approx(first, rel=1e-6)


def test_completions_echo_and_stream() -> None:
    body = {"model": "echo", "prompt": "say this"}
    answer = send(UpstreamRequest(COMPLETIONS, body)).json()
    assert answer == {
        "id": "cmpl-0",
        "object": "text_completion",
        "created": NOW,
        "model": "echo",
        "system_fingerprint": "fp_traceway_mock",
        "choices": [{"text": "say this", "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4},
    }
    events = data_events(
        stream_events(send(UpstreamRequest(COMPLETIONS, {**body, "stream": True})))
    )
    assert [e["choices"][0]["text"] for e in events[:-1]] == ["say", " this", ""]
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1] == "[DONE]"


def test_responses_api_text_and_function_call() -> None:
    answer = send(
        UpstreamRequest(RESPONSES, {"model": "echo", "input": "hello", "instructions": "Be brief"})
    ).json()
    assert answer["object"] == "response"
    assert answer["status"] == "completed"
    assert answer["instructions"] == "Be brief"
    assert answer["output"] == [
        {
            "type": "message",
            "id": "msg_0",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "hello", "annotations": [], "logprobs": []}
            ],
        }
    ]
    assert answer["usage"]["output_tokens"] == 1

    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    called = send(
        UpstreamRequest(RESPONSES, {"model": "mock", "input": "please lookup", "tools": [tool]})
    ).json()
    assert called["output"] == [
        {
            "type": "function_call",
            "id": "fc_0",
            "call_id": "call_1",
            "name": "lookup",
            "arguments": "{}",
            "status": "completed",
        }
    ]


def test_responses_stream_is_the_openai_event_sequence() -> None:
    events = stream_events(
        send(UpstreamRequest(RESPONSES, {"model": "echo", "input": "hi you", "stream": True}))
    )
    types = [e.split(b"\n", 1)[0].removeprefix(b"event: ").decode() for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    payloads = data_events(events)
    assert [p["sequence_number"] for p in payloads] == list(range(10))
    assert payloads[-1]["response"]["output"][0]["content"][0]["text"] == "hi you"


@pytest.mark.parametrize(
    ("model", "status", "kind", "headers"),
    [
        ("error-500", 500, "server_error", {}),
        ("error-429", 429, "rate_limit_error", {"retry-after": "1"}),
        ("error-401", 401, "authentication_error", {}),
        ("error-503@5ms", 503, "server_error", {}),
    ],
)
def test_error_models_answer_their_status(
    model: str, status: int, kind: str, headers: dict[str, str]
) -> None:
    response = chat({"model": model, "messages": [{"role": "user", "content": "x"}]})
    assert response.status == status
    assert dict(response.headers) == headers
    error = response.json()["error"]
    assert error["type"] == kind
    assert set(error) == {"message", "type", "param", "code"}


def test_latency_from_the_model_suffix_or_the_header() -> None:
    sleeps: list[float] = []
    provider = make_provider(sleeps)
    chat({"model": "echo@250ms", "messages": [{"role": "user", "content": "x"}]}, provider)
    send(
        UpstreamRequest(
            CHAT,
            {"model": "echo", "messages": [{"role": "user", "content": "x"}]},
            provider_options={"mock_latency_ms": "40"},
        ),
        provider,
    )
    assert sleeps == [0.25, 0.04]
    assert parse_mock_model("echo@250ms") == ("echo", 250)
    assert parse_mock_model("me@example") == ("me@example", 0)


def test_bad_requests_get_400() -> None:
    assert chat({"model": "mock", "messages": []}).status == 400
    assert send(UpstreamRequest(EMBEDDINGS, {"model": "m", "input": []})).status == 400
    assert send(UpstreamRequest(RESPONSES, {"model": "m"})).status == 400
    assert chat({"model": "error-abc", "messages": [{"role": "user"}]}).status == 400
