"""Spans recorded inside the server process (the mounted gateway) go straight to the
store, through the same attribute conventions as OTLP ingest, with no network hop."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from traceway.server.conventions import span_record
from traceway.server.ingest import ExperimentCache
from traceway.store import Store
from traceway.store.records import SpanRecord
from traceway.tracing import semconv
from traceway.tracing.span import FinishedSpan

__all__ = ["StoreSpanExporter"]

_OTEL_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}


def _record(span: FinishedSpan) -> SpanRecord:
    attributes: dict[str, Any] = dict(span.attributes)
    attributes[semconv.SPAN_TYPE] = span.span_type
    if span.inputs is not None:
        attributes[semconv.SPAN_INPUTS] = span.inputs
    if span.outputs is not None:
        attributes[semconv.SPAN_OUTPUTS] = span.outputs
    return span_record(
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        name=span.name,
        start_time_ns=span.start_time_ns,
        end_time_ns=span.end_time_ns,
        status_code=_OTEL_STATUS.get(span.status, 0),
        status_message=span.status_message,
        attributes=attributes,
        events=[
            {"name": e.name, "time_unix_nano": e.timestamp_ns, "attributes": e.attributes}
            for e in span.events
        ],
    )


class StoreSpanExporter:
    """A ``SpanExporter`` (see ``traceway.tracing.export``) writing to the store.

    It runs on the SDK's export thread, so the request path never waits for it.
    """

    def __init__(self, store: Store, experiments: ExperimentCache) -> None:
        self._store = store
        self._experiments = experiments

    def export(self, spans: Sequence[FinishedSpan]) -> bool:
        by_experiment: dict[str, list[SpanRecord]] = defaultdict(list)
        for span in spans:
            by_experiment[span.experiment or semconv.DEFAULT_EXPERIMENT].append(_record(span))
        for name, records in by_experiment.items():
            self._store.write_spans(self._experiments.id_for(name), records)
        return True

    def shutdown(self) -> None:
        """Nothing to release: the store outlives the exporter."""
