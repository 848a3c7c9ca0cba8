"""The response cache on the real Redis server, as gateway replicas share it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.gateway.test_cache import SEMANTIC, TableEmbedder, answer, chat
from tests.support.redis_keys import REDIS_URL, own_prefix
from traceway.gateway.cache import CachePolicy, RedisBackend, ResponseCache
from traceway.gateway.providers.base import CHAT

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    with own_prefix("traceway:cache:test-") as prefix:
        yield prefix


def replica(prefix: str, embedder: Any = None, **options: Any) -> ResponseCache:
    """A cache with its own connection pool, as one gateway replica has."""
    return ResponseCache(
        RedisBackend.from_url(REDIS_URL, prefix=prefix, **options), embedder=embedder
    )


async def closing(*caches: ResponseCache) -> None:
    for cache in caches:
        await cache.close()


def test_two_replicas_share_entries(prefix: str) -> None:
    policy = CachePolicy(mode="simple", max_age_s=60)

    async def scenario() -> list[tuple[str, bytes | None]]:
        first, second = replica(prefix), replica(prefix)
        try:
            miss = await first.lookup(CHAT, chat("Hi"), policy)
            await first.store(miss, answer("Hello from replica one"))
            hit = await second.lookup(CHAT, chat("Hi", stream=True), policy)
            return [(miss.status.value, miss.entry), (hit.status.value, hit.entry)]
        finally:
            await closing(first, second)

    assert asyncio.run(scenario()) == [
        ("MISS", None),
        ("HIT", answer("Hello from replica one")),
    ]


def test_two_replicas_share_semantic_vectors(prefix: str) -> None:
    embedder = TableEmbedder({"capital of France?": [1.0, 0.0], "France's capital?": [0.99, 0.1]})

    async def scenario() -> list[str]:
        first, second = replica(prefix, embedder), replica(prefix, embedder)
        try:
            await first.store(
                await first.lookup(CHAT, chat("capital of France?"), SEMANTIC), answer("Paris")
            )
            hit = await second.lookup(CHAT, chat("France's capital?"), SEMANTIC)
            return [hit.status.value, (hit.entry or b"").decode()]
        finally:
            await closing(first, second)

    assert asyncio.run(scenario()) == ["SEMANTIC_HIT", answer("Paris").decode()]


def test_entries_and_vectors_expire_after_max_age(prefix: str) -> None:
    embedder = TableEmbedder({"q": [1.0, 0.0]})
    policy = CachePolicy(mode="semantic", max_age_s=1, similarity_threshold=0.9)

    async def scenario() -> tuple[list[str], list[int], str]:
        cache = replica(prefix, embedder)
        try:
            await cache.store(await cache.lookup(CHAT, chat("q"), policy), answer("A"))
            client = redis.asyncio.Redis.from_url(REDIS_URL)
            try:
                keys = [key async for key in client.scan_iter(match=prefix + "*")]
                ttls = [await client.pttl(key) for key in keys]
                kinds = sorted(
                    "vectors" if key.decode().startswith(prefix + "vec:") else "entry"
                    for key in keys
                )
            finally:
                await client.aclose()
            await asyncio.sleep(1.1)
            return kinds, ttls, (await cache.lookup(CHAT, chat("q"), policy)).status.value
        finally:
            await cache.close()

    kinds, ttls, status_after = asyncio.run(scenario())
    # One entry and one vector bucket, both living max_age (1,000 ms) at most.
    assert kinds == ["entry", "vectors"]
    assert all(0 < ttl <= 1000 for ttl in ttls)
    assert status_after == "MISS"


def test_vector_buckets_are_bounded(prefix: str) -> None:
    async def scenario() -> list[str]:
        backend = RedisBackend.from_url(REDIS_URL, prefix=prefix, max_vectors_per_bucket=3)
        try:
            for i in range(5):
                # Later vectors expire later, so the oldest are the ones trimmed.
                await backend.add_vector("bucket", f"k{i}", b"\x00\x00\x80\x3f", 60 + i)
            return sorted(key for key, _ in await backend.vectors("bucket"))
        finally:
            await backend.close()

    assert asyncio.run(scenario()) == ["k2", "k3", "k4"]


def test_unreachable_redis_is_a_miss_not_an_error() -> None:
    async def scenario() -> tuple[str, bool, int]:
        # Port 1 on the loopback: nothing listens there.
        cache = ResponseCache(
            RedisBackend.from_url("redis://127.0.0.1:1/0", prefix="traceway:cache:down:")
        )
        try:
            lookup = await cache.lookup(CHAT, chat("Hi"), CachePolicy(max_age_s=5))
            stored = await cache.store(lookup, answer("Hello"))
            return lookup.status.value, stored, cache.errors
        finally:
            await cache.close()

    assert asyncio.run(scenario()) == ("MISS", False, 2)
