"""Short texts that show what went into a trace and what came out.

A trace row's request/response preview is derived from its root span's inputs and
outputs (JSON text) unless some span sets one explicitly.  For chat-shaped data
the preview is the text a person would look for: the last user message, the
assistant's answer; anything else becomes compact JSON.

>>> request_preview('{"messages": [{"role": "user", "content": "Hi"}]}')
'Hi'
>>> response_preview('{"choices": [{"message": {"role": "assistant", "content": "Hello"}}]}')
'Hello'
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["PREVIEW_MAX_CHARS", "request_preview", "response_preview"]

PREVIEW_MAX_CHARS = 1000


def request_preview(inputs: str | None) -> str | None:
    """The preview of a root span's inputs (JSON text), or ``None`` without inputs."""
    if inputs is None:
        return None
    value = _loads(inputs)
    if value is _NOT_JSON:
        return _cut(inputs)
    messages = value.get("messages") if isinstance(value, dict) else value
    text = _last_user_message(messages)
    return _cut(text if text is not None else _text(value))


def response_preview(outputs: str | None) -> str | None:
    """The preview of a root span's outputs (JSON text), or ``None`` without outputs."""
    if outputs is None:
        return None
    value = _loads(outputs)
    if value is _NOT_JSON:
        return _cut(outputs)
    text = _answer(value)
    return _cut(text if text is not None else _text(value))


_NOT_JSON: Any = object()


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _cut(text: str) -> str:
    return text[:PREVIEW_MAX_CHARS]


def _text(value: Any) -> str:
    """A JSON string as itself, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _last_user_message(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content(message.get("content"))
    return None


def _answer(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    choices = value.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        # Chat completions carry a message; legacy completions carry text.
        choice = choices[0]
        message = choice.get("message")
        if isinstance(message, dict):
            return _content(message.get("content"))
        if isinstance(choice.get("text"), str):
            return str(choice["text"])
        return None
    if value.get("role") == "assistant" or value.get("type") == "message":
        return _content(value.get("content"))
    return None


def _content(content: Any) -> str | None:
    """Message content: a string, or the text parts of a multi-part list."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        if texts:
            return "\n".join(texts)
    return _text(content)
