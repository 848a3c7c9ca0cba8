"""The gateway's request path, top to bottom, as one pure ASGI app.

``POST /v1/chat/completions | /v1/completions | /v1/embeddings | /v1/responses``
read the body once, parse it once (orjson), pick a route from the headers, run
it through the router and relay the answer: JSON as is, streams event by event.
``GET /v1/models`` lists what the gateway can route to.  Every failure is
OpenAI error JSON.  No framework sits on this path: it is the product's hot path.

Policies (:mod:`traceway.gateway.policies`) sit on it in this order, each one
skipped at the cost of a test when it is not configured::

    gateway key (401/403) -> route -> limits (429/402) -> input guardrails (446,
    redaction) -> cache lookup (a hit answers) -> router -> output guardrails
    (446/246) -> cache store, usage counted -> answer -> spans, metrics

>>> gateway = Gateway(GatewaySettings())   # mount it, or serve it: it is an ASGI app
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp
import orjson

from traceway.gateway.asgi import (
    ClientGone,
    Receive,
    Scope,
    Send,
    parse_json_object,
    read_body,
    route_path,
    send_json,
    upstream_headers,
)
from traceway.gateway.breaker import BreakerBoard
from traceway.gateway.cache import HAVE_NUMPY, Embedder, LocalEmbedder, openai_embedder
from traceway.gateway.errors import GatewayError
from traceway.gateway.headers import RequestOptions, parse_headers, response_headers
from traceway.gateway.http_client import HttpClient
from traceway.gateway.keys import KeyResolver, presented_gateway_key
from traceway.gateway.metrics import GatewayMetrics
from traceway.gateway.policies import Exchange, Policies
from traceway.gateway.providers.base import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    RESPONSES,
    Provider,
    error_body,
)
from traceway.gateway.providers.mock import MockProvider
from traceway.gateway.providers.registry import ProviderRegistry
from traceway.gateway.relay import Answerer
from traceway.gateway.router import Call, Router
from traceway.gateway.routes import ConfigLookup, RouteResolver, configured_models
from traceway.gateway.settings import GatewaySettings
from traceway.gateway.ssrf import HostGuard
from traceway.gateway.tracing import NOOP_TRACER, GatewayTracer, RequestSpan
from traceway.tracing.export import SpanExporter

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)

_ENDPOINTS = {
    "/chat/completions": CHAT,
    "/completions": COMPLETIONS,
    "/embeddings": EMBEDDINGS,
    "/responses": RESPONSES,
}


class Gateway:
    """The gateway as an ASGI app (paths ``/v1/...``; it also answers ``lifespan``)."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        span_exporter: SpanExporter | None = None,
        config_lookup: ConfigLookup | None = None,
        key_resolver: KeyResolver | None = None,
        tracer: GatewayTracer | None = None,
        providers: Iterable[Provider] = (),
        embedder: Embedder | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] | None = None,
    ) -> None:
        """``key_resolver`` looks up gateway keys and virtual keys (the server passes its
        store's); ``embedder`` replaces the semantic cache's (``semantic_embedder``).

        ``tracer``, ``providers``, ``clock``, ``sleep`` and ``rand`` exist for tests.
        """
        self.settings = settings
        self.providers = ProviderRegistry(providers)
        self.guard = HostGuard(settings.allowed_custom_hosts, clock=clock)
        self.routes = RouteResolver(settings, config_lookup, url_guard=self.guard.check)
        if tracer is None:
            tracer = (
                GatewayTracer(
                    span_exporter,
                    experiment=settings.experiment,
                    sample_rate=settings.trace_sample_rate,
                )
                if span_exporter is not None
                else NOOP_TRACER
            )
        self.tracer = tracer
        breaker = settings.breaker
        self.breakers = (
            BreakerBoard(
                failure_threshold=breaker.failure_threshold,
                window_s=breaker.window_s,
                cooldown_s=breaker.cooldown_s,
                clock=clock,
            )
            if breaker.enabled
            else None
        )
        router_options: dict[str, Any] = {} if rand is None else {"rand": rand}
        self.router = Router(
            self.providers,
            http=self._upstream,
            guard=self.guard,
            breakers=self.breakers,
            default_timeout_ms=settings.default_request_timeout_ms,
            backoff_base_ms=settings.retry_backoff_base_ms,
            backoff_max_ms=settings.retry_backoff_max_ms,
            max_retry_after_s=settings.max_retry_after_s,
            sleep=sleep,
            key_resolver=key_resolver,
            **router_options,
        )
        if embedder is None and HAVE_NUMPY:
            embedder = (
                openai_embedder(self._embed_request, settings.semantic_embedding_model)
                if settings.semantic_embedder == "gateway"
                else LocalEmbedder()
            )
        self.policies = Policies(
            settings, key_resolver=key_resolver, embedder=embedder, clock=clock
        )
        self.answers = Answerer(self.policies, self._client)
        self._http: aiohttp.ClientSession | None = None  # for guardrail webhooks
        self._upstream_client: HttpClient | None = None  # for providers
        self._models_body: bytes | None = None

    @property
    def metrics(self) -> GatewayMetrics:
        """The Prometheus metrics (served by :func:`~traceway.gateway.metrics.metrics_app`)."""
        return self.policies.metrics

    # -- lifecycle ------------------------------------------------------------

    async def startup(self) -> None:
        """Create the pooled upstream clients (safe to call twice)."""
        if self._http is not None and not self._http.closed:
            return
        settings = self.settings
        self._upstream_client = HttpClient(
            limit_per_host=settings.pool_limit_per_host,
            connect_timeout_s=settings.connect_timeout_ms / 1000,
            read_timeout_s=settings.upstream_read_timeout_s,
        )
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=settings.pool_limit_per_host,
            ttl_dns_cache=settings.dns_cache_ttl_s,
            keepalive_timeout=30,
        )
        self._http = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=settings.connect_timeout_ms / 1000,
                sock_read=settings.upstream_read_timeout_s,
            ),
            skip_auto_headers=("User-Agent",),
            trust_env=False,
        )
        await self.policies.startup([self.routes.default, *self.routes.named.values()])

    async def shutdown(self) -> None:
        """Wait (bounded) for in-flight streams, close the session and stores, flush spans."""
        await self.answers.wait_for_streams(self.settings.shutdown_grace_s)
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._upstream_client is not None:
            await self._upstream_client.close()
            self._upstream_client = None
        await self.policies.close()
        await asyncio.to_thread(self.tracer.shutdown)

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("Gateway.startup() has not run")
        return self._http

    def _upstream(self) -> HttpClient:
        if self._upstream_client is None:
            raise RuntimeError("Gateway.startup() has not run")
        return self._upstream_client

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- ASGI -----------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        if self._http is None:
            await self.startup()
        path = route_path(scope)
        method = scope["method"]
        endpoint = _ENDPOINTS.get(path)
        if endpoint is not None and method == "POST":
            await self._proxy(scope, receive, send, endpoint)
        elif path == "/models" and method == "GET":
            await send_json(send, 200, self._models())
        elif path.startswith("/models/") and method == "GET":
            await self._model(send, path[len("/models/") :])
        else:
            await self._not_found(scope, send, allowed=endpoint is not None)

    async def _not_found(self, scope: Scope, send: Send, *, allowed: bool) -> None:
        error = GatewayError(
            405 if allowed else 404, f"Invalid URL ({scope['method']} {scope['path']})"
        )
        await send_json(send, error.status, error.body())

    # -- the proxy ------------------------------------------------------------

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, endpoint: str) -> None:
        exchange = Exchange(time.perf_counter())
        policies = self.policies
        span: RequestSpan | None = None
        options: RequestOptions | None = None
        raw = b""
        trace_id = ""
        model: Any = None
        try:
            raw = await read_body(receive, self.settings.max_body_bytes)
            options = parse_headers(scope["headers"])
            trace_id = options.trace_id or ""
            body = parse_json_object(raw)
            model = body.get("model")
            # Read before authorize() takes a gateway key out of ``api_key``.
            token = presented_gateway_key(options) if policies.limiter is not None else None
            key = await policies.authorize(options, body) if policies.keys_required else None
            route = self.routes.resolve(options)
            if not isinstance(model, str) and not route.provides_model:
                raise GatewayError(400, "you must provide a model parameter", param="model")
            rails = route.guardrails
            span = self.tracer.start_request(
                endpoint=endpoint,
                raw_body=raw,
                body=body,
                options=options,
                route=route,
                record_inputs=rails is None or not rails.before,
                key=key,
            )
            trace_id = span.trace_id
            call = Call(endpoint, body, options, route, span, scope["headers"])
            if policies.limiter is not None:
                exchange.subjects = await policies.admit(token, options, route)
            ready = None
            if rails is not None or route.cache is not None:
                ready = await policies.prepare(call, exchange, self._client)
            outcome = ready if ready is not None else await self.router.run(call)
        except GatewayError as exc:
            if span is not None:
                span.end(status=exc.status, body=exc.body(), error=exc.message)
            elif options is not None:
                trace_id = self.tracer.record_rejected(
                    endpoint=endpoint, raw_body=raw, options=options, error=exc
                )
            trace = response_headers(
                provider=None,
                trace_id=trace_id or os.urandom(16).hex(),
                retries=0,
                option_index=None,
            )
            await send_json(
                send,
                exc.status,
                exc.body(),
                [*trace, *((k.encode(), v.encode()) for k, v in exc.headers.items())],
            )
            self._count_failure(endpoint, model, exc.status, exchange)
            return
        except ClientGone:
            return
        except Exception as exc:
            logger.exception("gateway: unexpected error on %s", scope["path"])
            if span is not None:
                span.end(status=500, error=f"{type(exc).__name__}: {exc}")
            body_500 = error_body("The gateway failed to handle the request.", type="server_error")
            await send_json(send, 500, body_500)
            self._count_failure(endpoint, model, 500, exchange)
            return
        headers = response_headers(
            provider=outcome.provider,
            trace_id=trace_id,
            retries=outcome.retries,
            option_index=outcome.option_index,
        )
        headers.extend(exchange.cache_headers)
        response = outcome.response
        if response.headers:
            headers.extend(upstream_headers(response))
        if response.stream is None:
            await self.answers.json(send, call, outcome, exchange, headers)
        else:
            await self.answers.stream(receive, send, call, outcome, exchange, headers)

    def _count_failure(self, endpoint: str, model: Any, status: int, exchange: Exchange) -> None:
        latency = time.perf_counter() - exchange.started
        shown = model if isinstance(model, str) else None
        self.metrics.record_request(None, shown, endpoint, status, latency)

    async def _embed_request(self, body: dict[str, Any]) -> Any:
        """An embeddings call for the semantic cache, routed by this gateway (untraced)."""
        name = self.settings.semantic_embedding_config
        route = self.routes.named[name] if name else self.routes.default
        call = Call(EMBEDDINGS, body, RequestOptions(), route, RequestSpan(""))
        outcome = await self.router.run(call)
        if not outcome.ok:
            raise RuntimeError(f"the embeddings route answered HTTP {outcome.response.status}")
        return orjson.loads(outcome.response.body)

    # -- models ---------------------------------------------------------------

    def _model_owners(self) -> dict[str, str]:
        owners = {model: "traceway-mock" for model in MockProvider.models}
        for model, provider in configured_models(self.routes).items():
            owners.setdefault(model, provider)
        for model in self.settings.models:
            owners.setdefault(model, "traceway")
        return owners

    def _models(self) -> bytes:
        if self._models_body is None:
            created = int(time.time())
            data = [
                {"id": model, "object": "model", "created": created, "owned_by": owner}
                for model, owner in self._model_owners().items()
            ]
            self._models_body = orjson.dumps({"object": "list", "data": data})
        return self._models_body

    async def _model(self, send: Send, model_id: str) -> None:
        owner = self._model_owners().get(model_id)
        if owner is None:
            error = GatewayError(
                404, f"The model '{model_id}' does not exist", code="model_not_found"
            )
            await send_json(send, 404, error.body())
            return
        body = {"id": model_id, "object": "model", "created": 0, "owned_by": owner}
        await send_json(send, 200, orjson.dumps(body))
