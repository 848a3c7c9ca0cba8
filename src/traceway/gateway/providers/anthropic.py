"""Anthropic's Messages API behind OpenAI's chat completions format.

The translation is pure and can be tested without a network: this module turns
requests around (:func:`to_anthropic_request`); ``_anthropic_response`` turns
answers, streams and errors around (:func:`from_anthropic_response`,
:class:`AnthropicStreamTranslator`, :func:`anthropic_error_to_openai`).
:class:`AnthropicProvider` only adds the HTTP exchange.

>>> to_anthropic_request({"model": "claude-x", "messages": [{"role": "user", "content": "Hi"}]})
... # doctest: +NORMALIZE_WHITESPACE
{'model': 'claude-x', 'max_tokens': 4096,
 'messages': [{'role': 'user', 'content': [{'type': 'text', 'text': 'Hi'}]}]}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from traceway.gateway.http_client import HttpClient
from traceway.gateway.providers._anthropic_response import (
    AnthropicStreamTranslator,
    anthropic_error_to_openai,
    finish_reason,
    from_anthropic_response,
)
from traceway.gateway.providers._http import (
    bad_gateway,
    post,
    read_payload,
    response_headers,
    translate_stream,
)
from traceway.gateway.providers._openai_format import (
    TranslationError,
    arguments_object,
    content_parts,
    function_tools,
    include_usage,
    max_tokens,
    parse_data_url,
    stop_list,
    text_of,
    unsupported_endpoint,
)
from traceway.gateway.providers.base import CHAT, Provider, UpstreamRequest, UpstreamResponse

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "AnthropicProvider",
    "AnthropicStreamTranslator",
    "anthropic_error_to_openai",
    "finish_reason",
    "from_anthropic_response",
    "to_anthropic_request",
]

ANTHROPIC_VERSION = "2023-06-01"
#: Anthropic requires ``max_tokens``; OpenAI callers often leave it out.
DEFAULT_MAX_TOKENS = 4096

# -- request -------------------------------------------------------------------------------


def to_anthropic_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completions request as an Anthropic Messages API request.

    Raises :class:`TranslationError` for what the Messages API cannot express.
    """
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise TranslationError("model is required", param="model")
    n = body.get("n")
    if n is not None and n != 1:
        raise TranslationError("n > 1 is not supported by provider anthropic", param="n")
    system, messages = _messages(body.get("messages"))
    out: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens(body) or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system:
        # Plain text unless a part asks for prompt caching, which needs blocks.
        if any("cache_control" in block for block in system):
            out["system"] = system
        else:
            out["system"] = "\n\n".join(block["text"] for block in system)
    stop = stop_list(body.get("stop"))
    if stop:
        out["stop_sequences"] = stop
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    tools = [_tool(function) for function in function_tools(body)]
    if tools:
        out["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    if body.get("stream"):
        out["stream"] = True
    return out


def _messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System blocks, and the turns: roles alternate, so same-role neighbours merge."""
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages must be a non-empty list", param="messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise TranslationError("a message must be an object", param=param)
        role = message.get("role")
        if role in ("system", "developer"):
            blocks = _text_blocks(message.get("content"), param=f"{param}.content")
            system.extend(b for b in blocks if b["text"])
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), param=f"{param}.content")
        elif role == "assistant":
            blocks = _assistant_blocks(message, param=param)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, param=param)]
        else:
            raise TranslationError(f"unsupported role {role!r}", param=f"{param}.role")
        # Anthropic rejects empty text blocks; an empty message is just left out.
        blocks = [b for b in blocks if b["type"] != "text" or b["text"]]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _text_block(part: dict[str, Any]) -> dict[str, Any]:
    block = {"type": "text", "text": str(part.get("text") or part.get("refusal") or "")}
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _text_blocks(content: Any, *, param: str) -> list[dict[str, Any]]:
    text_of(content, param=param)  # rejects anything but text
    return [_text_block(part) for part in content_parts(content, param=param)]


def _user_blocks(content: Any, *, param: str) -> list[dict[str, Any]]:
    blocks = []
    for i, part in enumerate(content_parts(content, param=param)):
        kind = part.get("type")
        if kind == "text":
            blocks.append(_text_block(part))
        elif kind == "image_url":
            blocks.append(_image_block(part, param=f"{param}[{i}]"))
        elif kind == "file":
            blocks.append(_document_block(part, param=f"{param}[{i}]"))
        else:
            raise TranslationError(
                f"content part type {kind!r} is not supported by provider anthropic",
                param=f"{param}[{i}]",
            )
    return blocks


def _image_block(part: dict[str, Any], *, param: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise TranslationError("image_url needs a url", param=param)
    data_url = parse_data_url(url)
    if data_url is not None:
        media_type, data = data_url
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("http://", "https://")):
        source = {"type": "url", "url": url}
    else:
        raise TranslationError("image_url must be a data URL or an http(s) URL", param=param)
    block: dict[str, Any] = {"type": "image", "source": source}
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _document_block(part: dict[str, Any], *, param: str) -> dict[str, Any]:
    file = part.get("file")
    file_data = file.get("file_data") if isinstance(file, dict) else None
    data_url = parse_data_url(file_data) if isinstance(file_data, str) else None
    if data_url is None:
        raise TranslationError("a file part needs file_data as a data URL", param=param)
    media_type, data = data_url
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": data},
    }


def _assistant_blocks(message: dict[str, Any], *, param: str) -> list[dict[str, Any]]:
    blocks = _text_blocks(message.get("content"), param=f"{param}.content")
    for j, call in enumerate(message.get("tool_calls") or []):
        where = f"{param}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(call.get("id"), str):
            raise TranslationError("a tool call needs an id and a function", param=where)
        arguments = arguments_object(function.get("arguments"), param=f"{where}.function")
        blocks.append(
            {"type": "tool_use", "id": call["id"], "name": function.get("name"), "input": arguments}
        )
    return blocks


def _tool_result(message: dict[str, Any], *, param: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str):
        raise TranslationError("a tool message needs tool_call_id", param=f"{param}.tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        texts = [b for b in _text_blocks(content, param=f"{param}.content") if b["text"]]
        if texts:
            block["content"] = texts
    return block


def _tool(function: dict[str, Any]) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        tool["description"] = function["description"]
    tool["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return tool


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None:
        out: dict[str, Any] | None = None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        out = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise TranslationError("unsupported tool_choice", param="tool_choice")
    if parallel is False:
        out = (out or {"type": "auto"}) | {"disable_parallel_tool_use": True}
    return out


# -- HTTP ----------------------------------------------------------------------------------


class AnthropicProvider(Provider):
    """Chat completions through ``POST {base}/v1/messages``."""

    name = "anthropic"
    default_base_url = "https://api.anthropic.com"

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    async def send(self, http: HttpClient, request: UpstreamRequest) -> UpstreamResponse:
        if request.endpoint != CHAT:
            return unsupported_endpoint(self.name, request.endpoint)
        try:
            payload = to_anthropic_request(request.body)
        except TranslationError as exc:
            return exc.response()
        base = (request.base_url or self.default_base_url or "").rstrip("/")
        headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        headers.update(request.extra_headers)
        if request.api_key:
            headers["x-api-key"] = request.api_key
        resp = await post(
            http,
            f"{base}/v1/messages",
            provider=self.name,
            headers=headers,
            payload=payload,
            timeout_s=request.timeout_s,
        )
        passed_on = response_headers(resp.headers)
        created = int(self._clock())
        if resp.status < 300 and request.stream:
            translator = AnthropicStreamTranslator(
                model=payload["model"], include_usage=include_usage(request.body), created=created
            )
            stream = translate_stream(resp, translator, provider=self.name)
            return UpstreamResponse(status=resp.status, headers=passed_on, stream=stream)
        answer = await read_payload(resp, provider=self.name, timeout_s=request.timeout_s)
        if resp.status >= 300:
            error = anthropic_error_to_openai(resp.status, answer)
            return UpstreamResponse(resp.status, passed_on, orjson.dumps(error))
        if not isinstance(answer, dict):
            return bad_gateway(self.name, "the answer is not a JSON object")
        result = from_anthropic_response(answer, model=payload["model"], created=created)
        return UpstreamResponse(resp.status, passed_on, orjson.dumps(result))
