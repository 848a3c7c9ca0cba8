"""Cache keys: which requests count as the same request.

Two requests share a key when they ask the same thing of the same model: the
body minus the fields that do not change the answer (``stream``,
``stream_options``, ``user``, ``metadata``, request ids, storage and routing
hints), written as canonical JSON (keys sorted at every depth, so key order
never matters) and hashed with BLAKE2b.  BLAKE2b is in the standard library and
hashes ~1 GB/s, so a dependency such as xxhash would save a microsecond or two
on a typical body and cost an install.

For the semantic cache the text of the last user message is taken out of the
body: what remains keys a *bucket* (same model, parameters and earlier
conversation), and inside a bucket requests match by embedding similarity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from traceway.gateway.providers.base import CHAT, COMPLETIONS, EMBEDDINGS

__all__ = ["CACHEABLE_ENDPOINTS", "IGNORED_FIELDS", "request_key", "semantic_parts"]

#: Endpoints whose answers are a pure function of the request.  ``responses`` is
#: left out: it can continue server-side state (``previous_response_id``).
CACHEABLE_ENDPOINTS = frozenset({CHAT, COMPLETIONS, EMBEDDINGS})

#: Body fields that do not change the answer.
IGNORED_FIELDS = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "metadata",
        "request_id",
        "store",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
    }
)

_SEP = b"\x00"


def _digest(*parts: bytes) -> str:
    return hashlib.blake2b(_SEP.join(parts), digest_size=16).hexdigest()


def _canonical(body: Mapping[str, Any]) -> bytes:
    kept = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)


def request_key(endpoint: str, body: Mapping[str, Any], namespace: str = "") -> str:
    """The exact-match key of a request (32 hex characters).

    ``namespace`` keeps apart what must not share answers (tenants, routes).

    >>> a = request_key("chat/completions", {"model": "m", "stream": True, "temperature": 0})
    >>> a == request_key("chat/completions", {"temperature": 0, "model": "m"})
    True
    """
    return _digest(b"exact", endpoint.encode(), namespace.encode(), _canonical(body))


def _text_of(content: Any) -> str | None:
    """Plain text of a message's content; ``None`` if it holds anything but text."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    texts = []
    for part in content:
        if not isinstance(part, Mapping) or part.get("type") != "text":
            return None  # an image or audio part changes the question
        text = part.get("text")
        if not isinstance(text, str):
            return None
        texts.append(text)
    return "\n".join(texts)


def semantic_parts(
    endpoint: str, body: Mapping[str, Any], namespace: str = ""
) -> tuple[str, str] | None:
    """``(bucket, text)`` for the semantic cache, or ``None`` if the request has no such text.

    The text is the last user message (chat) or the prompt (completions); the
    bucket is the key of everything else, so a match needs the same model,
    parameters and earlier messages.
    """
    if endpoint == CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return None
        for index in range(len(messages) - 1, -1, -1):
            message = messages[index]
            if isinstance(message, Mapping) and message.get("role") == "user":
                text = _text_of(message.get("content"))
                if not text or not text.strip():
                    return None
                rest = list(messages)
                rest[index] = {**message, "content": None}
                remainder = {**body, "messages": rest}
                break
        else:
            return None
    elif endpoint == COMPLETIONS:
        text = body.get("prompt")
        if not isinstance(text, str) or not text.strip():
            return None
        remainder = {**body, "prompt": None}
    else:
        return None
    bucket = _digest(b"semantic", endpoint.encode(), namespace.encode(), _canonical(remainder))
    return bucket, text
