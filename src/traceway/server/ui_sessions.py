"""Sessions: traces that share ``metadata.session_id``, read as one conversation."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from traceway.server.ui_render import Templates, query_url
from traceway.store.dashboard import Dashboard

__all__ = ["SessionPages"]

PAGE_SIZE = 50


class SessionPages:
    def __init__(self, dashboard: Dashboard, templates: Templates) -> None:
        self._dashboard = dashboard
        self._templates = templates

    def sessions(self, request: Request) -> Response:
        params = request.query_params
        experiments = self._dashboard.experiments()
        raw = params.get("experiment", "")
        experiment_id = int(raw) if raw.isdigit() else None
        page = self._dashboard.list_sessions(
            experiment_id=experiment_id,
            page_size=PAGE_SIZE,
            page_token=params.get("page_token") or None,
        )
        base = {"experiment": "" if experiment_id is None else str(experiment_id)}
        return self._templates.page(
            request,
            "sessions.html",
            section="sessions",
            sessions=page.sessions,
            experiments=experiments,
            experiment_id=experiment_id,
            next_url=query_url("/sessions", base, page_token=page.next_token)
            if page.next_token
            else None,
            first_url=query_url("/sessions", base) if params.get("page_token") else None,
        )

    def session(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        turns = self._dashboard.session_turns(session_id)
        if not turns:
            return self._templates.page(
                request,
                "message.html",
                status=404,
                section="sessions",
                title="Session not found",
                message="No trace carries this session id.",
            )
        errors = sum(1 for t in turns if t.status == "ERROR")
        costs = [t.cost_usd for t in turns if t.cost_usd is not None]
        return self._templates.page(
            request,
            "session.html",
            section="sessions",
            session_id=session_id,
            turns=turns,
            errors=errors,
            total_tokens=sum(t.total_tokens for t in turns),
            cost=sum(costs) if costs else None,
        )
