"""Calling a provider directly, as the router does, and reading what it answers."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from traceway.gateway.http_client import HttpClient
from traceway.gateway.providers._sse import DONE
from traceway.gateway.providers.base import Provider, UpstreamRequest, UpstreamResponse

__all__ = ["payloads", "send"]


def send(
    provider: Provider, request: UpstreamRequest
) -> tuple[UpstreamResponse, list[bytes] | None]:
    """``provider.send`` with a fresh HTTP client; a stream is read to its end."""

    async def exchange() -> tuple[UpstreamResponse, list[bytes] | None]:
        async with HttpClient() as http:
            response = await provider.send(http, request)
            if response.stream is None:
                return response, None
            return response, [event async for event in response.stream]

    return asyncio.run(exchange())


def payloads(events: list[bytes]) -> list[Any]:
    """The JSON of each OpenAI SSE event, checking the framing on the way."""
    assert all(e.startswith(b"data: ") and e.endswith(b"\n\n") for e in events)
    return [orjson.loads(e[6:-2]) for e in events if e != DONE]
