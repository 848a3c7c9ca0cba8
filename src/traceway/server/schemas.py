"""JSON shapes of the REST API: pydantic models for the OpenAPI schema and request
bodies, and the plain converters the endpoints use to answer (no per-row
validation on the way out, so large traces stay cheap to serve)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from pydantic import BaseModel, Field

from traceway.store.records import Experiment, StoredSpan, StoredTrace, TraceSummary

__all__ = [
    "CreateExperiment",
    "DeleteTraces",
    "DeletedTraces",
    "ErrorBody",
    "ExperimentList",
    "ExperimentOut",
    "PatchTags",
    "SpanOut",
    "TraceList",
    "TraceOut",
    "TraceSummaryOut",
    "experiment_json",
    "trace_json",
    "trace_summary_json",
]


class ErrorDetail(BaseModel):
    code: str
    message: str
    position: int | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class ExperimentOut(BaseModel):
    experiment_id: int
    name: str
    created_at_ms: int
    trace_count: int = 0
    error_count: int = 0
    last_trace_ms: int | None = None


class ExperimentList(BaseModel):
    experiments: list[ExperimentOut]


class CreateExperiment(BaseModel):
    name: str = Field(min_length=1, max_length=255)


class TraceSummaryOut(BaseModel):
    trace_id: str
    experiment_id: int
    name: str
    start_time_ms: int
    end_time_ms: int
    duration_ms: int
    status: str
    request_preview: str | None
    response_preview: str | None
    span_count: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float | None
    tags: dict[str, str]
    metadata: dict[str, str]


class TraceList(BaseModel):
    traces: list[TraceSummaryOut]
    next_page_token: str | None


class SpanOut(BaseModel):
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    span_type: str
    start_time_ns: int
    end_time_ns: int
    status: str
    status_message: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    inputs: Any
    outputs: Any
    model: str | None
    provider: str | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None


class TraceOut(BaseModel):
    info: TraceSummaryOut
    spans: list[SpanOut]


class DeleteTraces(BaseModel):
    """Delete by ids, or by a filter within an experiment (at least one of them)."""

    trace_ids: list[str] | None = None
    experiment: str | None = None
    filter: str | None = None


class DeletedTraces(BaseModel):
    deleted: int


class PatchTags(BaseModel):
    set: dict[str, str] = Field(default_factory=dict)
    delete: list[str] = Field(default_factory=list)


# Shallow field copies: ``dataclasses.asdict`` deep-copies every attribute value,
# which made a 1,000-span trace several times slower to serve.
_SUMMARY_FIELDS = tuple(f.name for f in fields(TraceSummary))
_SPAN_FIELDS = tuple(f.name for f in fields(StoredSpan))


def experiment_json(experiment: Experiment) -> dict[str, Any]:
    return asdict(experiment)


def trace_summary_json(summary: TraceSummary) -> dict[str, Any]:
    return {name: getattr(summary, name) for name in _SUMMARY_FIELDS}


def _span_json(span: StoredSpan) -> dict[str, Any]:
    return {name: getattr(span, name) for name in _SPAN_FIELDS}


def trace_json(trace: StoredTrace) -> dict[str, Any]:
    return {"info": trace_summary_json(trace.info), "spans": [_span_json(s) for s in trace.spans]}
