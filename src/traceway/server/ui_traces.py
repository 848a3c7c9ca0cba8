"""The experiments list and an experiment's traces table, with search and bulk edits.

The search box takes the REST API's filter language as typed; the quick filters
(status, span type, time range) are appended to it with ``AND``, after the typed
text, so a :class:`~traceway.store.FilterError` position points into what the
person typed.  Pages are keyset pages of the store's search; the table body is
also served alone (``/rows``) for the page's auto-refresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from traceway.server.ui_render import SECURITY_HEADERS, Templates, now_ms, query_url
from traceway.server.ui_spans import SPAN_ICONS
from traceway.store import FilterError, Store, StoreError
from traceway.store.dashboard import Dashboard
from traceway.store.records import Experiment

__all__ = ["RANGES", "SORTABLE", "TracePages", "TraceQuery", "parse_tags", "same_origin"]

PAGE_SIZE = 50
#: Quick time ranges: label and length in ms.
RANGES: dict[str, tuple[str, int]] = {
    "15m": ("Last 15 minutes", 15 * 60_000),
    "1h": ("Last hour", 3_600_000),
    "24h": ("Last 24 hours", 86_400_000),
    "7d": ("Last 7 days", 7 * 86_400_000),
    "30d": ("Last 30 days", 30 * 86_400_000),
}
STATUSES = ("OK", "ERROR", "IN_PROGRESS")
#: Columns the table sorts by, as the store's ``order_by`` fields.
SORTABLE = ("start_time", "name", "status", "duration_ms", "total_tokens", "cost_usd")


@dataclass(slots=True)
class TraceQuery:
    """What the traces page was asked for, read from its query string."""

    text: str = ""
    status: str = ""
    span_type: str = ""
    range: str = ""
    sort: str = "start_time"
    direction: str = "desc"
    page_token: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> TraceQuery:
        query = cls(
            text=params.get("filter", "").strip(),
            status=params.get("status", "").upper(),
            span_type=params.get("span_type", "").upper(),
            range=params.get("range", ""),
            sort=params.get("sort", "start_time"),
            direction=params.get("dir", "desc").lower(),
            page_token=params.get("page_token") or None,
        )
        # Unknown quick-filter values are ignored rather than turned into errors:
        # they only ever come from an edited URL.
        if query.status not in STATUSES:
            query.status = ""
        if query.span_type not in SPAN_ICONS:
            query.span_type = ""
        if query.range not in RANGES:
            query.range = ""
        if query.sort not in SORTABLE:
            query.sort = "start_time"
        if query.direction not in ("asc", "desc"):
            query.direction = "desc"
        return query

    def filter_string(self, now: int) -> str | None:
        parts = [self.text] if self.text else []
        if self.status:
            parts.append(f"status = '{self.status}'")
        if self.span_type:
            parts.append(f"span_type = '{self.span_type}'")
        if self.range:
            parts.append(f"start_time >= {now - RANGES[self.range][1]}")
        return " AND ".join(parts) or None

    @property
    def order_by(self) -> str:
        return f"{self.sort} {self.direction.upper()}"

    @property
    def params(self) -> dict[str, str]:
        """The query string of this view, without the page token."""
        return {
            "filter": self.text,
            "status": self.status,
            "span_type": self.span_type,
            "range": self.range,
            "sort": "" if self.sort == "start_time" else self.sort,
            "dir": "" if self.direction == "desc" else self.direction,
        }

    def sort_link(self, path: str, column: str) -> str:
        """The URL that sorts by ``column``; again on the same column flips the order."""
        direction = "desc"
        if column == self.sort:
            direction = "asc" if self.direction == "desc" else "desc"
        elif column == "name":
            direction = "asc"
        return query_url(
            path, self.params, sort="" if column == "start_time" else column, dir=direction
        )


@dataclass(slots=True)
class FilterProblem:
    message: str
    #: The typed text cut at the error, to mark the spot; ``None`` past the typed text.
    before: str | None
    at: str
    after: str


def parse_tags(text: str) -> dict[str, str]:
    """``"env=prod, team = search"`` → ``{"env": "prod", "team": "search"}``."""
    tags = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            tags[key.strip()] = value.strip()
    return tags


def same_origin(request: Request) -> bool:
    """Whether a form post came from this server's own pages (cross-site posts refused)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin.split("://", 1)[-1] == request.headers.get("host", "")


def safe_back(url: str | None, fallback: str) -> str:
    """A same-site path to return to after a post, never an open redirect."""
    if url and url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return fallback


class TracePages:
    def __init__(self, store: Store, dashboard: Dashboard, templates: Templates) -> None:
        self._store = store
        self._dashboard = dashboard
        self._templates = templates

    def experiments(self, request: Request) -> Response:
        experiments = sorted(
            self._store.list_experiments(),
            key=lambda e: (-(e.last_trace_ms or 0), e.name.lower()),
        )
        return self._templates.page(
            request, "experiments.html", section="experiments", experiments=experiments
        )

    def traces(self, request: Request) -> Response:
        experiment = self._experiment(request)
        if experiment is None:
            return self._missing(request)
        query = TraceQuery.from_params(request.query_params)
        traces, token, problem = self._search(experiment, query)
        path = f"/experiments/{experiment.experiment_id}"
        return self._templates.page(
            request,
            "traces.html",
            status=400 if problem else 200,
            section="experiments",
            experiment=experiment,
            query=query,
            path=path,
            traces=traces,
            next_url=query_url(path, query.params, page_token=token) if token else None,
            first_url=query_url(path, query.params) if query.page_token else None,
            rows_url=query_url(f"{path}/rows", query.params),
            problem=problem,
            ranges=RANGES,
            statuses=STATUSES,
            notice=request.query_params.get("notice", ""),
            back=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        )

    def rows(self, request: Request) -> Response:
        """The table body alone, for auto-refresh."""
        experiment = self._experiment(request)
        if experiment is None:
            return PlainTextResponse("no such experiment", 404)
        query = TraceQuery.from_params(request.query_params)
        traces, _, problem = self._search(experiment, query)
        if problem is not None:
            return PlainTextResponse(problem.message, 400)
        html = self._templates.render("_trace_rows.html", traces=traces, query=query)
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    async def actions(self, request: Request) -> Response:
        """Bulk delete or tag edit of the checked traces, then back to the table."""
        if not same_origin(request):
            return PlainTextResponse("cross-site form posts are refused", 403)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        experiment_id = request.path_params["experiment_id"]
        back = safe_back(_first(form, "back"), f"/experiments/{experiment_id}")
        ids = [i for i in form.get("trace_id", []) if i]
        action = _first(form, "action")
        if not ids:
            notice = "Select traces first."
        elif action == "delete":
            deleted = await run_in_threadpool(
                self._store.delete_traces, experiment_ids=[experiment_id], trace_ids=ids
            )
            notice = f"Deleted {deleted} trace{'s' if deleted != 1 else ''}."
        elif action == "tag":
            set_tags = parse_tags(_first(form, "set_tags") or "")
            delete = [k.strip() for k in (_first(form, "delete_tags") or "").split(",")]
            delete = [k for k in delete if k]
            for trace_id in ids:
                await run_in_threadpool(
                    self._store.set_trace_tags, trace_id, set=set_tags, delete=delete
                )
            notice = f"Updated the tags of {len(ids)} trace{'s' if len(ids) != 1 else ''}."
        else:
            return PlainTextResponse("unknown action", 400)
        back = _without(back, "notice")
        return RedirectResponse(query_url(back, {}, notice=notice), 303)

    def _experiment(self, request: Request) -> Experiment | None:
        return self._dashboard.experiment(request.path_params["experiment_id"])

    def _search(
        self, experiment: Experiment, query: TraceQuery
    ) -> tuple[list[Any], str | None, FilterProblem | None]:
        try:
            traces, token = self._store.search_traces(
                experiment_ids=[experiment.experiment_id],
                filter=query.filter_string(now_ms()),
                order_by=query.order_by,
                page_size=PAGE_SIZE,
                page_token=query.page_token,
            )
        except FilterError as exc:
            return [], None, _problem(query.text, exc)
        except StoreError as exc:
            return [], None, FilterProblem(str(exc), None, "", "")
        return list(traces), token, None

    def _missing(self, request: Request) -> Response:
        return self._templates.page(
            request,
            "message.html",
            status=404,
            title="Experiment not found",
            message="There is no experiment with this id. It may have been deleted.",
        )


def _problem(text: str, exc: FilterError) -> FilterProblem:
    position = getattr(exc, "position", None)
    if position is None or position > len(text) or not text:
        return FilterProblem(str(exc), None, "", "")
    return FilterProblem(
        message=str(exc),
        before=text[:position],
        at=text[position : position + 1],
        after=text[position + 1 :],
    )


def _first(form: dict[str, list[str]], key: str) -> str | None:
    values = form.get(key)
    return values[0] if values else None


def _without(url: str, key: str) -> str:
    path, _, query = url.partition("?")
    kept = {k: v for k, v in parse_qs(query).items() if k != key}
    return query_url(path, kept)
