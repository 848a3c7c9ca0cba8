"""Where the limiter's counters live: Redis (shared by every replica) or process memory.

Both backends do the same two things:

* ``check_and_reserve(counters)``: atomically, if no counter is at its limit,
  add each counter's ``reserve`` (1 for request counters) and answer ``None``;
  otherwise reserve nothing and answer the index of the first counter at its
  limit.  A counter's use is ``value(key) + value(previous) * previous_weight``
  (a sliding-window estimate when ``previous`` is set).
* ``add(increments)``: add tokens or dollars after the answer, each key with
  its expiry, in one round trip.

Redis does the first in one Lua script (so replicas cannot both take the last
slot) and the second in one ``MULTI`` pipeline of ``INCRBY``/``INCRBYFLOAT`` +
``EXPIRE``.  Keys of one check may belong to different subjects, so on a Redis
Cluster give the limiter a ``key_prefix`` with a hash tag (``{limits}:``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis

__all__ = ["Counter", "CounterBackend", "Increment", "MemoryBackend", "RedisBackend"]


@dataclass(frozen=True, slots=True)
class Counter:
    """One limit to test before a request."""

    key: str
    limit: float
    previous: str | None = None  # the previous window of a sliding window
    previous_weight: float = 0.0
    reserve: int = 0  # added when every limit passes (1 for request counters)
    ttl_s: int = 0  # expiry of ``key`` after a reservation; 0 keeps it forever

    def over(self, used: float) -> bool:
        """At the limit already: a reservation would pass it, or nothing is left."""
        return used + self.reserve > self.limit if self.reserve else used >= self.limit


@dataclass(frozen=True, slots=True)
class Increment:
    """An amount to add to a counter after the answer."""

    key: str
    amount: float
    ttl_s: int = 0  # 0 keeps the key forever
    fractional: bool = False  # dollars (INCRBYFLOAT) rather than tokens (INCRBY)


class CounterBackend(Protocol):
    async def check_and_reserve(self, counters: Sequence[Counter]) -> int | None: ...

    async def add(self, increments: Sequence[Increment]) -> None: ...

    async def close(self) -> None: ...


class MemoryBackend:
    """Counters in this process: for a single gateway, or tests (inject the clock)."""

    def __init__(self, *, clock: Callable[[], float] = time.time, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._values: dict[str, tuple[float, float]] = {}  # key -> (value, expires at)
        #: Live counters dropped because ``max_keys`` was reached.
        self.dropped = 0

    def _get(self, key: str, now: float) -> float:
        entry = self._values.get(key)
        if entry is None:
            return 0.0
        if entry[1] <= now:
            del self._values[key]
            return 0.0
        return entry[0]

    def _add(self, key: str, amount: float, ttl_s: int, now: float) -> None:
        if key not in self._values and len(self._values) >= self._max_keys:
            self._evict(now)
        expires = now + ttl_s if ttl_s else math.inf
        self._values[key] = (self._get(key, now) + amount, expires)

    def _evict(self, now: float) -> None:
        for key in [k for k, (_, expires) in self._values.items() if expires <= now]:
            del self._values[key]
        while len(self._values) >= self._max_keys:
            # Oldest first: dicts keep insertion order.
            del self._values[next(iter(self._values))]
            self.dropped += 1

    async def check_and_reserve(self, counters: Sequence[Counter]) -> int | None:
        now = self._clock()
        for index, counter in enumerate(counters):
            used = self._get(counter.key, now)
            if counter.previous is not None and counter.previous_weight > 0:
                used += self._get(counter.previous, now) * counter.previous_weight
            if counter.over(used):
                return index
        for counter in counters:
            if counter.reserve:
                self._add(counter.key, counter.reserve, counter.ttl_s, now)
        return None

    async def add(self, increments: Sequence[Increment]) -> None:
        now = self._clock()
        for increment in increments:
            self._add(increment.key, increment.amount, increment.ttl_s, now)

    async def close(self) -> None:
        self._values.clear()


# KEYS: for counter i, KEYS[2i-1] = its key, KEYS[2i] = its previous window (or its key).
# ARGV: n, then per counter: limit, previous weight, reserve, ttl.
_CHECK_AND_RESERVE = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local base = 1 + (i - 1) * 4
  local limit = tonumber(ARGV[base + 1])
  local weight = tonumber(ARGV[base + 2])
  local reserve = tonumber(ARGV[base + 3])
  local used = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  if weight > 0 then
    used = used + tonumber(redis.call('GET', KEYS[2 * i]) or '0') * weight
  end
  if (reserve > 0 and used + reserve > limit) or (reserve == 0 and used >= limit) then
    return i
  end
end
for i = 1, n do
  local base = 1 + (i - 1) * 4
  local reserve = tonumber(ARGV[base + 3])
  if reserve > 0 then
    redis.call('INCRBY', KEYS[2 * i - 1], reserve)
    local ttl = tonumber(ARGV[base + 4])
    if ttl > 0 then
      redis.call('EXPIRE', KEYS[2 * i - 1], ttl)
    end
  end
end
return 0
"""


class RedisBackend:
    """Counters in Redis, so every gateway replica sees the same ones."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._script = client.register_script(_CHECK_AND_RESERVE)

    @classmethod
    def from_url(cls, url: str) -> RedisBackend:
        """A backend with its own connection pool (closed by :meth:`close`)."""
        return cls(aioredis.Redis.from_url(url))

    async def check_and_reserve(self, counters: Sequence[Counter]) -> int | None:
        if not counters:
            return None
        keys: list[str] = []
        args: list[str | int] = [len(counters)]
        for counter in counters:
            keys.extend((counter.key, counter.previous or counter.key))
            args.extend(
                (repr(counter.limit), repr(counter.previous_weight), counter.reserve, counter.ttl_s)
            )
        index = int(await self._script(keys=keys, args=args))
        return index - 1 if index else None

    async def add(self, increments: Sequence[Increment]) -> None:
        if not increments:
            return
        async with self._client.pipeline(transaction=True) as pipe:
            for increment in increments:
                if increment.fractional:
                    pipe.incrbyfloat(increment.key, increment.amount)
                else:
                    pipe.incrby(increment.key, int(increment.amount))
                if increment.ttl_s:
                    pipe.expire(increment.key, increment.ttl_s)
            await pipe.execute()

    async def close(self) -> None:
        await self._client.aclose()
