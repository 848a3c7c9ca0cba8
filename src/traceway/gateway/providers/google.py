"""Google's Gemini API behind OpenAI's chat completions and embeddings formats.

The translation is pure and can be tested without a network: this module turns
requests around (:func:`to_gemini_request`, :func:`to_gemini_embed_request`);
``_google_response`` turns answers, streams and errors around
(:func:`from_gemini_response`, :class:`GeminiStreamTranslator`,
:func:`from_gemini_embed_response`, :func:`gemini_error_to_openai`).
:class:`GoogleProvider` only adds the HTTP exchange.

>>> to_gemini_request({"model": "gemini-2.0-flash",
...                    "messages": [{"role": "user", "content": "Hi"}]})
{'contents': [{'role': 'user', 'parts': [{'text': 'Hi'}]}]}
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from traceway.gateway.http_client import HttpClient
from traceway.gateway.providers._gemini_schema import gemini_schema
from traceway.gateway.providers._google_response import (
    SIGNATURE_MARK,
    GeminiStreamTranslator,
    from_gemini_embed_response,
    from_gemini_response,
    gemini_error_to_openai,
    retry_after,
)
from traceway.gateway.providers._http import (
    bad_gateway,
    post,
    read_payload,
    response_headers,
    translate_stream,
)
from traceway.gateway.providers._openai_format import (
    IdFactory,
    TranslationError,
    arguments_object,
    content_parts,
    function_tools,
    include_usage,
    max_tokens,
    parse_data_url,
    random_id,
    stop_list,
    text_of,
    unsupported_endpoint,
)
from traceway.gateway.providers.base import (
    CHAT,
    EMBEDDINGS,
    Provider,
    UpstreamRequest,
    UpstreamResponse,
)

__all__ = [
    "GeminiStreamTranslator",
    "GoogleProvider",
    "from_gemini_embed_response",
    "from_gemini_response",
    "gemini_error_to_openai",
    "gemini_schema",
    "model_path",
    "to_gemini_embed_request",
    "to_gemini_request",
]

_TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}


def model_path(body: Mapping[str, Any]) -> str:
    """The request's model as Gemini's resource name: ``models/…`` or ``tunedModels/…``."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip("/"):
        raise TranslationError("model is required", param="model")
    if model.startswith(("models/", "tunedModels/")):
        return model
    return f"models/{model}"


# -- chat ----------------------------------------------------------------------------------


def to_gemini_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completions request as a Gemini ``generateContent`` request.

    The model is not part of it: Gemini names the model in the URL
    (:func:`model_path`).  Raises :class:`TranslationError` for what Gemini
    cannot express.
    """
    model_path(body)
    system, contents = _contents(body.get("messages"))
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    functions = function_tools(body)
    if functions:
        out["tools"] = [{"functionDeclarations": [_declaration(f) for f in functions]}]
        tool_config = _tool_config(body.get("tool_choice"))
        if tool_config is not None:
            out["toolConfig"] = tool_config
    config = _generation_config(body)
    if config:
        out["generationConfig"] = config
    return out


def _contents(messages: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """System texts, and the turns (``user`` / ``model``); same-role neighbours merge."""
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages must be a non-empty list", param="messages")
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool_call_id -> function name, for tool results
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise TranslationError("a message must be an object", param=param)
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(text_of(message.get("content"), param=f"{param}.content"))
            continue
        if role == "user":
            parts = _user_parts(message.get("content"), param=f"{param}.content")
        elif role == "assistant":
            role, parts = "model", _model_parts(message, call_names, param=param)
        elif role == "tool":
            role, parts = "user", [_function_response(message, call_names, param=param)]
        else:
            raise TranslationError(f"unsupported role {role!r}", param=f"{param}.role")
        parts = [p for p in parts if p.get("text") != ""]
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def _user_parts(content: Any, *, param: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content_parts(content, param=param)):
        kind, where = part.get("type"), f"{param}[{i}]"
        if kind == "text":
            parts.append({"text": str(part.get("text") or "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append(_media_part(url, param=where))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            audio_format = str(audio.get("format"))
            mime = _AUDIO_TYPES.get(audio_format, f"audio/{audio_format}")
            parts.append({"inlineData": {"mimeType": mime, "data": audio.get("data") or ""}})
        elif kind == "file":
            file = part.get("file") or {}
            parts.append(_media_part(file.get("file_data"), param=where))
        else:
            raise TranslationError(
                f"content part type {kind!r} is not supported by provider google", param=where
            )
    return parts


def _media_part(url: Any, *, param: str) -> dict[str, Any]:
    if not isinstance(url, str):
        raise TranslationError("a media part needs a URL or a data URL", param=param)
    data_url = parse_data_url(url)
    if data_url is not None:
        return {"inlineData": {"mimeType": data_url[0], "data": data_url[1]}}
    if not url.startswith(("http://", "https://", "gs://")):
        raise TranslationError("media URLs must be data, http(s) or gs URLs", param=param)
    file_data = {"fileUri": url}
    mime, _ = mimetypes.guess_type(urlsplit(url).path)
    if mime is not None:
        file_data = {"mimeType": mime, "fileUri": url}
    return {"fileData": file_data}


def _model_parts(
    message: dict[str, Any], call_names: dict[str, str], *, param: str
) -> list[dict[str, Any]]:
    text = text_of(message.get("content"), param=f"{param}.content")
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    for j, call in enumerate(message.get("tool_calls") or []):
        where = f"{param}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise TranslationError("a tool call needs a function name", param=where)
        args = arguments_object(function.get("arguments"), param=f"{where}.function")
        part: dict[str, Any] = {"functionCall": {"name": function["name"], "args": args}}
        call_id = call.get("id")
        if isinstance(call_id, str):
            call_names[call_id] = function["name"]
            # Gemini's thought signature rode along in the id we made for the call.
            _, mark, signature = call_id.partition(SIGNATURE_MARK)
            if mark and signature:
                part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(
    message: dict[str, Any], call_names: dict[str, str], *, param: str
) -> dict[str, Any]:
    name = call_names.get(message.get("tool_call_id") or "") or message.get("name")
    if not isinstance(name, str):
        raise TranslationError(
            "tool_call_id does not match a tool call of an earlier assistant message",
            param=f"{param}.tool_call_id",
        )
    text = text_of(message.get("content"), param=f"{param}.content")
    try:
        value: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = text
    # Gemini wants an object; a tool's JSON object is passed as is, anything else wrapped.
    response = value if isinstance(value, dict) else {"content": value}
    return {"functionResponse": {"name": name, "response": response}}


def _declaration(function: dict[str, Any]) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        declaration["description"] = function["description"]
    parameters = function.get("parameters")
    # Gemini rejects an object schema without properties: no parameters is the way to say it.
    if isinstance(parameters, dict) and parameters.get("properties"):
        declaration["parameters"] = gemini_schema(parameters)
    return declaration


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _TOOL_MODES:
        return {"functionCallingConfig": {"mode": _TOOL_MODES[choice]}}
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        config = {"mode": "ANY", "allowedFunctionNames": [function["name"]]}
        return {"functionCallingConfig": config}
    raise TranslationError("unsupported tool_choice", param="tool_choice")


def _generation_config(body: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for openai_name, gemini_name in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("n", "candidateCount"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("seed", "seed"),
    ):
        if body.get(openai_name) is not None:
            config[gemini_name] = body[openai_name]
    limit = max_tokens(body)
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = stop_list(body.get("stop"))
    if stop:
        config["stopSequences"] = stop
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind in ("json_object", "json_schema"):
            config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if kind == "json_schema" and isinstance(schema, dict):
            config["responseSchema"] = gemini_schema(schema)
    return config


# -- embeddings ----------------------------------------------------------------------------


def to_gemini_embed_request(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """An OpenAI embeddings request as ``(method, request)`` for Gemini.

    One string goes to ``embedContent``, a list of strings to
    ``batchEmbedContents``; token arrays cannot be translated.
    """
    model = model_path(body)
    inputs = body.get("input")
    dimensions = body.get("dimensions")

    def embed(text: str) -> dict[str, Any]:
        request: dict[str, Any] = {"content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            request["outputDimensionality"] = dimensions
        return request

    if isinstance(inputs, str):
        return "embedContent", embed(inputs)
    if isinstance(inputs, list) and inputs and all(isinstance(t, str) for t in inputs):
        return "batchEmbedContents", {"requests": [{"model": model} | embed(t) for t in inputs]}
    raise TranslationError(
        "input must be a string or a non-empty list of strings for provider google",
        param="input",
    )


# -- HTTP ----------------------------------------------------------------------------------


class GoogleProvider(Provider):
    """Chat completions and embeddings through Gemini's ``generativelanguage`` API."""

    name = "google"
    default_base_url = "https://generativelanguage.googleapis.com"

    def __init__(
        self, *, clock: Callable[[], float] = time.time, new_id: IdFactory = random_id
    ) -> None:
        self._clock = clock
        self._new_id = new_id

    async def send(self, http: HttpClient, request: UpstreamRequest) -> UpstreamResponse:
        try:
            if request.endpoint == CHAT:
                payload = to_gemini_request(request.body)
                method = "streamGenerateContent?alt=sse" if request.stream else "generateContent"
            elif request.endpoint == EMBEDDINGS:
                method, payload = to_gemini_embed_request(request.body)
            else:
                return unsupported_endpoint(self.name, request.endpoint)
            path = quote(model_path(request.body), safe="/")
        except TranslationError as exc:
            return exc.response()
        base = (request.base_url or self.default_base_url or "").rstrip("/")
        headers = {"content-type": "application/json", **request.extra_headers}
        if request.api_key:
            headers["x-goog-api-key"] = request.api_key
        resp = await post(
            http,
            f"{base}/v1beta/{path}:{method}",
            provider=self.name,
            headers=headers,
            payload=payload,
            timeout_s=request.timeout_s,
        )
        passed_on = response_headers(resp.headers)
        model = path.removeprefix("models/")
        created = int(self._clock())
        if resp.status < 300 and request.stream and request.endpoint == CHAT:
            translator = GeminiStreamTranslator(
                model=model,
                include_usage=include_usage(request.body),
                created=created,
                new_id=self._new_id,
            )
            stream = translate_stream(resp, translator, provider=self.name)
            return UpstreamResponse(status=resp.status, headers=passed_on, stream=stream)
        answer = await read_payload(resp, provider=self.name, timeout_s=request.timeout_s)
        if resp.status >= 300:
            delay = retry_after(answer)
            if delay is not None and "retry-after" not in passed_on:
                passed_on["retry-after"] = delay
            error = gemini_error_to_openai(resp.status, answer)
            return UpstreamResponse(resp.status, passed_on, orjson.dumps(error))
        if not isinstance(answer, dict):
            return bad_gateway(self.name, "the answer is not a JSON object")
        if request.endpoint == EMBEDDINGS:
            encoding = request.body.get("encoding_format")
            result = from_gemini_embed_response(answer, model=model, encoding_format=encoding)
        else:
            result = from_gemini_response(answer, model=model, created=created, new_id=self._new_id)
        return UpstreamResponse(resp.status, passed_on, orjson.dumps(result))
