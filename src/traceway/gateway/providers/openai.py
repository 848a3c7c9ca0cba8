"""OpenAI and the providers that speak its wire format.

The request goes to ``{base_url}/{endpoint}`` unchanged; streams are passed on
as they arrive, cut only at SSE event boundaries so a client never sees half an
event; error bodies keep their status and, when they are OpenAI error JSON,
their bytes.  The OpenAI-compatible providers (Groq, Mistral, DeepSeek,
Together, OpenRouter, Ollama, vLLM, Azure OpenAI) differ only in base URL and
auth header.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import orjson

from traceway.gateway.http_client import HttpClient, HttpConnectionError, HttpReply
from traceway.gateway.providers.base import (
    Provider,
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
    error_body,
    error_type_for_status,
)

__all__ = [
    "AzureOpenAIProvider",
    "DeepSeekProvider",
    "GroqProvider",
    "MistralProvider",
    "OllamaProvider",
    "OpenAIProvider",
    "OpenRouterProvider",
    "TogetherProvider",
    "VLLMProvider",
]

_MAX_ERROR_TEXT = 2_000


def as_openai_error(status: int, body: bytes) -> bytes:
    """``body`` if it is already OpenAI error JSON, else that text wrapped in one."""
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return body
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        message = parsed["message"]
    else:
        text = body[:_MAX_ERROR_TEXT].decode(errors="replace").strip()
        message = text or f"upstream answered HTTP {status}"
    return error_body(message, type=error_type_for_status(status))


class SSEStream:
    """An upstream SSE body, re-cut on event boundaries; releases the connection when done."""

    __slots__ = ("_buffer", "_chunks", "_response")

    def __init__(self, response: HttpReply) -> None:
        self._response = response
        self._chunks: AsyncIterator[bytes] = response.iter_chunks()
        self._buffer = b""

    def __aiter__(self) -> SSEStream:
        return self

    async def __anext__(self) -> bytes:
        while True:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                rest, self._buffer = self._buffer, b""
                await self.aclose()
                if rest.strip():
                    return rest if rest.endswith(b"\n\n") else rest + b"\n\n"
                raise
            except HttpConnectionError as exc:
                await self.aclose()
                raise UpstreamError(502, f"upstream stream broke: {exc}") from exc
            data = self._buffer + chunk if self._buffer else chunk
            lf = data.rfind(b"\n\n")
            crlf = data.rfind(b"\r\n\r\n")
            cut = max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)
            if not cut:
                self._buffer = data
                continue
            if cut == len(data):
                self._buffer = b""
                return data
            self._buffer = data[cut:]
            return data[:cut]

    async def aclose(self) -> None:
        self._response.release()


class OpenAIProvider(Provider):
    """Pass-through to an OpenAI-format API."""

    name = "openai"
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    auth_header: ClassVar[str] = "Authorization"
    auth_prefix: ClassVar[str] = "Bearer "

    def base_url(self, request: UpstreamRequest) -> str:
        base = request.base_url or self.default_base_url
        if not base:
            raise UpstreamError(
                400,
                f"provider {self.name!r} needs a custom host (x-traceway-custom-host)",
                code="custom_host_required",
            )
        return base.rstrip("/")

    def url(self, request: UpstreamRequest) -> str:
        return f"{self.base_url(request)}/{request.endpoint}"

    def headers(self, request: UpstreamRequest) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if request.api_key:
            headers[self.auth_header] = self.auth_prefix + request.api_key
        if request.stream:
            headers["Accept"] = "text/event-stream"
        if request.extra_headers:
            headers.update(request.extra_headers)
        return headers

    async def send(self, http: HttpClient, request: UpstreamRequest) -> UpstreamResponse:
        url = self.url(request)
        data = orjson.dumps(request.body)
        headers = self.headers(request)
        try:
            # The router bounds the wait for the answer; the read timeout, a stalled stream.
            response = await http.post(
                url, headers=headers, body=data, read_timeout_s=request.timeout_s or None
            )
        except TimeoutError as exc:
            raise UpstreamError(408, f"upstream did not answer in time: {url}") from exc
        except HttpConnectionError as exc:
            raise UpstreamError(
                502, f"upstream unreachable: {exc}", code="upstream_unreachable"
            ) from exc
        except ValueError as exc:
            # A URL or header that cannot be sent (credentials in the URL, line breaks).
            raise UpstreamError(
                400, f"unusable upstream URL: {exc}", code="invalid_custom_host"
            ) from exc
        status = response.status
        if status < 300 and request.stream and response.content_type == "text/event-stream":
            return UpstreamResponse(status, response.headers, stream=SSEStream(response))
        try:
            body = await response.read()
        except HttpConnectionError as exc:
            raise UpstreamError(502, f"upstream answer broke off: {exc}") from exc
        except TimeoutError as exc:
            raise UpstreamError(408, f"upstream did not finish its answer in time: {url}") from exc
        if status >= 400:
            body = as_openai_error(status, body)
        return UpstreamResponse(status, response.headers, body)


class _CustomHostProvider(OpenAIProvider):
    """A self-hosted server: the custom host is required and ``/v1`` is added if missing."""

    default_base_url = None

    def base_url(self, request: UpstreamRequest) -> str:
        base = super().base_url(request)
        return base if base.endswith("/v1") else base + "/v1"


class GroqProvider(OpenAIProvider):
    name = "groq"
    default_base_url = "https://api.groq.com/openai/v1"


class MistralProvider(OpenAIProvider):
    name = "mistral-ai"
    default_base_url = "https://api.mistral.ai/v1"


class DeepSeekProvider(OpenAIProvider):
    name = "deepseek"
    default_base_url = "https://api.deepseek.com/v1"


class TogetherProvider(OpenAIProvider):
    name = "together-ai"
    default_base_url = "https://api.together.xyz/v1"


class OpenRouterProvider(OpenAIProvider):
    name = "openrouter"
    default_base_url = "https://openrouter.ai/api/v1"


class OllamaProvider(_CustomHostProvider):
    name = "ollama"


class VLLMProvider(_CustomHostProvider):
    name = "vllm"


class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI: ``{host}/openai/deployments/{deployment}/{endpoint}?api-version=…``.

    The host is the custom host, or ``https://{resource_name}.openai.azure.com``;
    the deployment is ``deployment_id`` (config) / ``x-traceway-azure-deployment-id``
    (header), else the model name.
    """

    name = "azure-openai"
    default_base_url = None
    auth_header = "api-key"
    auth_prefix = ""
    default_api_version: ClassVar[str] = "2024-10-21"

    @staticmethod
    def _option(options: Mapping[str, Any], *names: str) -> str | None:
        for name in names:
            value = options.get(name)
            if value:
                return str(value)
        return None

    def url(self, request: UpstreamRequest) -> str:
        options = request.provider_options
        resource = self._option(options, "resource_name", "azure_resource_name")
        if request.base_url is None and resource:
            base = f"https://{resource}.openai.azure.com"
        else:
            base = self.base_url(request)
        deployment = self._option(options, "deployment_id", "azure_deployment_id") or request.model
        version = (
            self._option(options, "api_version", "azure_api_version") or self.default_api_version
        )
        return f"{base}/openai/deployments/{deployment}/{request.endpoint}?api-version={version}"
