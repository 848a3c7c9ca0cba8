"""Which route a request takes: its config header, its provider header, or the default.

Plain requests (a provider header, or nothing) never touch pydantic: their
routes are compiled once and reused.  Inline configs are compiled once per
distinct header value and kept in a small LRU; saved configs are fetched through
the injected ``config_lookup`` on every request (they may change) and compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson

from traceway.gateway.config import Group, Leaf, Node, Route, compile_config
from traceway.gateway.errors import GatewayError
from traceway.gateway.guardrails.context import UrlGuard
from traceway.gateway.headers import RequestOptions
from traceway.gateway.settings import GatewaySettings

__all__ = ["ConfigLookup", "RouteResolver", "configured_models"]

#: Resolves a saved config id to its JSON object, or ``None`` if there is none.
ConfigLookup = Callable[[str], dict[str, Any] | None]

_INLINE_CACHE_SIZE = 256


class RouteResolver:
    """Turns a request's options into a compiled :class:`Route`."""

    def __init__(
        self,
        settings: GatewaySettings,
        config_lookup: ConfigLookup | None = None,
        *,
        url_guard: UrlGuard | None = None,
    ) -> None:
        """``url_guard`` vets the webhook URLs of configs that requests bring (SSRF)."""
        self._lookup = config_lookup
        self._url_guard = url_guard
        self.named: dict[str, Route] = {
            name: compile_config(cfg, source=f"config:{name}", trusted=True)
            for name, cfg in settings.configs.items()
        }
        if isinstance(settings.default_route, str):
            self.default = self.named[settings.default_route]
        else:
            self.default = compile_config(settings.default_route, source="default", trusted=True)
        self._by_provider: dict[str, Route] = {}
        self._inline = lru_cache(maxsize=_INLINE_CACHE_SIZE)(self._compile_inline)

    def resolve(self, options: RequestOptions) -> Route:
        """The route for a request; raises :class:`GatewayError` for a bad or unknown config."""
        if options.config:
            text = options.config.strip()
            if text.startswith("{"):
                return self._inline(text)
            return self._saved(text)
        if options.provider:
            route = self._by_provider.get(options.provider)
            if route is None:
                # The provider, key and custom host come from the headers at run time.
                route = Route(
                    root=Leaf(path="config"),
                    source="provider-header",
                    trusted=False,
                    provides_model=False,
                )
                self._by_provider[options.provider] = route
            return route
        return self.default

    def _compile_inline(self, text: str) -> Route:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise GatewayError(
                400, f"x-traceway-config is not valid JSON: {exc}", param="config"
            ) from exc
        return compile_config(data, source="inline", url_guard=self._url_guard)

    def _saved(self, config_id: str) -> Route:
        named = self.named.get(config_id)
        if named is not None:
            return named
        data = self._lookup(config_id) if self._lookup is not None else None
        if data is None:
            raise GatewayError(
                400, f"unknown config {config_id!r}", param="config", code="config_not_found"
            )
        return compile_config(data, source=f"config:{config_id}", url_guard=self._url_guard)


def _models(node: Node, out: dict[str, str]) -> None:
    if isinstance(node, Group):
        for target in node.targets:
            _models(target, out)
        return
    model = (node.override_params or {}).get("model")
    if isinstance(model, str):
        out.setdefault(model, node.provider or "traceway")


def configured_models(resolver: RouteResolver) -> dict[str, str]:
    """Model ids the operator's configs route to, each with the provider that owns it."""
    out: dict[str, str] = {}
    _models(resolver.default.root, out)
    for route in resolver.named.values():
        _models(route.root, out)
    return out
