"""Traceway's tracing SDK and the span model the whole product shares.

Modules, from the application's side inwards:

- :mod:`~traceway.tracing.decorator` ``@trace``; :mod:`~traceway.tracing.api` ``start_span``,
  the current span and trace (both on :mod:`~traceway.tracing._lifecycle`);
- :mod:`~traceway.tracing.config` tracking URI, experiment, sampling, ``configure``, ``flush``;
- :mod:`~traceway.tracing.client` the read side: ``get_trace``, ``search_traces``;
- :mod:`~traceway.tracing.context` and :mod:`~traceway.tracing.propagation`: context
  across threads, and the W3C ``traceparent`` header across processes;
- :mod:`~traceway.tracing.span` ``LiveSpan`` (recording) and ``FinishedSpan`` (exported);
- :mod:`~traceway.tracing.tracer` the injectable ``Tracer``;
- :mod:`~traceway.tracing.export` processors, the exporter protocol and the batch thread;
- :mod:`~traceway.tracing.otlp` OTLP encoding and the OTLP/HTTP exporter;
- :mod:`~traceway.tracing.serialize` and :mod:`~traceway.tracing.redaction`: what inputs
  and outputs become before they leave the process;
- :mod:`~traceway.tracing.testing` in-memory exporter, id generator and clock for tests.
"""

from traceway.tracing.config import dropped_spans, export_stats

__all__ = ["dropped_spans", "export_stats"]
