"""GenAI attributes read from OpenAI-format answers (usage, models, finish reasons).

Used by the gateway's spans: one parse of the answer the gateway relays anyway.
"""

from __future__ import annotations

from typing import Any

import orjson

from traceway.tracing import semconv

__all__ = ["error_message", "parse_body", "response_attributes"]

# Bigger bodies (embeddings) are not parsed whole just to read their usage.
_MAX_PARSED_BYTES = 64 * 1024


def parse_body(body: bytes) -> Any:
    """The answer as JSON (just its usage tail when large), or ``None``."""
    if not body:
        return None
    try:
        if len(body) <= _MAX_PARSED_BYTES:
            return orjson.loads(body)
        # Usage comes last in OpenAI's answers: read just that tail.
        at = body.rfind(b'"usage"')
        return orjson.loads(b"{" + body[at:]) if at > 0 else None
    except orjson.JSONDecodeError:
        return None


def response_attributes(result: Any) -> dict[str, Any]:
    """GenAI attributes of an OpenAI-format result (chat, completion, embedding, response)."""
    if not isinstance(result, dict):
        return {}
    attributes: dict[str, Any] = {}
    if isinstance(result.get("model"), str):
        attributes[semconv.GEN_AI_RESPONSE_MODEL] = result["model"]
    usage = result.get("usage")
    if isinstance(usage, dict):
        inputs = usage.get("prompt_tokens", usage.get("input_tokens"))
        outputs = usage.get("completion_tokens", usage.get("output_tokens"))
        if isinstance(inputs, int):
            attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] = inputs
        if isinstance(outputs, int):
            attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] = outputs
    choices = result.get("choices")
    if isinstance(choices, list):
        reasons = [c.get("finish_reason") for c in choices if isinstance(c, dict)]
        if any(reasons):
            attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = [str(r) for r in reasons if r]
    elif isinstance(result.get("status"), str) and result.get("object") == "response":
        attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = [result["status"]]
    return attributes


def error_message(result: Any, status: int) -> str:
    """``HTTP <status>: <message>`` from an OpenAI error body."""
    if isinstance(result, dict) and isinstance(result.get("error"), dict):
        message = result["error"].get("message")
        if isinstance(message, str):
            return f"HTTP {status}: {message}"
    return f"HTTP {status}"
