"""Providers by name, as Portkey names them.

``openai``, ``mock`` and the OpenAI-compatible providers are always there;
``anthropic`` and ``google`` are imported on first use, so the gateway works
without them.  Instances are stateless and shared by every request.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Iterable

from traceway.gateway.providers.base import Provider
from traceway.gateway.providers.mock import MockProvider
from traceway.gateway.providers.openai import (
    AzureOpenAIProvider,
    DeepSeekProvider,
    GroqProvider,
    MistralProvider,
    OllamaProvider,
    OpenAIProvider,
    OpenRouterProvider,
    TogetherProvider,
    VLLMProvider,
)

__all__ = ["BUILTIN_PROVIDERS", "LAZY_PROVIDERS", "ProviderRegistry"]

logger = logging.getLogger(__name__)

BUILTIN_PROVIDERS: tuple[type[Provider], ...] = (
    OpenAIProvider,
    MockProvider,
    AzureOpenAIProvider,
    GroqProvider,
    MistralProvider,
    DeepSeekProvider,
    TogetherProvider,
    OpenRouterProvider,
    OllamaProvider,
    VLLMProvider,
)

#: Provider name -> module that defines it, imported when first asked for.
LAZY_PROVIDERS: dict[str, str] = {
    "anthropic": "traceway.gateway.providers.anthropic",
    "google": "traceway.gateway.providers.google",
}


def _find_provider(module_name: str, name: str) -> Provider | None:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        logger.warning("provider %r is not available (%s cannot be imported)", name, module_name)
        return None
    for value in vars(module).values():
        if (
            inspect.isclass(value)
            and issubclass(value, Provider)
            and not inspect.isabstract(value)
            and getattr(value, "name", None) == name
        ):
            return value()
    return None


class ProviderRegistry:
    """Resolves a provider name to its shared instance.

    >>> ProviderRegistry().get("groq").default_base_url
    'https://api.groq.com/openai/v1'
    """

    def __init__(self, providers: Iterable[Provider] = ()) -> None:
        self._providers: dict[str, Provider] = {cls.name: cls() for cls in BUILTIN_PROVIDERS}
        self._lazy = dict(LAZY_PROVIDERS)
        for provider in providers:
            self.register(provider)

    def register(self, provider: Provider) -> None:
        """Add or replace a provider (tests swap in a mock with a fake clock)."""
        self._providers[provider.name] = provider
        self._lazy.pop(provider.name, None)

    def get(self, name: str) -> Provider | None:
        """The provider called ``name``, or ``None`` if there is none."""
        provider = self._providers.get(name)
        if provider is None and name in self._lazy:
            provider = _find_provider(self._lazy.pop(name), name)
            if provider is not None:
                self._providers[name] = provider
        return provider

    def names(self) -> list[str]:
        """Every provider name, including ones not imported yet."""
        return sorted({*self._providers, *self._lazy})
