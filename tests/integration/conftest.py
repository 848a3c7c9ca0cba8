"""A real ``traceway server`` (uvicorn on a loopback port) over each store backend.

Every test in this folder that takes ``server`` runs once against SQLite and once
against the real PostgreSQL server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.servers import serve_in_thread
from traceway.server.app import TracewayServer, create_app
from traceway.store import open_store


@dataclass
class RunningServer:
    url: str
    traceway: TracewayServer
    http: httpx.Client

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.http.get(path, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("store") / "traceway.db"
        return f"sqlite:///{path}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="module")
def server(store_url: str) -> Iterator[RunningServer]:
    store = open_store(store_url)
    traceway = create_app(store)
    try:
        with serve_in_thread(traceway.app) as url, httpx.Client(base_url=url, timeout=30) as http:
            yield RunningServer(url=url, traceway=traceway, http=http)
    finally:
        store.close()


@pytest.fixture
def experiment() -> str:
    """A fresh experiment name, so tests sharing a server never see each other's traces."""
    return f"exp-{uuid.uuid4().hex[:10]}"
