"""The global SDK configuration: where spans go and how they are recorded.

Settings come from, in order: calls here, environment variables
(``TRACEWAY_TRACKING_URI``, ``TRACEWAY_EXPERIMENT``, ``TRACEWAY_SAMPLING_RATIO``,
``OTEL_SERVICE_NAME``), defaults.  The global :class:`Tracer` behind
``@traceway.trace`` is built on first use from these settings: a
:class:`BatchProcessor` with the built-in redaction and the configured span
hooks, exporting OTLP/HTTP to ``{tracking_uri}/v1/traces``.

>>> import traceway
>>> traceway.set_tracking_uri("http://localhost:5000")
>>> traceway.set_experiment("checkout-bot")
>>> traceway.configure(span_processors=[lambda span: None if span.name == "noise" else span])
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from traceway.tracing._internal import logger
from traceway.tracing.export import BatchProcessor, ExportStats, SpanExporter, SpanHook
from traceway.tracing.redaction import redact_secrets
from traceway.tracing.serialize import DEFAULT_MAX_CHARS
from traceway.tracing.tracer import IdGenerator, Tracer

__all__ = [
    "configure",
    "disable",
    "dropped_spans",
    "enable",
    "export_stats",
    "flush",
    "get_experiment",
    "get_tracking_uri",
    "is_enabled",
    "set_experiment",
    "set_tracking_uri",
]

ENV_TRACKING_URI: Final = "TRACEWAY_TRACKING_URI"
ENV_EXPERIMENT: Final = "TRACEWAY_EXPERIMENT"
ENV_SAMPLING_RATIO: Final = "TRACEWAY_SAMPLING_RATIO"
DEFAULT_TRACKING_URI: Final = "http://localhost:5000"


@dataclass(frozen=True, slots=True)
class _Settings:
    tracking_uri: str | None = None
    experiment: str | None = None
    sampling_ratio: float | None = None
    span_processors: tuple[SpanHook, ...] = ()
    max_queue_size: int = 2048
    export_batch_size: int = 512
    schedule_delay_s: float = 1.0
    max_value_chars: int = DEFAULT_MAX_CHARS
    service_name: str | None = None
    exporter: SpanExporter | None = None
    id_generator: IdGenerator | None = None
    clock: Callable[[], int] = time.time_ns


class _Sdk:
    """The one mutable global: read on every traced call, so attribute access only."""

    __slots__ = ("enabled", "exporter", "lock", "settings", "tracer")

    def __init__(self) -> None:
        self.enabled = True
        self.settings = _Settings()
        self.tracer: Tracer | None = None
        self.exporter: SpanExporter | None = None
        self.lock = threading.RLock()


SDK: Final = _Sdk()


def get_tracer() -> Tracer:
    """The global tracer, built from the settings on first use."""
    tracer = SDK.tracer
    if tracer is None:
        with SDK.lock:
            tracer = SDK.tracer or _build_tracer()
    return tracer


def _build_tracer() -> Tracer:
    settings = SDK.settings
    exporter = settings.exporter
    if exporter is None:
        # Imported here because protobuf's import cost is paid only once spans are recorded.
        from traceway.tracing.otlp import (
            OtlpHttpExporter,
            default_resource_attributes,
            traces_url,
        )

        exporter = OtlpHttpExporter(
            traces_url(get_tracking_uri()),
            resource_attributes=default_resource_attributes(settings.service_name),
        )
    processor = BatchProcessor(
        exporter,
        max_queue_size=settings.max_queue_size,
        export_batch_size=settings.export_batch_size,
        schedule_delay_s=settings.schedule_delay_s,
        hooks=(redact_secrets, *settings.span_processors),
    )
    tracer = Tracer(
        processor,
        id_generator=settings.id_generator,
        clock=settings.clock,
        sampling_ratio=_sampling_ratio(settings),
        max_value_chars=settings.max_value_chars,
        experiment=get_experiment(),
    )
    SDK.exporter = exporter
    SDK.tracer = tracer
    return tracer


def _sampling_ratio(settings: _Settings) -> float:
    if settings.sampling_ratio is not None:
        return settings.sampling_ratio
    raw = os.environ.get(ENV_SAMPLING_RATIO)
    if not raw:
        return 1.0
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        logger.warning("traceway: ignoring %s=%r (want 0 to 1)", ENV_SAMPLING_RATIO, raw)
        return 1.0
    return ratio


def set_tracking_uri(uri: str) -> None:
    """Send traces to the server at ``uri`` (spans not yet exported go there too)."""
    with SDK.lock:
        SDK.settings = dataclasses.replace(SDK.settings, tracking_uri=uri)
        exporter = SDK.exporter
        if exporter is not None and SDK.settings.exporter is None:
            exporter.endpoint = f"{uri.rstrip('/')}/v1/traces"  # type: ignore[attr-defined]


def get_tracking_uri() -> str:
    """The tracking server's URI: set, else ``TRACEWAY_TRACKING_URI``, else localhost:5000."""
    return SDK.settings.tracking_uri or os.environ.get(ENV_TRACKING_URI) or DEFAULT_TRACKING_URI


def set_experiment(name: str | None) -> None:
    """Record traces started from now on in experiment ``name`` (``None``: the server's Default)."""
    with SDK.lock:
        SDK.settings = dataclasses.replace(SDK.settings, experiment=name)
        if SDK.tracer is not None:
            SDK.tracer.experiment = get_experiment()


def get_experiment() -> str | None:
    """The experiment new traces go to: set, else ``TRACEWAY_EXPERIMENT``, else ``None``."""
    return SDK.settings.experiment or os.environ.get(ENV_EXPERIMENT) or None


def enable() -> None:
    """Record spans again after :func:`disable`."""
    SDK.enabled = True


def disable() -> None:
    """Stop recording: traced functions run untouched until :func:`enable`."""
    SDK.enabled = False


def is_enabled() -> bool:
    return SDK.enabled


_KEEP: Any = object()


def configure(
    *,
    span_processors: Sequence[SpanHook] = _KEEP,
    max_queue_size: int = _KEEP,
    export_batch_size: int = _KEEP,
    schedule_delay_s: float = _KEEP,
    max_value_chars: int = _KEEP,
    sampling_ratio: float | None = _KEEP,
    service_name: str | None = _KEEP,
    exporter: SpanExporter | None = _KEEP,
    id_generator: IdGenerator | None = _KEEP,
    clock: Callable[[], int] = _KEEP,
) -> None:
    """Change how spans are recorded and exported; arguments left out keep their value.

    ``span_processors`` are callables ``(FinishedSpan) -> FinishedSpan | None``
    run on the export thread after the built-in secret redaction; returning
    ``None`` drops the span.  ``exporter`` replaces the OTLP/HTTP exporter (for
    example with ``traceway.tracing.testing.InMemoryExporter``); ``id_generator``
    and ``clock`` make recorded ids and timestamps deterministic.  Spans queued
    under the previous configuration are flushed first; spans still open are
    dropped when they end.
    """
    changes: dict[str, Any] = {
        key: value
        for key, value in {
            "span_processors": span_processors,
            "max_queue_size": max_queue_size,
            "export_batch_size": export_batch_size,
            "schedule_delay_s": schedule_delay_s,
            "max_value_chars": max_value_chars,
            "sampling_ratio": sampling_ratio,
            "service_name": service_name,
            "exporter": exporter,
            "id_generator": id_generator,
            "clock": clock,
        }.items()
        if value is not _KEEP
    }
    if "span_processors" in changes:
        changes["span_processors"] = tuple(changes["span_processors"])
    ratio = changes.get("sampling_ratio")
    if ratio is not None and not 0.0 <= ratio <= 1.0:
        raise ValueError("sampling_ratio must be between 0 and 1")
    with SDK.lock:
        SDK.settings = dataclasses.replace(SDK.settings, **changes)
        _discard_tracer()


def reset() -> None:
    """Back to the defaults and environment, enabled, with no tracer built yet."""
    with SDK.lock:
        SDK.settings = _Settings()
        SDK.enabled = True
        _discard_tracer()


def _discard_tracer() -> None:
    tracer, SDK.tracer, SDK.exporter = SDK.tracer, None, None
    if tracer is not None:
        tracer.processor.shutdown(timeout=5.0)


def flush(timeout: float = 10) -> bool:
    """Block until every span ended so far was exported (or ``timeout`` s passed).

    Returns True when all of them were delivered.
    """
    tracer = SDK.tracer
    return True if tracer is None else tracer.processor.force_flush(timeout)


def export_stats() -> ExportStats | None:
    """Queue and drop counters of the global exporter (``None`` before the first span)."""
    tracer = SDK.tracer
    processor = tracer.processor if tracer is not None else None
    return processor.stats() if isinstance(processor, BatchProcessor) else None


def dropped_spans() -> int:
    """Spans the global exporter lost: pushed out of a full queue or not delivered."""
    stats = export_stats()
    return 0 if stats is None else stats.dropped_queue_full + stats.dropped_export_failed
