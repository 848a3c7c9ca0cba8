"""Where cached answers live: in this process (bounded LRU) or in Redis (shared by replicas).

A backend stores two things, both with a time to live:

- *entries*: an answer's bytes under its request key;
- *vectors*, for the semantic cache: per bucket (same model and parameters), a
  bounded set of ``(entry key, packed float32 embedding)`` pairs, oldest dropped
  first.  Similarity is computed by the caller, in Python, on what
  :meth:`CacheBackend.vectors` returns; the bound keeps that cheap.

Backend failures (Redis unreachable, timing out) raise :class:`CacheBackendError`,
translated here once, so the cache can treat them as a miss without also
swallowing its own bugs.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import redis.asyncio
from redis.exceptions import RedisError

__all__ = [
    "CacheBackend",
    "CacheBackendError",
    "MemoryBackend",
    "RedisBackend",
]

#: Default bound of the in-process cache.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Default number of vectors kept per semantic bucket.
DEFAULT_MAX_VECTORS = 256
# Rough cost of one item beyond its payload (dict slot, key string, item object).
_OVERHEAD = 200


class CacheBackendError(Exception):
    """The cache store could not be read or written."""


class CacheBackend(Protocol):
    """What :class:`~traceway.gateway.cache.ResponseCache` needs from a store."""

    async def get(self, key: str) -> bytes | None:
        """The entry under ``key``, or ``None`` (missing or expired)."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store ``value`` under ``key`` for ``ttl_s`` seconds."""
        ...

    async def add_vector(self, bucket: str, key: str, vector: bytes, ttl_s: float) -> None:
        """Remember that ``key``'s question embeds as ``vector`` (for ``ttl_s`` seconds)."""
        ...

    async def vectors(self, bucket: str) -> list[tuple[str, bytes]]:
        """The live ``(key, vector)`` pairs of ``bucket``."""
        ...

    async def close(self) -> None:
        """Release connections (safe to call twice)."""
        ...


class _Item:
    __slots__ = ("expires", "size", "value")

    def __init__(self, value: Any, size: int, expires: float) -> None:
        self.value = value
        self.size = size
        self.expires = expires


class MemoryBackend:
    """A per-process LRU bounded by bytes; entries and vector buckets share the bound.

    ``clock`` (seconds, monotonic) is injectable so tests can expire entries
    without waiting.  Not thread-safe: it belongs to one event loop.

    >>> backend = MemoryBackend(max_bytes=1024)
    """

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_vectors_per_bucket: int = DEFAULT_MAX_VECTORS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes <= 0 or max_vectors_per_bucket <= 0:
            raise ValueError("max_bytes and max_vectors_per_bucket must be positive")
        self.max_bytes = max_bytes
        self.max_vectors = max_vectors_per_bucket
        self._clock = clock
        # Entry keys are hex digests; vector buckets live beside them under "v:".
        self._items: OrderedDict[str, _Item] = OrderedDict()
        self.used_bytes = 0
        #: Items dropped to stay within ``max_bytes``.
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def _remove(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.used_bytes -= item.size

    def _live(self, key: str) -> _Item | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item.expires <= self._clock():
            self._remove(key)
            return None
        self._items.move_to_end(key)
        return item

    def _evict(self) -> None:
        items = self._items
        while self.used_bytes > self.max_bytes and items:
            _, item = items.popitem(last=False)
            self.used_bytes -= item.size
            self.evictions += 1

    async def get(self, key: str) -> bytes | None:
        item = self._live(key)
        return None if item is None else item.value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._remove(key)
        size = len(value) + len(key) + _OVERHEAD
        if size > self.max_bytes:
            return  # would evict everything and still not fit
        self._items[key] = _Item(value, size, self._clock() + ttl_s)
        self.used_bytes += size
        self._evict()

    async def add_vector(self, bucket: str, key: str, vector: bytes, ttl_s: float) -> None:
        slot = "v:" + bucket
        expires = self._clock() + ttl_s
        item = self._live(slot)
        if item is None:
            item = _Item(OrderedDict(), len(slot) + _OVERHEAD, expires)
            self._items[slot] = item
            self.used_bytes += item.size
        pairs: OrderedDict[str, tuple[bytes, float]] = item.value
        grown = len(vector) + len(key) + _OVERHEAD
        old = pairs.pop(key, None)
        if old is not None:
            grown -= len(old[0]) + len(key) + _OVERHEAD
        pairs[key] = (vector, expires)
        while len(pairs) > self.max_vectors:
            dropped_key, (dropped, _) = pairs.popitem(last=False)
            grown -= len(dropped) + len(dropped_key) + _OVERHEAD
        item.size += grown
        item.expires = max(item.expires, expires)
        self.used_bytes += grown
        self._evict()

    async def vectors(self, bucket: str) -> list[tuple[str, bytes]]:
        item = self._live("v:" + bucket)
        if item is None:
            return []
        now = self._clock()
        pairs: OrderedDict[str, tuple[bytes, float]] = item.value
        return [(key, vector) for key, (vector, expires) in pairs.items() if expires > now]

    async def close(self) -> None:
        self._items.clear()
        self.used_bytes = 0


_EXPIRY_BYTES = 8  # big-endian milliseconds since the epoch, before each stored vector


class RedisBackend:
    """Entries and vectors in Redis, shared by every gateway replica.

    Entries are plain strings under ``<prefix><key>`` with ``PX`` = the max age.
    A semantic bucket is a hash ``<prefix>vec:<bucket>`` of entry key -> expiry
    (ms) + vector; the hash expires with its newest vector and is trimmed to
    ``max_vectors_per_bucket`` (oldest first) when it grows past it.

    ``client`` is a ``redis.asyncio.Redis`` returning bytes (``decode_responses``
    off); ``clock`` is wall-clock seconds, as every replica must agree on it.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        prefix: str = "traceway:cache:",
        max_vectors_per_bucket: int = DEFAULT_MAX_VECTORS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self.prefix = prefix
        self.max_vectors = max_vectors_per_bucket
        self._clock = clock

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBackend:
        """A backend with its own connection pool, e.g. ``redis://127.0.0.1:6379/0``."""
        return cls(redis.asyncio.Redis.from_url(url, decode_responses=False), **options)

    async def _call(self, operation: Awaitable[Any]) -> Any:
        try:
            return await operation
        except (RedisError, OSError, TimeoutError) as exc:
            raise CacheBackendError(f"redis: {exc}") from exc

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._call(self._redis.get(self.prefix + key))
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._call(self._redis.set(self.prefix + key, value, px=max(1, int(ttl_s * 1000))))

    async def add_vector(self, bucket: str, key: str, vector: bytes, ttl_s: float) -> None:
        name = f"{self.prefix}vec:{bucket}"
        ttl_ms = max(1, int(ttl_s * 1000))
        expires_ms = int(self._clock() * 1000) + ttl_ms
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(name, key, expires_ms.to_bytes(_EXPIRY_BYTES, "big") + vector)
        # The hash lives as long as its newest vector (GT: never shorten it).
        pipe.pexpire(name, ttl_ms, gt=True)
        pipe.pexpire(name, ttl_ms, nx=True)
        pipe.hlen(name)
        results = await self._call(pipe.execute())
        if results[-1] > self.max_vectors:
            await self._trim(name)

    async def _trim(self, name: str) -> None:
        pairs: dict[bytes, bytes] = await self._call(self._redis.hgetall(name))
        by_expiry = sorted(pairs.items(), key=lambda kv: kv[1][:_EXPIRY_BYTES])
        now_ms = int(self._clock() * 1000)
        excess = len(by_expiry) - self.max_vectors
        doomed = [
            field
            for i, (field, value) in enumerate(by_expiry)
            if i < excess or int.from_bytes(value[:_EXPIRY_BYTES], "big") <= now_ms
        ]
        if doomed:
            await self._call(self._redis.hdel(name, *doomed))

    async def vectors(self, bucket: str) -> list[tuple[str, bytes]]:
        name = f"{self.prefix}vec:{bucket}"
        pairs: dict[bytes, bytes] = await self._call(self._redis.hgetall(name))
        now_ms = int(self._clock() * 1000)
        live: list[tuple[str, bytes]] = []
        expired: list[bytes] = []
        for field, value in pairs.items():
            if int.from_bytes(value[:_EXPIRY_BYTES], "big") > now_ms:
                live.append((field.decode(), value[_EXPIRY_BYTES:]))
            else:
                expired.append(field)
        if expired:
            await self._call(self._redis.hdel(name, *expired))
        return live

    async def close(self) -> None:
        await self._redis.aclose()
