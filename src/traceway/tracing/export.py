"""Getting ended spans out of the caller's thread: processors and the exporter protocol.

A *processor* receives every ended :class:`LiveSpan` (``on_end``) and must
return at once.  :class:`BatchProcessor` appends it to a bounded ``deque``
(when full the oldest span is dropped and counted) and one daemon thread, with
instrumentation suppressed, wakes every ``schedule_delay_s`` or when
``export_batch_size`` spans are queued; it converts spans to
:class:`FinishedSpan`, applies the span hooks (redaction first), and calls the
*exporter*.  An exporter is anything with::

    def export(self, spans: Sequence[FinishedSpan]) -> bool: ...  # True: delivered
    def shutdown(self) -> None: ...

:class:`traceway.tracing.otlp.OtlpHttpExporter` sends OTLP/HTTP; inside
``traceway server`` the gateway can pass one that writes to the store.  A span
hook is a callable ``(FinishedSpan) -> FinishedSpan | None``; returning ``None``
drops the span.  When a processor has no hooks and its exporter also has
``export_live(spans: Sequence[LiveSpan]) -> bool`` (:class:`LiveSpanExporter`,
as the OTLP exporter does), ended spans go to it as they are, skipping the
conversion nobody would look at.  ``force_flush(timeout)`` waits until everything queued so far
was handled; ``shutdown`` flushes and is safe to call twice.  Processors are
reset in a forked child (the parent's queue is not re-sent) and flushed at exit.
"""

from __future__ import annotations

import atexit
import operator
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Protocol

from opentelemetry import context as otel_context

from traceway.tracing._internal import (
    SUPPRESS_INSTRUMENTATION_KEY,
    handle_internal_error,
    logger,
    raise_internal_errors,
)
from traceway.tracing.redaction import redact_secrets
from traceway.tracing.span import FinishedSpan, LiveSpan

__all__ = [
    "BatchProcessor",
    "ExportStats",
    "LiveSpanExporter",
    "SimpleProcessor",
    "SpanExporter",
    "SpanHook",
    "SpanProcessor",
]

SpanHook = Callable[[FinishedSpan], FinishedSpan | None]

#: Applied before any user hook unless a processor is given ``hooks`` explicitly.
DEFAULT_HOOKS: tuple[SpanHook, ...] = (redact_secrets,)


class SpanExporter(Protocol):
    def export(self, spans: Sequence[FinishedSpan]) -> bool: ...

    def shutdown(self) -> None: ...


class LiveSpanExporter(SpanExporter, Protocol):
    """An exporter that can also take ended :class:`LiveSpan` objects directly."""

    def export_live(self, spans: Sequence[LiveSpan]) -> bool: ...


class SpanProcessor(Protocol):
    def on_end(self, span: LiveSpan) -> None: ...

    def force_flush(self, timeout: float = 10.0) -> bool: ...

    def shutdown(self, timeout: float = 10.0) -> None: ...


@dataclass(frozen=True, slots=True)
class ExportStats:
    """Counters since the processor started (or since the last fork)."""

    queued: int  # spans waiting in the queue now
    exported: int  # spans the exporter accepted
    dropped_queue_full: int  # oldest spans pushed out of a full queue
    dropped_export_failed: int  # spans the exporter could not deliver
    dropped_by_hooks: int  # spans a hook dropped (returned None or failed)


def finish_spans(spans: Iterable[LiveSpan], hooks: Sequence[SpanHook]) -> list[FinishedSpan]:
    """Convert ended spans and run ``hooks`` over them; a failing hook drops its span."""
    finished = []
    for live in spans:
        span: FinishedSpan | None = live.to_finished()
        for hook in hooks:
            try:
                span = hook(span)  # type: ignore[arg-type]  # None stops the loop below
            except Exception:
                # Dropping is the safe choice: the hook may have been a redaction.
                handle_internal_error("running a span hook")
                span = None
            if span is None:
                break
        if span is not None:
            finished.append(span)
    return finished


class SimpleProcessor:
    """Exports each span as it ends, on the caller's thread.  For tests and tools only."""

    def __init__(self, exporter: SpanExporter, hooks: Sequence[SpanHook] = DEFAULT_HOOKS) -> None:
        self.exporter = exporter
        self.hooks = tuple(hooks)
        self._shut_down = False

    def on_end(self, span: LiveSpan) -> None:
        if not self._shut_down:
            export_live = None if self.hooks else getattr(self.exporter, "export_live", None)
            if export_live is not None:
                export_live((span,))
                return
            spans = finish_spans((span,), self.hooks)
            if spans:
                self.exporter.export(spans)

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self, timeout: float = 10.0) -> None:
        if not self._shut_down:
            self._shut_down = True
            self.exporter.shutdown()


_live_processors: weakref.WeakSet[BatchProcessor] = weakref.WeakSet()


class BatchProcessor:
    """Bounded queue + one export thread (see the module docstring)."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = 2048,
        export_batch_size: int = 512,
        schedule_delay_s: float = 1.0,
        hooks: Sequence[SpanHook] = DEFAULT_HOOKS,
    ) -> None:
        if max_queue_size < 1 or export_batch_size < 1 or schedule_delay_s <= 0:
            raise ValueError("queue size, batch size and delay must be positive")
        self.exporter = exporter
        self.hooks = tuple(hooks)
        self.max_queue_size = max_queue_size
        self.export_batch_size = export_batch_size
        self.schedule_delay_s = schedule_delay_s
        self._shut_down = False
        self._init_state()
        _live_processors.add(self)

    def _init_state(self) -> None:
        self._queue: deque[LiveSpan] = deque(maxlen=self.max_queue_size)
        self._wake = threading.Event()
        self._lock = threading.Condition()
        self._flush_requested = 0
        self._flush_done = 0
        self._last_drain_ok = True
        self._stopping = False
        self._pending_error: BaseException | None = None
        self._exported = 0
        self._dropped_full = 0
        self._failed = 0
        self._dropped_by_hooks = 0
        self._worker = threading.Thread(target=self._run, name="traceway-export", daemon=True)
        self._worker.start()

    # -- caller's thread ------------------------------------------------------

    def on_end(self, span: LiveSpan) -> None:
        """Queue ``span``; never blocks, never raises."""
        queue = self._queue
        if self._shut_down:
            self._dropped_full += 1
            return
        size = len(queue)
        if size >= self.max_queue_size:
            # Approximate under concurrent threads; exact for one producer.
            self._dropped_full += 1
        queue.append(span)
        if size >= self.export_batch_size - 1 and not self._wake.is_set():
            self._wake.set()

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Export everything queued so far; False on timeout or failed delivery."""
        if self._shut_down:
            return not self._queue
        with self._lock:
            self._flush_requested += 1
            wanted = self._flush_requested
            self._wake.set()
            done = self._lock.wait_for(lambda: self._flush_done >= wanted, timeout)
            ok = done and self._last_drain_ok
            error, self._pending_error = self._pending_error, None
        if error is not None and raise_internal_errors():
            raise error
        return ok

    def shutdown(self, timeout: float = 10.0) -> None:
        """Flush, stop the thread and shut the exporter down; later calls do nothing."""
        if self._shut_down:
            return
        self.force_flush(timeout)
        self._shut_down = True
        with self._lock:
            self._stopping = True
        self._wake.set()
        if self._worker is not threading.current_thread():
            self._worker.join(timeout)
        self.exporter.shutdown()

    def stats(self) -> ExportStats:
        return ExportStats(
            queued=len(self._queue),
            exported=self._exported,
            dropped_queue_full=self._dropped_full,
            dropped_export_failed=self._failed,
            dropped_by_hooks=self._dropped_by_hooks,
        )

    # -- export thread --------------------------------------------------------

    def _run(self) -> None:
        # The exporter's own HTTP calls must not be traced by any instrumentation.
        otel_context.attach(otel_context.set_value(SUPPRESS_INSTRUMENTATION_KEY, True))
        while True:
            self._wake.wait(self.schedule_delay_s)
            self._wake.clear()
            with self._lock:
                wanted = self._flush_requested
                stopping = self._stopping
            ok = self._drain()
            with self._lock:
                self._flush_done = wanted
                self._last_drain_ok = ok
                self._lock.notify_all()
            if stopping:
                return

    def _drain(self) -> bool:
        """Export what is queued now; False if any batch was not delivered.

        Spans queued meanwhile wait for the next wake-up (a full batch, the timer or a
        flush): chasing them would send a stream of small requests under load.
        """
        ok = True
        queue = self._queue
        export_live = None if self.hooks else getattr(self.exporter, "export_live", None)
        # Only this thread pops, and a full deque stays full: these spans are all there.
        remaining = len(queue)
        while remaining:
            count = min(remaining, self.export_batch_size)
            remaining -= count
            batch = list(map(operator.call, repeat(queue.popleft, count)))
            try:
                if export_live is not None:
                    settled = len(batch)
                    delivered = export_live(batch)
                else:
                    spans = finish_spans(batch, self.hooks)
                    self._dropped_by_hooks += count - len(spans)
                    settled = len(spans)
                    delivered = not spans or self.exporter.export(spans)
            except Exception as exc:
                # Exporters report failure by returning False; raising is a bug.
                if raise_internal_errors():
                    self._pending_error = exc  # raised by the next force_flush
                else:
                    logger.exception("traceway: internal error while exporting; batch dropped")
                delivered = False
                settled = len(batch)
            if delivered:
                self._exported += settled
            else:
                self._failed += settled
                ok = False
        return ok

    def _after_fork(self) -> None:
        # The parent's queue and thread do not exist here; start empty.
        if not self._shut_down:
            self._init_state()


def _reset_after_fork() -> None:
    for processor in list(_live_processors):
        processor._after_fork()


def _shutdown_all() -> None:
    # Bounded so that a process whose server is down still exits promptly.
    for processor in list(_live_processors):
        processor.shutdown(timeout=3.0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
atexit.register(_shutdown_all)
