"""Rendering the web UI's Jinja templates, shipped inside the package.

Pages are plain server-rendered HTML.  Every response carries a Content Security
Policy that allows only this server's own scripts and styles, so a page can
never pull a font, script or image from the internet, and a trace payload that
smuggles markup into a span cannot run script.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from traceway.server.ui_format import FILTERS, relative_time
from traceway.server.ui_spans import SPAN_ICONS

__all__ = ["SECURITY_HEADERS", "Templates", "now_ms", "query_url"]

#: Inline ``style`` attributes place waterfall bars; inline script is never allowed.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def query_url(path: str, params: Mapping[str, Any], **changes: Any) -> str:
    """``path`` with ``params`` updated by ``changes``; empty values are left out.

    A query string already on ``path`` is kept, under ``params`` and ``changes``.
    """
    path, _, existing = path.partition("?")
    merged = {**dict(parse_qsl(existing)), **params, **changes}
    query = urlencode({k: v for k, v in merged.items() if v not in (None, "")}, doseq=True)
    return f"{path}?{query}" if query else path


class Templates:
    """The package's templates, with the UI's filters and globals installed."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("traceway.server", "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters.update(FILTERS)
        self.env.globals.update(
            span_icons=SPAN_ICONS,
            relative_time=relative_time,
            query_url=query_url,
        )

    def render(self, name: str, **context: Any) -> str:
        context.setdefault("now_ms", now_ms())
        return self.env.get_template(name).render(**context)

    def page(
        self, request: Request, name: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """A whole page, or a fragment when ``name`` starts with an underscore."""
        context.setdefault("request", request)
        context.setdefault("section", "")
        return HTMLResponse(self.render(name, **context), status, headers=SECURITY_HEADERS)
