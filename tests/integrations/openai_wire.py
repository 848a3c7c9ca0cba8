"""OpenAI wire bodies the shared fake does not produce on its own, sent through its
``Reply(raw=...)`` / ``Reply(body=...)``: Responses API event streams, structured
chat answers, and a chat stream that fails half-way."""

from __future__ import annotations

from typing import Any

import orjson

from tests.gateway.fakes.openai_server import CREATED, Reply

__all__ = [
    "RESPONSE_USAGE",
    "chat_json_reply",
    "chat_stream_failing_reply",
    "responses_stream_reply",
]

RESPONSE_USAGE = {
    "input_tokens": 7,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 3,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 10,
}


def _event(event: dict[str, Any]) -> bytes:
    # The Responses API names each event twice: in the SSE ``event:`` field and in ``type``.
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def _sse(reply_events: list[dict[str, Any]]) -> Reply:
    for number, event in enumerate(reply_events):
        event["sequence_number"] = number
    return Reply(raw=b"".join(map(_event, reply_events)), content_type="text/event-stream")


def _response(status: str, output: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "model": "gpt-4o-2024-08-06",
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


def responses_stream_reply(
    words: list[str], *, tool_call: tuple[str, list[str]] | None = None, complete: bool = True
) -> Reply:
    """A Responses API stream answering ``words`` (text) or calling a tool.

    ``tool_call`` is (function name, argument pieces).  ``complete=False`` stops
    after the deltas, as a connection cut mid-answer would.
    """
    pending = _response("in_progress", [], None)
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
    ]
    if tool_call is not None:
        name, pieces = tool_call
        item = {
            "type": "function_call",
            "id": "fc_fake",
            "call_id": "call_fake",
            "name": name,
            "arguments": "",
            "status": "in_progress",
        }
        ref = {"item_id": "fc_fake", "output_index": 0}
        events.append({"type": "response.output_item.added", "output_index": 0, "item": item})
        events += [
            {"type": "response.function_call_arguments.delta", **ref, "delta": piece}
            for piece in pieces
        ]
        done = {**item, "arguments": "".join(pieces), "status": "completed"}
        closing = [
            {"type": "response.function_call_arguments.done", **ref, "arguments": "".join(pieces)}
        ]
    else:
        text = "".join(words)
        item = {
            "type": "message",
            "id": "msg_fake",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        ref = {"item_id": "msg_fake", "output_index": 0, "content_index": 0}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events += [
            {"type": "response.output_item.added", "output_index": 0, "item": item},
            {"type": "response.content_part.added", **ref, "part": part},
        ]
        events += [
            {"type": "response.output_text.delta", **ref, "delta": word, "logprobs": []}
            for word in words
        ]
        done = {**item, "status": "completed", "content": [{**part, "text": text}]}
        closing = [
            {"type": "response.output_text.done", **ref, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **ref, "part": {**part, "text": text}},
        ]
    if complete:
        events += closing
        events.append({"type": "response.output_item.done", "output_index": 0, "item": done})
        final = _response("completed", [done], RESPONSE_USAGE)
        events.append({"type": "response.completed", "response": final})
    return _sse(events)


def chat_json_reply(content: str, model: str = "gpt-4o") -> Reply:
    """A chat completion whose message is ``content`` (for structured outputs)."""
    return Reply(
        body={
            "id": "chatcmpl-json",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17},
        }
    )


def chat_stream_failing_reply() -> Reply:
    """A chat stream that sends two words, then an error event, as OpenAI does mid-stream."""
    head = {"id": "chatcmpl-fail", "object": "chat.completion.chunk", "created": CREATED}
    chunks = [
        {**head, "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": word}}]}
        for word in ("Half", " way")
    ]
    error = {"error": {"message": "The server had an error", "type": "server_error"}}
    body = b"".join(b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in [*chunks, error])
    return Reply(raw=body, content_type="text/event-stream")
