"""A fake Anthropic Messages API: ``POST /v1/messages`` on a loopback port.

It answers in Anthropic's wire format (message JSON; SSE with ``event:`` lines for
streams; ``{"type": "error", "error": {...}}`` errors), checks requests the way
the real API does (``x-api-key``, ``anthropic-version``, ``max_tokens``,
alternating roles, ``tool_result`` blocks answering the previous ``tool_use``
blocks, no unknown fields) and records every request it receives.  Tests script
its answers with :class:`Reply`::

    with FakeAnthropic() as fake:
        fake.script(Reply.text("Hello"), Reply.failure(529, "overloaded_error", "Overloaded"))
        ...  # the first request gets "Hello", the second a 529
        assert fake.requests[0].body["max_tokens"] == 4096

:class:`ThreadedServer`, the thread-and-loop runner, is shared with the Gemini fake.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

import orjson
from aiohttp import web

__all__ = ["API_KEY", "FakeAnthropic", "Recorded", "Reply", "ThreadedServer"]

API_KEY = "sk-ant-test"

_TOP_LEVEL = frozenset(
    {"model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream"}
    | {"temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier"}
)
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_PIECES = re.compile(r"\S+\s*|\s+")


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON, or None


class ThreadedServer:
    """An aiohttp application on 127.0.0.1 (a free port), run by a thread's own loop."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        raise NotImplementedError

    def start(self) -> Self:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=type(self).__name__, daemon=True)
        thread.start()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"

        async def serve() -> web.AppRunner:
            # Cancel handlers whose client went away, so a slow answer cannot block stop().
            runner = web.AppRunner(self.make_app(), handler_cancellation=True, access_log=None)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            return runner

        self._runner = asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout=10)
        self._loop, self._thread = loop, thread
        return self

    def stop(self) -> None:
        if self._loop is None or self._runner is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._runner = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def record(self, request: web.Request) -> Recorded:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        recorded = Recorded(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        with self._lock:
            self.requests.append(recorded)
        return recorded


@dataclass
class Reply:
    """One scripted answer; rendered as JSON or as a stream, as the request asks."""

    content: list[dict[str, Any]] = field(default_factory=list)  # Anthropic content blocks
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None
    usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 12, "output_tokens": 6})
    status: int = 200
    error: dict[str, str] | None = None  # {"type", "message"} for an error answer
    headers: dict[str, str] = field(default_factory=dict)
    stream_error: dict[str, str] | None = None  # an error event after message_start
    delay_s: float = 0.0
    id: str = "msg_01FakeMessage"

    @classmethod
    def text(cls, text: str, **kwargs: Any) -> Reply:
        return cls(content=[{"type": "text", "text": text}], **kwargs)

    @classmethod
    def tool_use(
        cls, name: str, input: dict[str, Any], *, id: str = "toolu_01Fake", text: str | None = None
    ) -> Reply:
        blocks = [{"type": "text", "text": text}] if text else []
        blocks.append({"type": "tool_use", "id": id, "name": name, "input": input})
        return cls(content=blocks, stop_reason="tool_use")

    @classmethod
    def failure(
        cls, status: int, type: str, message: str, *, headers: dict[str, str] | None = None
    ) -> Reply:
        return cls(status=status, error={"type": type, "message": message}, headers=headers or {})


class FakeAnthropic(ThreadedServer):
    """The fake Messages API; see the module docstring."""

    def __init__(self, *, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self._replies: deque[Reply] = deque()

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order (then a plain text reply)."""
        with self._lock:
            self._replies.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._replies.clear()
            self.requests.clear()

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def _not_found(self, request: web.Request) -> web.Response:
        await self.record(request)
        return _error(404, "not_found_error", "Not found")

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        recorded = await self.record(request)
        problem = _check_headers(recorded.headers, self.api_key) or _check_body(recorded.body)
        if problem is not None:
            return _error(*problem)
        with self._lock:
            reply = self._replies.popleft() if self._replies else Reply.text("ok")
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.error is not None:
            return _error(reply.status, reply.error["type"], reply.error["message"], reply.headers)
        message = _message(reply, recorded.body["model"])
        if not recorded.body.get("stream"):
            return web.json_response(message, dumps=_dumps, headers=reply.headers)
        return await _stream(request, reply, message)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _error(
    status: int, type: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"type": "error", "error": {"type": type, "message": message}, "request_id": "req_fake"}
    return web.json_response(body, status=status, dumps=_dumps, headers=headers)


def _message(reply: Reply, model: str) -> dict[str, Any]:
    usage = {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0} | reply.usage
    return {
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": reply.content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": usage,
    }


def _events(reply: Reply, message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The stream of ``message`` as Anthropic sends it: (event name, data) pairs."""
    start = message | {"content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = message["usage"] | {"output_tokens": 1}
    events = [("message_start", {"type": "message_start", "message": start})]
    events.append(("ping", {"type": "ping"}))
    if reply.stream_error is not None:
        return [*events, ("error", {"type": "error", "error": reply.stream_error})]
    for index, block in enumerate(reply.content):
        if block["type"] == "text":
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _PIECES.findall(block["text"])]
        else:
            opening = {k: block[k] for k in ("type", "id", "name")} | {"input": {}}
            arguments = orjson.dumps(block["input"]).decode()
            pieces = ["", *(arguments[i : i + 7] for i in range(0, len(arguments), 7))]
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        start_block = {"type": "content_block_start", "index": index, "content_block": opening}
        events.append(("content_block_start", start_block))
        for delta in deltas:
            event = {"type": "content_block_delta", "index": index, "delta": delta}
            events.append(("content_block_delta", event))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta = {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence}
    usage = {"output_tokens": message["usage"]["output_tokens"]}
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


async def _stream(
    request: web.Request, reply: Reply, message: dict[str, Any]
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"content-type": "text/event-stream; charset=utf-8", **reply.headers}
    )
    await response.prepare(request)
    for name, data in _events(reply, message):
        await response.write(f"event: {name}\ndata: ".encode() + orjson.dumps(data) + b"\n\n")
    await response.write_eof()
    return response


# -- request validation, as the real API answers it ----------------------------------------

Problem = tuple[int, str, str]  # status, error type, message


def _check_headers(headers: dict[str, str], api_key: str) -> Problem | None:
    if "x-api-key" not in headers:
        return 401, "authentication_error", "x-api-key header is required"
    if headers["x-api-key"] != api_key:
        return 401, "authentication_error", "invalid x-api-key"
    if "anthropic-version" not in headers:
        return 400, "invalid_request_error", "anthropic-version: header is required"
    return None


def _invalid(message: str) -> Problem:
    return 400, "invalid_request_error", message


def _check_body(body: Any) -> Problem | None:
    if not isinstance(body, dict):
        return _invalid("There was an error parsing the body")
    for key in body:
        if key not in _TOP_LEVEL:
            return _invalid(f"{key}: Extra inputs are not permitted")
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return _invalid(f"{key}: Field required")
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return _invalid("max_tokens: Input should be greater than or equal to 1")
    for key in ("temperature", "top_p"):
        if key in body and not 0 <= body[key] <= 1:
            return _invalid(f"{key}: Input should be less than or equal to 1")
    if set(body.get("metadata") or {}) - {"user_id"}:
        return _invalid("metadata: Extra inputs are not permitted")
    return (
        _check_system(body.get("system")) or _check_messages(body["messages"]) or _check_tools(body)
    )


def _check_system(system: Any) -> Problem | None:
    if system is None or isinstance(system, str):
        return None
    if isinstance(system, list) and all(_is_text(b) for b in system):
        return None
    return _invalid("system: Input should be a valid string or a list of text blocks")


def _is_text(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "text" and bool(block.get("text"))


def _check_messages(messages: Any) -> Problem | None:
    if not isinstance(messages, list) or not messages:
        return _invalid("messages: at least one message is required")
    pending_tool_uses: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            return _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i and messages[i - 1].get("role") == role:
            return _invalid(
                'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row'
            )
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not blocks:
            return _invalid(f"messages.{i}.content: Input should be a non-empty list")
        answered = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
        if answered - pending_tool_uses:
            return _invalid(
                f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks. "
                "Each `tool_result` block must have a corresponding `tool_use` block in the "
                "previous message."
            )
        if pending_tool_uses - answered:
            return _invalid(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(sorted(pending_tool_uses - answered))}"
            )
        for j, block in enumerate(blocks):
            problem = _check_block(block, role, f"messages.{i}.content.{j}")
            if problem is not None:
                return problem
        pending_tool_uses = {b["id"] for b in blocks if b.get("type") == "tool_use"}
    return None


def _check_block(block: Any, role: str, where: str) -> Problem | None:
    kind = block.get("type") if isinstance(block, dict) else None
    allowed = {"text", "image", "document", "tool_result"} if role == "user" else set()
    allowed |= {"text", "tool_use"} if role == "assistant" else set()
    if kind not in allowed:
        return _invalid(f"{where}.type: unexpected block type {kind!r} in a {role} message")
    if kind == "text" and not block.get("text"):
        return _invalid("messages: text content blocks must be non-empty")
    if kind in ("image", "document"):
        source = block.get("source") or {}
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            return None
        media_types = _IMAGE_TYPES if kind == "image" else {"application/pdf"}
        if source.get("type") != "base64" or source.get("media_type") not in media_types:
            return _invalid(f"{where}.source: invalid {kind} source")
        if not isinstance(source.get("data"), str):
            return _invalid(f"{where}.source.data: Field required")
    if kind == "tool_use" and not (
        isinstance(block.get("id"), str)
        and isinstance(block.get("name"), str)
        and isinstance(block.get("input"), dict)
    ):
        return _invalid(f"{where}: tool_use blocks need id, name and an object input")
    if kind == "tool_result" and "content" in block:
        content = block["content"]
        if not isinstance(content, str) and not all(_is_text(b) for b in content):
            return _invalid(f"{where}.content: Input should be a string or text blocks")
    return None


def _check_tools(body: dict[str, Any]) -> Problem | None:
    for i, tool in enumerate(body.get("tools") or []):
        if set(tool) - {"name", "description", "input_schema", "cache_control", "type"}:
            return _invalid(f"tools.{i}: Extra inputs are not permitted")
        if not _TOOL_NAME.fullmatch(str(tool.get("name"))):
            return _invalid(
                f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            )
        if (tool.get("input_schema") or {}).get("type") != "object":
            return _invalid(f"tools.{i}.input_schema.type: Input should be 'object'")
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if set(choice) - {"type", "name", "disable_parallel_tool_use"}:
        return _invalid("tool_choice: Extra inputs are not permitted")
    if choice.get("type") not in ("auto", "any", "tool", "none"):
        return _invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
        return _invalid("tool_choice.tool.name: Field required")
    return None
