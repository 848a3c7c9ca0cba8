"""The gateway dashboard: traffic, errors, latency, tokens, cost, cache and guardrails."""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from traceway.server.ui_charts import Series, time_chart
from traceway.server.ui_format import cost, count, duration_ms
from traceway.server.ui_render import Templates, now_ms
from traceway.store.dashboard import Dashboard, GatewayStats

__all__ = ["GATEWAY_RANGES", "GatewayPage", "charts"]

#: Range key → (label, length in ms, number of buckets, strftime of bucket labels).
GATEWAY_RANGES: dict[str, tuple[str, int, int, str]] = {
    "1h": ("Last hour", 3_600_000, 30, "%H:%M"),
    "24h": ("Last 24 hours", 86_400_000, 48, "%H:%M"),
    "7d": ("Last 7 days", 7 * 86_400_000, 42, "%a %H:00"),
    "30d": ("Last 30 days", 30 * 86_400_000, 30, "%b %d"),
}
DEFAULT_RANGE = "24h"


def charts(stats: GatewayStats, label_format: str) -> dict[str, Markup]:
    """The four time charts of the dashboard as inline SVG."""
    labels = [
        datetime.fromtimestamp(b.start_ms / 1000, UTC).strftime(label_format) for b in stats.buckets
    ]
    groups = [b.group for b in stats.buckets]
    return {
        "requests": time_chart(
            labels,
            [
                Series("succeeded", [g.requests - g.errors for g in groups], "ok"),
                Series("failed", [g.errors for g in groups], "err"),
            ],
            kind="bars",
            fmt=count,
            title="Requests over time",
            integer=True,
        ),
        "latency": time_chart(
            labels,
            [
                Series("p50", [g.p50_ms for g in groups], "s1"),
                Series("p95", [g.p95_ms for g in groups], "s2"),
            ],
            fmt=duration_ms,
            title="Latency percentiles over time",
        ),
        "tokens": time_chart(
            labels,
            [
                Series("input tokens", [g.input_tokens for g in groups], "s1"),
                Series("output tokens", [g.output_tokens for g in groups], "s3"),
            ],
            kind="bars",
            fmt=count,
            title="Tokens over time",
            integer=True,
        ),
        "cost": time_chart(
            labels,
            [Series("cost", [g.cost_usd for g in groups], "s4")],
            kind="bars",
            fmt=cost,
            title="Cost over time",
        ),
    }


class GatewayPage:
    def __init__(self, dashboard: Dashboard, templates: Templates) -> None:
        self._dashboard = dashboard
        self._templates = templates

    def dashboard(self, request: Request) -> Response:
        key = request.query_params.get("range", DEFAULT_RANGE)
        if key not in GATEWAY_RANGES:
            key = DEFAULT_RANGE
        _, length, buckets, label_format = GATEWAY_RANGES[key]
        until = now_ms()
        # Align buckets to whole bucket lengths so refreshing does not shift the bars.
        bucket_ms = length // buckets
        until = (until // bucket_ms + 1) * bucket_ms
        stats = self._dashboard.gateway_stats(
            since_ms=until - length, until_ms=until, buckets=buckets
        )
        return self._templates.page(
            request,
            "gateway.html",
            section="gateway",
            stats=stats,
            range_key=key,
            ranges=GATEWAY_RANGES,
            charts=charts(stats, label_format) if stats.total.requests else {},
        )
