"""Fixtures for the client-library integrations: a real ``traceway server`` (over
SQLite and PostgreSQL), the fake OpenAI upstream, and autolog switched on with the
global SDK exporting to that server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import traceway
from tests.gateway.fakes.openai_server import FakeOpenAI
from tests.support.servers import serve_in_thread
from traceway.server.app import TracewayServer, create_app
from traceway.store import open_store
from traceway.tracing import config

API_KEY = "sk-test-never-recorded"
# Attributes that differ from run to run (the fake's port) or restate a span field.
UNSTABLE_ATTRIBUTES = frozenset({"server.port", "traceway.span.type"})


@dataclass
class RunningServer:
    url: str
    traceway: TracewayServer
    http: httpx.Client

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
    app = create_app(store)
    try:
        with serve_in_thread(app.app) as url, httpx.Client(base_url=url, timeout=30) as http:
            yield RunningServer(url=url, traceway=app, http=http)
    finally:
        store.close()


@pytest.fixture
def experiment() -> str:
    """A fresh experiment name, so tests sharing a server never see each other's traces."""
    return f"exp-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def autolog(
    server: RunningServer, experiment: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Autolog on, the global SDK exporting to ``server`` in ``experiment``; undone after."""
    for name in ("TRACEWAY_TRACKING_URI", "TRACEWAY_EXPERIMENT", "TRACEWAY_SAMPLING_RATIO"):
        monkeypatch.delenv(name, raising=False)
    config.reset()
    traceway.openai.autolog()
    traceway.set_tracking_uri(server.url)
    traceway.set_experiment(experiment)
    yield
    traceway.openai.autolog(disable=True)
    config.reset()


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.url, api_key=API_KEY, max_retries=0) as sync_client:
        yield sync_client


@pytest.fixture
def async_client(fake: FakeOpenAI) -> Callable[[], openai.AsyncOpenAI]:
    """Builds the async client inside the test's event loop."""
    return lambda: openai.AsyncOpenAI(base_url=fake.url, api_key=API_KEY, max_retries=0)


def view(span: dict[str, Any]) -> dict[str, Any]:
    """What a user sees of a stored span, without ids, times and the fake's port."""
    return {
        "name": span["name"],
        "span_type": span["span_type"],
        "status": span["status"],
        "status_message": span["status_message"],
        "attributes": {k: v for k, v in span["attributes"].items() if k not in UNSTABLE_ATTRIBUTES},
        "events": [event["name"] for event in span["events"]],
        "inputs": span["inputs"],
        "outputs": span["outputs"],
    }


def last_trace_id() -> str:
    trace_id = traceway.get_last_active_trace_id()
    assert trace_id is not None
    return trace_id
