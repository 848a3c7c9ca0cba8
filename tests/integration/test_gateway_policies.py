"""The gateway's policies inside a real ``traceway server``, read back through the REST API.

The upstream is the fake OpenAI server (it records what it receives), named as a
custom host: this module allows ``127.0.0.1`` as one before its server starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

import traceway
from tests.gateway.fakes.openai_server import FakeOpenAI
from tests.gateway.test_metrics import labels, parse
from tests.support.live_server import RunningServer
from traceway.gateway.settings import ALLOWED_HOSTS_ENV
from traceway.store.dashboard import Dashboard
from traceway.tracing import config

EMAIL, PHONE, CARD = "grace.hopper@example.org", "+1 415 555 0100", "5500 0000 0000 0004"
PII_TEXT = f"Reach me at {EMAIL} or {PHONE}; my card is {CARD}."


@pytest.fixture(scope="module", autouse=True)
def loopback_upstreams() -> Iterator[None]:
    """Let request configs name the fake upstream (set before the module's server starts)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ALLOWED_HOSTS_ENV, "127.0.0.1")
        yield


def client(server: RunningServer, config: dict[str, Any], **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1",
        api_key="sk-test",
        max_retries=0,
        default_headers={"x-traceway-config": json.dumps(config), **headers},
    )


def trace(server: RunningServer, trace_id: str) -> dict[str, Any]:
    """The stored trace (info and spans) through the REST API, once exported."""
    server.spans(trace_id)  # flushes the gateway's spans
    response = server.get(f"/api/traces/{trace_id}")
    assert response.status_code == 200, response.text
    stored: dict[str, Any] = response.json()
    return stored


def test_pii_is_absent_upstream_and_in_the_stored_trace(
    server: RunningServer, fake: FakeOpenAI, experiment: str
) -> None:
    config = {
        "provider": "openai",
        "custom_host": fake.url,
        "input_guardrails": [{"default.pii": {"redact": True}}],
    }
    with client(server, config) as openai_client:
        raw = openai_client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "You help customers."},
                {"role": "user", "content": PII_TEXT},
            ],
        )
    assert raw.status_code == 200
    (sent,) = fake.requests
    assert sent.body["messages"][1]["content"] == (
        "Reach me at [EMAIL_1] or [PHONE_1]; my card is [CREDIT_CARD_1]."
    )
    stored = trace(server, raw.headers["x-traceway-trace-id"])
    text = json.dumps(stored)
    for planted in (EMAIL, PHONE, CARD, "0000 0000"):
        assert planted not in json.dumps(sent.body)
        assert planted not in text
    kinds = sorted(
        (s["span_type"], s["attributes"].get("traceway.guardrail.verdict")) for s in stored["spans"]
    )
    assert kinds == [("CHAT_MODEL", None), ("GATEWAY", None), ("GUARDRAIL", "pass")]


def test_cost_is_counted_once_per_call(
    server: RunningServer, fake: FakeOpenAI, experiment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's autologged span and the gateway both report the call: one cost."""
    for name in ("TRACEWAY_TRACKING_URI", "TRACEWAY_EXPERIMENT", "TRACEWAY_SAMPLING_RATIO"):
        monkeypatch.delenv(name, raising=False)
    config.reset()
    traceway.openai.autolog()
    traceway.set_tracking_uri(server.url)
    traceway.set_experiment(experiment)
    try:
        with client(server, {"provider": "openai", "custom_host": fake.url}) as openai_client:
            openai_client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
        trace_id = traceway.get_last_active_trace_id()
        assert trace_id is not None and traceway.flush(timeout=10)
    finally:
        traceway.openai.autolog(disable=True)
        config.reset()
    stored = trace(server, trace_id)
    # gpt-4o-mini: 0.15 USD / 0.60 USD per million tokens; the fake answers 5 + 4 tokens.
    cost = (5 * 0.15 + 4 * 0.60) / 1e6
    by_id = {s["span_id"]: s for s in stored["spans"]}
    tree = sorted(
        [
            (
                s["span_type"],
                by_id[s["parent_span_id"]]["span_type"] if s["parent_span_id"] in by_id else None,
                s["cost_usd"],
                s["input_tokens"],
            )
            for s in stored["spans"]
        ],
        key=repr,
    )
    assert tree == [
        ("CHAT_MODEL", "GATEWAY", pytest.approx(cost), 5),  # the attempt that answered
        ("CHAT_MODEL", None, None, 5),  # the app's span: the same call, with usage
        ("GATEWAY", "CHAT_MODEL", None, None),
    ]
    assert stored["info"]["cost_usd"] == pytest.approx(cost)
    assert (stored["info"]["input_tokens"], stored["info"]["output_tokens"]) == (5, 4)


def test_cache_and_guardrail_outcomes_reach_the_dashboard_and_metrics(
    server: RunningServer, fake: FakeOpenAI, experiment: str
) -> None:
    config = {
        "provider": "openai",
        "custom_host": fake.url,
        "cache": {"mode": "simple", "max_age": 60},
        "input_guardrails": [{"default.contains": {"operator": "none", "words": ["zzz"]}}],
    }
    since_ms = int(time.time() * 1000) - 1000
    question = [{"role": "user", "content": f"cache me {experiment}"}]
    with client(server, config) as openai_client:
        statuses = [
            openai_client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=question
            ).headers["x-traceway-cache-status"]
            for _ in range(2)
        ]
    assert statuses == ["MISS", "HIT"]
    assert len(fake.requests) == 1
    gateway = server.traceway.gateway
    assert gateway is not None and gateway.tracer.force_flush(10)
    stats = Dashboard.for_store(server.traceway.store).gateway_stats(
        since_ms=since_ms, until_ms=int(time.time() * 1000) + 1000
    )
    cache, verdicts = dict(stats.cache), dict(stats.guardrails)
    # The server is shared with other tests of this module: at least this test's outcomes.
    assert [cache.get("MISS", 0) >= 1, cache.get("HIT", 0) >= 1, verdicts.get("pass", 0) >= 2] == [
        True,
        True,
        True,
    ]
    scraped = server.get("/metrics")
    assert scraped.status_code == 200
    _, samples = parse(scraped.text)
    for status in ("MISS", "HIT"):
        assert samples[("traceway_gateway_cache_requests_total", labels(status=status))] >= 1
    contains = labels(check="default.contains", verdict="pass")
    assert samples[("traceway_gateway_guardrail_verdicts_total", contains)] >= 2
