"""What the gateway's policies cost per request, in-process (no HTTP): µs per operation.

Measures, on one event loop:

- the cache key of a typical chat request (canonical JSON + BLAKE2b);
- a cache lookup that hits, with the in-process LRU and with Redis (loopback);
- a cache miss plus the store that follows it (in-process);
- replaying a cached answer as SSE events;
- a semantic lookup with the local all-MiniLM-L6-v2 model (when installed);
- ``cost_usd`` plus ``GatewayMetrics.record_request`` (what every request pays),
  and rendering ``/metrics`` with 100 series.

Each figure is the median of ``--repeats`` timed loops.  The full HTTP benchmark
(a cache hit against a plain proxied request) belongs with the gateway benchmarks.

    python bench/policies.py [--iterations 20000] [--repeats 5]
        [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis
import redis.asyncio

from traceway.gateway._cache_keys import request_key
from traceway.gateway.cache import (
    CachePolicy,
    LocalEmbedder,
    MemoryBackend,
    RedisBackend,
    ResponseCache,
    replay_events,
)
from traceway.gateway.metrics import GatewayMetrics
from traceway.gateway.pricing import PriceTable
from traceway.gateway.providers.base import CHAT

REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "temperature": 0.2,
    "max_tokens": 256,
}
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The capital of France is Paris. " * 8},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 31,
            "completion_tokens": 57,
            "total_tokens": 88,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
)
POLICY = CachePolicy(mode="simple", max_age_s=300)


async def timed(op: Callable[[], Awaitable[Any]], iterations: int, repeats: int) -> float:
    """Median µs per call of ``op`` over ``repeats`` loops of ``iterations`` calls."""
    for _ in range(min(iterations, 1000)):
        await op()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            await op()
        runs.append((time.perf_counter() - start) / iterations * 1e6)
    return statistics.median(runs)


def sync(fn: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def op() -> Any:
        return fn()

    return op


async def redis_hit(args: argparse.Namespace) -> float | str:
    """µs per cache hit served from Redis, or why it could not be measured."""
    client = redis.asyncio.Redis.from_url(args.redis_url)
    prefix = f"traceway:cache:bench-{uuid.uuid4().hex}:"
    try:
        await client.ping()
    except (redis.RedisError, OSError) as exc:
        await client.aclose()
        return f"skipped: {exc}"
    shared = ResponseCache(RedisBackend(client, prefix=prefix))
    try:
        await shared.store(await shared.lookup(CHAT, REQUEST, POLICY), ANSWER)
        op = lambda: shared.lookup(CHAT, REQUEST, POLICY)  # noqa: E731
        return await timed(op, max(1, args.iterations // 10), args.repeats)
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await shared.close()


async def semantic_hit(args: argparse.Namespace) -> float | str:
    """µs per semantic hit with the local model (embedding included)."""
    try:
        embedder = LocalEmbedder()
        embedder.load()
    except ModuleNotFoundError as exc:
        return f"skipped: {exc}"
    cache = ResponseCache(MemoryBackend(), embedder=embedder)
    policy = CachePolicy(mode="semantic", max_age_s=300, similarity_threshold=0.9)
    await cache.store(await cache.lookup(CHAT, REQUEST, policy), ANSWER)
    question = {"role": "user", "content": "Tell me the capital city of France"}
    paraphrase = {**REQUEST, "messages": [REQUEST["messages"][0], question]}
    return await timed(lambda: cache.lookup(CHAT, paraphrase, policy), 20, args.repeats)


async def measure(args: argparse.Namespace) -> list[tuple[str, float | str]]:
    n, repeats = args.iterations, args.repeats

    async def noop() -> None:
        return None

    memory = ResponseCache(MemoryBackend())
    await memory.store(await memory.lookup(CHAT, REQUEST, POLICY), ANSWER)
    seeds = iter(range(10**9))

    async def miss_and_store() -> None:
        body = {**REQUEST, "seed": next(seeds)}
        await memory.store(await memory.lookup(CHAT, body, POLICY), ANSWER)

    prices = PriceTable.default()
    metrics = GatewayMetrics()
    usage = orjson.loads(ANSWER)["usage"]

    def account() -> None:
        cost = prices.cost_usd("openai", "gpt-4o-mini-2024-07-18", usage)
        metrics.record_request("openai", "gpt-4o-mini", CHAT, 200, 0.123, 31, 57, cost)

    def key() -> str:
        return request_key(CHAT, REQUEST)

    def hit() -> Awaitable[Any]:
        return memory.lookup(CHAT, REQUEST, POLICY)

    def replay() -> list[bytes]:
        return replay_events(ANSWER, include_usage=True)

    wide = GatewayMetrics()
    for i in range(100):
        wide.record_request("openai", f"model-{i}", CHAT, 200, 0.1, 1, 1, 0.0)

    return [
        ("(an empty coroutine: the loop's own cost)", await timed(noop, n, repeats)),
        ("cache key of a chat request", await timed(sync(key), n, repeats)),
        ("cache lookup, hit (in-process LRU)", await timed(hit, n, repeats)),
        ("cache lookup, miss + store (in-process)", await timed(miss_and_store, n, repeats)),
        ("cache lookup, hit (Redis, loopback)", await redis_hit(args)),
        ("replay a cached answer as SSE events", await timed(sync(replay), n, repeats)),
        ("semantic lookup, hit (local MiniLM)", await semantic_hit(args)),
        ("cost_usd + metrics.record_request", await timed(sync(account), n, repeats)),
        ("metrics.render(), 100 series", await timed(sync(wide.render), max(1, n // 100), repeats)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    rows = asyncio.run(measure(args))
    width = max(len(name) for name, _ in rows)
    print(f"| {'operation'.ljust(width)} | µs per op |")
    print(f"|{'-' * (width + 2)}|----------:|")
    for name, value in rows:
        shown = f"{value:9.2f}" if isinstance(value, float) else value
        print(f"| {name.ljust(width)} | {shown} |")


if __name__ == "__main__":
    main()
