"""Runs a compiled route: single, fallback, loadbalance, conditional; retries; breakers.

Every way a target can fail becomes an :class:`UpstreamResponse` with an OpenAI
error body (timeouts 408, unreachable 502, open circuit 503), so strategies only
ever compare status codes.  Mistakes in the request or config raise
:class:`GatewayError` and end the request.

Retries use exponential backoff with full jitter (``random() * min(max, base *
2**n)``) unless the config honours the upstream's ``retry-after``; the sleep and
the random source are injected so tests neither wait nor flake.

A target that names a virtual key (``virtual_key`` in the config, or the
``x-traceway-virtual-key`` header) takes its provider, API key, host and provider
settings from the key's stored credentials, looked up through the injected
:class:`~traceway.gateway.keys.KeyResolver`.  Such a request may not also name a
custom host (unless an operator's config does): the stored secret only ever
travels to the host stored with it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from traceway.gateway.breaker import BreakerBoard, breaker_key
from traceway.gateway.config import Group, Leaf, Node, Retry, Route
from traceway.gateway.errors import GatewayError
from traceway.gateway.headers import RequestOptions
from traceway.gateway.http_client import HttpClient
from traceway.gateway.keys import KeyResolver, virtual_key_credentials
from traceway.gateway.providers.base import (
    Provider,
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
    error_response,
)
from traceway.gateway.providers.registry import ProviderRegistry
from traceway.gateway.ssrf import HostGuard
from traceway.gateway.tracing import AttemptSpan, RequestSpan

__all__ = ["Call", "Outcome", "Router", "retry_after_seconds", "select_weighted"]


def select_weighted(weights: Sequence[float], point: float) -> int:
    """The index that ``point`` (uniform in ``[0, 1)``) lands on, by weight.

    >>> [select_weighted([3, 1], p) for p in (0.0, 0.74, 0.75, 0.99)]
    [0, 0, 1, 1]
    """
    total = sum(weights)
    target = point * total
    running = 0.0
    last = 0
    for index, weight in enumerate(weights):
        if weight <= 0:
            continue
        running += weight
        last = index
        if target < running:
            return index
    return last


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds asked for by ``retry-after-ms`` or ``retry-after`` (seconds), if any."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None


@dataclass(slots=True)
class Outcome:
    """How a route ended: the answer and which target gave it."""

    response: UpstreamResponse
    provider: str | None
    option_index: str
    retries: int = 0
    #: The span of the attempt that answered 2xx, left open: the app ends it once the
    #: answer (or its stream) is complete, with the call's cost.
    attempt: AttemptSpan | None = None
    skipped: bool = False  # the target's circuit was open; it was not tried
    model: str | None = None  # the model the answering target was asked for

    @property
    def ok(self) -> bool:
        return 200 <= self.response.status < 300


#: Where a leaf sends its request: (provider name, provider, API key, custom host,
#: whether the host needs the SSRF check, provider settings).  A tuple: built per request.
_Target = tuple[str, Provider, str | None, str | None, bool, dict[str, Any]]


@dataclass(slots=True)
class Call:
    """One request on its way through the router."""

    endpoint: str
    body: dict[str, Any]
    options: RequestOptions
    route: Route
    span: RequestSpan
    raw_headers: Sequence[tuple[bytes, bytes]] = ()
    fallback_reason: str | None = None
    attempts: int = field(default=0)


class Router:
    """Executes routes against providers.  One per gateway; shared by all requests."""

    def __init__(
        self,
        providers: ProviderRegistry,
        *,
        http: Callable[[], HttpClient],
        guard: HostGuard,
        breakers: BreakerBoard | None,
        default_timeout_ms: int | None = None,
        backoff_base_ms: float = 500.0,
        backoff_max_ms: float = 8_000.0,
        max_retry_after_s: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        key_resolver: KeyResolver | None = None,
    ) -> None:
        self._providers = providers
        self._keys = key_resolver
        self._http = http
        self._guard = guard
        self._breakers = breakers
        self._default_timeout_ms = default_timeout_ms
        self._backoff_base_ms = backoff_base_ms
        self._backoff_max_ms = backoff_max_ms
        self._max_retry_after_s = max_retry_after_s
        self._sleep = sleep
        self._rand = rand

    async def run(self, call: Call) -> Outcome:
        """Send ``call`` along its route and return the answer to relay."""
        return await self._node(call, call.route.root)

    async def _node(self, call: Call, node: Node) -> Outcome:
        if isinstance(node, Leaf):
            return await self._leaf(call, node)
        if node.mode == "fallback":
            return await self._fallback(call, node)
        if node.mode == "loadbalance":
            return await self._loadbalance(call, node)
        if node.mode == "conditional":
            return await self._node(call, node.targets[self._condition(call, node)])
        return await self._node(call, node.targets[0])

    async def _fallback(self, call: Call, group: Group) -> Outcome:
        outcome: Outcome | None = None
        for target in group.targets:
            outcome = await self._node(call, target)
            if outcome.ok:
                return outcome
            codes = group.on_status_codes
            if not outcome.skipped and codes is not None and outcome.response.status not in codes:
                return outcome
            call.fallback_reason = (
                f"{outcome.option_index} skipped: circuit open"
                if outcome.skipped
                else f"{outcome.option_index} answered {outcome.response.status}"
            )
        assert outcome is not None  # a group always has targets
        return outcome

    async def _loadbalance(self, call: Call, group: Group) -> Outcome:
        weights = list(group.weights)
        while True:
            index = select_weighted(weights, self._rand())
            outcome = await self._node(call, group.targets[index])
            if not outcome.skipped:
                return outcome
            # Its circuit is open: choose again among the others.
            weights[index] = 0.0
            if not any(weights):
                return outcome
            call.fallback_reason = f"{outcome.option_index} skipped: circuit open"

    @staticmethod
    def _condition(call: Call, group: Group) -> int:
        context = {"metadata": call.options.metadata or {}, "params": call.body}
        for predicate, index in group.conditions:
            if predicate(context):
                return index
        if group.default is not None:
            return group.default
        raise GatewayError(
            400, "no conditional route matched and the config has no default", code="no_route"
        )

    def _provider(self, name: str | None) -> Provider:
        if not name:
            raise GatewayError(400, "no provider: set x-traceway-provider or a config")
        provider = self._providers.get(name)
        if provider is None:
            known = ", ".join(self._providers.names())
            raise GatewayError(400, f"unknown provider {name!r} (known: {known})", param="provider")
        return provider

    def _target(self, call: Call, leaf: Leaf) -> _Target:
        """Where a leaf sends the request: its provider, key, host and provider settings."""
        options = call.options
        named = leaf.provider or options.provider
        host = leaf.custom_host or options.custom_host
        return (
            named or "",
            self._provider(named),
            leaf.api_key or options.api_key,
            host,
            host is not None and not (leaf.custom_host and call.route.trusted),
            {**options.provider_options, **leaf.provider_options}
            if leaf.provider_options
            else options.provider_options,
        )

    async def _virtual_target(self, call: Call, leaf: Leaf, slug: str) -> _Target:
        """A leaf's target as its virtual key's stored credentials define it."""
        options = call.options
        credentials = await virtual_key_credentials(self._keys, slug)
        trusted_host = leaf.custom_host if call.route.trusted else None
        if (leaf.custom_host and not trusted_host) or options.custom_host:
            raise GatewayError(
                400,
                "a request using a virtual key may not name a custom host: "
                "the key's requests go to the host stored with it",
                param="custom_host",
            )
        host = trusted_host or credentials.custom_host
        return (
            credentials.provider,
            self._provider(credentials.provider),
            leaf.api_key or credentials.api_key,
            host,
            trusted_host is None and host is not None,
            {**options.provider_options, **credentials.provider_options, **leaf.provider_options},
        )

    def _forward_headers(self, call: Call, leaf: Leaf) -> dict[str, str]:
        headers = dict(call.options.forward_headers)
        if leaf.forward_headers:
            wanted = {h.lower() for h in leaf.forward_headers}
            for name, value in call.raw_headers:
                key = name.decode("latin-1")
                if key in wanted:
                    headers[key] = value.decode()
        return headers

    async def _leaf(self, call: Call, leaf: Leaf) -> Outcome:
        slug = leaf.virtual_key or call.options.virtual_key
        # Without a key store a named provider wins and the virtual key is ignored.
        if slug and (self._keys is not None or not (leaf.provider or call.options.provider)):
            target = await self._virtual_target(call, leaf, slug)
        else:
            target = self._target(call, leaf)
        name, provider, api_key, host, check_host, provider_options = target
        if check_host:
            assert host is not None
            await self._guard.check(host)
        breakers = None if provider.local else self._breakers
        key = breaker_key(name, host, api_key) if breakers is not None else ""
        if breakers is not None and not breakers.allow(key):
            response = error_response(
                503,
                f"target {leaf.path} ({name}) is unavailable: its circuit is open",
                code="circuit_open",
            )
            return Outcome(response, name, leaf.path, skipped=True)
        body = call.body if not leaf.override_params else {**call.body, **leaf.override_params}
        timeout_ms = leaf.timeout_ms or call.options.request_timeout_ms or self._default_timeout_ms
        timeout_s = timeout_ms / 1000 if timeout_ms else None
        request = UpstreamRequest(
            endpoint=call.endpoint,
            body=body,
            api_key=api_key,
            base_url=host,
            timeout_s=timeout_s,
            extra_headers=self._forward_headers(call, leaf)
            if call.options.forward_headers or leaf.forward_headers
            else {},
            provider_options=provider_options,
        )
        retry = leaf.retry
        retries = 0
        model = request.model
        while True:
            call.attempts += 1
            attempt = call.span.attempt(
                provider=name,
                target=leaf.path,
                model=model,
                retry=retries,
                fallback_reason=call.fallback_reason,
                body=request.body,
            )
            call.fallback_reason = None
            response = await self._send(provider, request, timeout_s, timeout_ms)
            if breakers is not None:
                breakers.record(key, response.status)
            if 200 <= response.status < 300:
                return Outcome(response, name, leaf.path, retries, attempt, False, model)
            attempt.end(response)
            if retries < retry.attempts and response.status in retry.on_status_codes:
                await self._sleep(self._delay(retries, response, retry))
                retries += 1
                continue
            return Outcome(response, name, leaf.path, retries, model=model)

    async def _send(
        self,
        provider: Provider,
        request: UpstreamRequest,
        timeout_s: float | None,
        timeout_ms: int | None,
    ) -> UpstreamResponse:
        try:
            if timeout_s is None:
                return await provider.send(self._http(), request)
            async with asyncio.timeout(timeout_s):
                return await provider.send(self._http(), request)
        except TimeoutError:
            return error_response(
                408, f"the upstream did not answer within {timeout_ms} ms", code="request_timeout"
            )
        except UpstreamError as exc:
            return error_response(exc.status, exc.message, code=exc.code)

    def _delay(self, retries: int, response: UpstreamResponse, retry: Retry) -> float:
        if retry.use_retry_after_header:
            asked = retry_after_seconds(response.headers)
            if asked is not None:
                return min(asked, self._max_retry_after_s)
        ceiling_ms = min(self._backoff_max_ms, self._backoff_base_ms * 2**retries)
        return self._rand() * ceiling_ms / 1000
