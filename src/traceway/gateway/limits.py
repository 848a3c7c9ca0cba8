"""Rate limits and spend budgets per gateway key, virtual key or metadata value.

Declared in the gateway settings file as a :class:`LimitPolicy`::

    limits:
      redis_url: redis://redis:6379/0     # shared by every replica; omit for in-memory
      rules:
        - {scope: gateway_key, requests_per_minute: 600, budget_usd: 500, budget_period: month}
        - {scope: virtual_key, tokens_per_minute: 200000}
        - {scope: metadata.user_id, requests_per_minute: 60, budget_usd: 5, budget_period: day}

Each distinct value of a scope (each key, each ``user_id``) has its own counters.

* Requests and tokens per minute use a **sliding window**: the count of the
  current minute plus the previous minute's count weighted by how much of it is
  still inside the last 60 s.  A request is counted when it is admitted
  (:meth:`Limiter.check`); tokens when its answer is in (:meth:`Limiter.record`).
* Budgets add up ``cost_usd`` per UTC day, UTC month, or in total.  A request is
  refused once the spend has reached the budget; spend is only known after an
  answer, so the one request in flight when it crosses may overshoot: a budget
  stops spending within one request of its limit.

Refusals are OpenAI errors naming the limit: 429 ``rate_limit_exceeded``
(``rate limit exceeded: 60 requests per minute for metadata.user_id=u1``, with
``retry-after``) and 402 ``budget_exceeded`` (type ``insufficient_quota``).  Keys
are never written in full: Redis key names hold a hash, messages the last four
characters.  If Redis is unreachable the limiter lets requests through and logs
(``fail_open``; set it false to answer 503 instead).

How to wire it (``app.py``; the settings owner adds ``limits: LimitPolicy | None``
to ``GatewaySettings``)::

    limiter = Limiter(settings.limits)                    # in Gateway.__init__
    await limiter.close()                                 # in Gateway.shutdown
    # in _proxy, after parse_headers and before router.run:
    subjects = limiter.subjects_for(gateway_key=options.gateway_key,
                                    virtual_key=options.virtual_key, metadata=options.metadata)
    if (refusal := await limiter.check(subjects)) is not None:
        raise refusal.error()                             # 429 or 402, OpenAI error JSON
    # once the answer (or the stream) is complete, from its usage and the pricing table:
    await limiter.record(subjects, tokens=total_tokens, cost_usd=cost)
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from redis.exceptions import RedisError

from traceway.gateway._limit_backends import (
    Counter,
    CounterBackend,
    Increment,
    MemoryBackend,
    RedisBackend,
)
from traceway.gateway.errors import GatewayError

__all__ = ["LimitDecision", "LimitPolicy", "LimitRule", "Limiter"]

logger = logging.getLogger(__name__)

_WINDOW_S = 60
_KEY_SCOPES = frozenset({"gateway_key", "virtual_key"})


class LimitRule(BaseModel):
    """Limits for every value of one scope."""

    model_config = ConfigDict(extra="forbid")

    #: ``gateway_key``, ``virtual_key`` or ``metadata.<key>``.
    scope: str
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)
    budget_usd: float | None = Field(default=None, gt=0)
    budget_period: Literal["day", "month", "total"] = "month"

    @field_validator("scope")
    @classmethod
    def _check_scope(cls, scope: str) -> str:
        if scope in _KEY_SCOPES or (scope.startswith("metadata.") and len(scope) > 9):
            return scope
        raise ValueError("scope is 'gateway_key', 'virtual_key' or 'metadata.<key>'")

    @model_validator(mode="after")
    def _check_limits(self) -> LimitRule:
        if (
            self.requests_per_minute is None
            and self.tokens_per_minute is None
            and self.budget_usd is None
        ):
            raise ValueError("a rule needs requests_per_minute, tokens_per_minute or budget_usd")
        return self


class LimitPolicy(BaseModel):
    """The ``limits`` section of the gateway settings."""

    model_config = ConfigDict(extra="forbid")

    rules: list[LimitRule] = Field(default_factory=list)
    #: Counters live here when set (shared by replicas), in memory otherwise.
    redis_url: str | None = None
    key_prefix: str = "traceway:limits:"
    #: Let requests through (and log) when Redis fails, rather than answer 503.
    fail_open: bool = True

    @model_validator(mode="after")
    def _one_rule_per_scope(self) -> LimitPolicy:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.scope in seen:
                raise ValueError(f"two rules for scope {rule.scope!r}: merge them into one")
            seen.add(rule.scope)
        return self


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """Why a request is refused."""

    status: int  # 429 (rate) or 402 (budget)
    kind: str  # "requests" | "tokens" | "budget"
    scope: str
    subject: str  # the value as shown (keys: last four characters)
    limit: float
    message: str
    retry_after_s: int | None = None

    def error(self) -> GatewayError:
        """The OpenAI error the gateway answers with."""
        headers = {"retry-after": str(self.retry_after_s)} if self.retry_after_s else None
        if self.status == 402:
            return GatewayError(
                402,
                self.message,
                type="insufficient_quota",
                code="budget_exceeded",
                headers=headers,
            )
        return GatewayError(429, self.message, code="rate_limit_exceeded", headers=headers)


@dataclass(frozen=True, slots=True)
class _Check:
    rule: LimitRule
    kind: str
    limit: float
    subject: str


def _digest(value: str) -> str:
    return hashlib.blake2b(value.encode(), digest_size=12).hexdigest()


def _number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return format(value, "f").rstrip("0").rstrip(".")


def _shown(scope: str, value: str) -> str:
    return f"...{value[-4:]}" if scope in _KEY_SCOPES else value


def _period(moment: datetime, period: str) -> tuple[str, int]:
    """The budget period's id and seconds until a day after it ends (0: never ends)."""
    if period == "total":
        return "total", 0
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
        label = start.strftime("%Y-%m-%d")
    else:
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
        label = start.strftime("%Y-%m")
    return label, math.ceil((end - moment).total_seconds()) + 86_400


class Limiter:
    """Checks and counts requests against a :class:`LimitPolicy`.  One per gateway."""

    def __init__(
        self,
        policy: LimitPolicy,
        *,
        backend: CounterBackend | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` is wall-clock seconds (replicas share windows); ``backend`` is for tests."""
        self.policy = policy
        self._clock = clock
        if backend is None:
            backend = (
                RedisBackend.from_url(policy.redis_url)
                if policy.redis_url
                else MemoryBackend(clock=clock)
            )
        self._backend = backend
        self._warned_at = -math.inf
        #: Backend failures since the limiter started (logged at most once a minute).
        self.backend_failures = 0
        self._metadata_keys = {
            rule.scope: rule.scope[len("metadata.") :]
            for rule in policy.rules
            if rule.scope.startswith("metadata.")
        }

    def subjects_for(
        self,
        *,
        gateway_key: str | None = None,
        virtual_key: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, str]:
        """The values a request is limited by, by scope (only scopes the rules use)."""
        subjects: dict[str, str] = {}
        if gateway_key:
            subjects["gateway_key"] = gateway_key
        if virtual_key:
            subjects["virtual_key"] = virtual_key
        for scope, key in self._metadata_keys.items():
            value = (metadata or {}).get(key)
            if value is not None and value != "":
                subjects[scope] = str(value)
        return subjects

    def _key(self, kind: str, scope: str, value: str, suffix: str) -> str:
        return f"{self.policy.key_prefix}{kind}:{scope}:{_digest(value)}:{suffix}"

    def _plan(self, subjects: Mapping[str, str], now: float) -> list[tuple[Counter, _Check]]:
        window = int(now // _WINDOW_S)
        weight = 1.0 - (now % _WINDOW_S) / _WINDOW_S
        moment = datetime.fromtimestamp(now, UTC)
        plan: list[tuple[Counter, _Check]] = []
        for rule in self.policy.rules:
            value = subjects.get(rule.scope)
            if value is None:
                continue
            shown = _shown(rule.scope, value)
            for kind, limit, reserve in (
                ("requests", rule.requests_per_minute, 1),
                ("tokens", rule.tokens_per_minute, 0),
            ):
                if limit is None:
                    continue
                counter = Counter(
                    key=self._key(kind, rule.scope, value, str(window)),
                    previous=self._key(kind, rule.scope, value, str(window - 1)),
                    previous_weight=weight,
                    limit=limit,
                    reserve=reserve,
                    ttl_s=2 * _WINDOW_S,
                )
                plan.append((counter, _Check(rule, kind, limit, shown)))
            if rule.budget_usd is not None:
                label, _ = _period(moment, rule.budget_period)
                key = self._key("usd", rule.scope, value, label)
                plan.append(
                    (
                        Counter(key=key, limit=rule.budget_usd),
                        _Check(rule, "budget", rule.budget_usd, shown),
                    )
                )
        return plan

    async def check(self, subjects: Mapping[str, str]) -> LimitDecision | None:
        """Admit a request (counting it) or say which limit refuses it.

        Nothing is counted for a refused request.
        """
        now = self._clock()
        plan = self._plan(subjects, now)
        if not plan:
            return None
        try:
            index = await self._backend.check_and_reserve([counter for counter, _ in plan])
        except (RedisError, OSError) as exc:
            self._backend_failed(exc)
            return None
        if index is None:
            return None
        return self._decision(plan[index][1], now)

    def _backend_failed(self, exc: Exception) -> None:
        self._warn("the counters are unreachable, letting requests through", exc)
        if not self.policy.fail_open:
            raise GatewayError(503, "the rate limiter is unavailable", type="server_error") from exc

    def _warn(self, what: str, exc: Exception) -> None:
        # A Redis outage would otherwise log once per request.
        self.backend_failures += 1
        now = self._clock()
        if now - self._warned_at >= _WINDOW_S:
            self._warned_at = now
            logger.warning("limits: %s (%d failures so far): %s", what, self.backend_failures, exc)

    def _decision(self, check: _Check, now: float) -> LimitDecision:
        rule = check.rule
        where = f"for {rule.scope}={check.subject}"
        if check.kind == "budget":
            if rule.budget_period == "total":
                span, retry = "in total", None
            else:
                moment = datetime.fromtimestamp(now, UTC)
                span = f"per {rule.budget_period}"
                retry = _period(moment, rule.budget_period)[1] - 86_400
            return LimitDecision(
                status=402,
                kind="budget",
                scope=rule.scope,
                subject=check.subject,
                limit=check.limit,
                message=f"budget exceeded: {_number(check.limit)} USD {span} {where}",
                retry_after_s=retry,
            )
        return LimitDecision(
            status=429,
            kind=check.kind,
            scope=rule.scope,
            subject=check.subject,
            limit=check.limit,
            message=f"rate limit exceeded: {_number(check.limit)} {check.kind} per minute {where}",
            retry_after_s=max(1, math.ceil(_WINDOW_S - now % _WINDOW_S)),
        )

    async def record(self, subjects: Mapping[str, str], tokens: int, cost_usd: float) -> None:
        """Count an answer's tokens and cost (the request itself was counted by :meth:`check`)."""
        now = self._clock()
        window = int(now // _WINDOW_S)
        moment = datetime.fromtimestamp(now, UTC)
        increments: list[Increment] = []
        for rule in self.policy.rules:
            value = subjects.get(rule.scope)
            if value is None:
                continue
            if rule.tokens_per_minute is not None and tokens > 0:
                key = self._key("tokens", rule.scope, value, str(window))
                increments.append(Increment(key, tokens, ttl_s=2 * _WINDOW_S))
            if rule.budget_usd is not None and cost_usd > 0:
                label, ttl = _period(moment, rule.budget_period)
                key = self._key("usd", rule.scope, value, label)
                increments.append(Increment(key, cost_usd, ttl_s=ttl, fractional=True))
        if not increments:
            return
        try:
            await self._backend.add(increments)
        except (RedisError, OSError) as exc:
            # The answer is already on its way: losing a count beats failing it.
            self._warn("recording usage failed", exc)

    async def close(self) -> None:
        """Close the backend's connections (safe to call twice)."""
        await self._backend.close()
