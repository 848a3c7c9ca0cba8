"""The gateway's request policies, built once from the settings: keys, limits, cache, cost.

One :class:`Policies` per :class:`~traceway.gateway.app.Gateway` holds what the
request path consults:

- gateway API keys (``require_gateway_keys``; through the injected
  :class:`~traceway.gateway.keys.KeyResolver`);
- the :class:`~traceway.gateway.limits.Limiter` (``limits``), counting in Redis
  when ``limits.redis_url`` or ``redis_url`` names one;
- the :class:`~traceway.gateway.cache.ResponseCache` (in memory, or in Redis with
  ``cache_backend: redis``), with the semantic cache's embedder;
- the :class:`~traceway.gateway.pricing.PriceTable` (shipped prices merged with
  ``pricing``) and the Prometheus :class:`~traceway.gateway.metrics.GatewayMetrics`.

A policy that is not configured costs the request path an attribute test:
``keys_required`` is false, ``limiter`` is ``None``, a route without ``cache``
or guardrails skips both.  Per request, :class:`Exchange` carries what the
policies decided from admission to the last byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from traceway.gateway.cache import (
    CacheLookup,
    CachePolicy,
    CacheStatus,
    Embedder,
    LocalEmbedder,
    MemoryBackend,
    RedisBackend,
    ResponseCache,
    cache_headers,
    replay_stream,
)
from traceway.gateway.config import Leaf, Route
from traceway.gateway.errors import GatewayError
from traceway.gateway.guardrails import BEFORE, DENIED_STATUS, GuardrailOutcome, denied_body
from traceway.gateway.headers import RequestOptions
from traceway.gateway.keys import GatewayKeyInfo, KeyResolver, authorize
from traceway.gateway.limits import Limiter
from traceway.gateway.metrics import GatewayMetrics
from traceway.gateway.pricing import PriceTable
from traceway.gateway.providers.base import UpstreamResponse
from traceway.gateway.router import Call, Outcome
from traceway.gateway.settings import GatewaySettings
from traceway.gateway.streams import iter_events

__all__ = [
    "CACHE_DISABLED_HEADERS",
    "Exchange",
    "Policies",
    "answer_usage",
    "stream_usage",
    "usage_tokens",
]

logger = logging.getLogger(__name__)

#: The cache header of a request whose route has no cache.
CACHE_DISABLED_HEADERS = tuple(cache_headers(CacheStatus.DISABLED))
_SEP = "\x1f"


@dataclass(slots=True)
class Exchange:
    """What the policies decided for one request."""

    started: float  # perf_counter seconds, for the latency metric
    subjects: dict[str, str] | None = None  # what the limiter counts this request against
    lookup: CacheLookup | None = None  # the cache lookup (None: the route has no cache)
    before: GuardrailOutcome | None = None  # the input guardrails' outcome
    after: GuardrailOutcome | None = None  # the output guardrails' outcome

    @property
    def cache_headers(self) -> Iterable[tuple[bytes, bytes]]:
        return self.lookup.headers if self.lookup is not None else CACHE_DISABLED_HEADERS


def usage_tokens(usage: Any) -> tuple[int | None, int | None]:
    """``(input, output)`` token counts of OpenAI-format usage (chat or Responses API)."""
    if type(usage) is not dict:
        return None, None
    inputs = usage.get("prompt_tokens", usage.get("input_tokens"))
    outputs = usage.get("completion_tokens", usage.get("output_tokens"))
    return (
        inputs if type(inputs) is int else None,
        outputs if type(outputs) is int else None,
    )


def answer_usage(body: bytes) -> Any:
    """The ``usage`` of an OpenAI-format JSON answer, without parsing the whole answer.

    OpenAI's answers end with their usage: only the tail from the last ``"usage"``
    is parsed.  Text cannot hold an unescaped quote, so that is the key, or a string
    that is exactly ``usage``; when the tail does not parse to a usage object the
    whole answer is parsed instead.
    """
    at = body.rfind(b'"usage"')
    if at <= 0:
        return None
    try:
        tail = orjson.loads(b"{" + body[at:])
    except orjson.JSONDecodeError:
        tail = None
    if type(tail) is dict and type(tail.get("usage")) is dict:
        return tail["usage"]
    try:
        whole = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return whole.get("usage") if type(whole) is dict else None


def stream_usage(pieces: list[bytes]) -> Any:
    """The usage a relayed stream reported (its last event with one), or ``None``.

    Only the last few pieces are read: usage comes at the end of a stream.
    """
    for piece in reversed(pieces[-3:]):
        for event in reversed(iter_events([piece])):
            if isinstance(event, dict):
                usage = event.get("usage") or (event.get("response") or {}).get("usage")
                if usage:
                    return usage
    return None


def _cached(call: Call, entry: bytes) -> Outcome:
    """A cache hit as the answer to relay: the JSON, or its replay as OpenAI's SSE."""
    if call.body.get("stream"):
        stream_options = call.body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and bool(
            stream_options.get("include_usage")
        )
        response = UpstreamResponse(200, {}, stream=replay_stream(entry, include_usage))
    else:
        response = UpstreamResponse(200, {}, entry)
    return Outcome(response, None, "")


def _semantic(route: Route) -> bool:
    return route.cache is not None and route.cache.mode == "semantic"


class Policies:
    """The policies of one gateway.  Build it once; call :meth:`close` on shutdown."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        key_resolver: KeyResolver | None = None,
        embedder: Embedder | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``embedder`` serves the semantic cache (``None``: semantic acts as simple)."""
        self.keys_required = settings.require_gateway_keys
        self.key_resolver = key_resolver
        self.prices = PriceTable.default().merged(settings.pricing)
        self.metrics = GatewayMetrics()
        if settings.cache_backend == "redis":
            assert settings.redis_url is not None  # the settings validate it
            backend: Any = RedisBackend.from_url(
                settings.redis_url, prefix=settings.cache_key_prefix
            )
        else:
            backend = MemoryBackend(max_bytes=settings.cache_max_bytes, clock=clock)
        self.cache = ResponseCache(backend, embedder=embedder, clock=clock)
        self.embedder = embedder
        policy = settings.limits
        self.limiter: Limiter | None = None
        if policy is not None and policy.rules:
            if policy.redis_url is None and settings.redis_url:
                policy = policy.model_copy(update={"redis_url": settings.redis_url})
            self.limiter = Limiter(policy)

    async def startup(self, routes: Iterable[Route]) -> None:
        """Load the local embedding model now if an operator's config caches semantically."""
        embedder = self.embedder
        if isinstance(embedder, LocalEmbedder) and any(_semantic(r) for r in routes):
            try:
                await asyncio.to_thread(embedder.load)
            except (ModuleNotFoundError, OSError) as exc:
                # The semantic cache then misses (and says why, at a bounded rate).
                logger.warning("the local embedding model is not available: %s", exc)

    async def close(self) -> None:
        """Close the cache's and the limiter's connections (safe to call twice)."""
        await self.cache.close()
        if self.limiter is not None:
            await self.limiter.close()

    # -- keys --------------------------------------------------------------------

    async def authorize(self, options: RequestOptions, body: Mapping[str, Any]) -> GatewayKeyInfo:
        """The request's verified gateway key; 401 / 403 :class:`GatewayError` otherwise."""
        if self.key_resolver is None:  # refuse rather than run open
            raise GatewayError(
                500, "gateway keys are required but no key store is configured", type="server_error"
            )
        return await authorize(self.key_resolver, options, model=body.get("model"))

    # -- limits ------------------------------------------------------------------

    async def admit(
        self, gateway_key: str | None, options: RequestOptions, route: Route
    ) -> dict[str, str]:
        """Count the request against its limits; 429 / 402 :class:`GatewayError` if over one."""
        limiter = self.limiter
        assert limiter is not None
        virtual_key = options.virtual_key
        if virtual_key is None and isinstance(route.root, Leaf):
            virtual_key = route.root.virtual_key
        subjects = limiter.subjects_for(
            gateway_key=gateway_key, virtual_key=virtual_key, metadata=options.metadata
        )
        refusal = await limiter.check(subjects)
        if refusal is not None:
            raise refusal.error()
        return subjects

    async def record_usage(
        self, subjects: Mapping[str, str], usage: Any, cost_usd: float | None
    ) -> None:
        """Count an answer's tokens and cost against the limits it was admitted by."""
        if self.limiter is None or not subjects:
            return
        inputs, outputs = usage_tokens(usage)
        await self.limiter.record(subjects, (inputs or 0) + (outputs or 0), cost_usd or 0.0)

    # -- before routing ----------------------------------------------------------

    async def prepare(
        self, call: Call, exchange: Exchange, http: Callable[[], aiohttp.ClientSession]
    ) -> Outcome | None:
        """Run the input guardrails and the cache lookup of a route that has them.

        Returns the answer when one is ready without routing (a guardrail denied:
        446; the cache hit), else ``None``; a redacted request replaces ``call.body``.
        """
        route, span = call.route, call.span
        rails = route.guardrails
        if rails is not None and rails.before:
            started = span.now()
            before = await rails.run_input(
                call.body, call.options.metadata, http(), endpoint=call.endpoint
            )
            span.record_guardrails(started, BEFORE, before.results)
            self.count_checks(before)
            exchange.before = before
            if before.transformed_body is not None:
                call.body = before.transformed_body
            span.set_request(before.transformed_body)
            if before.deny:  # the upstream is never called
                return Outcome(UpstreamResponse(DENIED_STATUS, {}, denied_body(before)), None, "")
        if route.cache is not None:
            started = span.now()
            lookup = await self.lookup(call.endpoint, call.body, call.options, route)
            span.record_cache(started, lookup.status, route.cache.mode, lookup.similarity)
            self.metrics.record_cache(lookup.status)
            exchange.lookup = lookup
            if lookup.entry is not None:
                return _cached(call, lookup.entry)
        return None

    def count_checks(self, outcome: GuardrailOutcome) -> None:
        """Count each guardrail check's verdict in the metrics."""
        for hook in outcome.results:
            for check in hook.get("checks") or ():
                self.metrics.record_guardrail(check["id"], check["verdict"])

    # -- cache -------------------------------------------------------------------

    async def lookup(
        self, endpoint: str, body: Mapping[str, Any], options: RequestOptions, route: Route
    ) -> CacheLookup:
        """Look the request up in the cache (the route has a ``cache`` policy)."""
        policy: CachePolicy | None = route.cache
        return await self.cache.lookup(
            endpoint,
            body,
            policy,
            options.cache_force_refresh,
            namespace=self._namespace(options, route),
        )

    @staticmethod
    def _namespace(options: RequestOptions, route: Route) -> str:
        """What must match, beyond the body, for two requests to share an answer.

        The route and whatever picks the upstream and its account: the config (inline
        configs are their own text), provider, custom host, virtual key and provider
        key.  It is hashed into the cache key, so no key is stored in the clear.
        """
        api_key = options.api_key or ""
        return _SEP.join(
            (
                route.source,
                options.config or "",
                options.provider or "",
                options.custom_host or "",
                options.virtual_key or "",
                hashlib.blake2b(api_key.encode(), digest_size=16).hexdigest() if api_key else "",
            )
        )

    # -- cost --------------------------------------------------------------------

    def cost_usd(self, provider: str | None, model: str | None, usage: Any) -> float | None:
        """What a call cost by the price table (``None``: no usage, or an unpriced model)."""
        if usage is None:
            return None
        return self.prices.cost_usd(provider, model, usage)
