"""MLflow's REST shapes for Traceway's records, both ways.

The ``mlflow`` client speaks protobuf messages as JSON (field names as in the
``.proto`` files, timestamps as RFC 3339 text, durations as ``"1.5s"``, bytes as
base64).  This module turns Traceway's experiments and traces into those shapes and
the trace info the client sends (``StartTraceV3``) into a :class:`TraceInfoRecord`.
Pure functions, no I/O; malformed input raises :class:`WireError`.

MLflow names a trace ``tr-<32 hex>``: the same trace as OpenTelemetry's ``<32 hex>``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from traceway.server.mlflow_previews import explicit_preview
from traceway.store.records import (
    STATUS_ERROR,
    STATUS_IN_PROGRESS,
    STATUS_OK,
    Experiment,
    StoredSpan,
    StoredTrace,
    TraceSummary,
)
from traceway.store.trace_info import TraceInfoRecord
from traceway.tracing import semconv as sc

__all__ = [
    "NotFound",
    "WireError",
    "experiment_json",
    "mlflow_trace_id",
    "otel_trace_id",
    "parse_trace_info",
    "trace_info_json",
    "trace_json",
]

TRACE_ID_PREFIX: Final = "tr-"
#: Trace info tag telling the client the spans live in the tracking store (not in
#: artifact storage), so it neither uploads nor downloads span files.
SPANS_LOCATION_TAG: Final = "mlflow.trace.spansLocation"
TRACKING_STORE: Final = "TRACKING_STORE"
TRACE_NAME_TAG: Final = "mlflow.traceName"
TOKEN_USAGE_METADATA: Final = "mlflow.trace.tokenUsage"
INPUTS_METADATA: Final = "mlflow.traceInputs"
OUTPUTS_METADATA: Final = "mlflow.traceOutputs"
SESSION_METADATA: Final = "mlflow.trace.session"
USER_METADATA: Final = "mlflow.trace.user"

_HEX_ID = re.compile(r"[0-9a-f]{32}")
_TIMESTAMP = re.compile(
    r"(\d{4}-\d\d-\d\d)[Tt](\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)", re.ASCII
)
_DURATION = re.compile(r"(-?)(\d{1,12})(?:\.(\d{1,9}))?s", re.ASCII)
_STATES: Final = {"OK": STATUS_OK, "ERROR": STATUS_ERROR, "IN_PROGRESS": STATUS_IN_PROGRESS}
_SPAN_STATUS: Final = {"OK": "STATUS_CODE_OK", "ERROR": "STATUS_CODE_ERROR"}
# MLflow's metadata keys for the session and user, and Traceway's.
_ALIASES: Final = ((SESSION_METADATA, sc.METADATA_SESSION_ID), (USER_METADATA, sc.METADATA_USER_ID))


class WireError(ValueError):
    """A request body that is not the message it should be; the text suits a 400."""


class NotFound(LookupError):
    """The request names something that does not exist; the text suits a 404."""


def otel_trace_id(trace_id: str) -> str | None:
    """The 32-hex id of MLflow's ``tr-<hex>`` (or of a bare hex id); ``None`` otherwise."""
    text = trace_id.strip().lower().removeprefix(TRACE_ID_PREFIX)
    return text if _HEX_ID.fullmatch(text) else None


def mlflow_trace_id(trace_id: str) -> str:
    return TRACE_ID_PREFIX + trace_id


def experiment_json(experiment: Experiment) -> dict[str, Any]:
    """An ``mlflow.Experiment`` message; every Traceway experiment is active."""
    return {
        "experiment_id": str(experiment.experiment_id),
        "name": experiment.name,
        "artifact_location": "",
        "lifecycle_stage": "active",
        "creation_time": experiment.created_at_ms,
        "last_update_time": experiment.last_trace_ms or experiment.created_at_ms,
        "tags": [],
    }


def parse_trace_info(body: Any, experiment_id_for: Callable[[str], int | None]) -> TraceInfoRecord:
    """The trace info of a ``StartTraceV3`` body (``{"trace": {"trace_info": ...}}``).

    ``experiment_id_for`` maps MLflow's experiment id to Traceway's (``None`` when
    unknown).  Previews count as explicit only when they are not what the client
    derives from the root span on its own (see :mod:`.mlflow_previews`).
    """
    trace = body.get("trace") if isinstance(body, dict) else None
    info = trace.get("trace_info") if isinstance(trace, dict) else None
    if not isinstance(info, dict):
        raise WireError("the body needs trace.trace_info")
    trace_id = otel_trace_id(_string(info, "trace_id") or "")
    if trace_id is None:
        raise WireError(f"trace_id must be 'tr-' and 32 hex digits, not {info.get('trace_id')!r}")
    location = info.get("trace_location")
    experiment = location.get("mlflow_experiment") if isinstance(location, dict) else None
    mlflow_experiment = _string(experiment, "experiment_id")
    if mlflow_experiment is None:
        raise WireError("trace_location.mlflow_experiment.experiment_id is required")
    experiment_id = experiment_id_for(mlflow_experiment)
    if experiment_id is None:
        raise NotFound(f"No Experiment with id={mlflow_experiment} exists")
    tags = _string_map(info, "tags")
    metadata = _string_map(info, "trace_metadata")
    for mlflow_key, key in _ALIASES:
        if mlflow_key in metadata and key not in metadata:
            metadata[key] = metadata[mlflow_key]
    return TraceInfoRecord(
        trace_id=trace_id,
        experiment_id=experiment_id,
        name=tags.get(TRACE_NAME_TAG),
        start_time_ms=_timestamp_ms(info.get("request_time")),
        duration_ms=_duration_ms(info.get("execution_duration")),
        status=_STATES.get(str(info.get("state", "")).upper()),
        tags=tags,
        metadata=metadata,
        request_preview=explicit_preview(
            _string(info, "request_preview"), metadata.get(INPUTS_METADATA), role="user"
        ),
        response_preview=explicit_preview(
            _string(info, "response_preview"), metadata.get(OUTPUTS_METADATA), role="assistant"
        ),
    )


def trace_info_json(summary: TraceSummary) -> dict[str, Any]:
    """An ``mlflow.TraceInfoV3`` message for a stored trace."""
    metadata = dict(summary.metadata)
    for mlflow_key, key in _ALIASES:
        if key in metadata:
            metadata.setdefault(mlflow_key, metadata[key])
    if summary.total_tokens and TOKEN_USAGE_METADATA not in metadata:
        metadata[TOKEN_USAGE_METADATA] = orjson.dumps(
            {
                "input_tokens": summary.input_tokens,
                "output_tokens": summary.output_tokens,
                "total_tokens": summary.total_tokens,
            }
        ).decode()
    tags = {TRACE_NAME_TAG: summary.name, **summary.tags, SPANS_LOCATION_TAG: TRACKING_STORE}
    info: dict[str, Any] = {
        "trace_id": mlflow_trace_id(summary.trace_id),
        "trace_location": {
            "type": "MLFLOW_EXPERIMENT",
            "mlflow_experiment": {"experiment_id": str(summary.experiment_id)},
        },
        "request_time": _rfc3339(summary.start_time_ms),
        "execution_duration": f"{summary.duration_ms / 1000:.3f}s",
        "state": summary.status if summary.status in _STATES else STATUS_IN_PROGRESS,
        "trace_metadata": metadata,
        "tags": tags,
    }
    if summary.request_preview is not None:
        info["request_preview"] = summary.request_preview
    if summary.response_preview is not None:
        info["response_preview"] = summary.response_preview
    return info


def trace_json(trace: StoredTrace) -> dict[str, Any]:
    """An ``mlflow.Trace`` message: the info and every span as an OpenTelemetry span."""
    return {
        "trace_info": trace_info_json(trace.info),
        "spans": [_span_json(span) for span in trace.spans],
    }


def _span_json(span: StoredSpan) -> dict[str, Any]:
    # MLflow reads its own attributes back from the span; Traceway keeps them as fields.
    attributes: dict[str, Any] = {
        **span.attributes,
        sc.MLFLOW_SPAN_TYPE: span.span_type,
        sc.MLFLOW_TRACE_REQUEST_ID: mlflow_trace_id(span.trace_id),
    }
    if span.inputs is not None:
        attributes[sc.MLFLOW_SPAN_INPUTS] = span.inputs
    if span.outputs is not None:
        attributes[sc.MLFLOW_SPAN_OUTPUTS] = span.outputs
    result: dict[str, Any] = {
        "trace_id": _b64_id(span.trace_id),
        "span_id": _b64_id(span.span_id),
        "name": span.name,
        "start_time_unix_nano": str(span.start_time_ns),
        "end_time_unix_nano": str(span.end_time_ns),
        "attributes": _key_values(attributes),
        "events": [_event_json(event) for event in span.events],
        "status": {
            "code": _SPAN_STATUS.get(span.status, "STATUS_CODE_UNSET"),
            "message": span.status_message,
        },
    }
    if span.parent_span_id:
        result["parent_span_id"] = _b64_id(span.parent_span_id)
    return result


def _event_json(event: Mapping[str, Any]) -> dict[str, Any]:
    attributes = event.get("attributes")
    return {
        "name": str(event.get("name", "")),
        "time_unix_nano": str(int(event.get("time_unix_nano") or 0)),
        "attributes": _key_values(attributes if isinstance(attributes, dict) else {}),
    }


def _key_values(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": str(key), "value": _any_value(value)} for key, value in values.items()]


def _any_value(value: Any) -> dict[str, Any]:
    """An OpenTelemetry ``AnyValue`` in protobuf JSON; ``None`` is the empty value."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"bool_value": value}
    if isinstance(value, int):
        return {"int_value": str(value)}
    if isinstance(value, float):
        return {"double_value": value}
    if isinstance(value, str):
        return {"string_value": value}
    if isinstance(value, list | tuple):
        return {"array_value": {"values": [_any_value(item) for item in value]}}
    if isinstance(value, dict):
        return {"kvlist_value": {"values": _key_values(value)}}
    return {"string_value": str(value)}


def _b64_id(hex_id: str) -> str:
    try:
        raw = bytes.fromhex(hex_id)
    except ValueError:
        raw = hex_id.encode()
    return base64.b64encode(raw).decode()


def _rfc3339(ms: int) -> str:
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def _timestamp_ms(value: Any) -> int | None:
    """Milliseconds since the epoch of an RFC 3339 timestamp; ``None`` when absent."""
    if value is None:
        return None
    match = _TIMESTAMP.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise WireError(f"request_time must be an RFC 3339 timestamp, not {value!r}")
    day, clock, fraction, offset = match.groups()
    zone = "+00:00" if offset in ("Z", "z") else offset
    try:
        seconds = datetime.fromisoformat(f"{day}T{clock}{zone}").timestamp()
    except ValueError as exc:
        raise WireError(f"request_time {value!r} is not a valid time") from exc
    return int(seconds) * 1000 + int((fraction or "0").ljust(9, "0")[:3])


def _duration_ms(value: Any) -> int | None:
    if value is None:
        return None
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise WireError(f"execution_duration must be like '1.5s', not {value!r}")
    sign, seconds, fraction = match.groups()
    ms = int(seconds) * 1000 + int((fraction or "0").ljust(9, "0")[:3])
    return -ms if sign else ms


def _string(message: Any, name: str) -> str | None:
    value = message.get(name) if isinstance(message, dict) else None
    return value if isinstance(value, str) else None


def _string_map(message: dict[str, Any], name: str) -> dict[str, str]:
    """A protobuf map field: an object, or (as some encoders write it) a list of entries."""
    value = message.get(name)
    if value is None:
        return {}
    if isinstance(value, list):
        entries = [item for item in value if isinstance(item, dict)]
        value = {item.get("key"): item.get("value") for item in entries}
    if not isinstance(value, dict):
        raise WireError(f"{name} must be a map of strings")
    return {str(key): item if isinstance(item, str) else str(item) for key, item in value.items()}
