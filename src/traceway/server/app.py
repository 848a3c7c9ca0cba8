"""``traceway server``: OTLP ingest, the REST API, the web UI and the gateway in one
ASGI application.

Requests are dispatched on their path by a few lines of pure ASGI, so the
gateway's hot path never passes through the REST API's framework or middleware:

- ``POST /v1/traces``  → OTLP ingest
- ``/v1/...``          → the gateway (when enabled)
- ``/metrics``         → the gateway's Prometheus metrics (when enabled)
- ``/version``, ``/api/2.0/mlflow/...``, ``/api/3.0/mlflow/...`` → MLflow's tracking API
- ``/api/...``         → the REST API (FastAPI, OpenAPI at ``/api/openapi.json``)
- anything else        → the web UI
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from traceway.gateway.app import Gateway
from traceway.gateway.metrics import metrics_app
from traceway.gateway.settings import GatewaySettings
from traceway.server.api import create_api
from traceway.server.ingest import ExperimentCache, OtlpIngest
from traceway.server.mlflow_api import MLFLOW_PATH_PREFIXES, create_mlflow_api
from traceway.server.span_sink import StoreSpanExporter
from traceway.server.ui import create_ui
from traceway.store import Store
from traceway.store.keys import KeyStore, StoreKeyResolver

__all__ = ["ServerSettings", "TracewayServer", "create_app"]

Hook = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class ServerSettings:
    store_url: str = "sqlite:///./traceway.db"
    max_ingest_bytes: int = 64 * 1024 * 1024
    #: The mounted gateway's settings; ``None`` serves no gateway.
    gateway: GatewaySettings | None = field(default_factory=GatewaySettings)


@dataclass(slots=True)
class TracewayServer:
    """The assembled application and the pieces tests and the CLI reach into."""

    app: ASGIApp
    store: Store
    experiments: ExperimentCache
    gateway: Gateway | None = None
    startup_hooks: list[Hook] = field(default_factory=list)
    shutdown_hooks: list[Hook] = field(default_factory=list)


class _Dispatcher:
    """Routes by path prefix and runs the lifespan hooks."""

    def __init__(
        self,
        *,
        ingest: ASGIApp,
        api: ASGIApp,
        ui: ASGIApp,
        gateway: ASGIApp | None,
        startup: list[Hook],
        shutdown: list[Hook],
        mlflow: ASGIApp | None = None,
        metrics: ASGIApp | None = None,
    ) -> None:
        self._ingest = ingest
        self._metrics = metrics
        self._mlflow = mlflow
        self._api = api
        self._ui = ui
        self._gateway = gateway
        self._startup = startup
        self._shutdown = shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        if path.startswith("/v1/"):
            if path == "/v1/traces":
                await self._ingest(scope, receive, send)
            elif self._gateway is not None:
                await self._gateway(scope, receive, send)
            else:
                await self._api(scope, receive, send)
        elif self._mlflow is not None and (
            path == "/version" or path.startswith(MLFLOW_PATH_PREFIXES)
        ):
            await self._mlflow(scope, receive, send)
        elif path.startswith("/api/"):
            await self._api(scope, receive, send)
        elif path == "/metrics" and self._metrics is not None:
            await self._metrics(scope, receive, send)
        else:
            await self._ui(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    for hook in self._startup:
                        await hook()
                except Exception as exc:  # report, uvicorn prints it and exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for hook in self._shutdown:
                    await hook()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(
    store: Store,
    settings: ServerSettings | None = None,
    *,
    ui: ASGIApp | None = None,
) -> TracewayServer:
    """Assemble the server around an open store."""
    settings = settings or ServerSettings()
    experiments = ExperimentCache(store)
    ingest = OtlpIngest(store, experiments, max_body_bytes=settings.max_ingest_bytes)
    ingest_router = Router(routes=[Route("/v1/traces", ingest.handle, methods=["POST"])])
    server = TracewayServer(app=ingest_router, store=store, experiments=experiments)
    keys = KeyStore.for_store(store)
    metrics = None
    if settings.gateway is not None:
        server.gateway = Gateway(
            settings.gateway,
            span_exporter=StoreSpanExporter(store, experiments),
            key_resolver=StoreKeyResolver(keys),
        )
        server.startup_hooks.append(server.gateway.startup)
        server.shutdown_hooks.append(server.gateway.shutdown)
        metrics = metrics_app(server.gateway.metrics)
    server.app = _Dispatcher(
        ingest=ingest_router,
        api=create_api(store, keys=keys),
        ui=ui or create_ui(store),
        gateway=server.gateway,
        startup=server.startup_hooks,
        shutdown=server.shutdown_hooks,
        mlflow=create_mlflow_api(store, experiments),
        metrics=metrics,
    )
    return server
