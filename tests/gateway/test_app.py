"""The ASGI app driven directly: mounting, lifecycle, and streams that end badly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import orjson

from tests.gateway.conftest import settings
from traceway.gateway import Gateway
from traceway.gateway.http_client import HttpClient
from traceway.gateway.providers.base import (
    Provider,
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
)

BODY = orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": "a b c d"}]})


class Client:
    """Feeds one request to the app and records what it sends back."""

    def __init__(self, body: bytes = BODY, *, disconnect_after: int | None = None) -> None:
        self.body = body
        self.sent: list[dict[str, Any]] = []
        self._disconnect_after = disconnect_after
        self._body_sent = False
        self._gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        chunks = [m for m in self.sent if m["type"] == "http.response.body"]
        if self._disconnect_after is not None and len(chunks) >= self._disconnect_after:
            self._gone.set()
            await asyncio.sleep(0)  # let the app notice

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.sent[0]["headers"]}

    @property
    def content(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])

    @property
    def complete(self) -> bool:
        return self.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False} or (
            self.sent[-1]["type"] == "http.response.body" and not self.sent[-1].get("more_body")
        )


def scope(
    path: str = "/v1/chat/completions", *, root_path: str = "", **headers: str
) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": root_path,
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }


async def call(gateway: Gateway, client: Client, **scope_options: Any) -> None:
    await gateway(scope(**scope_options), client.receive, client.send)


def test_served_without_lifespan_and_mounted_under_v1() -> None:
    async def run() -> tuple[Client, Client]:
        gateway = Gateway(settings())
        plain, mounted = Client(), Client()
        await call(gateway, plain)  # no lifespan ran: the session is created on first use
        await call(gateway, mounted, path="/v1/chat/completions", root_path="/v1")
        await gateway.shutdown()
        return plain, mounted

    plain, mounted = asyncio.run(run())
    for client in (plain, mounted):
        assert client.status == 200
        assert orjson.loads(client.content)["choices"][0]["message"]["content"] == "a b c d"


def test_shutdown_waits_for_a_stream_in_flight() -> None:
    streamed = orjson.dumps({**orjson.loads(BODY), "stream": True})

    async def run() -> tuple[Client, bool]:
        gateway = Gateway(settings())
        await gateway.startup()
        client = Client(streamed)
        request = asyncio.ensure_future(
            call(gateway, client, **{"x-traceway-mock-token-latency-ms": "20"})
        )
        while not client.sent:  # the stream has started
            await asyncio.sleep(0.001)
        await gateway.shutdown()
        finished_before_shutdown_returned = client.complete
        await request
        return client, finished_before_shutdown_returned

    client, finished = asyncio.run(run())
    assert finished
    assert client.content.endswith(b"data: [DONE]\n\n")


def test_a_client_that_leaves_stops_the_stream() -> None:
    streamed = orjson.dumps({**orjson.loads(BODY), "stream": True})

    async def run() -> Client:
        gateway = Gateway(settings())
        client = Client(streamed, disconnect_after=2)
        await call(gateway, client, **{"x-traceway-mock-token-latency-ms": "5"})
        await gateway.shutdown()
        return client

    client = asyncio.run(run())
    assert client.status == 200
    assert b"[DONE]" not in client.content  # the relay stopped pulling the mock
    assert client.complete


class BreaksMidStream(Provider):
    name: ClassVar[str] = "flaky"
    closed: ClassVar[list[bool]] = []

    async def send(self, http: HttpClient, request: UpstreamRequest) -> UpstreamResponse:
        async def events() -> AsyncIterator[bytes]:
            try:
                yield b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
                raise UpstreamError(502, "upstream stream broke: connection reset")
            finally:
                BreaksMidStream.closed.append(True)

        return UpstreamResponse(200, {"content-type": "text/event-stream"}, stream=events())


def test_a_stream_that_breaks_ends_with_an_openai_error_event() -> None:
    streamed = orjson.dumps({"model": "m", "messages": [], "stream": True})

    async def run() -> Client:
        gateway = Gateway(settings(), providers=[BreaksMidStream()])
        client = Client(streamed)
        await call(gateway, client, **{"x-traceway-provider": "flaky"})
        await gateway.shutdown()
        return client

    client = asyncio.run(run())
    assert client.status == 200
    assert client.headers["content-type"] == "text/event-stream; charset=utf-8"
    error = {
        "error": {
            "message": "upstream stream broke: connection reset",
            "type": "server_error",
            "param": None,
            "code": "502",
        }
    }
    assert client.content == (
        b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
        b"data: " + orjson.dumps(error) + b"\n\n"
    )
    assert client.complete
    assert BreaksMidStream.closed == [True]
