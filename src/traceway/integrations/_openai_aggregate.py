"""Streamed answers put back together: what a stream would have returned in one piece.

Chat and text completion chunks become a ``chat.completion`` / ``text_completion``
shaped dict (content, refusal, tool calls with their JSON arguments, finish
reasons, usage when the stream carried it).  A Responses API stream becomes the
final ``Response`` object its ``response.completed`` (or ``incomplete`` /
``failed``) event carries; a stream cut short becomes a partial response built
from the deltas that arrived.  These run once, when a stream ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from traceway.integrations._openai_attributes import CHAT, COMPLETION, RESPONSE, plain

__all__ = ["aggregate", "has_token"]

_FINAL_EVENTS: Final = frozenset({"response.completed", "response.incomplete", "response.failed"})
_HEAD_EVENTS: Final = frozenset({"response.created", "response.in_progress"})


def has_token(kind: str, chunk: Any) -> bool:
    """Whether ``chunk`` carries generated output (text, a tool call, a refusal)."""
    if kind == RESPONSE:
        event_type = getattr(chunk, "type", None)
        return isinstance(event_type, str) and event_type.endswith(".delta")
    for choice in getattr(chunk, "choices", None) or ():
        if kind == COMPLETION:
            if getattr(choice, "text", None):
                return True
            continue
        delta = getattr(choice, "delta", None)
        if delta is not None and (
            getattr(delta, "content", None)
            or getattr(delta, "tool_calls", None)
            or getattr(delta, "refusal", None)
            or getattr(delta, "function_call", None)
        ):
            return True
    return False


def aggregate(kind: str, chunks: Sequence[Any]) -> tuple[Any, str | None]:
    """The whole answer of a stream, and an error message if the stream reported one."""
    if kind == RESPONSE:
        return _aggregate_response(chunks)
    if kind == CHAT:
        return _aggregate_chat(chunks), None
    return _aggregate_completion(chunks), None


_HEAD_FIELDS: Final = ("id", "created", "model", "system_fingerprint", "service_tier")


def _head(chunks: Sequence[Any], object_name: str) -> dict[str, Any]:
    """Identity fields (id, created, model...) and the last usage the chunks carried."""
    result: dict[str, Any] = {"object": object_name}
    if not chunks:
        return result
    # Every chunk repeats the identity; some servers fill it in late, so look at both ends.
    for source in (chunks[0], chunks[-1]):
        for field in _HEAD_FIELDS:
            if field not in result:
                value = getattr(source, field, None)
                if value is not None:
                    result[field] = value
    for chunk in reversed(chunks):
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            result["usage"] = plain(usage)
            break
    return result


class _ChatChoice:
    __slots__ = ("content", "finish_reason", "function_call", "refusal", "role", "tool_calls")

    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.function_call: dict[str, str] | None = None
        self.finish_reason: str | None = None

    def add(self, delta: Any) -> None:
        role = getattr(delta, "role", None)
        if role:
            self.role = role
        content = getattr(delta, "content", None)
        if content:
            self.content.append(content)
        refusal = getattr(delta, "refusal", None)
        if refusal:
            self.refusal.append(refusal)
        for call in getattr(delta, "tool_calls", None) or ():
            self._add_tool_call(call)
        function_call = getattr(delta, "function_call", None)
        if function_call is not None:
            # The tool-call predecessor that older models still stream.
            current = self.function_call or {"name": "", "arguments": ""}
            current["name"] = getattr(function_call, "name", None) or current["name"]
            current["arguments"] += getattr(function_call, "arguments", None) or ""
            self.function_call = current

    def _add_tool_call(self, call: Any) -> None:
        index = getattr(call, "index", None)
        slot = self.tool_calls.get(index) if isinstance(index, int) else None
        if slot is None:
            slot = {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            self.tool_calls[index if isinstance(index, int) else len(self.tool_calls)] = slot
        call_id = getattr(call, "id", None)
        if call_id:
            slot["id"] = call_id
        call_type = getattr(call, "type", None)
        if call_type:
            slot["type"] = call_type
        function = getattr(call, "function", None)
        if function is not None:
            name = getattr(function, "name", None)
            if name:
                slot["function"]["name"] = name
            slot["function"]["arguments"] += getattr(function, "arguments", None) or ""

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": self.role,
            "content": "".join(self.content) if self.content else None,
        }
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        if self.function_call is not None:
            message["function_call"] = self.function_call
        return message


def _aggregate_chat(chunks: Sequence[Any]) -> dict[str, Any]:
    result = _head(chunks, "chat.completion")
    choices: dict[int, _ChatChoice] = {}
    for chunk in chunks:
        for choice in getattr(chunk, "choices", None) or ():
            index = getattr(choice, "index", 0) or 0
            entry = choices.get(index)
            if entry is None:
                entry = choices[index] = _ChatChoice()
            delta = getattr(choice, "delta", None)
            if delta is not None:
                entry.add(delta)
            finish_reason = getattr(choice, "finish_reason", None)
            if finish_reason:
                entry.finish_reason = finish_reason
    result["choices"] = [
        {"index": i, "message": choices[i].message(), "finish_reason": choices[i].finish_reason}
        for i in sorted(choices)
    ]
    return _usage_last(result)


def _aggregate_completion(chunks: Sequence[Any]) -> dict[str, Any]:
    result = _head(chunks, "text_completion")
    texts: dict[int, list[str]] = {}
    reasons: dict[int, str | None] = {}
    for chunk in chunks:
        for choice in getattr(chunk, "choices", None) or ():
            index = getattr(choice, "index", 0) or 0
            texts.setdefault(index, []).append(getattr(choice, "text", None) or "")
            finish_reason = getattr(choice, "finish_reason", None)
            if finish_reason or index not in reasons:
                reasons[index] = finish_reason
    result["choices"] = [
        {"index": i, "text": "".join(texts[i]), "finish_reason": reasons.get(i)}
        for i in sorted(texts)
    ]
    return _usage_last(result)


def _usage_last(result: dict[str, Any]) -> dict[str, Any]:
    # Same key order as the non-streamed answer: usage after choices.
    usage = result.pop("usage", None)
    if usage is not None:
        result["usage"] = usage
    return result


def _aggregate_response(events: Sequence[Any]) -> tuple[Any, str | None]:
    final: Any = None
    head: Any = None
    error: str | None = None
    added: dict[int, Any] = {}
    done: dict[int, Any] = {}
    texts: dict[tuple[int, int], list[str]] = {}
    arguments: dict[int, list[str]] = {}
    for event in events:
        event_type = getattr(event, "type", None)
        if event_type == "response.output_text.delta":
            key = (event.output_index, event.content_index)
            texts.setdefault(key, []).append(event.delta)
        elif event_type == "response.function_call_arguments.delta":
            arguments.setdefault(event.output_index, []).append(event.delta)
        elif event_type == "response.output_item.added":
            added[event.output_index] = event.item
        elif event_type == "response.output_item.done":
            done[event.output_index] = event.item
        elif event_type in _FINAL_EVENTS:
            final = event.response
        elif event_type in _HEAD_EVENTS:
            head = event.response
        elif event_type == "error":
            error = f"{getattr(event, 'code', None) or 'error'}: {getattr(event, 'message', '')}"
    if final is not None:
        if error is None and getattr(final, "status", None) == "failed":
            failure = getattr(final, "error", None)
            error = f"{getattr(failure, 'code', None)}: {getattr(failure, 'message', None)}"
        return final, error
    partial: dict[str, Any] = _dump(head) if head is not None else {"object": "response"}
    output: list[dict[str, Any]] = []
    for index in sorted(added.keys() | done.keys()):
        if index in done:
            output.append(_dump(done[index]))
            continue
        item = _dump(added[index])
        if item.get("type") == "message":
            item["content"] = [
                {"type": "output_text", "text": "".join(parts)}
                for (item_index, _), parts in sorted(texts.items())
                if item_index == index
            ]
        elif index in arguments:
            item["arguments"] = "".join(arguments[index])
        output.append(item)
    partial["output"] = output
    return partial, error


def _dump(model: Any) -> dict[str, Any]:
    dumped = plain(model)
    return dict(dumped) if isinstance(dumped, dict) else {"value": dumped}
