"""A span's inputs and outputs read as a conversation, for the chat view.

Chat payloads come in a few wire shapes; this module knows the common ones and
turns each into the same list of :class:`ChatMessage`:

- OpenAI chat completions: ``{"messages": [...]}`` in, ``{"choices": [{"message"}]}``
  out, tool calls in ``tool_calls`` and tool results as ``role: "tool"`` messages;
- Anthropic messages: content blocks (``text``, ``tool_use``, ``tool_result``) and
  a top-level ``system``;
- OpenAI responses: ``{"input": ...}`` in, ``{"output": [...]}`` out;
- bare message lists, a single message, ``{"content": "..."}`` or a plain string
  as the answer.

Anything else is not a conversation: :func:`chat_view` answers ``None`` and the
page shows the payload as JSON instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["CHAT_SPAN_TYPES", "ChatMessage", "ChatView", "ToolCall", "chat_view"]

#: Span types whose payloads are worth trying as a conversation.
CHAT_SPAN_TYPES = frozenset({"LLM", "CHAT_MODEL", "GATEWAY"})
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function", "model"})


@dataclass(slots=True)
class ToolCall:
    call_id: str | None
    name: str
    arguments: Any


@dataclass(slots=True)
class ChatMessage:
    role: str
    texts: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    #: For a tool result: the call it answers, and that call's tool name when known.
    tool_call_id: str | None = None
    tool_name: str | None = None
    #: Parts that are neither text nor tool calls (images, audio...), as JSON values.
    other: list[Any] = field(default_factory=list)
    is_output: bool = False


@dataclass(slots=True)
class ChatView:
    messages: list[ChatMessage]
    tools: list[str] = field(default_factory=list)
    finish_reason: str | None = None


def chat_view(span_type: str, inputs: Any, outputs: Any) -> ChatView | None:
    """The conversation in a span's payloads, or ``None`` when it holds none.

    >>> view = chat_view("CHAT_MODEL", {"messages": [{"role": "user", "content": "hi"}]},
    ...                  {"choices": [{"message": {"role": "assistant", "content": "hello"}}]})
    >>> [(m.role, m.texts, m.is_output) for m in view.messages]
    [('user', ['hi'], False), ('assistant', ['hello'], True)]
    """
    if span_type not in CHAT_SPAN_TYPES:
        return None
    inputs, outputs = _decoded(inputs), _decoded(outputs)
    incoming = _input_messages(inputs)
    if incoming is None:
        return None
    finish: list[str | None] = [None]
    answer = _output_messages(outputs, finish)
    for message in answer:
        message.is_output = True
    messages = incoming + answer
    _name_tool_results(messages)
    tools = _tool_names(inputs.get("tools") if isinstance(inputs, dict) else None)
    return ChatView(messages=messages, tools=tools, finish_reason=finish[0])


def _decoded(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _input_messages(inputs: Any) -> list[ChatMessage] | None:
    raw: Any = None
    system: Any = None
    if isinstance(inputs, dict):
        raw = inputs.get("messages")
        if raw is None and isinstance(inputs.get("input"), list | str):
            raw = inputs["input"]
            system = inputs.get("instructions")
        if raw is None and isinstance(inputs.get("prompt"), str):
            raw = [{"role": "user", "content": inputs["prompt"]}]
        system = inputs.get("system", system)
    elif isinstance(inputs, list):
        raw = inputs
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw or not all(_is_message(m) for m in raw):
        return None
    messages: list[ChatMessage] = []
    if system:
        messages.append(_message({"role": "system", "content": system}))
    for item in raw:
        messages.extend(_split_tool_results(item))
    return messages


def _is_message(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    role = value.get("role")
    if isinstance(role, str) and role.lower() in _ROLES:
        return True
    # Responses API items without a role: function calls and their outputs.
    return value.get("type") in ("function_call", "function_call_output", "message")


def _output_messages(outputs: Any, finish: list[str | None]) -> list[ChatMessage]:
    if outputs is None or outputs == "":
        return []
    if isinstance(outputs, str):
        return [ChatMessage(role="assistant", texts=[outputs])]
    if isinstance(outputs, list) and all(_is_message(m) for m in outputs):
        return [m for item in outputs for m in _split_tool_results(item)]
    if not isinstance(outputs, dict):
        return []
    choices = outputs.get("choices")
    if isinstance(choices, list) and choices:
        found = []
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            if finish[0] is None and isinstance(choice.get("finish_reason"), str):
                finish[0] = choice["finish_reason"]
            message = choice.get("message") or choice.get("delta")
            if isinstance(message, dict):
                found.append(_message({"role": "assistant", **message}))
            elif isinstance(choice.get("text"), str):
                found.append(ChatMessage(role="assistant", texts=[choice["text"]]))
        return found
    if isinstance(outputs.get("output"), list):
        items = [item for item in outputs["output"] if _is_message(item)]
        return [m for item in items for m in _split_tool_results(item)]
    for key in ("stop_reason", "finish_reason"):
        if isinstance(outputs.get(key), str):
            finish[0] = outputs[key]
    if _is_message(outputs) or "content" in outputs or "tool_calls" in outputs:
        return [_message({"role": "assistant", **outputs})]
    return []


def _split_tool_results(item: dict[str, Any]) -> list[ChatMessage]:
    """One wire message as chat messages: Anthropic tool results become their own."""
    kind = item.get("type")
    if kind == "function_call":
        call = ToolCall(item.get("call_id"), str(item.get("name", "")), _args(item))
        return [ChatMessage(role="assistant", tool_calls=[call])]
    if kind == "function_call_output":
        return [_tool_result(item.get("call_id"), item.get("output"))]
    content = item.get("content")
    if not isinstance(content, list):
        return [_message(item)]
    results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
    if not results:
        return [_message(item)]
    rest = [b for b in content if b not in results]
    out = [_tool_result(b.get("tool_use_id"), b.get("content")) for b in results]
    if rest:
        out.append(_message({**item, "content": rest}))
    return out


def _tool_result(call_id: Any, content: Any) -> ChatMessage:
    message = _message({"role": "tool", "content": content})
    message.tool_call_id = call_id if isinstance(call_id, str) else None
    return message


def _message(raw: dict[str, Any]) -> ChatMessage:
    role = str(raw.get("role") or "assistant").lower()
    message = ChatMessage(role="assistant" if role == "model" else role)
    _add_content(message, raw.get("content"))
    if isinstance(raw.get("parts"), list):  # Gemini
        _add_content(message, raw["parts"])
    for call in raw.get("tool_calls") or []:
        if isinstance(call, dict):
            function = _function_of(call)
            message.tool_calls.append(
                ToolCall(call.get("id"), str(function.get("name", "")), _args(function))
            )
    legacy = raw.get("function_call")
    if isinstance(legacy, dict):
        message.tool_calls.append(ToolCall(None, str(legacy.get("name", "")), _args(legacy)))
    if isinstance(raw.get("tool_call_id"), str):
        message.tool_call_id = raw["tool_call_id"]
    if role in ("tool", "function") and isinstance(raw.get("name"), str):
        message.tool_name = raw["name"]
    return message


def _add_content(message: ChatMessage, content: Any) -> None:
    if content is None:
        return
    if isinstance(content, str):
        if content:
            message.texts.append(content)
        return
    if not isinstance(content, list):
        message.other.append(content)
        return
    for part in content:
        if isinstance(part, str):
            message.texts.append(part)
        elif not isinstance(part, dict):
            message.other.append(part)
        elif isinstance(part.get("text"), str):
            message.texts.append(part["text"])
        elif part.get("type") == "tool_use":
            message.tool_calls.append(
                ToolCall(part.get("id"), str(part.get("name", "")), part.get("input"))
            )
        elif isinstance(part.get("functionCall"), dict):
            call = part["functionCall"]
            message.tool_calls.append(ToolCall(None, str(call.get("name", "")), call.get("args")))
        else:
            message.other.append(part)


def _function_of(item: dict[str, Any]) -> dict[str, Any]:
    """OpenAI nests a tool's name and arguments under ``function``; others do not."""
    function = item.get("function")
    return function if isinstance(function, dict) else item


def _args(function: dict[str, Any]) -> Any:
    arguments = function.get("arguments", function.get("input"))
    return _decoded(arguments) if isinstance(arguments, str) else arguments


def _name_tool_results(messages: list[ChatMessage]) -> None:
    names = {c.call_id: c.name for m in messages for c in m.tool_calls if c.call_id}
    for message in messages:
        if message.tool_call_id and not message.tool_name:
            message.tool_name = names.get(message.tool_call_id)


def _tool_names(tools: Any) -> list[str]:
    if not isinstance(tools, list):
        return []
    names = []
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        function = _function_of(tool)
        if isinstance(function.get("name"), str):
            names.append(function["name"])
    return names
