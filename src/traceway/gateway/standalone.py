"""The gateway on its own (``traceway gateway``): an ASGI app with lifespan and health.

It records its spans like the server's gateway does and sends them over
OTLP/HTTP to a Traceway server (``--export-to http://traceway:5000``); without
one it records nothing.  Being stateless, any number of replicas can run; with
``redis_url`` in their settings they share the cache and the limits' counters.
``GET /metrics`` serves the gateway's Prometheus metrics.
"""

from __future__ import annotations

import gc
from typing import Any

from traceway.gateway.app import Gateway
from traceway.gateway.asgi import Receive, Scope, Send
from traceway.gateway.metrics import metrics_app
from traceway.gateway.settings import GatewaySettings
from traceway.tracing.otlp import OtlpHttpExporter, default_resource_attributes, traces_url

__all__ = ["StandaloneApp", "create_standalone_app"]

_HEALTH_BODY = b'{"status":"ok"}'


class StandaloneApp:
    """Serves ``GET /health`` and ``GET /metrics`` itself, the rest through the :class:`Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._metrics = metrics_app(gateway.metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] == "http" and scope["path"] == "/metrics":
            await self._metrics(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] == "/health":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_HEALTH_BODY)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _HEALTH_BODY})
            return
        await self.gateway(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                # This process is the gateway's alone: move everything loaded so far out
                # of the collected generations, so garbage collection on the request
                # path only scans request objects.
                gc.freeze()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.gateway.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_standalone_app(
    settings: GatewaySettings, export_to: str | None = None, **gateway_options: Any
) -> StandaloneApp:
    """The app ``traceway gateway`` serves; ``export_to`` is a Traceway server URL.

    Raises :class:`ValueError` when the settings require gateway keys but no
    ``key_resolver`` is given: a standalone gateway has no key store of its own.

    >>> app = create_standalone_app(GatewaySettings())  # uvicorn.run(app, port=8787)
    """
    if settings.require_gateway_keys and gateway_options.get("key_resolver") is None:
        raise ValueError(
            "require_gateway_keys needs a key store, which a standalone gateway does not "
            "have: require keys on the traceway server, or put the gateway behind it"
        )
    exporter = None
    if export_to:
        exporter = OtlpHttpExporter(
            traces_url(export_to),
            resource_attributes=default_resource_attributes(settings.service_name),
        )
    return StandaloneApp(Gateway(settings, span_exporter=exporter, **gateway_options))
