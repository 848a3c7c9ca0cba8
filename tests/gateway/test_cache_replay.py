"""Cached answers replayed as OpenAI's SSE stream."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import orjson
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from traceway.gateway.cache import replay_events, replay_stream
from traceway.gateway.providers.base import CHAT
from traceway.gateway.streams import aggregate_stream

ANSWER: dict[str, Any] = {
    "id": "chatcmpl-42",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini-2024-07-18",
    "system_fingerprint": "fp_1",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Paris is the capital.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
}
HEAD = {
    "id": "chatcmpl-42",
    "object": "chat.completion.chunk",
    "created": 1700000000,
    "model": "gpt-4o-mini-2024-07-18",
    "system_fingerprint": "fp_1",
}


def payloads(events: list[bytes]) -> list[Any]:
    assert all(e.startswith(b"data: ") and e.endswith(b"\n\n") for e in events)
    return [e[6:-2].decode() if e == b"data: [DONE]\n\n" else orjson.loads(e[6:-2]) for e in events]


def test_chat_answer_replays_as_openai_chunks() -> None:
    events = replay_events(orjson.dumps(ANSWER), include_usage=True, chunk_chars=10)

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**HEAD, "choices": [choice], "usage": None}

    assert payloads(events) == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Paris is t"}),
        chunk({"content": "he capital"}),
        chunk({"content": "."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'Paris"}'}}]}),
        chunk({}, "tool_calls"),
        {**HEAD, "choices": [], "usage": ANSWER["usage"]},
        "[DONE]",
    ]


def test_without_include_usage_there_is_no_usage_anywhere() -> None:
    events = payloads(replay_events(ANSWER, include_usage=False))
    chunks = events[:-1]
    assert [("usage" in c, len(c["choices"])) for c in chunks] == [(False, 1)] * len(chunks)
    assert events[-1] == "[DONE]"


def test_replay_aggregates_back_to_the_answer() -> None:
    events = replay_events(ANSWER, include_usage=True, chunk_chars=4)
    again = aggregate_stream(CHAT, events)
    assert again == {
        "id": ANSWER["id"],
        "model": ANSWER["model"],
        "created": ANSWER["created"],
        "object": "chat.completion",
        "choices": ANSWER["choices"],
        "usage": ANSWER["usage"],
    }


def test_the_openai_client_parses_the_replay() -> None:
    events = replay_events(ANSWER, include_usage=True, chunk_chars=7)
    request = httpx.Request("POST", "http://gateway.test/v1/chat/completions")
    response = httpx.Response(
        200,
        content=b"".join(events),
        headers={"content-type": "text/event-stream"},
        request=request,
    )
    with openai.OpenAI(api_key="sk-test", base_url="http://gateway.test/v1") as client:
        stream = openai.Stream(cast_to=ChatCompletionChunk, response=response, client=client)
        state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
        for chunk in stream:
            state.handle_chunk(chunk)
        completion = state.get_final_completion()
    assert completion.model_dump(exclude_none=True) == {
        "id": "chatcmpl-42",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "Paris is the capital.",
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
    }


def test_text_completion_replays_as_completion_chunks() -> None:
    cached = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 3,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [{"index": 0, "text": "Once upon", "finish_reason": "length"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    head = {"id": "cmpl-1", "object": "text_completion", "created": 3, "model": cached["model"]}
    assert payloads(replay_events(cached, chunk_chars=5)) == [
        {
            **head,
            "choices": [{"index": 0, "text": "Once ", "logprobs": None, "finish_reason": None}],
        },
        {
            **head,
            "choices": [{"index": 0, "text": "upon", "logprobs": None, "finish_reason": None}],
        },
        {
            **head,
            "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "length"}],
        },
        "[DONE]",
    ]


def test_replay_stream_is_an_async_stream_of_the_same_events() -> None:
    async def collect() -> list[bytes]:
        return [event async for event in replay_stream(orjson.dumps(ANSWER), True)]

    assert asyncio.run(collect()) == replay_events(ANSWER, include_usage=True)
