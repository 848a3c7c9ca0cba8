"""The router on its own: strategies, retries, backoff, timeouts and breakers, no HTTP."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from traceway.gateway.breaker import BreakerBoard
from traceway.gateway.config import compile_config
from traceway.gateway.errors import GatewayError
from traceway.gateway.headers import RequestOptions
from traceway.gateway.http_client import HttpClient
from traceway.gateway.providers.base import (
    CHAT,
    Provider,
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
    error_response,
)
from traceway.gateway.providers.registry import ProviderRegistry
from traceway.gateway.router import Call, Outcome, Router, retry_after_seconds, select_weighted
from traceway.gateway.ssrf import HostGuard
from traceway.gateway.tracing import RequestSpan


class Scripted(Provider):
    """Answers each request with the next status from its script (200 once it runs out)."""

    name: ClassVar[str] = "scripted"

    def __init__(self, *script: int | Exception, headers: dict[str, str] | None = None) -> None:
        self.script = list(script)
        self.headers = headers or {}
        self.seen: list[UpstreamRequest] = []

    async def send(self, http: HttpClient, request: UpstreamRequest) -> UpstreamResponse:
        self.seen.append(request)
        step = self.script.pop(0) if self.script else 200
        if isinstance(step, Exception):
            raise step
        if step == 200:
            return UpstreamResponse(200, {}, b'{"ok":true}')
        return error_response(step, f"scripted {step}", headers=self.headers)


def named(name: str, provider: Scripted) -> Scripted:
    provider.name = name  # type: ignore[misc]
    return provider


class Harness:
    def __init__(self, *providers: Provider, rand: Callable[[], float] = lambda: 0.5) -> None:
        self.sleeps: list[float] = []
        self.now = 0.0
        self.breakers = BreakerBoard(
            failure_threshold=2, window_s=60, cooldown_s=30, clock=self.clock
        )

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.router = Router(
            ProviderRegistry(providers),
            http=lambda: None,  # type: ignore[arg-type,return-value]
            guard=HostGuard(["127.0.0.1"]),
            breakers=self.breakers,
            backoff_base_ms=500,
            backoff_max_ms=1_500,
            max_retry_after_s=5,
            sleep=sleep,
            rand=rand,
        )

    def clock(self) -> float:
        return self.now

    def run(
        self, config: dict[str, Any], *, options: RequestOptions | None = None, **body: Any
    ) -> Outcome:
        route = compile_config(config, source="inline")
        call = Call(
            CHAT,
            {"model": "m", **body},
            options or RequestOptions(),
            route,
            RequestSpan("trace"),
        )
        return asyncio.run(self.router.run(call))


def summary(outcome: Outcome) -> tuple[int, str | None, str, int]:
    return outcome.response.status, outcome.provider, outcome.option_index, outcome.retries


def fallback(*providers: str, **strategy: Any) -> dict[str, Any]:
    return {
        "strategy": {"mode": "fallback", **strategy},
        "targets": [{"provider": p} for p in providers],
    }


def test_select_weighted_follows_3_to_1_weights_over_4000_requests() -> None:
    rng = random.Random(20240601)
    picks = [select_weighted([3, 1], rng.random()) for _ in range(4000)]
    share = picks.count(0) / len(picks)
    assert 0.72 <= share <= 0.78
    assert set(picks) == {0, 1}


def test_select_weighted_skips_zero_weights() -> None:
    assert [select_weighted([0, 2, 0, 2], p) for p in (0.0, 0.49, 0.5, 0.999)] == [1, 1, 3, 3]


def test_fallback_moves_on_after_a_failure() -> None:
    first, second = named("a", Scripted(500)), named("b", Scripted())
    outcome = Harness(first, second).run(fallback("a", "b"))
    assert summary(outcome) == (200, "b", "config.targets[1]", 0)
    assert (len(first.seen), len(second.seen)) == (1, 1)


def test_fallback_only_on_the_listed_status_codes() -> None:
    first, second = named("a", Scripted(400)), named("b", Scripted())
    outcome = Harness(first, second).run(fallback("a", "b", on_status_codes=[429, 500]))
    assert summary(outcome) == (400, "a", "config.targets[0]", 0)
    assert second.seen == []


def test_fallback_returns_the_last_failure_when_every_target_fails() -> None:
    outcome = Harness(named("a", Scripted(500)), named("b", Scripted(503))).run(fallback("a", "b"))
    assert summary(outcome) == (503, "b", "config.targets[1]", 0)


def test_retry_with_exponential_backoff_and_full_jitter() -> None:
    provider = named("a", Scripted(500, 502, 503, 504))
    harness = Harness(provider, rand=lambda: 0.5)
    outcome = harness.run({"provider": "a", "retry": {"attempts": 3}})
    assert summary(outcome) == (504, "a", "config", 3)
    # random() * min(max, base * 2**n): 0.5 * 500 ms, 1000 ms, then capped at 1500 ms.
    assert harness.sleeps == [0.25, 0.5, 0.75]


def test_retry_stops_at_success_and_skips_unlisted_codes() -> None:
    harness = Harness(named("a", Scripted(429)))
    assert summary(harness.run({"provider": "a", "retry": {"attempts": 3}})) == (
        200,
        "a",
        "config",
        1,
    )
    no_retry = Harness(named("a", Scripted(400)))
    outcome = no_retry.run({"provider": "a", "retry": {"attempts": 3}})
    assert summary(outcome) == (400, "a", "config", 0)
    assert no_retry.sleeps == []


def test_retry_honours_retry_after_when_asked() -> None:
    harness = Harness(named("a", Scripted(429, 429, headers={"retry-after": "2"})))
    config = {"provider": "a", "retry": {"attempts": 2, "use_retry_after_header": True}}
    assert summary(harness.run(config))[0] == 200
    assert harness.sleeps == [2.0, 2.0]
    capped = Harness(named("a", Scripted(429, headers={"retry-after": "3600"})))
    capped.run(config)
    assert capped.sleeps == [5.0]


def test_retry_after_parsing() -> None:
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_seconds({}) is None


def test_loadbalance_uses_the_weights() -> None:
    a, b = named("a", Scripted()), named("b", Scripted())
    config = {
        "strategy": {"mode": "loadbalance"},
        "targets": [{"provider": "a", "weight": 3}, {"provider": "b", "weight": 1}],
    }
    assert Harness(a, b, rand=lambda: 0.7).run(config).provider == "a"
    assert Harness(a, b, rand=lambda: 0.8).run(config).provider == "b"


def test_conditional_routing_on_metadata_and_params() -> None:
    providers = (named("paid", Scripted()), named("free", Scripted()), named("big", Scripted()))
    config = {
        "strategy": {
            "mode": "conditional",
            "conditions": [
                {"query": {"metadata.plan": {"$eq": "paid"}}, "then": "paid-target"},
                {"query": {"params.max_tokens": {"$gte": 1000}}, "then": "big-target"},
            ],
            "default": "free-target",
        },
        "targets": [
            {"name": "paid-target", "provider": "paid"},
            {"name": "free-target", "provider": "free"},
            {"name": "big-target", "provider": "big"},
        ],
    }
    harness = Harness(*providers)
    paid = harness.run(config, options=RequestOptions(metadata={"plan": "paid"}))
    big = harness.run(config, max_tokens=4000)
    free = harness.run(config, options=RequestOptions(metadata={"plan": "free"}))
    assert [paid.provider, big.provider, free.provider] == ["paid", "big", "free"]
    assert big.option_index == "config.targets[2]"


def test_conditional_without_a_match_or_default_is_a_400() -> None:
    config = {
        "strategy": {
            "mode": "conditional",
            "conditions": [{"query": {"metadata.plan": "paid"}, "then": "t"}],
        },
        "targets": [{"name": "t", "provider": "a"}],
    }
    with pytest.raises(GatewayError) as raised:
        Harness(named("a", Scripted())).run(config)
    assert (raised.value.status, raised.value.code) == (400, "no_route")


def test_nested_strategies_report_the_nested_option_index() -> None:
    config = {
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "a"},
            {
                "strategy": {"mode": "fallback"},
                "retry": {"attempts": 1},
                "targets": [{"provider": "b"}, {"provider": "c"}],
            },
        ],
    }
    harness = Harness(
        named("a", Scripted(500)), named("b", Scripted(500, 500)), named("c", Scripted())
    )
    outcome = harness.run(config)
    assert summary(outcome) == (200, "c", "config.targets[1].targets[1]", 0)
    assert len(harness.sleeps) == 1  # b was retried once (inherited retry), a was not


def test_timeouts_and_connection_failures_become_408_and_502() -> None:
    class Slow(Provider):
        name = "slow"

        async def send(self, http: HttpClient, request: UpstreamRequest) -> UpstreamResponse:
            await asyncio.sleep(5)
            raise AssertionError("not reached")

    outcome = Harness(Slow()).run({"provider": "slow", "request_timeout": 20})
    assert outcome.response.status == 408
    assert outcome.response.json()["error"]["code"] == "request_timeout"
    down = Harness(named("a", Scripted(UpstreamError(502, "refused", code="upstream_unreachable"))))
    response = down.run({"provider": "a"}).response
    assert (response.status, response.json()["error"]["code"]) == (502, "upstream_unreachable")


def test_an_open_circuit_is_skipped_by_fallback_then_probed_after_the_cool_down() -> None:
    a = named("a", Scripted(500, 500, 500))
    b = named("b", Scripted())
    harness = Harness(a, b)
    config = fallback("a", "b")
    for _ in range(2):  # two failures open a's circuit (threshold 2)
        assert harness.run(config).provider == "b"
    assert len(a.seen) == 2
    skipped = harness.run(config)
    assert summary(skipped) == (200, "b", "config.targets[1]", 0)
    assert len(a.seen) == 2  # not tried while open
    harness.now = 31.0  # cool-down over: one probe goes to a, fails, reopens
    harness.run(config)
    assert len(a.seen) == 3
    harness.run(config)
    assert len(a.seen) == 3
    harness.now = 62.0  # the next probe succeeds and closes the circuit
    assert harness.run(config).provider == "a"
    assert harness.run(config).provider == "a"


def test_a_single_target_with_an_open_circuit_answers_503() -> None:
    harness = Harness(named("a", Scripted(500, 500)))
    for _ in range(2):
        harness.run({"provider": "a"})
    response = harness.run({"provider": "a"}).response
    assert response.status == 503
    assert response.json()["error"]["code"] == "circuit_open"


def test_loadbalance_avoids_a_target_whose_circuit_is_open() -> None:
    a, b = named("a", Scripted(500, 500)), named("b", Scripted())
    harness = Harness(a, b, rand=lambda: 0.1)  # always lands on a first
    config = {
        "strategy": {"mode": "loadbalance"},
        "targets": [{"provider": "a"}, {"provider": "b"}],
    }
    harness.run(config)
    harness.run(config)
    assert harness.run(config).provider == "b"


def test_unknown_provider_and_missing_provider_are_400() -> None:
    harness = Harness()
    with pytest.raises(GatewayError, match="unknown provider 'nope'"):
        harness.run({"provider": "nope"})
    with pytest.raises(GatewayError, match="no provider"):
        harness.run({"retry": {"attempts": 1}})


def test_the_provider_header_fills_targets_without_a_provider() -> None:
    provider = named("a", Scripted())
    outcome = Harness(provider).run(
        {"retry": {"attempts": 1}},
        options=RequestOptions(provider="a", api_key="sk-h", custom_host="http://127.0.0.1:9"),
    )
    assert outcome.provider == "a"
    assert (provider.seen[0].api_key, provider.seen[0].base_url) == ("sk-h", "http://127.0.0.1:9")
