"""Your own guardrail behind a URL: ``default.webhook``.

The gateway POSTs the hook's context as JSON, in Portkey's plugin shape::

    {"request": {"json": {...}, "text": "...", "isStreamingRequest": false},
     "response": {"json": {...} | null, "text": "...", "statusCode": 200 | null},
     "requestType": "chatComplete", "metadata": {...},
     "eventType": "beforeRequestHook" | "afterRequestHook"}

and expects ``{"verdict": true|false}``, optionally with ``"data"`` (reported back)
and ``"transformedData": {"request": {"json": {...}}}`` (before the request) or
``{"response": {"json": {...}}}`` (after it) to replace the request or answer.

Parameters: ``webhookURL``; ``headers`` (an object, or a JSON string); ``timeout``
in milliseconds (3000).  A timeout, a refused URL, a non-2xx answer or an answer
without a boolean verdict is the check's ``error``: like any errored check it
lets the hook pass (fail-open) unless the check sets ``"fail_on_error": true``
(fail-closed).  Header values are sent, never echoed in the results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from traceway.gateway.errors import GatewayError
from traceway.gateway.guardrails.context import BEFORE, CheckContext, CheckError, CheckOutcome

__all__ = ["DEFAULT_TIMEOUT_MS", "webhook"]

DEFAULT_TIMEOUT_MS = 3000
_MAX_ANSWER_BYTES = 8 * 1024 * 1024


def _headers(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise CheckError("Failed to parse headers: Invalid headers format") from exc
    if not isinstance(raw, Mapping):
        raise CheckError("Failed to parse headers: Invalid headers format")
    return {str(k): str(v) for k, v in raw.items()}


def _timeout_ms(raw: Any) -> int:
    if raw is None:
        return DEFAULT_TIMEOUT_MS
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
        raise CheckError("timeout must be a positive number of milliseconds")
    return int(raw)


def _replacement(answer: Mapping[str, Any], event: str) -> dict[str, Any] | None:
    transformed = answer.get("transformedData")
    if not isinstance(transformed, Mapping):
        return None
    side = transformed.get("request" if event == BEFORE else "response")
    if isinstance(side, Mapping) and isinstance(side.get("json"), dict):
        return side["json"]
    return None


async def _post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], timeout_ms: int
) -> Any:
    try:
        async with http.post(
            url,
            data=body,
            headers={"content-type": "application/json", **headers},
            timeout=aiohttp.ClientTimeout(total=timeout_ms / 1000),
            allow_redirects=False,
        ) as answer:
            if not 200 <= answer.status < 300:
                raise CheckError(f"HTTP error! status: {answer.status}")
            raw = await answer.content.read(_MAX_ANSWER_BYTES + 1)
    except TimeoutError as exc:
        raise CheckError(f"Request timed out after {timeout_ms}ms") from exc
    except aiohttp.ClientError as exc:
        raise CheckError(f"Webhook unreachable: {type(exc).__name__}: {exc}") from exc
    if len(raw) > _MAX_ANSWER_BYTES:
        raise CheckError("the webhook's answer is too large")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CheckError("the webhook did not answer with JSON") from exc


async def webhook(ctx: CheckContext, params: Mapping[str, Any]) -> CheckOutcome:
    """``default.webhook``: ask a URL for the verdict."""
    url = params.get("webhookURL")
    raw_headers = params.get("headers")
    timeout_ms = DEFAULT_TIMEOUT_MS
    header_names: list[str] = []
    try:
        timeout_ms = _timeout_ms(params.get("timeout"))
        if not url or not isinstance(url, str):
            raise CheckError("Missing webhook URL")
        try:
            parts = urlsplit(url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            valid = False
        if not valid:
            raise CheckError("Invalid webhook URL format")
        headers = _headers(raw_headers)
        header_names = sorted(headers)
        if ctx.url_guard is not None:
            try:
                await ctx.url_guard(url)
            except GatewayError as exc:
                raise CheckError(f"Webhook URL refused: {exc.message}") from exc
        if ctx.http is None:
            raise CheckError("no HTTP session to call the webhook with")
        body = orjson.dumps({**ctx.as_plugin_context(), "eventType": ctx.event})
        answer = await _post(ctx.http, url, body, headers, timeout_ms)
        if not isinstance(answer, Mapping) or not isinstance(answer.get("verdict"), bool):
            raise CheckError('the webhook\'s answer has no boolean "verdict"')
    except CheckError as exc:
        exc.data = {
            "explanation": f"Webhook error: {exc.message}",
            "webhookUrl": url or "No URL provided",
            "requestContext": {"headers": header_names, "timeout": timeout_ms},
        }
        raise
    verdict = answer["verdict"]
    replacement = _replacement(answer, ctx.event)
    data = {
        "verdict": verdict,
        "explanation": "Webhook request succeeded" if verdict else "Webhook request failed",
        "webhookUrl": url,
        "responseData": answer.get("data"),
        "requestContext": {"headers": header_names, "timeout": timeout_ms},
    }
    return CheckOutcome(verdict=verdict, data=data, replacement=replacement)
