"""Gemini's answers as OpenAI's: candidates, stream events, embeddings, usage, errors.

Gemini streams (``alt=sse``) a sequence of whole ``GenerateContentResponse``
objects, each holding the next piece of every candidate; the last piece of a
candidate carries its ``finishReason``, and ``usageMetadata`` grows as it goes.
Function calls arrive whole, never in fragments.
"""

from __future__ import annotations

import base64
import math
import re
import struct
import time
from collections.abc import Mapping
from typing import Any

import orjson

from traceway.gateway.providers._openai_format import (
    ChunkFactory,
    IdFactory,
    chat_completion,
    error_object,
    random_id,
)
from traceway.gateway.providers._sse import SSEEvent
from traceway.gateway.providers.base import error_type_for_status

__all__ = [
    "SIGNATURE_MARK",
    "GeminiStreamTranslator",
    "finish_reason",
    "from_gemini_embed_response",
    "from_gemini_response",
    "gemini_error_to_openai",
    "openai_usage",
    "retry_after",
]

#: Joins a tool call id and Gemini's thought signature for that call.  Gemini wants
#: the signature back with the call in the next turn, and OpenAI clients send back
#: only what the call carried: its id.
SIGNATURE_MARK = "__thought__"

_FILTERED = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
)
_STATUS_TYPES = {
    "INVALID_ARGUMENT": "invalid_request_error",
    "FAILED_PRECONDITION": "invalid_request_error",
    "OUT_OF_RANGE": "invalid_request_error",
    "UNAUTHENTICATED": "authentication_error",
    "PERMISSION_DENIED": "permission_error",
    "NOT_FOUND": "not_found_error",
    "RESOURCE_EXHAUSTED": "rate_limit_error",
    "DEADLINE_EXCEEDED": "timeout_error",
    "INTERNAL": "server_error",
    "UNAVAILABLE": "server_error",
    "UNKNOWN": "server_error",
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)s")


def finish_reason(reason: str | None, *, called_tools: bool) -> str | None:
    """Gemini's ``finishReason`` as OpenAI's ``finish_reason``."""
    if reason is None or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if called_tools else "stop"


def openai_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Gemini's ``usageMetadata`` as OpenAI's usage.

    Thinking tokens are billed as output, so they count as completion tokens, as
    OpenAI counts its reasoning tokens.
    """
    prompt = int(usage.get("promptTokenCount") or 0)
    thoughts = int(usage.get("thoughtsTokenCount") or 0)
    completion = int(usage.get("candidatesTokenCount") or 0) + thoughts
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(usage.get("totalTokenCount") or prompt + completion),
        "prompt_tokens_details": {"cached_tokens": int(usage.get("cachedContentTokenCount") or 0)},
    }
    if thoughts:
        out["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return out


def _text_and_calls(
    content: Mapping[str, Any], new_id: IdFactory
) -> tuple[str, list[dict[str, Any]]]:
    """A candidate's visible text and its function calls as OpenAI tool calls."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in content.get("parts") or []:
        if "text" in part and not part.get("thought"):
            texts.append(part["text"])
        elif isinstance(part.get("functionCall"), dict):
            call = part["functionCall"]
            call_id = call.get("id") or new_id("call_")
            if part.get("thoughtSignature"):
                call_id += SIGNATURE_MARK + part["thoughtSignature"]
            arguments = orjson.dumps(call.get("args") or {}).decode()
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": call.get("name"), "arguments": arguments},
                }
            )
    return "".join(texts), calls


def from_gemini_response(
    payload: Mapping[str, Any],
    *,
    model: str,
    created: int | None = None,
    new_id: IdFactory = random_id,
) -> dict[str, Any]:
    """A ``GenerateContentResponse`` as an OpenAI ``chat.completion``.

    Each candidate becomes a choice.  A prompt Gemini blocked (no candidates, a
    ``promptFeedback.blockReason``) becomes one empty choice finished by
    ``content_filter``.
    """
    choices = []
    for i, candidate in enumerate(payload.get("candidates") or []):
        text, calls = _text_and_calls(candidate.get("content") or {}, new_id)
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        reason = finish_reason(candidate.get("finishReason"), called_tools=bool(calls))
        choices.append(
            {
                "index": candidate.get("index", i),
                "message": message,
                "logprobs": None,
                "finish_reason": reason or "stop",
            }
        )
    if not choices:
        message = {"role": "assistant", "content": None, "refusal": None}
        choices.append(
            {"index": 0, "message": message, "logprobs": None, "finish_reason": "content_filter"}
        )
    return chat_completion(
        id=str(payload.get("responseId") or new_id("chatcmpl-")),
        model=str(payload.get("modelVersion") or model),
        created=int(time.time()) if created is None else created,
        choices=choices,
        usage=openai_usage(payload.get("usageMetadata") or {}),
    )


def from_gemini_embed_response(
    payload: Mapping[str, Any], *, model: str, encoding_format: str | None = None
) -> dict[str, Any]:
    """An ``embedContent`` or ``batchEmbedContents`` answer as an OpenAI embedding list.

    With ``encoding_format="base64"`` (the ``openai`` client's default) each vector
    is sent as little-endian float32 bytes in base64, as OpenAI does.
    """
    if isinstance(payload.get("embedding"), dict):
        vectors = [payload["embedding"].get("values") or []]
    else:
        vectors = [e.get("values") or [] for e in payload.get("embeddings") or []]
    data = []
    for i, values in enumerate(vectors):
        embedding: Any = values
        if encoding_format == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = int((payload.get("usageMetadata") or {}).get("promptTokenCount") or 0)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _error_of(payload: Any) -> dict[str, Any] | None:
    # Gemini wraps errors in a one-element list on some endpoints.
    if isinstance(payload, list) and payload:
        payload = payload[0]
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, dict) else None


def gemini_error_to_openai(status: int, payload: Any) -> dict[str, Any]:
    """Gemini's error JSON (``{"error": {"code", "message", "status"}}``) as OpenAI's.

    ``payload`` is whatever the upstream sent, parsed if it was JSON.

    >>> gemini_error_to_openai(429, {"error": {"code": 429, "message": "quota",
    ...                                       "status": "RESOURCE_EXHAUSTED"}})["error"]
    {'message': 'quota', 'type': 'rate_limit_error', 'param': None, 'code': 'RESOURCE_EXHAUSTED'}
    """
    error = _error_of(payload)
    if error is None:
        text = payload.strip()[:500] if isinstance(payload, str) else ""
        message = f"google answered HTTP {status}" + (f": {text}" if text else "")
        return error_object(message, type=error_type_for_status(status))
    code = error.get("status") if isinstance(error.get("status"), str) else None
    kind = _STATUS_TYPES.get(code or "") or error_type_for_status(status)
    reasons = {d.get("reason") for d in error.get("details") or [] if isinstance(d, dict)}
    if "API_KEY_INVALID" in reasons:
        # Gemini says 400 INVALID_ARGUMENT for a bad key; the status stays, the type tells.
        kind, code = "authentication_error", "invalid_api_key"
    message = str(error.get("message") or code or f"google answered HTTP {status}")
    return error_object(message, type=kind, code=code)


def retry_after(payload: Any) -> str | None:
    """Seconds to wait, from a ``google.rpc.RetryInfo`` detail of an error, if any.

    Gemini says when to retry in the body, not in a ``retry-after`` header.
    """
    error = _error_of(payload)
    for detail in (error or {}).get("details") or []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        match = _DURATION.fullmatch(delay) if isinstance(delay, str) else None
        if match:
            return str(math.ceil(float(match[1])))
    return None


class GeminiStreamTranslator:
    """Fed Gemini SSE events in order; returns the OpenAI chunks each one yields.

    Each candidate opens with a role chunk and closes with a finish chunk; tool
    calls arrive whole, so each becomes one tool-call delta with its arguments.
    An error object in the stream becomes an OpenAI error that ends it.
    """

    def __init__(
        self, *, model: str, include_usage: bool, created: int, new_id: IdFactory = random_id
    ) -> None:
        self._chunks = ChunkFactory(
            id="", model=model, created=created, include_usage=include_usage
        )
        self._new_id = new_id
        self._usage: dict[str, Any] = {}
        self._started: set[int] = set()
        self._finished: set[int] = set()
        self._calls: dict[int, int] = {}  # candidate index -> tool calls sent so far

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]:
        """The OpenAI objects for one upstream event."""
        data = orjson.loads(event.data)
        error = _error_of(data)
        if error is not None:
            code = error.get("code")
            return [gemini_error_to_openai(code if isinstance(code, int) else 500, data)]
        if not isinstance(data, dict):
            raise ValueError("event data is not a JSON object")
        if not self._chunks.id:
            self._chunks.id = str(data.get("responseId") or self._new_id("chatcmpl-"))
            self._chunks.model = str(data.get("modelVersion") or self._chunks.model)
        self._usage = data.get("usageMetadata") or self._usage
        out: list[dict[str, Any]] = []
        candidates = data.get("candidates") or []
        for i, candidate in enumerate(candidates):
            index = candidate.get("index", i)
            out.extend(self._candidate(index, candidate))
        if not candidates and (data.get("promptFeedback") or {}).get("blockReason"):
            out.extend(self._start(0))
            out.extend(self._finish(0, "content_filter"))
        return out

    def finish(self) -> list[dict[str, Any]]:
        """Called when the upstream's stream ends: closes open candidates, adds usage."""
        out: list[dict[str, Any]] = []
        for index in sorted(self._started - self._finished):
            out.extend(self._finish(index, "tool_calls" if self._calls.get(index) else "stop"))
        if self._chunks.include_usage:
            out.append(self._chunks.usage(openai_usage(self._usage)))
        return out

    def _candidate(self, index: int, candidate: Mapping[str, Any]) -> list[dict[str, Any]]:
        out = self._start(index)
        text, calls = _text_and_calls(candidate.get("content") or {}, self._new_id)
        if text:
            out.append(self._chunks.delta({"content": text}, index=index))
        for call in calls:
            position = self._calls.get(index, 0)
            self._calls[index] = position + 1
            delta = {"tool_calls": [{"index": position, **call}]}
            out.append(self._chunks.delta(delta, index=index))
        reason = finish_reason(candidate.get("finishReason"), called_tools=index in self._calls)
        if reason is not None:
            out.extend(self._finish(index, reason))
        return out

    def _start(self, index: int) -> list[dict[str, Any]]:
        if index in self._started:
            return []
        self._started.add(index)
        return [self._chunks.delta({"role": "assistant", "content": ""}, index=index)]

    def _finish(self, index: int, reason: str) -> list[dict[str, Any]]:
        if index in self._finished:
            return []
        self._finished.add(index)
        return [self._chunks.delta({}, index=index, finish_reason=reason)]
