"""A real ``traceway server`` (uvicorn on a loopback port) over each store backend.

Test folders that need one import these fixtures into their ``conftest.py``; every
test taking ``server`` then runs once against SQLite and once against the real
PostgreSQL server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import traceway
from tests.support.servers import serve_in_thread
from traceway.server.app import TracewayServer, create_app
from traceway.store import open_store

__all__ = ["RunningServer", "experiment", "server", "store_url"]


@dataclass
class RunningServer:
    url: str
    traceway: TracewayServer
    http: httpx.Client

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def spans(self, trace_id: str) -> list[dict[str, Any]]:
        """The stored spans of ``trace_id``, once the SDK and the gateway have exported."""
        assert traceway.flush(timeout=10)
        gateway = self.traceway.gateway
        if gateway is not None:
            assert gateway.tracer.force_flush(10)
        response = self.http.get(f"/api/traces/{trace_id}")
        assert response.status_code == 200, response.text
        spans: list[dict[str, Any]] = response.json()["spans"]
        return spans


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("store") / "traceway.db"
        return f"sqlite:///{path}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="module")
def server(store_url: str) -> Iterator[RunningServer]:
    store = open_store(store_url)
    traceway_server = create_app(store)
    try:
        with (
            serve_in_thread(traceway_server.app) as url,
            httpx.Client(base_url=url, timeout=30) as http,
        ):
            yield RunningServer(url=url, traceway=traceway_server, http=http)
    finally:
        store.close()


@pytest.fixture
def experiment() -> str:
    """A fresh experiment name, so tests sharing a server never see each other's traces."""
    return f"exp-{uuid.uuid4().hex[:10]}"
