"""Rate limits and budgets on the in-memory backend, with an injected clock."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from traceway.gateway._limit_backends import MemoryBackend
from traceway.gateway.limits import LimitDecision, Limiter, LimitPolicy


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


#: 2025-03-10 12:00:40 UTC: 40 s into a minute.
NOON = datetime(2025, 3, 10, 12, 0, 40, tzinfo=UTC).timestamp()


def limiter(rules: list[dict[str, Any]], clock: Clock) -> Limiter:
    return Limiter(LimitPolicy(rules=rules), clock=clock)


def admitted(limiter: Limiter, subjects: dict[str, str], times: int) -> list[bool]:
    async def go() -> list[bool]:
        return [await limiter.check(subjects) is None for _ in range(times)]

    return asyncio.run(go())


def test_requests_per_minute_use_a_sliding_window() -> None:
    clock = Clock(NOON)
    limits = limiter([{"scope": "metadata.user_id", "requests_per_minute": 2}], clock)
    user = {"metadata.user_id": "u1"}
    assert admitted(limits, user, 3) == [True, True, False]
    # 10 s into the next minute, 5/6 of the last minute's 2 requests still count.
    clock.now = NOON + 30
    assert admitted(limits, user, 1) == [False]
    # 40 s in, a third of them does: 0.67 + 1 new <= 2, then no room.
    clock.now = NOON + 60
    assert admitted(limits, user, 2) == [True, False]
    # Another user has counters of their own.
    assert admitted(limits, {"metadata.user_id": "u2"}, 2) == [True, True]


def test_a_refusal_says_which_limit_and_when_to_retry() -> None:
    clock = Clock(NOON)
    limits = limiter([{"scope": "metadata.user_id", "requests_per_minute": 60}], clock)
    user = {"metadata.user_id": "u1"}
    admitted(limits, user, 60)
    refusal = asyncio.run(limits.check(user))
    assert refusal == LimitDecision(
        status=429,
        kind="requests",
        scope="metadata.user_id",
        subject="u1",
        limit=60,
        message="rate limit exceeded: 60 requests per minute for metadata.user_id=u1",
        retry_after_s=20,
    )
    error = refusal.error()
    assert (error.status, error.headers, orjson.loads(error.body())) == (
        429,
        {"retry-after": "20"},
        {
            "error": {
                "message": "rate limit exceeded: 60 requests per minute for metadata.user_id=u1",
                "type": "rate_limit_error",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        },
    )


def test_tokens_per_minute_count_recorded_answers() -> None:
    clock = Clock(NOON)
    limits = limiter([{"scope": "virtual_key", "tokens_per_minute": 1000}], clock)
    key = {"virtual_key": "vk-team-a-1234"}

    async def go() -> list[str | None]:
        outcomes = []
        for tokens in (600, 400, 10):
            refusal = await limits.check(key)
            outcomes.append(None if refusal is None else refusal.message)
            if refusal is None:
                await limits.record(key, tokens=tokens, cost_usd=0.0)
        return outcomes

    assert asyncio.run(go()) == [
        None,
        None,
        "rate limit exceeded: 1000 tokens per minute for virtual_key=...1234",
    ]


def test_a_budget_stops_within_one_request_of_its_limit() -> None:
    clock = Clock(NOON)
    limits = limiter([{"scope": "gateway_key", "budget_usd": 1, "budget_period": "day"}], clock)
    key = {"gateway_key": "gk-secret-abcd"}

    async def spend() -> tuple[float, LimitDecision | None]:
        spent = 0.0
        while (refusal := await limits.check(key)) is None:
            await limits.record(key, tokens=100, cost_usd=0.3)
            spent += 0.3
        return spent, refusal

    spent, refusal = asyncio.run(spend())
    assert spent == pytest.approx(1.2)  # the request that crossed 1 USD was the last one
    assert refusal == LimitDecision(
        status=402,
        kind="budget",
        scope="gateway_key",
        subject="...abcd",
        limit=1,
        message="budget exceeded: 1 USD per day for gateway_key=...abcd",
        retry_after_s=43_160,  # until midnight UTC
    )
    error = refusal.error()
    assert (error.status, error.type, error.code) == (402, "insufficient_quota", "budget_exceeded")
    # A new day, a new budget.
    clock.now = datetime(2025, 3, 11, 0, 0, 1, tzinfo=UTC).timestamp()
    assert asyncio.run(limits.check(key)) is None


def test_monthly_and_total_budgets() -> None:
    clock = Clock(NOON)
    limits = limiter(
        [
            {"scope": "metadata.team", "budget_usd": 0.5, "budget_period": "month"},
            {"scope": "virtual_key", "budget_usd": 0.25, "budget_period": "total"},
        ],
        clock,
    )

    async def go() -> list[str | None]:
        await limits.record({"metadata.team": "t", "virtual_key": "vk-0001"}, 10, 0.5)
        clock.now = datetime(2025, 3, 31, 23, 0, tzinfo=UTC).timestamp()
        month = await limits.check({"metadata.team": "t"})
        clock.now = datetime(2025, 4, 1, 0, 0, 1, tzinfo=UTC).timestamp()
        april = await limits.check({"metadata.team": "t"})
        total = await limits.check({"virtual_key": "vk-0001"})
        return [None if d is None else d.message for d in (month, april, total)]

    assert asyncio.run(go()) == [
        "budget exceeded: 0.5 USD per month for metadata.team=t",
        None,
        "budget exceeded: 0.25 USD in total for virtual_key=...0001",
    ]


def test_a_refused_request_is_not_counted_and_rules_apply_together() -> None:
    clock = Clock(NOON)
    limits = limiter(
        [
            {"scope": "gateway_key", "requests_per_minute": 10},
            {"scope": "metadata.user_id", "requests_per_minute": 1},
        ],
        clock,
    )
    subjects = {"gateway_key": "gk-1234", "metadata.user_id": "u1"}
    assert admitted(limits, subjects, 3) == [True, False, False]
    # Only the admitted request counted against the key: 9 left for other users.
    assert admitted(limits, {"gateway_key": "gk-1234"}, 10) == [True] * 9 + [False]


def test_subjects_come_from_the_request_for_the_scopes_in_use() -> None:
    limits = limiter(
        [
            {"scope": "gateway_key", "requests_per_minute": 1},
            {"scope": "metadata.user_id", "requests_per_minute": 1},
        ],
        Clock(NOON),
    )
    assert limits.subjects_for(
        gateway_key="gk", virtual_key=None, metadata={"user_id": 7, "session_id": "s"}
    ) == {"gateway_key": "gk", "metadata.user_id": "7"}
    assert limits.subjects_for(metadata={"user_id": ""}) == {}


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"scope": "user", "requests_per_minute": 1}], "scope is 'gateway_key'"),
        ([{"scope": "metadata.", "requests_per_minute": 1}], "scope is 'gateway_key'"),
        ([{"scope": "virtual_key"}], "a rule needs requests_per_minute"),
        ([{"scope": "virtual_key", "requests_per_minute": 0}], "greater than 0"),
        (
            [
                {"scope": "virtual_key", "requests_per_minute": 1},
                {"scope": "virtual_key", "budget_usd": 1},
            ],
            "two rules for scope 'virtual_key'",
        ),
    ],
)
def test_policy_validation(rules: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        LimitPolicy(rules=rules)
    assert message in str(raised.value)


def test_the_memory_backend_forgets_expired_windows_and_is_bounded() -> None:
    clock = Clock(NOON)
    backend = MemoryBackend(clock=clock, max_keys=4)
    limits = Limiter(
        LimitPolicy(rules=[{"scope": "metadata.user_id", "requests_per_minute": 5}]),
        backend=backend,
        clock=clock,
    )
    for user in ("a", "b", "c", "d", "e", "f"):
        admitted(limits, {"metadata.user_id": user}, 1)
    assert backend.dropped == 2
    clock.now += 180
    admitted(limits, {"metadata.user_id": "g"}, 1)
    assert backend.dropped == 2  # expired counters made room


def test_without_rules_for_the_request_nothing_is_counted() -> None:
    limits = limiter([{"scope": "virtual_key", "requests_per_minute": 1}], Clock(NOON))
    assert admitted(limits, {"gateway_key": "gk"}, 5) == [True] * 5


class BrokenBackend:
    """A backend whose store is down."""

    async def check_and_reserve(self, counters: Any) -> int | None:
        raise ConnectionRefusedError("down")

    async def add(self, increments: Any) -> None:
        raise ConnectionRefusedError("down")

    async def close(self) -> None:
        return None


def test_a_failing_backend_lets_requests_through_and_logs_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock(NOON)
    limits = Limiter(
        LimitPolicy(rules=[{"scope": "gateway_key", "requests_per_minute": 1}]),
        backend=BrokenBackend(),
        clock=clock,
    )

    async def go() -> list[bool]:
        results = [await limits.check({"gateway_key": "gk"}) is None for _ in range(3)]
        await limits.record({"gateway_key": "gk"}, tokens=1, cost_usd=0.0)
        clock.now += 61
        results.append(await limits.check({"gateway_key": "gk"}) is None)
        return results

    with caplog.at_level(logging.WARNING, logger="traceway.gateway.limits"):
        assert asyncio.run(go()) == [True, True, True, True]
    assert limits.backend_failures == 4
    assert [r.getMessage() for r in caplog.records] == [
        "limits: the counters are unreachable, letting requests through (1 failures so far): down",
        "limits: the counters are unreachable, letting requests through (4 failures so far): down",
    ]
