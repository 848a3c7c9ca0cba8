"""The web UI served by ``traceway server`` at every path outside ``/v1`` and ``/api``.

Server-rendered HTML (Jinja templates and static files shipped in the package),
a little hand-written JavaScript for keyboard navigation, lazy span loading and
auto-refresh, and nothing fetched from anywhere but this server.

Pages::

    /                                     experiments with trace counts and error rates
    /experiments/{id}                     the traces table: search, quick filters, sort,
                                          keyset pages, bulk delete and tagging
    /experiments/{id}/rows                the table body alone (auto-refresh)
    /traces/{trace_id}?span={span_id}     span tree, waterfall and one span's details
    /traces/{trace_id}/spans/{span_id}    one span's details alone (loaded on selection)
    /sessions, /sessions/{session_id}     traces grouped by metadata.session_id
    /gateway                              gateway traffic dashboard

Example::

    server = create_app(store, ui=create_ui(store))
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from traceway.server.ui_gateway import GatewayPage
from traceway.server.ui_render import Templates
from traceway.server.ui_sessions import SessionPages
from traceway.server.ui_trace import TracePage, normalize_trace_id
from traceway.server.ui_traces import TracePages
from traceway.store import Store
from traceway.store.dashboard import Dashboard

__all__ = ["create_ui"]


def create_ui(store: Store) -> ASGIApp:
    """The web UI over ``store``, as an ASGI app to mount beside the API."""
    templates = Templates()
    dashboard = Dashboard.for_store(store)
    traces = TracePages(store, dashboard, templates)
    trace = TracePage(store, dashboard, templates)
    sessions = SessionPages(dashboard, templates)
    gateway = GatewayPage(dashboard, templates)

    def find(request: Request) -> Response:
        """Jump to a trace by id from the search box in the header."""
        trace_id = normalize_trace_id(request.query_params.get("trace_id", ""))
        if trace_id is None:
            return templates.page(
                request,
                "message.html",
                status=404,
                title="Not a trace id",
                message="Trace ids are 32 hexadecimal characters, optionally written tr-<hex>.",
            )
        return RedirectResponse(f"/traces/{trace_id}", 303)

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        html = templates.render(
            "message.html",
            request=None,
            section="",
            title="Page not found",
            message="Nothing lives at this address.",
        )
        await HTMLResponse(html, 404)(scope, receive, send)

    static = StaticFiles(packages=[("traceway.server", "static")])
    routes = [
        Route("/", traces.experiments),
        Route("/experiments/{experiment_id:int}", traces.traces),
        Route("/experiments/{experiment_id:int}/rows", traces.rows),
        Route("/experiments/{experiment_id:int}/actions", traces.actions, methods=["POST"]),
        Route("/find", find),
        Route("/traces/{trace_id}", trace.trace),
        Route("/traces/{trace_id}/tags", trace.tags, methods=["POST"]),
        Route("/traces/{trace_id}/spans/{span_id}", trace.span),
        Route("/sessions", sessions.sessions),
        Route("/sessions/{session_id:path}", sessions.session),
        Route("/gateway", gateway.dashboard),
        Mount("/static", static, name="static"),
    ]
    return Router(routes=routes, default=not_found)
