"""The OpenAI-format providers: URLs, auth headers, SSE re-cutting, error bodies, registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from traceway.gateway.providers.base import CHAT, EMBEDDINGS, UpstreamError, UpstreamRequest
from traceway.gateway.providers.mock import MockProvider
from traceway.gateway.providers.openai import (
    AzureOpenAIProvider,
    OpenAIProvider,
    SSEStream,
    as_openai_error,
)
from traceway.gateway.providers.registry import ProviderRegistry


class _Response:
    """An upstream reply whose body arrives in these pieces."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self.released = 0

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk

    def release(self) -> None:
        self.released += 1


def recut(chunks: list[bytes]) -> tuple[list[bytes], int]:
    response = _Response(chunks)

    async def run() -> list[bytes]:
        return [piece async for piece in SSEStream(response)]  # type: ignore[arg-type]

    return asyncio.run(run()), response.released


def test_sse_stream_is_cut_only_at_event_boundaries() -> None:
    pieces, released = recut([b"data: 1\n\ndata: 2\n\nda", b"ta: 3\n", b"\ndata: [DONE]\n\n"])
    # Whole events only; the events complete in one read travel together.
    assert pieces == [b"data: 1\n\ndata: 2\n\n", b"data: 3\n\ndata: [DONE]\n\n"]
    assert released == 1


def test_sse_stream_handles_crlf_and_a_missing_final_blank_line() -> None:
    pieces, _ = recut([b"data: 1\r\n\r\ndata: 2", b"\r\n"])
    assert pieces == [b"data: 1\r\n\r\n", b"data: 2\r\n\n\n"]


def test_as_openai_error_keeps_openai_bodies_and_wraps_others() -> None:
    openai_body = b'{"error":{"message":"m","type":"t","param":null,"code":"c"}}'
    assert as_openai_error(400, openai_body) is openai_body
    assert as_openai_error(503, b'{"message":"down"}') == (
        b'{"error":{"message":"down","type":"server_error","param":null,"code":null}}'
    )
    assert as_openai_error(500, b"") == (
        b'{"error":{"message":"upstream answered HTTP 500","type":"server_error",'
        b'"param":null,"code":null}}'
    )


def request(**fields: Any) -> UpstreamRequest:
    fields.setdefault("endpoint", CHAT)
    fields.setdefault("body", {"model": "gpt-4o"})
    return UpstreamRequest(**fields)


@pytest.mark.parametrize(
    ("name", "base_url", "url"),
    [
        ("openai", None, "https://api.openai.com/v1/chat/completions"),
        ("openai", "http://10.0.0.5:8000/v1/", "http://10.0.0.5:8000/v1/chat/completions"),
        ("groq", None, "https://api.groq.com/openai/v1/chat/completions"),
        ("mistral-ai", None, "https://api.mistral.ai/v1/chat/completions"),
        ("deepseek", None, "https://api.deepseek.com/v1/chat/completions"),
        ("together-ai", None, "https://api.together.xyz/v1/chat/completions"),
        ("openrouter", None, "https://openrouter.ai/api/v1/chat/completions"),
        ("ollama", "http://ollama:11434", "http://ollama:11434/v1/chat/completions"),
        ("vllm", "http://vllm:8000/v1", "http://vllm:8000/v1/chat/completions"),
    ],
)
def test_openai_compatible_urls(name: str, base_url: str | None, url: str) -> None:
    provider = ProviderRegistry().get(name)
    assert isinstance(provider, OpenAIProvider)
    assert provider.url(request(base_url=base_url)) == url


@pytest.mark.parametrize("name", ["ollama", "vllm", "azure-openai"])
def test_self_hosted_providers_need_a_custom_host(name: str) -> None:
    provider = ProviderRegistry().get(name)
    assert isinstance(provider, OpenAIProvider)
    with pytest.raises(UpstreamError) as raised:
        provider.url(request())
    assert (raised.value.status, raised.value.code) == (400, "custom_host_required")


def test_auth_headers() -> None:
    openai_headers = OpenAIProvider().headers(request(api_key="sk-1", body={"stream": True}))
    assert openai_headers == {
        "Content-Type": "application/json",
        "Authorization": "Bearer sk-1",
        "Accept": "text/event-stream",
    }
    azure_headers = AzureOpenAIProvider().headers(request(api_key="az-1"))
    assert azure_headers == {"Content-Type": "application/json", "api-key": "az-1"}


def test_azure_url_from_custom_host_or_resource_name() -> None:
    azure = AzureOpenAIProvider()
    assert azure.url(
        request(
            base_url="https://corp.openai.azure.com", provider_options={"deployment_id": "gpt4"}
        )
    ) == (
        "https://corp.openai.azure.com/openai/deployments/gpt4/chat/completions"
        "?api-version=2024-10-21"
    )
    assert azure.url(
        request(
            endpoint=EMBEDDINGS,
            body={"model": "text-embedding-3-small"},
            provider_options={"azure_resource_name": "res", "azure_api_version": "2025-01-01"},
        )
    ) == (
        "https://res.openai.azure.com/openai/deployments/text-embedding-3-small/embeddings"
        "?api-version=2025-01-01"
    )


def test_registry_names_and_lazy_providers() -> None:
    registry = ProviderRegistry()
    assert set(registry.names()) >= {
        "openai",
        "mock",
        "anthropic",
        "google",
        "azure-openai",
        "groq",
        "mistral-ai",
        "deepseek",
        "together-ai",
        "openrouter",
        "ollama",
        "vllm",
    }
    assert registry.get("nope") is None
    custom = MockProvider()
    registry.register(custom)
    assert registry.get("mock") is custom
