"""Limits on the real Redis: replicas share counters, budgets hold, keys expire, failures."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from traceway.gateway.errors import GatewayError
from traceway.gateway.limits import Limiter, LimitPolicy

pytestmark = pytest.mark.redis

REDIS_URL = os.environ.get("TRACEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NOON = datetime(2025, 3, 10, 12, 0, 40, tzinfo=UTC).timestamp()


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    value = f"traceway-test:{uuid.uuid4().hex}:"
    yield value

    async def clean() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(match=f"{value}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    asyncio.run(clean())


def policy(prefix: str, rules: list[dict[str, Any]], **extra: Any) -> LimitPolicy:
    return LimitPolicy(rules=rules, redis_url=REDIS_URL, key_prefix=prefix, **extra)


def test_two_limiters_on_one_redis_share_counters(prefix: str) -> None:
    rules = [{"scope": "metadata.user_id", "requests_per_minute": 3, "tokens_per_minute": 500}]

    async def go() -> list[Any]:
        first = Limiter(policy(prefix, rules), clock=lambda: NOON)
        second = Limiter(policy(prefix, rules), clock=lambda: NOON)
        user = {"metadata.user_id": "u1"}
        try:
            admitted = [
                await first.check(user) is None,
                await second.check(user) is None,
                await first.check(user) is None,
            ]
            refusals = [await second.check(user), await first.check(user)]
            other = {"metadata.user_id": "u2"}
            assert await first.check(other) is None
            await first.record(other, tokens=500, cost_usd=0.0)
            token_refusal = await second.check(other)
        finally:
            await first.close()
            await second.close()
        return [
            admitted,
            [r and r.message for r in refusals],
            token_refusal and token_refusal.message,
        ]

    assert asyncio.run(go()) == [
        [True, True, True],
        ["rate limit exceeded: 3 requests per minute for metadata.user_id=u1"] * 2,
        "rate limit exceeded: 500 tokens per minute for metadata.user_id=u2",
    ]


def test_a_shared_budget_stops_within_one_request(prefix: str) -> None:
    rules = [{"scope": "gateway_key", "budget_usd": 1, "budget_period": "total"}]

    async def go() -> tuple[float, str | None, float]:
        replicas = [Limiter(policy(prefix, rules), clock=lambda: NOON) for _ in range(2)]
        key = {"gateway_key": "gk-live-9876"}
        spent = 0.0
        turn = 0
        try:
            while (refusal := await replicas[turn % 2].check(key)) is None:
                await replicas[turn % 2].record(key, tokens=10, cost_usd=0.3)
                spent += 0.3
                turn += 1
        finally:
            for replica in replicas:
                await replica.close()
        client = aioredis.Redis.from_url(REDIS_URL)
        stored = [
            float(await client.get(k)) async for k in client.scan_iter(match=f"{prefix}usd:*")
        ]
        await client.aclose()
        return spent, refusal.message, sum(stored)

    spent, message, stored = asyncio.run(go())
    assert spent == pytest.approx(1.2)
    assert stored == pytest.approx(1.2)
    assert message == "budget exceeded: 1 USD in total for gateway_key=...9876"


def test_keys_hide_subjects_and_expire(prefix: str) -> None:
    rules = [
        {
            "scope": "gateway_key",
            "requests_per_minute": 5,
            "tokens_per_minute": 100,
            "budget_usd": 3,
            "budget_period": "day",
        },
        {"scope": "virtual_key", "budget_usd": 3, "budget_period": "total"},
    ]

    async def go() -> dict[str, int]:
        limits = Limiter(policy(prefix, rules), clock=lambda: NOON)
        subjects = {"gateway_key": "gk-secret-value", "virtual_key": "vk-secret-value"}
        await limits.check(subjects)
        await limits.record(subjects, tokens=7, cost_usd=0.5)
        await limits.close()
        client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        ttls = {}
        async for key in client.scan_iter(match=f"{prefix}*"):
            assert "secret" not in key
            kind = key[len(prefix) :].split(":")[0] + ":" + key.split(":")[-1]
            ttls[kind] = await client.ttl(key)
        await client.aclose()
        return ttls

    window = str(int(NOON // 60))
    ttls = asyncio.run(go())
    assert sorted(ttls) == sorted(
        [f"requests:{window}", f"tokens:{window}", "usd:2025-03-10", "usd:total"]
    )
    assert 0 < ttls[f"requests:{window}"] <= 120
    assert 0 < ttls[f"tokens:{window}"] <= 120
    assert 86_400 < ttls["usd:2025-03-10"] <= 86_400 + 43_160
    assert ttls["usd:total"] == -1  # a total budget never expires


def test_an_unreachable_redis_fails_open_or_closed_as_configured(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    rules = [{"scope": "gateway_key", "requests_per_minute": 1}]
    down = "redis://127.0.0.1:1/0"

    async def go() -> tuple[Any, GatewayError]:
        lenient = Limiter(LimitPolicy(rules=rules, redis_url=down, key_prefix=prefix))
        strict = Limiter(
            LimitPolicy(rules=rules, redis_url=down, key_prefix=prefix, fail_open=False)
        )
        try:
            let_through = await lenient.check({"gateway_key": "gk"})
            await lenient.record({"gateway_key": "gk"}, tokens=1, cost_usd=1.0)
            with pytest.raises(GatewayError) as raised:
                await strict.check({"gateway_key": "gk"})
        finally:
            await lenient.close()
            await strict.close()
        return let_through, raised.value

    with caplog.at_level(logging.WARNING, logger="traceway.gateway.limits"):
        let_through, error = asyncio.run(go())
    assert let_through is None
    assert (error.status, error.message) == (503, "the rate limiter is unavailable")
    assert "letting requests through" in caplog.text
