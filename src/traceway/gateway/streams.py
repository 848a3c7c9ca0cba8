"""Turning a relayed SSE stream back into one response, for the trace.

The relay keeps the raw event bytes it forwarded (no parsing per chunk); once
the stream has ended these functions rebuild what a non-streaming call would
have returned: a ``chat.completion`` with the joined content and tool calls, a
``text_completion``, or the final Responses object.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from traceway.gateway.providers.base import CHAT, COMPLETIONS, RESPONSES

__all__ = ["aggregate_stream", "iter_events"]


def iter_events(pieces: Iterable[bytes]) -> list[Any]:
    """The JSON payloads of the ``data:`` lines in SSE bytes (``[DONE]`` and junk skipped)."""
    events: list[Any] = []
    for line in b"".join(pieces).splitlines():
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if not data or data == b"[DONE]":
            continue
        try:
            events.append(orjson.loads(data))
        except orjson.JSONDecodeError:
            continue
    return events


def _chat(events: list[Any]) -> dict[str, Any]:
    head: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for event in events:
        if not isinstance(event, dict):
            continue
        if not head and event.get("id"):
            head = {"id": event["id"], "model": event.get("model"), "created": event.get("created")}
        if event.get("usage"):
            usage = event["usage"]
        for choice in event.get("choices") or ():
            index = choice.get("index", 0)
            state = choices.setdefault(
                index, {"content": [], "tool_calls": {}, "finish_reason": None, "role": "assistant"}
            )
            delta = choice.get("delta") or {}
            if delta.get("content"):
                state["content"].append(delta["content"])
            for call in delta.get("tool_calls") or ():
                slot = state["tool_calls"].setdefault(
                    call.get("index", 0),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": []}},
                )
                if call.get("id"):
                    slot["id"] = call["id"]
                function = call.get("function") or {}
                if function.get("name"):
                    slot["function"]["name"] = function["name"]
                if function.get("arguments"):
                    slot["function"]["arguments"].append(function["arguments"])
            if choice.get("finish_reason"):
                state["finish_reason"] = choice["finish_reason"]
    out_choices = []
    for index in sorted(choices):
        state = choices[index]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(state["content"]) if state["content"] else None,
        }
        if state["tool_calls"]:
            message["tool_calls"] = [
                {
                    "id": slot["id"],
                    "type": "function",
                    "function": {
                        "name": slot["function"]["name"],
                        "arguments": "".join(slot["function"]["arguments"]),
                    },
                }
                for _, slot in sorted(state["tool_calls"].items())
            ]
        out_choices.append(
            {"index": index, "message": message, "finish_reason": state["finish_reason"]}
        )
    return {**head, "object": "chat.completion", "choices": out_choices, "usage": usage}


def _completions(events: list[Any]) -> dict[str, Any]:
    head: dict[str, Any] = {}
    texts: dict[int, list[str]] = {}
    finish: dict[int, Any] = {}
    usage = None
    for event in events:
        if not isinstance(event, dict):
            continue
        if not head and event.get("id"):
            head = {"id": event["id"], "model": event.get("model"), "created": event.get("created")}
        if event.get("usage"):
            usage = event["usage"]
        for choice in event.get("choices") or ():
            index = choice.get("index", 0)
            texts.setdefault(index, []).append(choice.get("text") or "")
            if choice.get("finish_reason"):
                finish[index] = choice["finish_reason"]
    choices = [
        {"index": i, "text": "".join(texts[i]), "finish_reason": finish.get(i)}
        for i in sorted(texts)
    ]
    return {**head, "object": "text_completion", "choices": choices, "usage": usage}


def _responses(events: list[Any]) -> dict[str, Any] | None:
    final = None
    for event in events:
        if isinstance(event, dict) and isinstance(event.get("response"), dict):
            final = event["response"]  # the last one carries the finished response
    return final


def aggregate_stream(endpoint: str, pieces: Iterable[bytes]) -> dict[str, Any] | None:
    """The response a stream amounts to, or ``None`` if it carried nothing recognisable."""
    events = iter_events(pieces)
    if not events:
        return None
    if endpoint == CHAT:
        return _chat(events)
    if endpoint == COMPLETIONS:
        return _completions(events)
    if endpoint == RESPONSES:
        return _responses(events)
    return None
