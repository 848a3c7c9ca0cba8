"""The mock provider: OpenAI's wire format with no network, for demos and tests.

Models choose the behaviour:

* ``echo`` answers with the last user message; any other model (``mock``,
  ``gpt-4o``…) answers with text from a generator seeded by the prompt (and the
  request's ``seed``), so the same request always gets the same answer;
* ``error-<status>`` (``error-500``, ``error-429``…) answers that status with an
  OpenAI error body (``error-429`` sends ``retry-after: 1``);
* a ``@<n>ms`` suffix (``echo@250ms``) waits ``n`` ms before answering, as does
  the header ``x-traceway-mock-latency-ms``; ``x-traceway-mock-token-latency-ms``
  spaces out streamed chunks.

When the request has ``tools`` the mock calls one if ``tool_choice`` forces it
or the user's message names it; after a tool result it answers in text.
Usage counts are word counts, close enough to real tokenizers for dashboards.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson

from traceway.gateway.http_client import HttpClient
from traceway.gateway.providers.base import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    RESPONSES,
    Provider,
    UpstreamRequest,
    UpstreamResponse,
    error_response,
)
from traceway.gateway.providers.mock_responses import respond as respond_responses
from traceway.gateway.providers.mock_text import (
    Reply,
    count_tokens,
    embed,
    function_specs,
    generate,
    message_text,
    plan_reply,
    split_tokens,
    truncate,
)

__all__ = ["MockProvider", "parse_mock_model"]

FINGERPRINT = "fp_traceway_mock"
SSE_HEADERS = {"content-type": "text/event-stream"}
JSON_HEADERS = {"content-type": "application/json"}
DONE = b"data: [DONE]\n\n"
_DEFAULT_DIMENSIONS = 1536


def sse(event: Mapping[str, Any]) -> bytes:
    """One SSE ``data:`` event, as OpenAI frames it."""
    return b"data: " + orjson.dumps(event) + b"\n\n"


def _random_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def parse_mock_model(model: str) -> tuple[str, int]:
    """Split ``"echo@250ms"`` into ``("echo", 250)``; no suffix means no latency."""
    base, at, suffix = model.rpartition("@")
    if at and suffix.endswith("ms") and suffix[:-2].isdigit():
        return base, int(suffix[:-2])
    return model, 0


def _int_option(options: Mapping[str, Any], name: str) -> int:
    value = options.get(name)
    try:
        return max(0, int(value)) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def _usage(prompt: int, completion: int, *, details: bool = True) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if details:
        usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
        usage["completion_tokens_details"] = {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return usage


class MockProvider(Provider):
    """Answers every endpoint in-process, deterministically."""

    name = "mock"
    local = True
    #: Listed by ``GET /v1/models``; any other model name works too.
    models = ("mock", "echo", "mock-embedding", "error-429", "error-500")

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        ids: Callable[[str], str] = _random_id,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._ids = ids
        self._sleep = sleep

    async def send(self, http: HttpClient, request: UpstreamRequest) -> UpstreamResponse:
        model = request.model or "mock"
        base, latency_ms = parse_mock_model(model)
        latency_ms = _int_option(request.provider_options, "mock_latency_ms") or latency_ms
        if latency_ms:
            await self._sleep(latency_ms / 1000)
        if base.startswith("error-"):
            return self._error(base, model)
        body = request.body
        echo = base == "echo"
        if request.endpoint == CHAT:
            return self._chat(body, model, echo, request.provider_options)
        if request.endpoint == COMPLETIONS:
            return self._completions(body, model, echo, request.provider_options)
        if request.endpoint == EMBEDDINGS:
            return self._embeddings(body, model)
        if request.endpoint == RESPONSES:
            return respond_responses(
                body, model, echo=echo, ids=self._ids, created=int(self._clock())
            )
        return error_response(404, f"the mock provider has no endpoint {request.endpoint!r}")

    @staticmethod
    def _error(base: str, model: str) -> UpstreamResponse:
        code = base.removeprefix("error-")
        if not code.isdigit() or not 400 <= int(code) <= 599:
            return error_response(400, f"unknown mock model {model!r}", param="model")
        status = int(code)
        headers = {"retry-after": "1"} if status == 429 else {}
        return error_response(
            status,
            f"Mock failure: model {model!r} always answers {status}.",
            code="rate_limit_exceeded" if status == 429 else None,
            headers=headers,
        )

    def _chat(
        self, body: Mapping[str, Any], model: str, echo: bool, options: Mapping[str, Any]
    ) -> UpstreamResponse:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return error_response(400, "'messages' must be a non-empty array", param="messages")
        conversation = [
            (str(m.get("role", "user")), message_text(m.get("content")))
            for m in messages
            if isinstance(m, Mapping)
        ]
        n = body.get("n")
        choices_wanted = min(n, 8) if isinstance(n, int) and n > 1 else 1
        replies = [
            plan_reply(
                conversation,
                echo=echo,
                tools=function_specs(body.get("tools")),
                tool_choice=body.get("tool_choice"),
                max_tokens=body.get("max_completion_tokens", body.get("max_tokens")),
                seed=body.get("seed"),
                index=i,
            )
            for i in range(choices_wanted)
        ]
        head = {
            "id": self._ids("chatcmpl-"),
            "created": int(self._clock()),
            "model": model,
            "system_fingerprint": FINGERPRINT,
        }
        usage = _usage(replies[0].prompt_tokens, sum(r.completion_tokens for r in replies))
        call_ids = [self._ids("call_") if r.tool_name else "" for r in replies]
        if body.get("stream"):
            stream = self._chat_stream(head, replies, call_ids, usage, body, options)
            return UpstreamResponse(200, SSE_HEADERS, stream=stream)
        choices = [
            {
                "index": i,
                "message": _assistant_message(r, call_ids[i]),
                "logprobs": None,
                "finish_reason": r.finish_reason,
            }
            for i, r in enumerate(replies)
        ]
        result = {
            "id": head["id"],
            "object": "chat.completion",
            "created": head["created"],
            "model": model,
            "choices": choices,
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }
        return UpstreamResponse(200, JSON_HEADERS, orjson.dumps(result))

    async def _chat_stream(
        self,
        head: Mapping[str, Any],
        replies: list[Reply],
        call_ids: list[str],
        usage: dict[str, Any],
        body: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> AsyncIterator[bytes]:
        include_usage = _include_usage(body)
        pause = _int_option(options, "mock_token_latency_ms") / 1000
        head = {
            "id": head["id"],
            "object": "chat.completion.chunk",
            "created": head["created"],
            "model": head["model"],
            "system_fingerprint": FINGERPRINT,
        }

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            event = {**head, "choices": [choice]}
            if include_usage:
                event["usage"] = None
            return sse(event)

        for i, reply in enumerate(replies):
            yield chunk(i, {"role": "assistant", "content": "", "refusal": None})
            if reply.tool_name:
                call = {"index": 0, "id": call_ids[i], "type": "function"}
                call["function"] = {"name": reply.tool_name, "arguments": ""}
                yield chunk(i, {"tool_calls": [call]})
                for piece in _pieces(reply.tool_arguments or "", 8):
                    yield chunk(i, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            else:
                for token in split_tokens(reply.text or ""):
                    if pause:
                        await self._sleep(pause)
                    yield chunk(i, {"content": token})
            yield chunk(i, {}, reply.finish_reason)
        if include_usage:
            yield sse({**head, "choices": [], "usage": usage})
        yield DONE

    def _completions(
        self, body: Mapping[str, Any], model: str, echo: bool, options: Mapping[str, Any]
    ) -> UpstreamResponse:
        prompt = body.get("prompt")
        prompts = (
            prompt
            if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt)
            else [prompt]
        )
        texts = [p if isinstance(p, str) else message_text(p) for p in prompts]
        choices: list[dict[str, Any]] = []
        completion_tokens = 0
        for i, text in enumerate(texts):
            answer = text if echo else generate(text, seed=body.get("seed"))
            answer, cut = truncate(answer, body.get("max_tokens"))
            if body.get("echo") is True:
                answer = text + answer
            completion_tokens += count_tokens(answer)
            finish = "length" if cut else "stop"
            choices.append({"text": answer, "index": i, "logprobs": None, "finish_reason": finish})
        usage = _usage(sum(count_tokens(t) for t in texts), completion_tokens, details=False)
        head = {
            "id": self._ids("cmpl-"),
            "object": "text_completion",
            "created": int(self._clock()),
            "model": model,
            "system_fingerprint": FINGERPRINT,
        }
        if body.get("stream"):
            stream = self._completion_stream(head, choices, usage, body, options)
            return UpstreamResponse(200, SSE_HEADERS, stream=stream)
        return UpstreamResponse(
            200, JSON_HEADERS, orjson.dumps({**head, "choices": choices, "usage": usage})
        )

    async def _completion_stream(
        self,
        head: Mapping[str, Any],
        choices: list[dict[str, Any]],
        usage: dict[str, Any],
        body: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> AsyncIterator[bytes]:
        include_usage = _include_usage(body)
        pause = _int_option(options, "mock_token_latency_ms") / 1000
        extra = {"usage": None} if include_usage else {}
        for choice in choices:
            index = choice["index"]
            for token in split_tokens(choice["text"]):
                if pause:
                    await self._sleep(pause)
                part = {"text": token, "index": index, "logprobs": None, "finish_reason": None}
                yield sse({**head, "choices": [part], **extra})
            last = {
                "text": "",
                "index": index,
                "logprobs": None,
                "finish_reason": choice["finish_reason"],
            }
            yield sse({**head, "choices": [last], **extra})
        if include_usage:
            yield sse({**head, "choices": [], "usage": usage})
        yield DONE

    def _embeddings(self, body: Mapping[str, Any], model: str) -> UpstreamResponse:
        raw = body.get("input")
        if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
            inputs: list[Any] = [raw]
        elif isinstance(raw, list) and raw:
            inputs = raw
        else:
            return error_response(
                400, "'input' must be a string or a non-empty array", param="input"
            )
        dimensions = body.get("dimensions")
        if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions <= 0:
            dimensions = _DEFAULT_DIMENSIONS
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else orjson.dumps(item).decode()
            tokens += len(item) if isinstance(item, list) else count_tokens(item)
            vector: Any = embed(text, dimensions)
            if as_base64:
                vector = base64.b64encode(array("f", vector).tobytes()).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        result = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return UpstreamResponse(200, JSON_HEADERS, orjson.dumps(result))


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _assistant_message(reply: Reply, call_id: str) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text,
        "refusal": None,
        "annotations": [],
    }
    if reply.tool_name:
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": reply.tool_name, "arguments": reply.tool_arguments},
            }
        ]
    return message
