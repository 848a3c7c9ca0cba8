"""Anthropic's answers as OpenAI's: messages, stream events, usage and errors.

Anthropic streams a message as typed events: ``message_start``, then per content
block ``content_block_start`` / ``content_block_delta`` / ``content_block_stop``,
then ``message_delta`` (stop reason, final usage) and ``message_stop``, with
``ping`` and ``error`` events possible at any time.  OpenAI streams one role
chunk, content and tool-call deltas, a chunk with the finish reason and, on
request, a last chunk holding only the usage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from traceway.gateway.providers._openai_format import ChunkFactory, chat_completion, error_object
from traceway.gateway.providers._sse import SSEEvent
from traceway.gateway.providers.base import error_type_for_status

__all__ = [
    "AnthropicStreamTranslator",
    "anthropic_error_to_openai",
    "finish_reason",
    "from_anthropic_response",
    "openai_usage",
]

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error type -> OpenAI error type.  The Anthropic type is kept as the code.
_ERROR_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "rate_limit_error": "rate_limit_error",
    "api_error": "server_error",
    "overloaded_error": "server_error",
    "timeout_error": "server_error",
}


def finish_reason(stop_reason: str | None) -> str | None:
    """Anthropic's ``stop_reason`` as OpenAI's ``finish_reason``."""
    if stop_reason is None:
        return None
    return _FINISH_REASONS.get(stop_reason, "stop")


def openai_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Anthropic's usage as OpenAI's.

    Anthropic counts cached input apart from ``input_tokens``; OpenAI's
    ``prompt_tokens`` includes it, with the cache reads repeated in
    ``prompt_tokens_details.cached_tokens`` and the cache writes in
    ``prompt_tokens_details.cache_write_tokens``.
    """
    fresh = int(usage.get("input_tokens") or 0)
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    completion = int(usage.get("output_tokens") or 0)
    prompt = fresh + cache_read + cache_write
    details: dict[str, int] = {"cached_tokens": cache_read}
    if cache_write:
        # Cache writes are priced apart from plain input, so cost needs them.
        details["cache_write_tokens"] = cache_write
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": details,
    }


def from_anthropic_response(
    payload: Mapping[str, Any], *, model: str, created: int | None = None
) -> dict[str, Any]:
    """An Anthropic ``message`` as an OpenAI ``chat.completion``.

    ``model`` is the requested model, used when the answer does not name one;
    ``created`` defaults to now.
    """
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in payload.get("content") or []:
        if block.get("type") == "text":
            texts.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
        # Thinking blocks have no place in a chat.completion message.
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(payload.get("stop_reason")) or "stop",
    }
    return chat_completion(
        id=str(payload.get("id") or ""),
        model=str(payload.get("model") or model),
        created=int(time.time()) if created is None else created,
        choices=[choice],
        usage=openai_usage(payload.get("usage") or {}),
    )


def anthropic_error_to_openai(status: int, payload: Any) -> dict[str, Any]:
    """Anthropic's error JSON (``{"type": "error", "error": {...}}``) as OpenAI's.

    ``payload`` is whatever the upstream sent, parsed if it was JSON: a body that is
    not Anthropic's error JSON still becomes a well-formed OpenAI error.

    >>> anthropic_error_to_openai(429, {"type": "error", "error": {
    ...     "type": "rate_limit_error", "message": "slow down"}})["error"]["type"]
    'rate_limit_error'
    """
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and isinstance(error.get("type"), str):
        kind = error["type"]
        message = str(error.get("message") or kind)
        return error_object(message, type=_ERROR_TYPES.get(kind, "api_error"), code=kind)
    text = payload.strip()[:500] if isinstance(payload, str) else ""
    message = f"anthropic answered HTTP {status}" + (f": {text}" if text else "")
    return error_object(message, type=error_type_for_status(status))


class AnthropicStreamTranslator:
    """Fed Anthropic SSE events in order; returns the OpenAI chunks each one yields.

    An Anthropic ``error`` event, or a stream that ends before ``message_stop``,
    becomes an OpenAI error object (``{"error": ...}``) that ends the stream.
    """

    def __init__(self, *, model: str, include_usage: bool, created: int) -> None:
        self._chunks = ChunkFactory(
            id="", model=model, created=created, include_usage=include_usage
        )
        self._usage: dict[str, Any] = {}
        self._tool_index: dict[int, int] = {}  # content block index -> OpenAI tool call index
        self._finished = False  # the finish_reason chunk went out
        self._stopped = False  # message_stop or error arrived
        self._handlers: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
            "message_start": self._message_start,
            "content_block_start": self._content_block_start,
            "content_block_delta": self._content_block_delta,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]:
        """The OpenAI objects for one upstream event (none for pings and block stops)."""
        data = orjson.loads(event.data) if event.data else {}
        if not isinstance(data, dict):
            raise ValueError("event data is not a JSON object")
        handler = self._handlers.get(data.get("type") or event.event or "")
        return handler(data) if handler is not None else []

    def finish(self) -> list[dict[str, Any]]:
        """Called when the upstream's stream ends."""
        if self._stopped:
            return []
        error = {"error": {"type": "api_error", "message": "the stream ended before message_stop"}}
        return [anthropic_error_to_openai(502, error)]

    def _message_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        message = data.get("message") or {}
        self._chunks.id = str(message.get("id") or "")
        self._chunks.model = str(message.get("model") or self._chunks.model)
        self._usage.update(message.get("usage") or {})
        return [self._chunks.delta({"role": "assistant", "content": ""})]

    def _content_block_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        block = data.get("content_block") or {}
        if block.get("type") == "text" and block.get("text"):
            return [self._chunks.delta({"content": block["text"]})]
        if block.get("type") != "tool_use":
            return []
        index = self._tool_index[data.get("index", 0)] = len(self._tool_index)
        call = {
            "index": index,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": ""},
        }
        return [self._chunks.delta({"tool_calls": [call]})]

    def _content_block_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self._chunks.delta({"content": delta["text"]})]
        if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
            index = self._tool_index.get(data.get("index", 0))
            if index is None:
                return []
            call = {"index": index, "function": {"arguments": delta["partial_json"]}}
            return [self._chunks.delta({"tool_calls": [call]})]
        return []  # thinking and signature deltas have no OpenAI counterpart

    def _message_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        # Counts here are cumulative: they replace what message_start said.
        self._usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        reason = finish_reason((data.get("delta") or {}).get("stop_reason"))
        if reason is None or self._finished:
            return []
        self._finished = True
        return [self._chunks.delta({}, finish_reason=reason)]

    def _message_stop(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        self._stopped = True
        out = [] if self._finished else [self._chunks.delta({}, finish_reason="stop")]
        if self._chunks.include_usage:
            out.append(self._chunks.usage(openai_usage(self._usage)))
        return out

    def _error(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        self._stopped = True
        return [anthropic_error_to_openai(500, data)]
