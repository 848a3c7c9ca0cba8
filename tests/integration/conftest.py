"""Every test here that takes ``server`` runs against SQLite and the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.fakes.openai_server import FakeOpenAI
from tests.support.live_server import RunningServer, experiment, server, store_url

__all__ = ["RunningServer", "experiment", "fake", "server", "store_url"]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """A fake OpenAI upstream that records what reaches it."""
    with FakeOpenAI() as upstream:
        yield upstream
