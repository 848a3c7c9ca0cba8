"""Fixtures for the client-library integrations: a real ``traceway server`` (over
SQLite and PostgreSQL), the fake OpenAI upstream, and autolog switched on with the
global SDK exporting to that server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

import traceway
from tests.gateway.fakes.openai_server import FakeOpenAI
from tests.support.live_server import RunningServer, experiment, server, store_url
from traceway.tracing import config

__all__ = ["RunningServer", "experiment", "server", "store_url"]

API_KEY = "sk-test-never-recorded"
# Attributes that differ from run to run (the fake's port) or restate a span field.
UNSTABLE_ATTRIBUTES = frozenset({"server.port", "traceway.span.type"})


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
