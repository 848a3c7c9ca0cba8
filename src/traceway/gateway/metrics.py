"""Prometheus metrics for the gateway: a small registry built for the hot path.

Recording a request is a tuple, a dict lookup and a handful of integer and
float additions on a per-series object; nothing is formatted until a scrape
calls :meth:`GatewayMetrics.render`.  (``prometheus_client`` would take a lock
and resolve label children on every observation; this registry belongs to one
event loop and needs neither.)  Series are bounded: past ``max_series`` label
sets, new models are counted under ``model="other"``, so clients sending
arbitrary model names cannot grow memory without limit.

Exposed (text format 0.0.4)::

    traceway_gateway_requests_total{provider,model,endpoint,status}   counter
    traceway_gateway_errors_total{provider,model,endpoint}            counter (status >= 400)
    traceway_gateway_request_duration_seconds{provider,model,endpoint} histogram
    traceway_gateway_tokens_total{provider,model,type="input"|"output"} counter
    traceway_gateway_cost_usd_total{provider,model}                   counter
    traceway_gateway_cache_requests_total{status}                     counter
    traceway_gateway_guardrail_verdicts_total{check,verdict}          counter

How to wire it
--------------
The ``Gateway`` owns one ``GatewayMetrics``.  When a request ends (where
``span.end`` is called in ``Gateway._proxy`` / ``_relay``): ``record_request``
with the answering provider (``outcome.provider``, ``"none"`` when routing
failed), the model (request body's, or the answer's), the endpoint, the status
sent, the latency from the start of ``_proxy``, the answer's usage tokens and
``cost_usd`` (:mod:`traceway.gateway.pricing`).  After the cache lookup:
``record_cache(lookup.status)``; after each guardrail check:
``record_guardrail(check_id, verdict)``.  Serve ``metrics_app(metrics)`` at
``GET /metrics`` (mounted beside ``/v1`` by the standalone gateway and the server).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

__all__ = ["DEFAULT_LATENCY_BUCKETS", "GatewayMetrics", "metrics_app"]

#: Seconds: from a cache hit (sub-millisecond) to a long generation.
DEFAULT_LATENCY_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_OTHER = "other"
_PREFIX = "traceway_gateway_"


class _Series:
    """Everything recorded for one (provider, model, endpoint)."""

    __slots__ = (
        "buckets",
        "cost",
        "count",
        "errors",
        "input_tokens",
        "labels",
        "output_tokens",
        "statuses",
        "sum",
    )

    def __init__(self, labels: str, bucket_count: int) -> None:
        self.labels = labels  # formatted once: rendering reuses it for every line
        self.count = 0
        self.errors = 0
        self.sum = 0.0
        # Per bucket (not cumulative: one increment per observation); the last is +Inf.
        self.buckets = [0] * (bucket_count + 1)
        self.statuses: dict[int, int] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = 0.0


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return repr(value)


def _labels(**labels: str) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())


class GatewayMetrics:
    """Counters and histograms of the gateway, rendered in Prometheus' text format.

    >>> metrics = GatewayMetrics()
    >>> metrics.record_request("openai", "gpt-4o", "chat/completions", 200, 0.42, 10, 5, 0.0001)
    >>> b'traceway_gateway_requests_total{provider="openai"' in metrics.render()
    True
    """

    def __init__(
        self,
        *,
        latency_buckets: Iterable[float] = DEFAULT_LATENCY_BUCKETS,
        max_series: int = 2000,
    ) -> None:
        self._bounds = tuple(sorted(latency_buckets))
        self.max_series = max_series
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._cache: dict[str, int] = {}
        self._guardrails: dict[tuple[str, str], int] = {}

    def _new_series(self, key: tuple[str, str, str]) -> _Series:
        if len(self._series) >= self.max_series:
            provider, _, endpoint = key
            key = (provider, _OTHER, endpoint)
            series = self._series.get(key)
            if series is not None:
                return series
        provider, model, endpoint = key
        labels = _labels(provider=provider, model=model, endpoint=endpoint)
        series = self._series[key] = _Series(labels, len(self._bounds))
        return series

    def record_request(
        self,
        provider: str | None,
        model: str | None,
        endpoint: str,
        status: int,
        latency_s: float,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cost_usd: float | None = None,
    ) -> None:
        """Count one answered request (call once per request, with the status sent)."""
        key = (provider or "none", model or "none", endpoint)
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key)
        series.count += 1
        statuses = series.statuses
        statuses[status] = statuses.get(status, 0) + 1
        if status >= 400:
            series.errors += 1
        series.sum += latency_s
        series.buckets[bisect_left(self._bounds, latency_s)] += 1
        if input_tokens:
            series.input_tokens += input_tokens
        if output_tokens:
            series.output_tokens += output_tokens
        if cost_usd:
            series.cost += cost_usd

    def record_cache(self, status: str) -> None:
        """Count one cache outcome (a :class:`~traceway.gateway.cache.CacheStatus`)."""
        key = str(status)
        self._cache[key] = self._cache.get(key, 0) + 1

    def record_guardrail(self, check_id: str, verdict: bool | str) -> None:
        """Count one guardrail verdict (``True``/``False`` are recorded as ``pass``/``fail``)."""
        if verdict is True:
            verdict = "pass"
        elif verdict is False:
            verdict = "fail"
        key = (check_id, verdict)
        guardrails = self._guardrails
        if key not in guardrails and len(guardrails) >= self.max_series:
            key = (_OTHER, verdict)
        guardrails[key] = guardrails.get(key, 0) + 1

    def render(self) -> bytes:
        """Every metric in the Prometheus text exposition format (version 0.0.4)."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {_PREFIX}{name} {help_text}")
            out.append(f"# TYPE {_PREFIX}{name} {kind}")

        series = sorted(self._series.items())
        family("requests_total", "counter", "Requests answered, by HTTP status.")
        for _, s in series:
            for status, count in sorted(s.statuses.items()):
                out.append(f'{_PREFIX}requests_total{{{s.labels},status="{status}"}} {count}')
        family("errors_total", "counter", "Requests answered with an HTTP status of 400 or more.")
        for _, s in series:
            out.append(f"{_PREFIX}errors_total{{{s.labels}}} {s.errors}")
        family("request_duration_seconds", "histogram", "Time from request to complete answer.")
        bounds = [_number(bound) for bound in (*self._bounds, float("inf"))]
        for _, s in series:
            labels = s.labels
            cumulative = 0
            for le, count in zip(bounds, s.buckets, strict=True):
                cumulative += count
                out.append(
                    f'{_PREFIX}request_duration_seconds_bucket{{{labels},le="{le}"}} {cumulative}'
                )
            out.append(f"{_PREFIX}request_duration_seconds_sum{{{labels}}} {_number(s.sum)}")
            out.append(f"{_PREFIX}request_duration_seconds_count{{{labels}}} {s.count}")
        family("tokens_total", "counter", "Tokens in prompts (input) and answers (output).")
        tokens: dict[tuple[str, str], list[int]] = {}
        costs: dict[tuple[str, str], float] = {}
        for (provider, model, _), s in series:
            pair = tokens.setdefault((provider, model), [0, 0])
            pair[0] += s.input_tokens
            pair[1] += s.output_tokens
            costs[(provider, model)] = costs.get((provider, model), 0.0) + s.cost
        for (provider, model), (inputs, outputs) in tokens.items():
            for kind, count in (("input", inputs), ("output", outputs)):
                labels = _labels(provider=provider, model=model, type=kind)
                out.append(f"{_PREFIX}tokens_total{{{labels}}} {count}")
        family(
            "cost_usd_total", "counter", "Cost of the answers in US dollars, by the price table."
        )
        for (provider, model), cost in costs.items():
            labels = _labels(provider=provider, model=model)
            out.append(f"{_PREFIX}cost_usd_total{{{labels}}} {_number(cost)}")
        family("cache_requests_total", "counter", "Response cache outcomes.")
        for outcome, count in sorted(self._cache.items()):
            out.append(f"{_PREFIX}cache_requests_total{{{_labels(status=outcome)}}} {count}")
        family("guardrail_verdicts_total", "counter", "Guardrail check verdicts.")
        for (check, verdict), count in sorted(self._guardrails.items()):
            labels = _labels(check=check, verdict=verdict)
            out.append(f"{_PREFIX}guardrail_verdicts_total{{{labels}}} {count}")
        out.append("")
        return "\n".join(out).encode()


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def metrics_app(metrics: GatewayMetrics) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A pure ASGI app answering ``GET`` (and ``HEAD``) with ``metrics.render()``.

    Mount it at ``/metrics``; other methods get 405.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 405,
                    "headers": [(b"allow", b"GET, HEAD"), (b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        body = metrics.render()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", CONTENT_TYPE),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    return app
