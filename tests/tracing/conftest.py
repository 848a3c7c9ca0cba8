"""Fixtures for SDK tests: the global SDK wired to an in-memory exporter."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import traceway
from traceway.tracing import config
from traceway.tracing.span import FinishedSpan
from traceway.tracing.testing import FakeClock, IncrementalIdGenerator, InMemoryExporter


@pytest.fixture(autouse=True)
def _fresh_sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from the defaults, with no Traceway environment variables."""
    for name in ("TRACEWAY_TRACKING_URI", "TRACEWAY_EXPERIMENT", "TRACEWAY_SAMPLING_RATIO"):
        monkeypatch.delenv(name, raising=False)
    config.reset()
    yield
    config.reset()


@pytest.fixture
def exporter() -> InMemoryExporter:
    """The global SDK exporting to memory, with ids 1, 2, 3... and a clock ticking 1000 ns."""
    memory = InMemoryExporter()
    traceway.configure(exporter=memory, id_generator=IncrementalIdGenerator(), clock=FakeClock())
    return memory


@pytest.fixture
def exported(exporter: InMemoryExporter) -> Callable[[], list[FinishedSpan]]:
    """Flush, then return the spans exported so far (in the order they ended)."""

    def read() -> list[FinishedSpan]:
        assert traceway.flush(timeout=5)
        return list(exporter.spans)

    return read
