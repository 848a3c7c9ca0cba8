"""Aggregating relayed streams into one response for the trace."""

from __future__ import annotations

import orjson

from traceway.gateway.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES
from traceway.gateway.streams import aggregate_stream


def sse(*events: object) -> list[bytes]:
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def chunk(delta: dict[str, object], finish: str | None = None, index: int = 0) -> dict[str, object]:
    return {
        "id": "c1",
        "model": "m",
        "created": 5,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def test_chat_stream_with_content_tool_calls_and_usage() -> None:
    pieces = sse(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({"content": "x"}, index=1),
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
        chunk({}, "tool_calls"),
        chunk({}, "stop", index=1),
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
    )
    # Event boundaries need not match the pieces.
    joined = b"".join(pieces)
    assert aggregate_stream(CHAT, [joined[:50], joined[50:]]) == {
        "id": "c1",
        "model": "m",
        "created": 5,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a":1}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            },
            {"index": 1, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }


def test_completion_and_responses_streams() -> None:
    completions = sse(
        {
            "id": "x",
            "model": "m",
            "created": 1,
            "choices": [{"index": 0, "text": "a", "finish_reason": None}],
        },
        {"id": "x", "choices": [{"index": 0, "text": "b", "finish_reason": "length"}]},
    )
    assert aggregate_stream(COMPLETIONS, completions) == {
        "id": "x",
        "model": "m",
        "created": 1,
        "object": "text_completion",
        "choices": [{"index": 0, "text": "ab", "finish_reason": "length"}],
        "usage": None,
    }
    final = {"id": "r", "object": "response", "status": "completed"}
    responses = [
        b'event: response.created\ndata: {"type":"response.created","response":{"id":"r"}}\n\n',
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta"}\n\n',
        b"event: response.completed\ndata: " + orjson.dumps({"response": final}) + b"\n\n",
    ]
    assert aggregate_stream(RESPONSES, responses) == final


def test_nothing_recognisable_gives_none() -> None:
    assert aggregate_stream(CHAT, [b": keep-alive\n\n", b"data: [DONE]\n\n"]) is None
    assert aggregate_stream(CHAT, [b"data: {broken\n\n"]) is None
    assert aggregate_stream(EMBEDDINGS, sse({"a": 1})) is None
