"""A fake Gemini API: ``POST /v1beta/models/{model}:{method}`` on a loopback port.

Methods: ``generateContent``, ``streamGenerateContent`` (``?alt=sse``: ``data:``
lines only, each a whole ``GenerateContentResponse``, events separated by
``\\r\\n\\r\\n`` as Google sends them; without it, one JSON array),
``embedContent`` and ``batchEmbedContents``.  Requests are checked the way the
real API checks them (``x-goog-api-key``, roles ``user``/``model``, no unknown
fields anywhere, including JSON Schema keys such as ``additionalProperties``
in function declarations; as many function responses as the previous turn had
function calls), and errors come back as ``{"error": {"code", "message",
"status"}}``.  Tests script answers with :class:`Reply`::

    with FakeGemini() as fake:
        fake.script(Reply.function_call("get_weather", {"city": "Paris"}))
        ...
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from .anthropic_server import Recorded, ThreadedServer

__all__ = ["API_KEY", "FakeGemini", "Recorded", "Reply", "fake_vector"]

API_KEY = "AIza-test"

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_REQUEST_FIELDS = frozenset(
    {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}
    | {"safetySettings", "cachedContent"}
)
_GENERATION_FIELDS = frozenset(
    {"temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "candidateCount"}
    | {"presencePenalty", "frequencyPenalty", "seed", "responseMimeType", "responseSchema"}
    | {"responseLogprobs", "logprobs", "thinkingConfig"}
)
_SCHEMA_FIELDS = frozenset(
    {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems"}
    | {"properties", "required", "minProperties", "maxProperties", "minLength", "maxLength"}
    | {"pattern", "example", "anyOf", "propertyOrdering", "default", "items"}
    | {"minimum", "maximum"}
)
_PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
_PIECES = re.compile(r"\S+\s*|\s+")


def fake_vector(text: str, dimensions: int = 8) -> list[float]:
    """The deterministic embedding the fake returns for ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 255, 4) for i in range(dimensions)]


@dataclass
class Reply:
    """One scripted answer; rendered as JSON or as a stream, as the request asks."""

    candidates: list[dict[str, Any]] = field(default_factory=list)  # Gemini candidates
    usage: dict[str, int] = field(
        default_factory=lambda: {
            "promptTokenCount": 9,
            "candidatesTokenCount": 4,
            "totalTokenCount": 13,
        }
    )
    prompt_feedback: dict[str, Any] | None = None
    status: int = 200
    error: dict[str, Any] | None = None  # the "error" object of an error answer
    headers: dict[str, str] = field(default_factory=dict)
    stream_error: dict[str, Any] | None = None  # an error object after the first piece
    delay_s: float = 0.0

    @classmethod
    def text(cls, *texts: str, finish_reason: str = "STOP", **kwargs: Any) -> Reply:
        """One candidate per text."""
        candidates = [
            {"content": {"parts": [{"text": t}], "role": "model"}, "finishReason": finish_reason}
            for t in texts
        ]
        return cls(candidates=candidates, **kwargs)

    @classmethod
    def function_call(
        cls, name: str, args: dict[str, Any], *, thought_signature: str | None = None
    ) -> Reply:
        part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
        if thought_signature:
            part["thoughtSignature"] = thought_signature
        candidate = {"content": {"parts": [part], "role": "model"}, "finishReason": "STOP"}
        return cls(candidates=[candidate])

    @classmethod
    def blocked(cls, reason: str = "SAFETY") -> Reply:
        return cls(prompt_feedback={"blockReason": reason})

    @classmethod
    def failure(
        cls,
        status: int,
        message: str,
        *,
        retry_delay: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        error = _error_object(status, message)
        if retry_delay is not None:
            retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo"}
            error["details"] = [retry_info | {"retryDelay": retry_delay}]
        return cls(status=status, error=error, headers=headers or {})


def _error_object(status: int, message: str) -> dict[str, Any]:
    return {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}


def _error(status: int, message: str, details: list[Any] | None = None) -> web.Response:
    error = _error_object(status, message)
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=status, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


class FakeGemini(ThreadedServer):
    """The fake Gemini API; see the module docstring."""

    def __init__(self, *, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self._replies: deque[Reply] = deque()

    def script(self, *replies: Reply) -> None:
        """Answer the next content requests with ``replies``, in order (then "ok")."""
        with self._lock:
            self._replies.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._replies.clear()
            self.requests.clear()

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1beta/models/{target}", self._model_method)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def _not_found(self, request: web.Request) -> web.Response:
        await self.record(request)
        return _error(404, "Not found")

    async def _model_method(self, request: web.Request) -> web.StreamResponse:
        recorded = await self.record(request)
        model, _, method = request.match_info["target"].partition(":")
        key = recorded.headers.get("x-goog-api-key") or recorded.query.get("key")
        if key is None:
            return _error(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to "
                "call this API.",
            )
        if key != self.api_key:
            reason = {"@type": "type.googleapis.com/google.rpc.ErrorInfo"}
            return _error(400, "API key not valid. Please pass a valid API key.", [
                reason | {"reason": "API_KEY_INVALID", "domain": "googleapis.com"}
            ])  # fmt: skip
        body = recorded.body
        if not isinstance(body, dict):
            return _error(400, "Invalid JSON payload received.")
        if method == "embedContent":
            return self._embed(body)
        if method == "batchEmbedContents":
            return self._batch_embed(model, body)
        if method not in ("generateContent", "streamGenerateContent"):
            return _error(404, f"Method {method!r} not found")
        problem = _check_generate(body)
        if problem is not None:
            return _error(400, problem)
        with self._lock:
            reply = self._replies.popleft() if self._replies else Reply.text("ok")
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.error is not None:
            return web.json_response(
                {"error": reply.error}, status=reply.status, dumps=_dumps, headers=reply.headers
            )
        pieces = _pieces(reply, model) if method == "streamGenerateContent" else []
        if method == "generateContent":
            return web.json_response(_whole(reply, model), dumps=_dumps, headers=reply.headers)
        if recorded.query.get("alt") != "sse":
            return web.json_response(pieces, dumps=_dumps, headers=reply.headers)
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", **reply.headers}
        )
        await response.prepare(request)
        for piece in pieces:
            await response.write(b"data: " + orjson.dumps(piece) + b"\r\n\r\n")
        await response.write_eof()
        return response

    def _embed(self, body: dict[str, Any]) -> web.Response:
        problem = _check_embed(body)
        if problem is not None:
            return _error(400, problem)
        vector = fake_vector(_text(body), body.get("outputDimensionality") or 8)
        return web.json_response({"embedding": {"values": vector}}, dumps=_dumps)

    def _batch_embed(self, model: str, body: dict[str, Any]) -> web.Response:
        if set(body) != {"requests"} or not body["requests"]:
            return _error(400, "* BatchEmbedContentsRequest.requests: requests is not specified")
        embeddings = []
        for i, request in enumerate(body["requests"]):
            if request.get("model") != f"models/{model}":
                return _error(
                    400,
                    f"* BatchEmbedContentsRequest.requests[{i}].model: the model of every "
                    "request must be the model of the batch",
                )
            problem = _check_embed({k: v for k, v in request.items() if k != "model"})
            if problem is not None:
                return _error(400, problem)
            values = fake_vector(_text(request), request.get("outputDimensionality") or 8)
            embeddings.append({"values": values})
        return web.json_response({"embeddings": embeddings}, dumps=_dumps)


def _text(request: dict[str, Any]) -> str:
    return "".join(p.get("text", "") for p in request["content"]["parts"])


def _whole(reply: Reply, model: str) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    if reply.candidates:
        answer["candidates"] = [c | {"index": i} for i, c in enumerate(reply.candidates)]
    if reply.prompt_feedback is not None:
        answer["promptFeedback"] = reply.prompt_feedback
    answer["usageMetadata"] = reply.usage
    answer["modelVersion"] = model
    answer["responseId"] = "fake-response-1"
    return answer


def _pieces(reply: Reply, model: str) -> list[dict[str, Any]]:
    """The stream of a reply: text split into word pieces, calls whole, finish last."""
    head = {"modelVersion": model, "responseId": "fake-response-1"}
    if not reply.candidates:
        return [_whole(reply, model)]
    pieces: list[dict[str, Any]] = []
    for i, candidate in enumerate(reply.candidates):
        parts = candidate["content"]["parts"]
        split = [{"text": t} for p in parts if "text" in p for t in _PIECES.findall(p["text"])]
        split += [p for p in parts if "text" not in p]
        for j, part in enumerate(split):
            piece: dict[str, Any] = {"content": {"parts": [part], "role": "model"}}
            if i:
                piece["index"] = i  # proto3 JSON leaves out index 0, and so does Gemini
            if j == len(split) - 1:
                piece["finishReason"] = candidate["finishReason"]
            usage = reply.usage if j == len(split) - 1 else {"promptTokenCount": 9}
            pieces.append({"candidates": [piece], "usageMetadata": usage} | head)
    if reply.stream_error is not None:
        return [pieces[0], {"error": reply.stream_error}]
    return pieces


# -- request validation, as the real API answers it ----------------------------------------


def _unknown(name: str, where: str = "") -> str:
    at = f" at '{where}'" if where else ""
    return f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.'


def _check_generate(body: dict[str, Any]) -> str | None:
    for key in body:
        if key not in _REQUEST_FIELDS:
            return _unknown(key)
    for key in body.get("generationConfig") or {}:
        if key not in _GENERATION_FIELDS:
            return _unknown(key, "generation_config")
    if "responseSchema" in (body.get("generationConfig") or {}):
        problem = _check_schema(body["generationConfig"]["responseSchema"], "response_schema")
        if problem:
            return problem
    contents = body.get("contents")
    if not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    calls_pending = 0
    for i, content in enumerate(contents):
        if content.get("role") not in ("user", "model"):
            return "Please use a valid role: user, model."
        parts = content.get("parts") or []
        if not parts:
            return (
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            )
        for part in parts:
            problem = _check_part(part)
            if problem:
                return problem
        responses = sum("functionResponse" in p for p in parts)
        if calls_pending and responses != calls_pending:
            return (
                "Please ensure that the number of function response parts is equal to the "
                "number of function call parts of the function call turn."
            )
        calls_pending = sum("functionCall" in p for p in parts)
    return _check_tools(body)


def _check_part(part: dict[str, Any]) -> str | None:
    for key in part:
        if key not in (*_PART_DATA, "thought", "thoughtSignature"):
            return _unknown(key, "contents.parts")
    if sum(key in part for key in _PART_DATA) != 1:
        return (
            "* GenerateContentRequest.contents.parts.data: required oneof field 'data' must "
            "have one initialized field"
        )
    if "inlineData" in part and not {"mimeType", "data"} <= set(part["inlineData"]):
        return "* GenerateContentRequest.contents.parts.inline_data: mimeType and data are required"
    if "fileData" in part and "fileUri" not in part["fileData"]:
        return "* GenerateContentRequest.contents.parts.file_data.file_uri: fileUri is required"
    if "functionResponse" in part and not isinstance(
        part["functionResponse"].get("response"), dict
    ):
        return (
            "* GenerateContentRequest.contents.parts.function_response.response: must be an object"
        )
    return None


def _check_tools(body: dict[str, Any]) -> str | None:
    for i, tool in enumerate(body.get("tools") or []):
        for j, declaration in enumerate(tool.get("functionDeclarations") or []):
            for key in declaration:
                if key not in ("name", "description", "parameters", "response"):
                    return _unknown(key, f"tools[{i}].function_declarations[{j}]")
            if "parameters" in declaration:
                where = f"tools[{i}].function_declarations[{j}].parameters"
                problem = _check_schema(declaration["parameters"], where)
                if problem:
                    return problem
                if declaration["parameters"].get("type") in ("object", "OBJECT") and not (
                    declaration["parameters"].get("properties")
                ):
                    return f"* {where}.properties: should be non-empty for OBJECT type"
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if config.get("mode", "AUTO") not in ("AUTO", "ANY", "NONE", "VALIDATED"):
        return f"Invalid value at 'tool_config.function_calling_config.mode' ({config['mode']})"
    if config.get("allowedFunctionNames") and config.get("mode") != "ANY":
        return "allowed_function_names may only be set when mode is ANY"
    return None


def _check_schema(schema: dict[str, Any], where: str) -> str | None:
    for key, value in schema.items():
        if key not in _SCHEMA_FIELDS:
            return _unknown(key, where)
        if key == "properties":
            for name, sub in value.items():
                problem = _check_schema(sub, f"{where}.properties[{name}].value")
                if problem:
                    return problem
        elif key == "items":
            problem = _check_schema(value, f"{where}.items")
            if problem:
                return problem
        elif key == "anyOf":
            for k, sub in enumerate(value):
                problem = _check_schema(sub, f"{where}.any_of[{k}]")
                if problem:
                    return problem
    return None


def _check_embed(body: dict[str, Any]) -> str | None:
    for key in body:
        if key not in ("content", "taskType", "title", "outputDimensionality"):
            return _unknown(key)
    if not (body.get("content") or {}).get("parts"):
        return "* EmbedContentRequest.content: content is not specified"
    return None
