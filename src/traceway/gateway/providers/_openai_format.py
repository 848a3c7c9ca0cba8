"""OpenAI-format building blocks shared by the providers that translate wire formats.

Reading side: helpers that pull typed values out of an OpenAI chat request and
raise :class:`TranslationError` (a 400 for the caller) when a value cannot be
expressed in the provider's format.  Writing side: builders for
``chat.completion`` objects, ``chat.completion.chunk`` events and error bodies.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

from traceway.gateway.providers.base import UpstreamResponse, error_response

__all__ = [
    "ChunkFactory",
    "IdFactory",
    "TranslationError",
    "arguments_object",
    "chat_completion",
    "content_parts",
    "error_object",
    "function_tools",
    "include_usage",
    "max_tokens",
    "parse_data_url",
    "random_id",
    "stop_list",
    "text_of",
    "unsupported_endpoint",
]

#: Makes ids such as ``call_…`` and ``chatcmpl-…``; injected so tests are deterministic.
IdFactory = Callable[[str], str]

_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?P<params>(;[^,;]*)*),(?P<data>.*)", re.S)


def random_id(prefix: str) -> str:
    """A fresh id with ``prefix``, e.g. ``random_id("call_")``."""
    return prefix + secrets.token_hex(12)


class TranslationError(ValueError):
    """The request cannot be expressed in the provider's format (answered with a 400)."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def response(self) -> UpstreamResponse:
        """The 400 the caller gets instead of an upstream answer."""
        return error_response(400, self.message, param=self.param)


def error_object(
    message: str, *, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error JSON as a dict, for translators that build on it before encoding."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def unsupported_endpoint(provider: str, endpoint: str) -> UpstreamResponse:
    """The 400 a provider answers for an endpoint its wire format lacks."""
    return error_response(
        400,
        f"endpoint not supported by provider {provider}",
        param=f"/v1/{endpoint}",
        code="unsupported_endpoint",
    )


# -- reading an OpenAI request -------------------------------------------------------------


def content_parts(content: Any, *, param: str) -> list[dict[str, Any]]:
    """A message's content as a list of OpenAI content parts (a string is one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        return content
    raise TranslationError("content must be a string or a list of content parts", param=param)


def text_of(content: Any, *, param: str) -> str:
    """The text of content that may hold only text parts (system, tool and refusal text)."""
    texts = []
    for i, part in enumerate(content_parts(content, param=param)):
        if part.get("type") not in ("text", "refusal"):
            raise TranslationError(
                f"content part type {part.get('type')!r} is not allowed here", param=f"{param}[{i}]"
            )
        texts.append(str(part.get("text") or part.get("refusal") or ""))
    return "".join(texts)


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:image/png;base64,AAAA`` → ``("image/png", "AAAA")``; ``None`` for other URLs.

    Data URLs that are not base64 are re-encoded, because both translated formats
    take base64 payloads only.
    """
    if not url.startswith("data:"):
        return None
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise TranslationError("malformed data URL")
    data = match["data"]
    if ";base64" not in match["params"]:
        data = base64.b64encode(unquote_to_bytes(data)).decode("ascii")
    return match["mime"], data


def arguments_object(arguments: Any, *, param: str) -> dict[str, Any]:
    """A tool call's ``arguments`` (a JSON string) as the object the providers expect."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        value = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise TranslationError("tool call arguments are not valid JSON", param=param) from exc
    if not isinstance(value, dict):
        raise TranslationError("tool call arguments must be a JSON object", param=param)
    return value


def function_tools(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``function`` objects of ``tools``; other tool types cannot be translated."""
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise TranslationError("tools must be a list", param="tools")
    functions = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type", "function") != "function" or not isinstance(function, dict):
            raise TranslationError("only function tools are supported", param=f"tools[{i}]")
        if not isinstance(function.get("name"), str):
            raise TranslationError("a function tool needs a name", param=f"tools[{i}].function")
        functions.append(function)
    return functions


def stop_list(stop: Any) -> list[str]:
    """``stop`` (a string or a list of strings) as a list."""
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise TranslationError("stop must be a string or a list of strings", param="stop")


def max_tokens(body: Mapping[str, Any]) -> int | None:
    """``max_completion_tokens`` (the current name) or ``max_tokens`` (the older one)."""
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TranslationError("max_tokens must be an integer", param="max_tokens")
    return value


def include_usage(body: Mapping[str, Any]) -> bool:
    """Whether a stream should end with a usage chunk (``stream_options.include_usage``)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


# -- writing OpenAI responses ---------------------------------------------------------------


def chat_completion(
    *,
    id: str,
    model: str,
    created: int,
    choices: list[dict[str, Any]],
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage,
    }


class ChunkFactory:
    """Builds the ``chat.completion.chunk`` events of one stream.

    Every chunk of a stream shares its id, model and creation time; when the caller
    asked for ``include_usage``, every chunk carries ``"usage": null`` and the last
    one carries the usage with empty ``choices``, as OpenAI sends them.
    """

    def __init__(self, *, id: str, model: str, created: int, include_usage: bool) -> None:
        self.id = id
        self.model = model
        self.created = created
        self.include_usage = include_usage

    def delta(
        self, delta: dict[str, Any], *, index: int = 0, finish_reason: str | None = None
    ) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._chunk([choice], None)

    def usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        return self._chunk([], usage)

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage
        return chunk
