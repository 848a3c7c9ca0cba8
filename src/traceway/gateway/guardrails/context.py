"""What a guardrail check sees, and the one place that reads and rewrites texts.

A check reads the *current content part*, exactly as Portkey's ``getText`` does:

* before the request (``beforeRequestHook``): for chat, the **last message** of
  ``messages`` whatever its role (a string, or the ``text`` of each content part,
  empty parts dropped, joined with ``"\\n"``); for completions, ``prompt`` (a
  string, or the strings of a list, joined the same way);
* after the answer (``afterRequestHook``): ``choices[0].message.content`` for
  chat, ``choices[0].text`` for completions.

Rewrites (PII and regex redaction) are wider than reads on purpose: they apply to
*every* text of the side being checked (every message's content, every choice),
so an address that sits in an earlier turn of the conversation does not leave
the gateway either.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from traceway.gateway.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES

__all__ = [
    "AFTER",
    "BEFORE",
    "CHECKED_REQUEST_TYPES",
    "CheckContext",
    "CheckError",
    "CheckFn",
    "CheckOutcome",
    "Rewrite",
    "UrlGuard",
    "check_text",
    "excerpt",
    "matches_operator",
    "request_type",
    "rewrite_texts",
]

BEFORE: Final = "beforeRequestHook"
AFTER: Final = "afterRequestHook"

#: Portkey's names for the endpoints; hooks only run for the first two.
_REQUEST_TYPES = {
    CHAT: "chatComplete",
    COMPLETIONS: "complete",
    EMBEDDINGS: "embed",
    RESPONSES: "createModelResponse",
}
CHECKED_REQUEST_TYPES: Final = frozenset({"chatComplete", "complete"})

#: Rewrites one text (a message's content, a choice's text) into another.
Rewrite = Callable[[str], str]
#: ``await guard(url)`` raises when a webhook URL must not be reached (SSRF).
UrlGuard = Callable[[str], Awaitable[None]]


def request_type(endpoint: str) -> str:
    """Portkey's request type for a gateway endpoint (``chat/completions`` -> ``chatComplete``)."""
    return _REQUEST_TYPES.get(endpoint, endpoint)


@dataclass(frozen=True, slots=True)
class CheckContext:
    """The request (and, after the answer, the response) one hook checks."""

    event: str  # BEFORE | AFTER
    request_type: str
    request: Mapping[str, Any]
    response: Mapping[str, Any] | None = None
    status_code: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    streamed: bool = False
    http: aiohttp.ClientSession | None = None
    url_guard: UrlGuard | None = None

    @property
    def text(self) -> str:
        """The text the check reads (see the module docstring)."""
        return check_text(self)

    def as_plugin_context(self) -> dict[str, Any]:
        """The context in Portkey's plugin shape (what a webhook receives)."""
        response = self.response or {}
        return {
            "request": {
                "json": self.request,
                "text": check_text(self, event=BEFORE),
                "isStreamingRequest": bool(self.request.get("stream")),
            },
            "response": {
                "json": self.response,
                "text": check_text(self, event=AFTER) if response else "",
                "statusCode": self.status_code,
            },
            "requestType": self.request_type,
            "metadata": dict(self.metadata),
        }


class CheckError(Exception):
    """A check could not judge (bad parameters, nothing to read): reported as its ``error``."""

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


@dataclass(slots=True)
class CheckOutcome:
    """What one check decided."""

    verdict: bool
    data: dict[str, Any] | None = None
    #: ``{"name", "message"}`` when the check could not judge.
    error: dict[str, str] | None = None
    #: Applied to every text of the checked side (redaction).
    rewrite: Rewrite | None = None
    #: A whole new request (before) or response (after) JSON (a webhook's ``transformedData``).
    replacement: dict[str, Any] | None = None


CheckFn = Callable[[CheckContext, Mapping[str, Any]], Awaitable[CheckOutcome]]


def matches_operator(operator: str, found: list[Any], missing: list[Any]) -> bool:
    """Portkey's ``any`` / ``all`` / ``none``: which of the wanted items must be present."""
    if operator == "any":
        return bool(found)
    if operator == "all":
        return not missing
    return not found


def excerpt(text: str | None) -> str:
    """The first 100 characters, as Portkey's ``textExcerpt``."""
    if not text:
        return "No text available"
    return text[:100] + "..." if len(text) > 100 else text


def _part_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return texts
    return []


def _request_texts(body: Mapping[str, Any], kind: str) -> list[str]:
    if kind == "chatComplete":
        messages = body.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], Mapping):
            return _part_texts(messages[-1].get("content"))
        return []
    if kind == "complete":
        return _part_texts(body.get("prompt"))
    if kind == "embed":
        return _part_texts(body.get("input"))
    return []


def _response_texts(body: Mapping[str, Any] | None, kind: str) -> list[str]:
    if not body:
        return []
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return []
    first = choices[0]
    if kind == "complete":
        return _part_texts(first.get("text"))
    message = first.get("message")
    return _part_texts(message.get("content")) if isinstance(message, Mapping) else []


def check_text(ctx: CheckContext, *, event: str | None = None) -> str:
    """The current content part's text for ``event`` (default: the context's own)."""
    if (event or ctx.event) == BEFORE:
        texts = _request_texts(ctx.request, ctx.request_type)
    else:
        texts = _response_texts(ctx.response, ctx.request_type)
    return "\n".join(t for t in texts if t)


def _rewrite_content(content: Any, rewrite: Rewrite) -> Any:
    if isinstance(content, str):
        return rewrite(content)
    if isinstance(content, list):
        parts: list[Any] = []
        for part in content:
            if isinstance(part, str):
                parts.append(rewrite(part))
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append({**part, "text": rewrite(part["text"])})
            else:
                parts.append(part)
        return parts
    return content


def rewrite_texts(
    body: Mapping[str, Any], event: str, kind: str, rewrite: Rewrite
) -> dict[str, Any]:
    """A copy of ``body`` with every text of the checked side passed through ``rewrite``."""
    out = copy.deepcopy(dict(body))
    if event == BEFORE:
        if kind == "chatComplete" and isinstance(out.get("messages"), list):
            for message in out["messages"]:
                if isinstance(message, dict) and "content" in message:
                    message["content"] = _rewrite_content(message["content"], rewrite)
        elif kind == "complete" and "prompt" in out:
            out["prompt"] = _rewrite_content(out["prompt"], rewrite)
        elif kind == "embed" and "input" in out:
            out["input"] = _rewrite_content(out["input"], rewrite)
        return out
    for choice in out.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if isinstance(choice.get("text"), str):
            choice["text"] = rewrite(choice["text"])
        message = choice.get("message")
        if isinstance(message, dict) and "content" in message:
            message["content"] = _rewrite_content(message["content"], rewrite)
    return out
