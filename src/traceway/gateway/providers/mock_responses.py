"""The mock provider's answers for OpenAI's Responses API (``POST /v1/responses``).

Streams use the Responses event sequence (``response.created`` …
``response.completed``), each framed as ``event: <type>`` plus ``data: {json}``;
like OpenAI, a Responses stream has no ``[DONE]`` sentinel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import orjson

from traceway.gateway.providers.base import UpstreamResponse, error_response
from traceway.gateway.providers.mock_text import (
    Reply,
    function_specs,
    message_text,
    plan_reply,
    split_tokens,
)

__all__ = ["respond"]

_SSE_HEADERS = {"content-type": "text/event-stream"}
_JSON_HEADERS = {"content-type": "application/json"}


def _conversation(body: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    conversation: list[tuple[str, str]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        conversation.append(("system", instructions))
    raw = body.get("input")
    if isinstance(raw, str):
        conversation.append(("user", raw))
        return conversation
    if not isinstance(raw, list) or not raw:
        return None
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type", "message")
        if kind == "function_call_output":
            output = item.get("output")
            conversation.append(
                ("tool", output if isinstance(output, str) else message_text(output))
            )
        elif kind == "message" or "role" in item:
            conversation.append((str(item.get("role", "user")), message_text(item.get("content"))))
    return conversation


def _output_item(reply: Reply, ids: Callable[[str], str], status: str) -> dict[str, Any]:
    if reply.tool_name:
        return {
            "type": "function_call",
            "id": ids("fc_"),
            "call_id": ids("call_"),
            "name": reply.tool_name,
            "arguments": reply.tool_arguments or "",
            "status": status,
        }
    return {
        "type": "message",
        "id": ids("msg_"),
        "status": status,
        "role": "assistant",
        "content": [
            {"type": "output_text", "text": reply.text or "", "annotations": [], "logprobs": []}
        ],
    }


def _response(
    body: Mapping[str, Any],
    *,
    response_id: str,
    model: str,
    created: int,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    incomplete: bool,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def respond(
    body: Mapping[str, Any], model: str, *, echo: bool, ids: Callable[[str], str], created: int
) -> UpstreamResponse:
    """Answer a Responses API request (JSON, or an event stream when ``stream`` is set)."""
    conversation = _conversation(body)
    if conversation is None:
        return error_response(400, "'input' must be a string or a non-empty array", param="input")
    reply = plan_reply(
        conversation,
        echo=echo,
        tools=function_specs(body.get("tools")),
        tool_choice=body.get("tool_choice"),
        max_tokens=body.get("max_output_tokens"),
        seed=body.get("seed"),
    )
    incomplete = reply.finish_reason == "length"
    usage = {
        "input_tokens": reply.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": reply.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }
    item = _output_item(reply, ids, "incomplete" if incomplete else "completed")
    final = _response(
        body,
        response_id=ids("resp_"),
        model=model,
        created=created,
        status="incomplete" if incomplete else "completed",
        output=[item],
        usage=usage,
        incomplete=incomplete,
    )
    if body.get("stream"):
        return UpstreamResponse(200, _SSE_HEADERS, stream=_stream(final, reply))
    return UpstreamResponse(200, _JSON_HEADERS, orjson.dumps(final))


def _events(final: dict[str, Any], reply: Reply) -> Iterator[dict[str, Any]]:
    pending = {**final, "status": "in_progress", "output": [], "usage": None}
    pending["incomplete_details"] = None
    yield {"type": "response.created", "response": pending}
    yield {"type": "response.in_progress", "response": pending}
    item = final["output"][0]
    ref = {"item_id": item["id"], "output_index": 0}
    if item["type"] == "function_call":
        yield {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "arguments": "", "status": "in_progress"},
        }
        for token in split_tokens(item["arguments"]):
            yield {"type": "response.function_call_arguments.delta", **ref, "delta": token}
        yield {
            "type": "response.function_call_arguments.done",
            **ref,
            "name": item["name"],
            "arguments": item["arguments"],
        }
    else:
        text = reply.text or ""
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "status": "in_progress", "content": []},
        }
        yield {"type": "response.content_part.added", **ref, "content_index": 0, "part": part}
        for token in split_tokens(text):
            yield {
                "type": "response.output_text.delta",
                **ref,
                "content_index": 0,
                "delta": token,
                "logprobs": [],
            }
        yield {
            "type": "response.output_text.done",
            **ref,
            "content_index": 0,
            "text": text,
            "logprobs": [],
        }
        yield {
            "type": "response.content_part.done",
            **ref,
            "content_index": 0,
            "part": {**part, "text": text},
        }
    yield {"type": "response.output_item.done", "output_index": 0, "item": item}
    done = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    yield {"type": done, "response": final}


async def _stream(final: dict[str, Any], reply: Reply) -> AsyncIterator[bytes]:
    for sequence, event in enumerate(_events(final, reply)):
        event["sequence_number"] = sequence
        yield b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
