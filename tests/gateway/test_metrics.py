"""Gateway metrics in Prometheus' text exposition format."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from traceway.gateway.metrics import GatewayMetrics, metrics_app

Sample = tuple[str, tuple[tuple[str, str], ...]]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')
_ESCAPE = re.compile(r"\\(.)")


def _unescape(match: re.Match[str]) -> str:
    return "\n" if match.group(1) == "n" else match.group(1)


def parse(text: str) -> tuple[dict[str, str], dict[Sample, float]]:
    """A strict little parser of the text format: families' types, and every sample."""
    types: dict[str, str] = {}
    samples: dict[Sample, float] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram") and name not in types
            types[name] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, raw_labels, value = match.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"{name} has no # TYPE line before it"
        labels: list[tuple[str, str]] = []
        rest = raw_labels or ""
        while rest:
            label = _LABEL.match(rest)
            assert label, f"bad labels in {line!r}"
            labels.append((label.group(1), _ESCAPE.sub(_unescape, label.group(2))))
            rest = rest[label.end() :]
        key = (name, tuple(sorted(labels)))
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(value)
    return types, samples


def labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


def test_requests_render_as_parseable_counters_and_histograms() -> None:
    metrics = GatewayMetrics(latency_buckets=(0.1, 1.0))
    metrics.record_request("openai", "gpt-4o", "chat/completions", 200, 0.05, 100, 20, 0.00045)
    metrics.record_request("openai", "gpt-4o", "chat/completions", 200, 0.5, 50, 10, 0.00025)
    metrics.record_request("openai", "gpt-4o", "chat/completions", 429, 1.0)
    metrics.record_request("mock", "echo", "embeddings", 200, 2.0, 7, None, 0.0)
    metrics.record_cache("HIT")
    metrics.record_cache("MISS")
    metrics.record_cache("HIT")
    metrics.record_guardrail("pii", False)
    metrics.record_guardrail("pii", True)
    metrics.record_guardrail("contains-word", "fail")

    types, samples = parse(metrics.render().decode())

    prefix = "traceway_gateway_"
    gpt = {"provider": "openai", "model": "gpt-4o", "endpoint": "chat/completions"}
    echo = {"provider": "mock", "model": "echo", "endpoint": "embeddings"}
    assert types == {
        prefix + "requests_total": "counter",
        prefix + "errors_total": "counter",
        prefix + "request_duration_seconds": "histogram",
        prefix + "tokens_total": "counter",
        prefix + "cost_usd_total": "counter",
        prefix + "cache_requests_total": "counter",
        prefix + "guardrail_verdicts_total": "counter",
    }
    assert samples == {
        (prefix + "requests_total", labels(**echo, status="200")): 1,
        (prefix + "requests_total", labels(**gpt, status="200")): 2,
        (prefix + "requests_total", labels(**gpt, status="429")): 1,
        (prefix + "errors_total", labels(**echo)): 0,
        (prefix + "errors_total", labels(**gpt)): 1,
        (prefix + "request_duration_seconds_bucket", labels(**echo, le="0.1")): 0,
        (prefix + "request_duration_seconds_bucket", labels(**echo, le="1")): 0,
        (prefix + "request_duration_seconds_bucket", labels(**echo, le="+Inf")): 1,
        (prefix + "request_duration_seconds_sum", labels(**echo)): 2.0,
        (prefix + "request_duration_seconds_count", labels(**echo)): 1,
        (prefix + "request_duration_seconds_bucket", labels(**gpt, le="0.1")): 1,
        (prefix + "request_duration_seconds_bucket", labels(**gpt, le="1")): 3,  # le is <=
        (prefix + "request_duration_seconds_bucket", labels(**gpt, le="+Inf")): 3,
        (prefix + "request_duration_seconds_sum", labels(**gpt)): 1.55,
        (prefix + "request_duration_seconds_count", labels(**gpt)): 3,
        (prefix + "tokens_total", labels(provider="mock", model="echo", type="input")): 7,
        (prefix + "tokens_total", labels(provider="mock", model="echo", type="output")): 0,
        (prefix + "tokens_total", labels(provider="openai", model="gpt-4o", type="input")): 150,
        (prefix + "tokens_total", labels(provider="openai", model="gpt-4o", type="output")): 30,
        (prefix + "cost_usd_total", labels(provider="mock", model="echo")): 0,
        (prefix + "cost_usd_total", labels(provider="openai", model="gpt-4o")): 0.0007,
        (prefix + "cache_requests_total", labels(status="HIT")): 2,
        (prefix + "cache_requests_total", labels(status="MISS")): 1,
        (prefix + "guardrail_verdicts_total", labels(check="contains-word", verdict="fail")): 1,
        (prefix + "guardrail_verdicts_total", labels(check="pii", verdict="fail")): 1,
        (prefix + "guardrail_verdicts_total", labels(check="pii", verdict="pass")): 1,
    }


def test_label_values_are_escaped() -> None:
    metrics = GatewayMetrics()
    model = 'odd "model"\\name\nwith newline'
    metrics.record_request("openai", model, "chat/completions", 200, 0.1)
    _, samples = parse(metrics.render().decode())
    key = (
        "traceway_gateway_requests_total",
        labels(provider="openai", model=model, endpoint="chat/completions", status="200"),
    )
    assert samples[key] == 1


def test_series_are_bounded() -> None:
    metrics = GatewayMetrics(max_series=2)
    for i in range(5):
        metrics.record_request("openai", f"model-{i}", "chat/completions", 200, 0.1)
    _, samples = parse(metrics.render().decode())
    requests = {
        dict(key[1])["model"]: value
        for key, value in samples.items()
        if key[0] == "traceway_gateway_requests_total"
    }
    assert requests == {"model-0": 1, "model-1": 1, "other": 3}


def test_an_empty_registry_still_renders_every_family() -> None:
    types, samples = parse(GatewayMetrics().render().decode())
    assert (len(types), samples) == (7, {})


def call(app: Any, method: str) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/metrics", "headers": []}
    asyncio.run(app(scope, receive, send))
    start, body = sent
    return start["status"], dict(start["headers"]), body["body"]


def test_metrics_app_serves_the_text_format() -> None:
    metrics = GatewayMetrics()
    metrics.record_cache("HIT")
    app = metrics_app(metrics)
    status, headers, body = call(app, "GET")
    assert (status, headers[b"content-type"]) == (200, b"text/plain; version=0.0.4; charset=utf-8")
    assert body == metrics.render()
    assert int(headers[b"content-length"]) == len(body)
    assert call(app, "HEAD")[0::2] == (200, b"")
    assert call(app, "POST") == (405, {b"allow": b"GET, HEAD", b"content-length": b"0"}, b"")
