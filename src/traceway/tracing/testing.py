"""Deterministic helpers for tests of code that records spans.

>>> from traceway.tracing.export import BatchProcessor
>>> from traceway.tracing.tracer import Tracer
>>> exporter = InMemoryExporter()
>>> tracer = Tracer(BatchProcessor(exporter), id_generator=IncrementalIdGenerator(),
...                 clock=FakeClock())
>>> tracer.start_span("step").end()
>>> tracer.processor.force_flush()
True
>>> [(s.name, s.trace_id[-2:], s.start_time_ns, s.end_time_ns) for s in exporter.spans]
[('step', '01', 1000, 2000)]
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from traceway.tracing.span import FinishedSpan

__all__ = ["FakeClock", "InMemoryExporter", "IncrementalIdGenerator"]


class InMemoryExporter:
    """Keeps exported spans in ``spans``; ``fail`` makes ``export`` report failure."""

    def __init__(self) -> None:
        self.spans: list[FinishedSpan] = []
        self.batches = 0
        self.fail = False
        self.shut_down = False
        self._lock = threading.Lock()

    def export(self, spans: Sequence[FinishedSpan]) -> bool:
        if self.fail:
            return False
        with self._lock:
            self.spans.extend(spans)
            self.batches += 1
        return True

    def shutdown(self) -> None:
        self.shut_down = True

    def clear(self) -> None:
        with self._lock:
            self.spans.clear()


class IncrementalIdGenerator:
    """Trace ids 1, 2, 3... and span ids 1, 2, 3... (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trace = 0
        self._span = 0

    def new_trace_id(self) -> int:
        with self._lock:
            self._trace += 1
            return self._trace

    def new_span_id(self) -> int:
        with self._lock:
            self._span += 1
            return self._span


class FakeClock:
    """Returns ``start``, ``start + step``, ... nanoseconds, one step per reading."""

    def __init__(self, start: int = 1000, step: int = 1000) -> None:
        self._lock = threading.Lock()
        self._next = start
        self._step = step

    def __call__(self) -> int:
        with self._lock:
            now = self._next
            self._next += self._step
            return now
