"""Telling previews an MLflow user set apart from ones the ``mlflow`` client derived.

The client always sends a request and a response preview with a trace's info.
Usually it derived them from the root span's inputs and outputs, as Traceway does
itself from the stored root span; only ``mlflow.update_current_trace(
request_preview=...)`` sets one on purpose.  Derived previews are dropped (so a
trace looks the same whichever SDK recorded it, and whichever of its info and its
spans arrived first); explicit ones are kept.

The info carries the root's inputs and outputs in its metadata
(``mlflow.traceInputs`` / ``mlflow.traceOutputs``, cut to 250 characters): a
preview is explicit when it differs from what the client derives from that text.
When the text was cut the preview cannot be checked and counts as derived.

>>> explicit_preview("hi", '{"messages": [{"role": "user", "content": "hi"}]}', role="user")
>>> explicit_preview("Order #42", '{"order": 42}', role="user")
'Order #42'
"""

from __future__ import annotations

from typing import Any, Final

import orjson

__all__ = ["explicit_preview"]

#: The client cuts root inputs/outputs in the trace metadata to this many characters.
METADATA_MAX_CHARS: Final = 250
#: The client cuts previews to this many characters (with "..." at the end).
PREVIEW_MAX_CHARS: Final = 1000
_ELLIPSIS: Final = "..."


def explicit_preview(preview: str | None, root_text: str | None, *, role: str) -> str | None:
    """``preview`` if the user set it, ``None`` if the client derived it from ``root_text``.

    ``root_text`` is the root span's inputs (``role="user"``) or outputs
    (``role="assistant"``) as JSON text, as the trace metadata carries them; ``""``
    when the root had none, ``None`` when the client did not say.
    """
    if preview is None:
        return None
    if root_text is None or root_text == "":
        # Nothing to derive from: the preview was set on purpose.
        return preview
    if len(root_text) >= METADATA_MAX_CHARS and root_text.endswith(_ELLIPSIS):
        return None
    return None if preview == derived_preview(root_text, role) else preview


def derived_preview(text: str, role: str) -> str:
    """The preview the ``mlflow`` client derives from a root span's JSON inputs/outputs."""
    content = None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    messages = _messages(value)
    if messages:
        content = _content(_last_of_role(messages, role))
    content = content or text
    if len(content) <= PREVIEW_MAX_CHARS:
        return content
    return content[: PREVIEW_MAX_CHARS - len(_ELLIPSIS)] + _ELLIPSIS


def _messages(value: Any) -> list[dict[str, Any]] | None:
    """Chat messages in the shapes the client recognises (chat, responses, agents)."""
    if not isinstance(value, dict):
        return None
    listed = value.get("messages")
    if isinstance(listed, list) and listed:
        return [item for item in listed if _is_message(item)]
    choices = value.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict) and _is_message(message):
            return [message]
    for key in ("input", "output"):
        listed = value.get(key)
        if isinstance(listed, list) and listed:
            return [item for item in listed if _is_message(item)]
    if "request" in value:
        return _messages(value["request"])
    return None


def _is_message(item: Any) -> bool:
    return isinstance(item, dict) and "role" in item and "content" in item


def _last_of_role(messages: list[dict[str, Any]], role: str) -> dict[str, Any]:
    for message in reversed(messages):
        if message.get("role") == role:
            return message
    return messages[-1]


def _content(message: dict[str, Any]) -> str | None:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                return part
            if isinstance(part, dict) and part.get("type") in ("text", "output_text"):
                text = part.get("text")
                return text if isinstance(text, str) else None
    return None
