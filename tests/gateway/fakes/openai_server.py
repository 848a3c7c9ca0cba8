"""A fake OpenAI API on a loopback port, speaking OpenAI's wire format exactly.

JSON answers for chat, completions, embeddings (float or base64), responses and
models; SSE streams with ``stream_options.include_usage`` and tool-call deltas;
OpenAI error bodies; ``Authorization: Bearer <key>`` checked when ``api_key``
is set.  Every request is recorded.  Tests script answers in order::

    with FakeOpenAI() as fake:
        fake.script(Reply.error(500), Reply.error(429, headers={"retry-after": "0"}))
        ...  # first request: 500, second: 429, later ones: normal answers
        assert fake.requests[0].body["model"] == "gpt-4o"
"""

from __future__ import annotations

import asyncio
import base64
import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

import orjson
from aiohttp import web

__all__ = ["CREATED", "FakeOpenAI", "Recorded", "Reply"]

CREATED = 1_700_000_000
_DIMENSIONS = 4


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON, or None


@dataclass
class Reply:
    """A scripted answer: a status with a JSON or raw body, after an optional delay."""

    status: int = 200
    body: Any = None  # JSON to send; None: the normal answer for the request
    raw: bytes | None = None  # sent as is (with ``content_type``) instead of JSON
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False  # close the connection without answering

    @classmethod
    def error(
        cls, status: int, message: str = "", *, headers: dict[str, str] | None = None
    ) -> Reply:
        kind = {400: "invalid_request_error", 401: "invalid_request_error", 429: "requests"}
        body = {
            "error": {
                "message": message or f"fake upstream error {status}",
                "type": kind.get(status, "server_error"),
                "param": None,
                "code": "rate_limit_exceeded" if status == 429 else None,
            }
        }
        return cls(status=status, body=body, headers=dict(headers or {}))

    @classmethod
    def slow(cls, seconds: float) -> Reply:
        """The normal answer, after ``seconds``."""
        return cls(delay_s=seconds)


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


class FakeOpenAI:
    """The fake server (see the module docstring).  ``url`` ends in ``/v1``."""

    def __init__(self, *, api_key: str | None = None, answer: str = "Hello from upstream") -> None:
        self.api_key = api_key
        self.answer = answer
        self.url = ""
        self.requests: list[Recorded] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- control (test thread) -------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue answers for the next requests, in order."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def host(self) -> str:
        """``http://127.0.0.1:<port>`` (no ``/v1``)."""
        return self.url.removesuffix("/v1")

    def start(self) -> Self:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fake-openai", daemon=True)
        self._thread.start()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"

        async def serve() -> web.AppRunner:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            return runner

        self._runner = asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving (server thread) ---------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        with self._lock:
            self.requests.append(
                Recorded(
                    method=request.method,
                    path=request.path,
                    query=dict(request.query),
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=body,
                )
            )
            reply = self._replies.popleft() if self._replies else Reply()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if reply.raw is not None:
            return web.Response(
                status=reply.status,
                body=reply.raw,
                content_type=reply.content_type,
                headers=reply.headers,
            )
        if reply.body is not None or reply.status != 200:
            return web.json_response(
                reply.body, status=reply.status, headers=reply.headers, dumps=_dumps
            )
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response(
                Reply.error(401, "Incorrect API key provided").body, status=401
            )
        return await self._answer(request, body if isinstance(body, dict) else {})

    async def _answer(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        path = request.path.removeprefix("/v1")
        if request.method == "GET" and path == "/models":
            models = [{"id": "gpt-4o", "object": "model", "created": CREATED, "owned_by": "system"}]
            return web.json_response({"object": "list", "data": models})
        if request.method == "POST" and path.endswith("/chat/completions"):
            if body.get("stream"):
                return await self._chat_stream(request, body)
            return web.json_response(self._chat(body))
        if request.method == "POST" and path.endswith("/completions"):
            text = f"{self.answer}."
            return web.json_response(
                {
                    "id": "cmpl-fake",
                    "object": "text_completion",
                    "created": CREATED,
                    "model": body.get("model"),
                    "choices": [
                        {"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
                }
            )
        if request.method == "POST" and path.endswith("/embeddings"):
            return web.json_response(self._embeddings(body))
        if request.method == "POST" and path.endswith("/responses"):
            return web.json_response(self._response(body))
        error = Reply.error(404, f"Invalid URL ({request.method} {request.path})")
        return web.json_response(error.body, status=404)

    def _tool_call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        tools = body.get("tools") or []
        if not tools or body.get("tool_choice") in (None, "none", "auto"):
            return None
        name = tools[0]["function"]["name"]
        return {
            "id": "call_fake1",
            "type": "function",
            "function": {"name": name, "arguments": '{"city":"Paris"}'},
        }

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        call = self._tool_call(body)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if call else self.answer,
            "refusal": None,
            "annotations": [],
        }
        if call:
            message["tool_calls"] = [call]
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": CREATED,
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if call else "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
            "system_fingerprint": "fp_fake",
        }

    async def _chat_stream(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        include_usage = (body.get("stream_options") or {}).get("include_usage") is True
        head = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": body.get("model"),
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            event = {
                **head,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                event["usage"] = None
            return _sse(event)

        call = self._tool_call(body)
        await response.write(chunk({"role": "assistant", "content": "", "refusal": None}))
        if call:
            first = {
                "index": 0,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            await response.write(chunk({"tool_calls": [first]}))
            for piece in ('{"city"', ':"Paris"}'):
                await response.write(
                    chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                )
            await response.write(chunk({}, "tool_calls"))
        else:
            words = self.answer.split(" ")
            # Two events in one write, and one event split over two writes: the
            # gateway must re-cut on event boundaries.
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
            data = b"".join(chunk({"content": p}) for p in pieces[:2])
            await response.write(data)
            for piece in pieces[2:]:
                event = chunk({"content": piece})
                await response.write(event[:7])
                await response.write(event[7:])
            await response.write(chunk({}, "stop"))
        if include_usage:
            usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
            await response.write(_sse({**head, "choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    @staticmethod
    def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        data = []
        for index, _ in enumerate(items):
            vector = [0.5, -0.5, 0.25, float(index)]
            embedding: Any = vector
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{_DIMENSIONS}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        usage = {"prompt_tokens": len(items), "total_tokens": len(items)}
        return {"object": "list", "data": data, "model": body.get("model"), "usage": usage}

    def _response(self, body: dict[str, Any]) -> dict[str, Any]:
        text = {"type": "output_text", "text": self.answer, "annotations": []}
        return {
            "id": "resp_fake",
            "object": "response",
            "created_at": CREATED,
            "status": "completed",
            "model": body.get("model"),
            "output": [
                {
                    "type": "message",
                    "id": "msg_fake",
                    "status": "completed",
                    "role": "assistant",
                    "content": [text],
                }
            ],
            "usage": {
                "input_tokens": 3,
                "output_tokens": 3,
                "total_tokens": 6,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
        }


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
