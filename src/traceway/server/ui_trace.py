"""The trace page: span tree beside a waterfall, and one span's details.

The page is drawn from light span rows only; a span's payload, attributes and
events come from ``/traces/{id}/spans/{span_id}`` when it is selected (and are
rendered inline for the span named in ``?span=``, so deep links need no script).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from traceway.server.ui_chat import ChatView, chat_view
from traceway.server.ui_render import SECURITY_HEADERS, Templates
from traceway.server.ui_spans import layout
from traceway.server.ui_traces import parse_tags, same_origin
from traceway.server.ui_tree import render_tree
from traceway.store import Store
from traceway.store.dashboard import CACHE_STATUS, GUARDRAIL_VERDICT, Dashboard
from traceway.store.records import StoredSpan, TraceSummary

__all__ = ["SpanDetail", "TracePage", "gateway_facts", "normalize_trace_id"]

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
#: Attribute key fragments that describe how the gateway handled a request.
_GATEWAY_KEYS = (
    "attempt",
    "retry",
    "retries",
    "fallback",
    "reason",
    "strategy",
    "target",
    "status_code",
    "cache",
    "guardrail",
    "verdict",
    "virtual_key",
    "route",
)
#: Children of a gateway span shown as checks, and the attribute holding their outcome.
_CHECK_OUTCOMES = {"CACHE": CACHE_STATUS, "GUARDRAIL": GUARDRAIL_VERDICT}
_EXCEPTION_TYPE = "exception.type"
_EXCEPTION_MESSAGE = "exception.message"
_EXCEPTION_STACK = "exception.stacktrace"


def normalize_trace_id(text: str) -> str | None:
    """The 32-hex id of ``text`` (``tr-<hex>`` accepted), or ``None`` if it is not one."""
    text = text.strip().lower()
    if text.startswith("tr-"):
        text = text[3:]
    return text if _TRACE_ID.fullmatch(text) else None


@dataclass(slots=True)
class ExceptionInfo:
    type: str
    message: str
    stacktrace: str
    offset_ns: int | None


@dataclass(slots=True)
class Attempt:
    span: StoredSpan
    facts: list[tuple[str, Any]]

    @property
    def duration_ns(self) -> int:
        return max(0, self.span.end_time_ns - self.span.start_time_ns)


@dataclass(slots=True)
class Check:
    """A cache lookup or guardrail check under a gateway span, and its outcome."""

    span: StoredSpan
    outcome: str


@dataclass(slots=True)
class SpanDetail:
    """Everything the span panel shows."""

    span: StoredSpan
    trace_id: str
    offset_ns: int | None
    chat: ChatView | None
    exceptions: list[ExceptionInfo]
    events: list[dict[str, Any]]
    attributes: list[tuple[str, Any]]
    facts: list[tuple[str, Any]]
    attempts: list[Attempt] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def duration_ns(self) -> int:
        return max(0, self.span.end_time_ns - self.span.start_time_ns)


def gateway_facts(attributes: dict[str, Any]) -> list[tuple[str, Any]]:
    """The attributes that say how a gateway request went: retries, fallbacks, targets."""
    return sorted(
        (key, value)
        for key, value in attributes.items()
        if any(part in key.lower() for part in _GATEWAY_KEYS)
        and key not in (CACHE_STATUS, GUARDRAIL_VERDICT)
    )


def span_detail(
    span: StoredSpan, trace_start_ns: int | None, children: list[StoredSpan]
) -> SpanDetail:
    exceptions = []
    events = []
    for event in span.events:
        attributes = event.get("attributes") or {}
        offset = None
        if isinstance(event.get("time_unix_nano"), int) and event["time_unix_nano"]:
            offset = event["time_unix_nano"] - span.start_time_ns
        if event.get("name") == "exception":
            exceptions.append(
                ExceptionInfo(
                    type=str(attributes.get(_EXCEPTION_TYPE, "Exception")),
                    message=str(attributes.get(_EXCEPTION_MESSAGE, "")),
                    stacktrace=str(attributes.get(_EXCEPTION_STACK, "")),
                    offset_ns=offset,
                )
            )
        else:
            events.append({**event, "offset_ns": offset})
    return SpanDetail(
        span=span,
        trace_id=span.trace_id,
        offset_ns=None if trace_start_ns is None else span.start_time_ns - trace_start_ns,
        chat=chat_view(span.span_type, span.inputs, span.outputs),
        exceptions=exceptions,
        events=events,
        attributes=sorted(span.attributes.items()),
        facts=gateway_facts(span.attributes),
        attempts=[
            Attempt(child, gateway_facts(child.attributes))
            for child in children
            if child.span_type not in _CHECK_OUTCOMES
        ],
        checks=[
            Check(child, str(child.attributes.get(_CHECK_OUTCOMES[child.span_type], child.status)))
            for child in children
            if child.span_type in _CHECK_OUTCOMES
        ],
    )


class TracePage:
    def __init__(self, store: Store, dashboard: Dashboard, templates: Templates) -> None:
        self._store = store
        self._dashboard = dashboard
        self._templates = templates

    def trace(self, request: Request) -> Response:
        trace_id = normalize_trace_id(request.path_params["trace_id"])
        summary = self._store.get_trace_summary(trace_id) if trace_id else None
        if trace_id is None or summary is None:
            return self._missing(request, "Trace not found", "There is no trace with this id.")
        rows = self._dashboard.span_rows(trace_id)
        waterfall = layout(rows)
        wanted = request.query_params.get("span", "").lower()
        selected_id = wanted if wanted in waterfall.by_id else None
        if selected_id is None and waterfall.rows:
            selected_id = waterfall.rows[0].span.span_id
        detail = self._detail(trace_id, selected_id, waterfall.start_ns) if selected_id else None
        experiment = self._dashboard.experiment(summary.experiment_id)
        return self._templates.page(
            request,
            "trace.html",
            section="experiments",
            trace=summary,
            experiment=experiment,
            waterfall=waterfall,
            tree=render_tree(waterfall, selected_id),
            selected=selected_id,
            detail=detail,
            span_missing=bool(wanted) and wanted != selected_id,
        )

    def span(self, request: Request) -> Response:
        """The span panel alone: what the page loads when a span is selected."""
        trace_id = normalize_trace_id(request.path_params["trace_id"])
        span_id = request.path_params["span_id"].lower()
        if trace_id is None or not _SPAN_ID.fullmatch(span_id):
            return PlainTextResponse("no such span", 404)
        start = request.query_params.get("t0", "")
        detail = self._detail(trace_id, span_id, int(start) if start.isdigit() else None)
        if detail is None:
            return PlainTextResponse("no such span", 404)
        html = self._templates.render("_span.html", detail=detail)
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    async def tags(self, request: Request) -> Response:
        """Add or remove tags of one trace from its page."""
        trace_id = normalize_trace_id(request.path_params["trace_id"])
        if not same_origin(request):
            return PlainTextResponse("cross-site form posts are refused", 403)
        if trace_id is None:
            return PlainTextResponse("no such trace", 404)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        set_tags = parse_tags(form.get("set", [""])[0])
        delete = [k for k in form.get("delete", []) if k]
        summary: TraceSummary | None = await run_in_threadpool(
            self._store.set_trace_tags, trace_id, set=set_tags, delete=delete
        )
        if summary is None:
            return PlainTextResponse("no such trace", 404)
        span = form.get("span", [""])[0]
        suffix = f"?span={span}" if _SPAN_ID.fullmatch(span) else ""
        return RedirectResponse(f"/traces/{trace_id}{suffix}", 303)

    def _detail(self, trace_id: str, span_id: str, trace_start_ns: int | None) -> SpanDetail | None:
        span = self._dashboard.get_span(trace_id, span_id)
        if span is None:
            return None
        children = []
        if span.span_type == "GATEWAY":
            children = self._dashboard.child_spans(trace_id, span_id)
        return span_detail(span, trace_start_ns, children)

    def _missing(self, request: Request, title: str, message: str) -> HTMLResponse:
        return self._templates.page(
            request, "message.html", status=404, title=title, message=message
        )
