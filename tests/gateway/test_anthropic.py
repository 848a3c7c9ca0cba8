"""The Anthropic provider: translation both ways, and exchanges with a fake Messages API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from tests.gateway.conftest import RunningGateway
from tests.gateway.fakes.anthropic_server import API_KEY, FakeAnthropic, Reply
from tests.gateway.provider_calls import payloads, send
from traceway.gateway.providers._openai_format import TranslationError
from traceway.gateway.providers._sse import DONE, SSEEvent
from traceway.gateway.providers.anthropic import (
    AnthropicProvider,
    AnthropicStreamTranslator,
    anthropic_error_to_openai,
    from_anthropic_response,
    to_anthropic_request,
)
from traceway.gateway.providers.base import (
    CHAT,
    EMBEDDINGS,
    UpstreamError,
    UpstreamRequest,
)

NOW = 1_700_000_000
PNG = "iVBORw0KGgo="
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeAnthropic) -> FakeAnthropic:
    server.reset()
    return server


@pytest.fixture
def provider() -> AnthropicProvider:
    return AnthropicProvider(clock=lambda: NOW)


def chat(fake: FakeAnthropic, body: dict[str, Any], **kwargs: Any) -> UpstreamRequest:
    return UpstreamRequest(
        endpoint=CHAT,
        body={"model": "claude-sonnet-4-5"} | body,
        api_key=API_KEY,
        base_url=fake.url,
        **kwargs,
    )


# -- OpenAI request -> Anthropic request ---------------------------------------------------


def test_request_translation_covers_a_whole_tool_using_conversation() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather where these were taken?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/b.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
            {
                "role": "tool",
                "tool_call_id": "toolu_2",
                "content": [{"type": "text", "text": "4 C"}],
            },
            {"role": "user", "content": "And tomorrow?"},
            {"role": "user", "content": "Short answer please."},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "max_completion_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "user": "user-42",
        "stream": True,
    }
    assert to_anthropic_request(body) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 300,
        "system": "Be brief.\n\nUse metric units.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather where these were taken?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/b.jpg"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_2",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "4 C"}],
                    },
                    {"type": "text", "text": "And tomorrow?"},
                    {"type": "text", "text": "Short answer please."},
                ],
            },
        ],
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "top_p": 0.9,
        "metadata": {"user_id": "user-42"},
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": WEATHER_TOOL["function"]["parameters"],
            }
        ],
        "tool_choice": {"type": "any"},
        "stream": True,
    }


def test_request_defaults_max_tokens_and_keeps_cache_control_on_system_blocks() -> None:
    cached = {"type": "text", "text": "Long manual.", "cache_control": {"type": "ephemeral"}}
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": None,
        "messages": [
            {"role": "system", "content": [cached]},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": ""},  # empty: left out
        ],
    }
    assert to_anthropic_request(body) == {
        "model": "claude-haiku-4-5",
        "max_tokens": 4096,
        "system": [cached],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, None, None),
    ],
)
def test_tool_choice_translation(tool_choice: Any, parallel: Any, expected: Any) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": tool_choice,
        "parallel_tool_calls": parallel,
    }
    assert to_anthropic_request(body).get("tool_choice") == expected


@pytest.mark.parametrize(
    ("change", "message", "param"),
    [
        ({"n": 2}, "n > 1 is not supported by provider anthropic", "n"),
        ({"model": None}, "model is required", "model"),
        ({"messages": []}, "messages must be a non-empty list", "messages"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "content part type 'input_audio' is not supported by provider anthropic",
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "critic", "content": "x"}]},
            "unsupported role 'critic'",
            "messages[0].role",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{"}}],
                    }
                ]
            },
            "tool call arguments are not valid JSON",
            "messages[0].tool_calls[0].function",
        ),
        (
            {"tools": [{"type": "web_search"}]},
            "only function tools are supported",
            "tools[0]",
        ),
    ],
)
def test_untranslatable_requests_name_the_problem(
    change: dict[str, Any], message: str, param: str
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]} | change
    with pytest.raises(TranslationError) as caught:
        to_anthropic_request(body)
    assert (caught.value.message, caught.value.param) == (message, param)


# -- Anthropic answers -> OpenAI answers ---------------------------------------------------


def test_response_translation_with_tool_use_and_cache_usage() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 20,
            "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 1000,
            "output_tokens": 30,
        },
    }
    assert from_anthropic_response(message, model="claude-sonnet-4-5", created=NOW) == {
        "id": "msg_1",
        "object": "chat.completion",
        "created": NOW,
        "model": "claude-sonnet-4-5-20250929",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 1120,
            "completion_tokens": 30,
            "total_tokens": 1150,
            "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 100},
        },
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_finish_reasons(stop_reason: str, finish_reason: str) -> None:
    message = {"id": "m", "content": [], "stop_reason": stop_reason, "usage": {}}
    result = from_anthropic_response(message, model="m", created=NOW)
    assert result["choices"][0]["finish_reason"] == finish_reason


@pytest.mark.parametrize(
    ("status", "kind", "openai_type"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", "authentication_error"),
        (403, "permission_error", "permission_error"),
        (404, "not_found_error", "not_found_error"),
        (413, "request_too_large", "invalid_request_error"),
        (429, "rate_limit_error", "rate_limit_error"),
        (500, "api_error", "server_error"),
        (529, "overloaded_error", "server_error"),
    ],
)
def test_error_translation(status: int, kind: str, openai_type: str) -> None:
    payload = {"type": "error", "error": {"type": kind, "message": "details"}}
    assert anthropic_error_to_openai(status, payload) == {
        "error": {"message": "details", "type": openai_type, "param": None, "code": kind}
    }


def test_error_translation_of_a_body_that_is_not_anthropic_json() -> None:
    assert anthropic_error_to_openai(502, "<html>Bad gateway</html>") == {
        "error": {
            "message": "anthropic answered HTTP 502: <html>Bad gateway</html>",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


def events(*pairs: tuple[str, dict[str, Any]]) -> list[SSEEvent]:
    return [SSEEvent(name, orjson.dumps(data).decode()) for name, data in pairs]


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    data = {"type": "content_block_start", "index": index, "content_block": block}
    return "content_block_start", data


def block_delta(index: int, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


def test_stream_translation_of_text_and_tool_use_with_usage() -> None:
    translator = AnthropicStreamTranslator(model="claude", include_usage=True, created=NOW)
    start = {
        "id": "msg_1",
        "model": "claude-x",
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 1},
    }
    tool = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    stream = events(
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
        block_start(0, {"type": "text", "text": ""}),
        block_delta(0, {"type": "text_delta", "text": "Checking"}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        block_start(1, tool),
        block_delta(1, {"type": "input_json_delta", "partial_json": ""}),
        block_delta(1, {"type": "input_json_delta", "partial_json": '{"city":'}),
        block_delta(1, {"type": "input_json_delta", "partial_json": ' "Paris"}'}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 25},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    )
    chunks = [chunk for event in stream for chunk in translator.feed(event)]
    assert translator.finish() == []

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "msg_1",
            "object": "chat.completion.chunk",
            "created": NOW,
            "model": "claude-x",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    call_start = {
        "index": 0,
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert chunks == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Checking"}),
        chunk({"tool_calls": [call_start]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]}),
        chunk({}, "tool_calls"),
        {
            "id": "msg_1",
            "object": "chat.completion.chunk",
            "created": NOW,
            "model": "claude-x",
            "choices": [],
            "usage": {
                "prompt_tokens": 15,
                "completion_tokens": 25,
                "total_tokens": 40,
                "prompt_tokens_details": {"cached_tokens": 5},
            },
        },
    ]


def test_stream_translation_of_errors_and_of_a_stream_cut_short() -> None:
    translator = AnthropicStreamTranslator(model="claude", include_usage=False, created=NOW)
    start = {"type": "message_start", "message": {"id": "msg_1", "model": "claude", "usage": {}}}
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert translator.feed(events(("message_start", start))[0])[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
    }
    assert translator.feed(events(("error", overloaded))[0]) == [
        {
            "error": {
                "message": "Overloaded",
                "type": "server_error",
                "param": None,
                "code": "overloaded_error",
            }
        }
    ]
    cut = AnthropicStreamTranslator(model="claude", include_usage=False, created=NOW)
    cut.feed(events(("message_start", start))[0])
    assert cut.finish() == [
        {
            "error": {
                "message": "the stream ended before message_stop",
                "type": "server_error",
                "param": None,
                "code": "api_error",
            }
        }
    ]


# -- end to end against the fake Messages API ----------------------------------------------


def test_text_with_system_prompt(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.script(Reply.text("Bonjour !", id="msg_abc"))
    request = chat(
        fake,
        {
            "messages": [
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": "Hello"},
            ]
        },
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    response, stream = send(provider, request)
    assert (response.status, stream) == (200, None)
    assert response.json() == {
        "id": "msg_abc",
        "object": "chat.completion",
        "created": NOW,
        "model": "claude-sonnet-4-5",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Bonjour !", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 6,
            "total_tokens": 18,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    [received] = fake.requests
    assert (received.method, received.path) == ("POST", "/v1/messages")
    assert received.body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": "Answer in French.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
    }
    headers = {k: received.headers[k] for k in ("x-api-key", "anthropic-version", "anthropic-beta")}
    assert headers == {
        "x-api-key": API_KEY,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "prompt-caching-2024-07-31",
    }


def test_tool_call_then_tool_result_round_trip(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.script(Reply.tool_use("get_weather", {"city": "Paris"}, id="toolu_9"), Reply.text("18 C"))
    question = {"role": "user", "content": "Weather in Paris?"}
    first, _ = send(provider, chat(fake, {"messages": [question], "tools": [WEATHER_TOOL]}))
    answer = first.json()["choices"][0]
    assert answer["finish_reason"] == "tool_calls"
    assert answer["message"]["tool_calls"] == [
        {
            "id": "toolu_9",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    # The client sends the call back with its result; the fake checks the pairing.
    follow_up = [
        question,
        answer["message"],
        {"role": "tool", "tool_call_id": "toolu_9", "content": '{"celsius": 18}'},
    ]
    second, _ = send(provider, chat(fake, {"messages": follow_up, "tools": [WEATHER_TOOL]}))
    assert second.status == 200
    assert second.json()["choices"][0]["message"]["content"] == "18 C"
    assert fake.requests[1].body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_9",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_9", "content": '{"celsius": 18}'}
            ],
        },
    ]


def test_multi_turn_with_image_and_forced_tool(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.script(Reply.tool_use("get_weather", {"city": "Rome"}))
    body = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! Send a photo."},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "text", "text": "Where is this?"},
                ],
            },
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    response, _ = send(provider, chat(fake, body))
    assert response.status == 200
    sent = fake.requests[0].body
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][2]["content"][0] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_stop_sequence_and_cache_usage(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    usage = {
        "input_tokens": 3,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 0,
        "output_tokens": 7,
    }
    fake.script(
        Reply.text("one two", stop_reason="stop_sequence", stop_sequence="END", usage=usage)
    )
    body = {"messages": [{"role": "user", "content": "count"}], "stop": ["END", "STOP"]}
    response, _ = send(provider, chat(fake, body))
    result = response.json()
    assert fake.requests[0].body["stop_sequences"] == ["END", "STOP"]
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"] == {
        "prompt_tokens": 2003,
        "completion_tokens": 7,
        "total_tokens": 2010,
        "prompt_tokens_details": {"cached_tokens": 2000},
    }


def test_streamed_text_with_usage(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.script(Reply.text("Hello there, friend", id="msg_s"))
    body = {
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response, stream = send(provider, chat(fake, body))
    assert response.status == 200 and stream is not None
    assert stream[-1] == DONE
    chunks = payloads(stream)
    assert {(c["id"], c["object"], c["created"], c["model"]) for c in chunks} == {
        ("msg_s", "chat.completion.chunk", NOW, "claude-sonnet-4-5")
    }
    assert [c["choices"][0]["delta"] for c in chunks[:-2]] == [
        {"role": "assistant", "content": ""},
        {"content": "Hello "},
        {"content": "there, "},
        {"content": "friend"},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 6,
        "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert fake.requests[0].body["stream"] is True


def test_streamed_tool_call_arguments_reassemble(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    arguments = {"city": "San Francisco", "unit": "celsius"}
    fake.script(Reply.tool_use("get_weather", arguments, id="toolu_s", text="Let me look."))
    body = {
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [WEATHER_TOOL],
        "stream": True,
    }
    _, stream = send(provider, chat(fake, body))
    assert stream is not None
    chunks = payloads(stream)
    assert all("usage" not in c for c in chunks)
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"][0]["delta"].get("tool_calls")
    ]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_s",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert len(calls) > 2  # the arguments came in fragments
    assert orjson.loads("".join(c["function"]["arguments"] for c in calls)) == arguments
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert (text, chunks[-1]["choices"][0]["finish_reason"]) == ("Let me look.", "tool_calls")


def test_error_event_mid_stream_ends_the_stream(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.script(
        Reply.text("never", stream_error={"type": "overloaded_error", "message": "Overloaded"})
    )
    body = {"messages": [{"role": "user", "content": "Hi"}], "stream": True}
    _, stream = send(provider, chat(fake, body))
    assert stream is not None and DONE not in stream
    assert payloads(stream)[-1] == {
        "error": {
            "message": "Overloaded",
            "type": "server_error",
            "param": None,
            "code": "overloaded_error",
        }
    }


@pytest.mark.parametrize(
    ("reply", "status", "error", "retry_after"),
    [
        (
            Reply.failure(429, "rate_limit_error", "Slow down", headers={"retry-after": "7"}),
            429,
            {"message": "Slow down", "type": "rate_limit_error", "code": "rate_limit_error"},
            "7",
        ),
        (
            Reply.failure(529, "overloaded_error", "Overloaded"),
            529,
            {"message": "Overloaded", "type": "server_error", "code": "overloaded_error"},
            None,
        ),
        (
            Reply.failure(500, "api_error", "Internal server error"),
            500,
            {"message": "Internal server error", "type": "server_error", "code": "api_error"},
            None,
        ),
    ],
)
def test_upstream_errors_keep_their_status(
    fake: FakeAnthropic,
    provider: AnthropicProvider,
    reply: Reply,
    status: int,
    error: dict[str, Any],
    retry_after: str | None,
) -> None:
    for stream in (False, True):
        fake.script(reply)
        body = {"messages": [{"role": "user", "content": "Hi"}], "stream": stream}
        response, events_ = send(provider, chat(fake, body))
        assert (response.status, events_) == (status, None)
        assert response.json() == {"error": error | {"param": None}}
        assert response.headers.get("retry-after") == retry_after


def test_requests_the_api_rejects_come_back_as_openai_errors(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "temperature": 1.5}
    response, _ = send(provider, chat(fake, body))
    assert response.status == 400
    assert response.json() == {
        "error": {
            "message": "temperature: Input should be less than or equal to 1",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_request_error",
        }
    }


def test_a_wrong_key_is_a_401_that_does_not_echo_the_key(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    request = chat(fake, {"messages": [{"role": "user", "content": "Hi"}]})
    request.api_key = "sk-ant-wrong-secret"
    response, _ = send(provider, request)
    assert response.status == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert b"sk-ant-wrong-secret" not in response.body


def test_untranslatable_request_is_a_400_without_calling_upstream(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    response, _ = send(
        provider, chat(fake, {"messages": [{"role": "user", "content": "x"}], "n": 3})
    )
    assert (response.status, fake.requests) == (400, [])
    assert response.json() == {
        "error": {
            "message": "n > 1 is not supported by provider anthropic",
            "type": "invalid_request_error",
            "param": "n",
            "code": None,
        }
    }


def test_other_endpoints_are_not_supported(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    request = UpstreamRequest(endpoint=EMBEDDINGS, body={"model": "m", "input": "x"})
    response, _ = send(provider, request)
    assert (response.status, fake.requests) == (400, [])
    assert response.json() == {
        "error": {
            "message": "endpoint not supported by provider anthropic",
            "type": "invalid_request_error",
            "param": "/v1/embeddings",
            "code": "unsupported_endpoint",
        }
    }


def test_timeout_is_408(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.script(Reply.text("late", delay_s=5))
    request = chat(fake, {"messages": [{"role": "user", "content": "Hi"}]}, timeout_s=0.2)
    with pytest.raises(UpstreamError) as caught:
        send(provider, request)
    assert (caught.value.status, caught.value.code) == (408, "timeout")
    assert API_KEY not in caught.value.message


def test_unreachable_upstream_is_502(provider: AnthropicProvider) -> None:
    with FakeAnthropic() as gone:
        url = gone.url  # a port that was just freed: nothing listens there now
    request = UpstreamRequest(
        endpoint=CHAT,
        body={"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
        api_key=API_KEY,
        base_url=url,
    )
    with pytest.raises(UpstreamError) as caught:
        send(provider, request)
    assert (caught.value.status, caught.value.code) == (502, "upstream_unreachable")
    assert API_KEY not in caught.value.message


# -- through the gateway, with the official openai client ----------------------------------


@pytest.fixture
def client(gw: RunningGateway, fake: FakeAnthropic) -> openai.OpenAI:
    headers = {"x-traceway-provider": "anthropic", "x-traceway-custom-host": fake.url}
    return gw.client(api_key=API_KEY, default_headers=headers)


def test_openai_client_gets_a_tool_call(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    fake.script(Reply.tool_use("get_weather", {"city": "Paris"}, id="toolu_gw"))
    completion = client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="required",
    )
    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert (call.id, call.function.name, call.function.arguments) == (
        "toolu_gw",
        "get_weather",
        '{"city":"Paris"}',
    )
    assert fake.requests[0].body["tool_choice"] == {"type": "any"}
    assert fake.requests[0].headers["x-api-key"] == API_KEY


def test_openai_client_streams_text_and_usage(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    usage = {"input_tokens": 4, "cache_read_input_tokens": 100, "output_tokens": 3}
    fake.script(Reply.text("Streaming through the gateway", usage=usage))
    stream = client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Streaming through the gateway"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    final = chunks[-1].usage
    assert final is not None and final.prompt_tokens_details is not None
    assert (final.prompt_tokens, final.completion_tokens, final.total_tokens) == (104, 3, 107)
    assert final.prompt_tokens_details.cached_tokens == 100


def test_openai_client_sees_overloaded_as_529(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    fake.script(Reply.failure(529, "overloaded_error", "Overloaded"))
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.status_code == 529
    assert caught.value.body == {
        "message": "Overloaded",
        "type": "server_error",
        "param": None,
        "code": "overloaded_error",
    }
