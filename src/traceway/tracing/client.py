"""The read side: fetch and search traces on the tracking server's REST API.

>>> import traceway
>>> trace = traceway.get_trace(traceway.get_last_active_trace_id())  # doctest: +SKIP
>>> trace.root.name, [s.name for s in trace.spans_by_name("retrieve")]  # doctest: +SKIP
>>> traceway.search_traces(filter="status = 'ERROR'", max_results=10)  # doctest: +SKIP

HTTP failures raise :class:`~traceway.tracing.errors.TracewayHTTPError`; an
unreachable server raises :class:`~traceway.tracing.errors.TracewayConnectionError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from traceway.tracing.config import get_tracking_uri
from traceway.tracing.errors import TracewayConnectionError, TracewayError, TracewayHTTPError

__all__ = ["Span", "Trace", "TraceInfo", "get_trace", "search_traces"]

_MAX_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class TraceInfo:
    """A trace's summary row, derived by the server from its spans."""

    trace_id: str
    experiment_id: int | None = None
    name: str = ""
    start_time_ms: int = 0
    end_time_ms: int | None = None
    duration_ms: int | None = None
    status: str = "UNSET"
    request_preview: str | None = None
    response_preview: str | None = None
    span_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TraceInfo:
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True, slots=True)
class Span:
    """A stored span; ``inputs`` and ``outputs`` as the server returns them (parsed JSON)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    name: str = ""
    span_type: str = "UNKNOWN"
    start_time_ns: int = 0
    end_time_ns: int = 0
    status: str = "UNSET"
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    inputs: Any = None
    outputs: Any = None
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Span:
        return cls(**_known_fields(cls, data))

    @property
    def duration_ms(self) -> float:
        return (self.end_time_ns - self.start_time_ns) / 1e6


@dataclass(frozen=True, slots=True)
class Trace:
    """A trace with its spans (ordered by start time)."""

    info: TraceInfo
    spans: tuple[Span, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Trace:
        spans = sorted(
            (Span.from_json(s) for s in data.get("spans") or ()),
            key=lambda s: (s.start_time_ns, s.span_id),
        )
        return cls(TraceInfo.from_json(data["info"]), tuple(spans))

    @property
    def root(self) -> Span | None:
        """The span without a parent in this trace (the earliest, if several)."""
        ids = {span.span_id for span in self.spans}
        for span in self.spans:
            if span.parent_span_id is None or span.parent_span_id not in ids:
                return span
        return None

    def spans_by_name(self, name: str) -> list[Span]:
        return [span for span in self.spans if span.name == name]

    def spans_by_type(self, span_type: str) -> list[Span]:
        return [span for span in self.spans if span.span_type == span_type]

    def children(self, span: Span) -> list[Span]:
        return [s for s in self.spans if s.parent_span_id == span.span_id]


def get_trace(
    trace_id: str, *, tracking_uri: str | None = None, timeout_s: float = 10.0
) -> Trace | None:
    """The trace with ``trace_id`` and its spans, or None if the server has no such trace."""
    base = (tracking_uri or get_tracking_uri()).rstrip("/")
    url = f"{base}/api/traces/{quote(trace_id, safe='')}"
    data = _get_json(url, timeout_s, allow_404=True)
    if data is None:
        return None
    try:
        return Trace.from_json(data)
    except (TypeError, KeyError, AttributeError) as exc:
        raise TracewayError(f"unexpected answer from {url}: {exc}") from exc


def search_traces(
    experiment: str | None = None,
    filter: str | None = None,
    order_by: str | Sequence[str] | None = None,
    max_results: int = 100,
    *,
    tracking_uri: str | None = None,
    timeout_s: float = 10.0,
) -> list[TraceInfo]:
    """Traces matching ``filter`` (the server's filter language), newest first by default.

    ``experiment`` is a name (None: all the server returns by default);
    ``order_by`` is e.g. ``"duration_ms DESC"`` or a list of such terms.  Pages are
    followed until ``max_results`` traces were read.
    """
    base = (tracking_uri or get_tracking_uri()).rstrip("/")
    params: dict[str, str] = {}
    if experiment is not None:
        params["experiment"] = experiment
    if filter:
        params["filter"] = filter
    if order_by:
        params["order_by"] = order_by if isinstance(order_by, str) else ", ".join(order_by)
    results: list[TraceInfo] = []
    token: str | None = None
    while len(results) < max_results:
        page = {**params, "page_size": str(min(max_results - len(results), _MAX_PAGE_SIZE))}
        if token:
            page["page_token"] = token
        url = f"{base}/api/traces?{urlencode(page)}"
        data = _get_json(url, timeout_s)
        try:
            results.extend(TraceInfo.from_json(t) for t in data.get("traces") or ())
        except (TypeError, KeyError, AttributeError) as exc:
            raise TracewayError(f"unexpected answer from {url}: {exc}") from exc
        token = data.get("next_page_token")
        if not token:
            break
    return results[:max_results]


def _get_json(url: str, timeout_s: float, allow_404: bool = False) -> Any:
    # Imported on first use: http.client (with email and ssl) is a third of the
    # SDK's import time, and most processes only write traces.
    import http.client

    from traceway.tracing._http import HttpTransport

    transport = HttpTransport(timeout_s)
    try:
        response = transport.request("GET", url, headers={"Accept": "application/json"})
    except (OSError, http.client.HTTPException) as exc:
        raise TracewayConnectionError(f"cannot reach {url}: {exc}") from exc
    except ValueError as exc:
        raise TracewayError(f"invalid tracking URI in {url!r}: {exc}") from exc
    finally:
        transport.close()
    if response.status == 404 and allow_404:
        return None
    if response.status >= 400:
        raise TracewayHTTPError(response.status, _error_message(response.body), url)
    try:
        return orjson.loads(response.body)
    except orjson.JSONDecodeError as exc:
        raise TracewayError(f"invalid JSON from {url}: {response.body[:200]!r}") from exc


def _error_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode(errors="replace") or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        for key in ("detail", "message", "error"):
            if key in data:
                return str(data[key])
    return str(data)[:500]


def _known_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    # Unknown fields are ignored so newer servers keep working with this client.
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return {k: v for k, v in data.items() if k in names and v is not None}
