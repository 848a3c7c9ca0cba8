"""What the gateway's policies cost per request: over HTTP, and step by step in-process.

**Over HTTP** (the figures that matter), in one run: a fast upstream that also
accepts OTLP (``bench/gateway_quick.py``'s) on core 0 with the driver, and one
``traceway gateway`` (``create_standalone_app``, tracing exported to that sink)
pinned to core 1, answering three kinds of request side by side:

- a plain proxied request (``x-traceway-provider: openai`` + custom host);
- a cache hit (a named config with ``cache: {mode: simple}``; after the first
  request every one is a ``HIT``, answered without the upstream);
- a guardrail pass (a named config whose ``input_guardrails`` run
  ``default.contains`` and ``default.pii`` on the request: both pass).

Each case is driven at ``--concurrency`` 32 for ``--seconds`` (req/s, the
gateway's CPU µs per request) and at concurrency 1 (p50 latency), the cases
interleaved ``--repeats`` times; medians are shown with ratios to the plain request.

**In-process** (no HTTP), µs per operation on one event loop:

- the cache key of a typical chat request (canonical JSON + BLAKE2b);
- a cache lookup that hits, with the in-process LRU and with Redis (loopback);
- a cache miss plus the store that follows it (in-process);
- replaying a cached answer as SSE events;
- a semantic lookup with the local all-MiniLM-L6-v2 model (when installed);
- ``cost_usd`` plus ``GatewayMetrics.record_request`` (what every request pays),
  and rendering ``/metrics`` with 100 series.

    python bench/policies.py [--seconds 5] [--repeats 3] [--iterations 20000]
        [--redis-url redis://127.0.0.1:6379/0] [--http-only | --in-process-only] [--write]

``--write`` replaces the "Gateway policies" section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import gateway_quick as harness
import orjson
import redis
import redis.asyncio
from results import write_section

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


# -- over HTTP ----------------------------------------------------------------

GATEWAY_SCRIPT = """
import json, sys, uvicorn
from traceway.gateway import GatewaySettings, create_standalone_app
port, export_to, settings = int(sys.argv[1]), (sys.argv[2] or None), json.loads(sys.argv[3])
app = create_standalone_app(GatewaySettings.model_validate(settings), export_to=export_to)
uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
"""
CASES = ("plain proxied request", "cache hit", "guardrail pass (contains + pii)")


def gateway_settings(upstream: str) -> dict[str, Any]:
    target = {"provider": "openai", "custom_host": f"{upstream}/v1", "api_key": "sk-bench"}
    return {
        "allowed_custom_hosts": ["127.0.0.1"],
        "configs": {
            "cached": {**target, "cache": {"mode": "simple", "max_age": 3600}},
            "guarded": {
                **target,
                "input_guardrails": [
                    {
                        "default.contains": {"operator": "none", "words": ["forbidden"]},
                        "default.pii": {},
                        "deny": True,
                    }
                ],
            },
        },
    }


def http_figures(args: argparse.Namespace) -> dict[str, tuple[float, float, float]]:
    """Medians of (req/s at c=32, CPU µs per request at c=32, p50 ms at c=1) per case."""
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {0})  # the driver shares core 0 with the upstream
    python = sys.executable
    bench = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": f"{bench.parent / 'src'}:{bench}"}
    upstream_port, gateway_port = harness.free_port(), harness.free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    processes: list[subprocess.Popen[bytes]] = []
    results: dict[str, list[tuple[float, float, float]]] = {case: [] for case in CASES}
    try:
        serve = [python, str(bench / "gateway_quick.py"), "--serve-upstream", str(upstream_port)]
        gateway = [
            python, "-c", GATEWAY_SCRIPT, str(gateway_port), upstream,
            orjson.dumps(gateway_settings(upstream)).decode(),
        ]  # fmt: skip
        for port, command in ((upstream_port, serve), (gateway_port, gateway)):
            process = subprocess.Popen(
                harness.pinned(0 if port == upstream_port else 1, command), env=env
            )
            processes.append(process)
            harness.wait_for_port(port, process)
        url = f"http://127.0.0.1:{gateway_port}/v1/chat/completions"
        plain = {
            "authorization": "Bearer sk-bench",
            "x-traceway-provider": "openai",
            "x-traceway-custom-host": f"{upstream}/v1",
        }
        headers = {
            CASES[0]: plain,
            CASES[1]: {"x-traceway-config": "cached"},
            CASES[2]: {"x-traceway-config": "guarded"},
        }
        pid = processes[1].pid
        for repeat in range(args.repeats):
            for case in CASES:
                rps, _, cpu = asyncio.run(
                    harness.drive(url, headers[case], args.concurrency, args.seconds, pid)
                )
                _, p50, _ = asyncio.run(harness.drive(url, headers[case], 1, args.seconds / 2, pid))
                results[case].append((rps, cpu, p50))
                print(
                    f"  run {repeat + 1}: {case:32} {rps:7.0f} req/s  {cpu:6.0f} µs CPU/req"
                    f"  p50 (c=1) {p50:6.3f} ms",
                    flush=True,
                )
    finally:
        # The gateway first: it flushes its spans to the sink on the way out.
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
    return {
        case: (
            statistics.median(r[0] for r in runs),
            statistics.median(r[1] for r in runs),
            statistics.median(r[2] for r in runs),
        )
        for case, runs in results.items()
    }


def http_table(figures: dict[str, tuple[float, float, float]]) -> str:
    plain_rps, plain_cpu, plain_p50 = figures[CASES[0]]
    lines = [
        "| request | req/s (c=32) | CPU µs/request | p50 ms (c=1) "
        "| req/s vs plain | CPU vs plain | p50 vs plain |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case, (rps, cpu, p50) in figures.items():
        lines.append(
            f"| {case} | {rps:,.0f} | {cpu:,.0f} | {p50:.3f} | {rps / plain_rps:.2f}x "
            f"| {cpu / plain_cpu:.2f}x | {p50 / plain_p50:.2f}x |"
        )
    return "\n".join(lines)


def micro_table(rows: list[tuple[str, float | str]]) -> str:
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'operation'.ljust(width)} | µs per op |", f"|{'-' * (width + 2)}|----------:|"]
    for name, value in rows:
        shown = f"{value:9.2f}" if isinstance(value, float) else value
        lines.append(f"| {name.ljust(width)} | {shown} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--http-only", action="store_true")
    only.add_argument("--in-process-only", action="store_true")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    parts: list[str] = []
    if not args.in_process_only:
        figures = http_figures(args)
        table = http_table(figures)
        print(f"\nmedians of {args.repeats} interleaved runs, {args.seconds:.0f} s each\n{table}")
        parts.append(
            "`python bench/policies.py`: one `traceway gateway` (standalone, tracing exported "
            "to an OTLP sink) pinned to core 1; a fast aiohttp upstream, the sink and the "
            f"driver on core 0. Each case for {args.seconds:.0f} s at c={args.concurrency} "
            f"(req/s, the gateway's CPU per request) and at c=1 (p50), cases interleaved, "
            f"medians of {args.repeats} runs. The cache hit is a `cache: {{mode: simple}}` "
            "config answering from its in-memory store; the guardrail pass runs "
            "`default.contains` and `default.pii` on the request before routing it.\n\n" + table
        )
    if not args.http_only:
        rows = asyncio.run(measure(args))
        table = micro_table(rows)
        print(f"\nin-process, medians of {args.repeats} loops\n{table}")
        parts.append(
            "In-process, one event loop, no HTTP: µs per operation (medians of "
            f"{args.repeats} loops of {args.iterations:,} calls).\n\n" + table
        )
    if args.write:
        write_section("Gateway policies", "\n\n".join(parts))


if __name__ == "__main__":
    main()
