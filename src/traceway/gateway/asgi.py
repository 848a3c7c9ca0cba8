"""ASGI plumbing for the gateway: types, reading the body, sending JSON.

Kept apart from :mod:`traceway.gateway.app` so the request path there reads top
to bottom; everything here is small and allocation-conscious.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from traceway.gateway.errors import GatewayError
from traceway.gateway.providers.base import UpstreamResponse

__all__ = [
    "ClientGone",
    "Receive",
    "Scope",
    "Send",
    "close_stream",
    "parse_json_object",
    "read_body",
    "route_path",
    "send_json",
    "upstream_headers",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
# Upstream headers a client may act on (rate limits, request ids for support tickets).
_PASSED_HEADERS = frozenset(
    {"retry-after", "retry-after-ms", "x-request-id", "openai-processing-ms", "openai-version"}
)


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


def route_path(scope: Scope) -> str:
    """The path below ``/v1`` whether the gateway is mounted at ``/`` or at ``/v1``."""
    path: str = scope["path"]
    root = scope.get("root_path")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path[3:] if path.startswith("/v1/") else path


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; 413 beyond ``limit`` bytes."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if message["type"] == "http.disconnect":
            raise ClientGone
        if len(body) > limit:
            raise GatewayError(413, f"request body is larger than {limit} bytes")
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise GatewayError(413, f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 in OpenAI's words."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(
            400,
            f"We could not parse the JSON body of your request: {exc}. "
            "The body must be a JSON object.",
        ) from exc
    if not isinstance(body, dict):
        raise GatewayError(400, "The body of your request must be a JSON object.")
    return body


async def send_json(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """A complete JSON response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def upstream_headers(response: UpstreamResponse) -> list[tuple[bytes, bytes]]:
    """The upstream's headers worth passing on (retry-after, rate limits, request ids)."""
    passed = []
    for name, value in response.headers.items():
        lowered = name.lower()
        if lowered in _PASSED_HEADERS or lowered.startswith("x-ratelimit-"):
            passed.append((lowered.encode("latin-1"), value.encode("latin-1")))
    return passed


async def close_stream(stream: Any) -> None:
    """Close an upstream stream (an async generator, or anything with ``aclose``)."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
