"""Several server processes on one port (``traceway server --workers N``).

Ingest is CPU-bound Python (decoding OTLP, mapping conventions) while the
database write releases the GIL, so one process uses about one core. Worker
processes each build the whole application from the settings the parent hands
them in an environment variable; SQLite (WAL, busy timeout) and PostgreSQL
serialise their writes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from starlette.types import ASGIApp

__all__ = ["WORKER_SETTINGS_ENV", "WorkerSettings", "create_worker_app"]

WORKER_SETTINGS_ENV = "TRACEWAY_WORKER_SETTINGS"


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    store_url: str
    max_ingest_bytes: int
    gateway_config: str | None
    gateway: bool

    def export(self) -> None:
        """Put the settings where the workers (spawned processes) will read them."""
        os.environ[WORKER_SETTINGS_ENV] = json.dumps(asdict(self))


def create_worker_app() -> ASGIApp:
    """The application of one worker process (a uvicorn app factory)."""
    from traceway.gateway.settings import GatewaySettings
    from traceway.server.app import ServerSettings, create_app
    from traceway.store import open_store

    settings = WorkerSettings(**json.loads(os.environ[WORKER_SETTINGS_ENV]))
    gateway = None
    if settings.gateway:
        gateway = (
            GatewaySettings.from_file(settings.gateway_config)
            if settings.gateway_config
            else GatewaySettings()
        )
    store = open_store(settings.store_url)
    server = create_app(
        store,
        ServerSettings(
            store_url=settings.store_url,
            max_ingest_bytes=settings.max_ingest_bytes,
            gateway=gateway,
        ),
    )

    async def close_store() -> None:
        store.close()

    server.shutdown_hooks.append(close_store)
    return server.app
