"""The response cache with the in-process backend: statuses, what is stored, LRU and TTL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from traceway.gateway.cache import (
    CacheBackendError,
    CacheLookup,
    CachePolicy,
    CacheStatus,
    MemoryBackend,
    ResponseCache,
    cache_headers,
)
from traceway.gateway.errors import GatewayError
from traceway.gateway.providers.base import CHAT, EMBEDDINGS, RESPONSES

SIMPLE = CachePolicy(mode="simple", max_age_s=60)
SEMANTIC = CachePolicy(mode="semantic", max_age_s=60, similarity_threshold=0.9)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chat(question: str, **params: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}], **params}


def answer(text: str, **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            **extra,
        }
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- policy -------------------------------------------------------------------


def test_policy_from_portkey_config() -> None:
    assert [
        CachePolicy.from_config(None),
        CachePolicy.from_config("simple"),
        CachePolicy.from_config({"mode": "semantic", "max_age": 120}),
        CachePolicy.from_config({"mode": "semantic", "similarity_threshold": 0.8}),
    ] == [
        None,
        CachePolicy(mode="simple", max_age_s=7 * 24 * 3600),
        CachePolicy(mode="semantic", max_age_s=120.0, similarity_threshold=0.95),
        CachePolicy(mode="semantic", max_age_s=7 * 24 * 3600, similarity_threshold=0.8),
    ]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"mode": "fuzzy"},
            "invalid config: cache: mode must be 'simple' or 'semantic', not 'fuzzy'",
        ),
        (
            {"max_age": 0},
            "invalid config: cache: max_age must be a positive number of seconds, not 0",
        ),
        ({"mode": "simple", "ttl": 5}, "invalid config: cache: unknown field 'ttl'"),
        (
            {"mode": "semantic", "similarity_threshold": 1.5},
            "invalid config: cache: similarity_threshold must be in (0, 1], not 1.5",
        ),
        (
            ["simple"],
            "invalid config: cache: expected an object such as {'mode': 'simple', 'max_age': 3600}",
        ),
    ],
)
def test_policy_errors_are_400s(config: Any, message: str) -> None:
    with pytest.raises(GatewayError) as caught:
        CachePolicy.from_config(config)
    assert (caught.value.status, caught.value.message, caught.value.param) == (
        400,
        message,
        "cache",
    )


# -- statuses -----------------------------------------------------------------


def test_miss_then_hit_then_refresh() -> None:
    async def scenario() -> list[tuple[str, bytes | None]]:
        cache = ResponseCache(MemoryBackend())
        seen = []
        first = await cache.lookup(CHAT, chat("Hi"), SIMPLE)
        seen.append((first.status.value, first.entry))
        assert await cache.store(first, answer("Hello!"))
        # The same request streamed, with its keys in another order: still a hit.
        again = {"stream": True, **dict(reversed(list(chat("Hi").items())))}
        hit = await cache.lookup(CHAT, again, SIMPLE)
        seen.append((hit.status.value, hit.entry))
        refresh = await cache.lookup(CHAT, chat("Hi"), SIMPLE, force_refresh=True)
        seen.append((refresh.status.value, refresh.entry))
        await cache.store(refresh, answer("Hello again!"))
        after = await cache.lookup(CHAT, chat("Hi"), SIMPLE)
        seen.append((after.status.value, after.entry))
        return seen

    assert run(scenario()) == [
        ("MISS", None),
        ("HIT", answer("Hello!")),
        ("REFRESH", None),
        ("HIT", answer("Hello again!")),
    ]


def test_disabled_without_policy_or_for_uncacheable_endpoints() -> None:
    async def scenario() -> list[CacheLookup]:
        cache = ResponseCache(MemoryBackend())
        return [
            await cache.lookup(CHAT, chat("Hi"), None),
            await cache.lookup(RESPONSES, {"model": "m", "input": "Hi"}, SIMPLE),
        ]

    lookups = run(scenario())
    assert [(lk.status, lk.key, lk.storable) for lk in lookups] == [
        (CacheStatus.DISABLED, None, False),
        (CacheStatus.DISABLED, None, False),
    ]
    assert lookups[0].headers == [
        (b"x-traceway-cache-status", b"DISABLED"),
        (b"x-portkey-cache-status", b"DISABLED"),
    ]


def test_temperature_changes_the_key() -> None:
    async def scenario() -> list[str]:
        cache = ResponseCache(MemoryBackend())
        await cache.store(await cache.lookup(CHAT, chat("Hi", temperature=0), SIMPLE), answer("a"))
        return [
            (await cache.lookup(CHAT, chat("Hi", temperature=0), SIMPLE)).status.value,
            (await cache.lookup(CHAT, chat("Hi", temperature=1), SIMPLE)).status.value,
        ]

    assert run(scenario()) == ["HIT", "MISS"]


def test_only_whole_successful_answers_are_stored() -> None:
    error = orjson.dumps({"error": {"message": "boom", "type": "server_error"}})
    unfinished = orjson.dumps(
        {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {}, "finish_reason": None}],
        }
    )
    embedding = orjson.dumps({"object": "list", "data": [{"index": 0, "embedding": [0.1]}]})

    async def scenario() -> dict[str, bool]:
        cache = ResponseCache(MemoryBackend())

        async def stored(name: str, body: bytes, status: int = 200, endpoint: str = CHAT) -> bool:
            lookup = await cache.lookup(endpoint, chat(name), SIMPLE)
            return await cache.store(lookup, body, status=status)

        return {
            "ok": await stored("ok", answer("fine")),
            "500": await stored("500", answer("fine"), status=500),
            "error body": await stored("error body", error),
            "not json": await stored("not json", b"<html>"),
            "unfinished": await stored("unfinished", unfinished),
            "embedding": await stored("embedding", embedding, endpoint=EMBEDDINGS),
        }

    assert run(scenario()) == {
        "ok": True,
        "500": False,
        "error body": False,
        "not json": False,
        "unfinished": False,
        "embedding": True,
    }


def test_streamed_answers_are_stored_assembled() -> None:
    def event(payload: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    head = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 5, "model": "m"}
    pieces = [
        event({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        event({**head, "choices": [{"index": 0, "delta": {"content": "Par"}}]}),
        event({**head, "choices": [{"index": 0, "delta": {"content": "is"}}]}),
        event({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        b"data: [DONE]\n\n",
    ]

    async def scenario() -> tuple[bool, bool, Any]:
        cache = ResponseCache(MemoryBackend())
        body = chat("Capital of France?", stream=True)
        cut_short = await cache.store_stream(await cache.lookup(CHAT, body, SIMPLE), pieces[:3])
        with_error = await cache.store_stream(
            await cache.lookup(CHAT, body, SIMPLE),
            [*pieces[:2], b'data: {"error": {"message": "upstream died"}}\n\n'],
        )
        await cache.store_stream(await cache.lookup(CHAT, body, SIMPLE), pieces)
        hit = await cache.lookup(CHAT, chat("Capital of France?"), SIMPLE)
        return cut_short, with_error, orjson.loads(hit.entry or b"null")

    cut_short, with_error, stored = run(scenario())
    assert (cut_short, with_error) == (False, False)
    assert stored == {
        "id": "chatcmpl-9",
        "model": "m",
        "created": 5,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris"},
                "finish_reason": "stop",
            }
        ],
        "usage": None,
    }


def test_cache_headers_name_the_status_twice() -> None:
    assert cache_headers(CacheStatus.SEMANTIC_HIT) == [
        (b"x-traceway-cache-status", b"SEMANTIC_HIT"),
        (b"x-portkey-cache-status", b"SEMANTIC_HIT"),
    ]


# -- the in-process backend ---------------------------------------------------


def test_memory_backend_evicts_least_recently_used_by_bytes() -> None:
    async def scenario() -> tuple[list[str], int, int]:
        # Room for two 1,000-byte entries (each also costs its key and ~200 bytes).
        backend = MemoryBackend(max_bytes=2_600)
        for key in ("a", "b"):
            await backend.set(key, b"x" * 1000, 60)
        await backend.get("a")  # now "b" is the least recently used
        await backend.set("c", b"x" * 1000, 60)
        await backend.set("huge", b"x" * 5000, 60)  # larger than the bound: not stored
        present = [key for key in ("a", "b", "c", "huge") if await backend.get(key) is not None]
        return present, backend.evictions, backend.used_bytes

    present, evictions, used = run(scenario())
    assert (present, evictions) == (["a", "c"], 1)
    assert used <= 2_600


def test_memory_entries_expire_by_the_injected_clock() -> None:
    clock = FakeClock()

    async def scenario() -> list[str]:
        cache = ResponseCache(clock=clock)
        policy = CachePolicy(mode="simple", max_age_s=30)
        await cache.store(await cache.lookup(CHAT, chat("Hi"), policy), answer("Hello"))
        statuses = []
        clock.now += 29.9
        statuses.append((await cache.lookup(CHAT, chat("Hi"), policy)).status.value)
        clock.now += 0.1
        statuses.append((await cache.lookup(CHAT, chat("Hi"), policy)).status.value)
        return statuses

    assert run(scenario()) == ["HIT", "MISS"]


def test_memory_vectors_are_bounded_per_bucket_and_expire() -> None:
    clock = FakeClock()

    async def scenario() -> tuple[list[str], list[str]]:
        backend = MemoryBackend(max_vectors_per_bucket=2, clock=clock)
        await backend.add_vector("bucket", "k1", b"\x00" * 8, 10)
        await backend.add_vector("bucket", "k2", b"\x00" * 8, 20)
        await backend.add_vector("bucket", "k3", b"\x00" * 8, 20)
        bounded = [key for key, _ in await backend.vectors("bucket")]
        clock.now += 15
        await backend.add_vector("bucket", "k4", b"\x00" * 8, 1)
        clock.now += 2
        later = [key for key, _ in await backend.vectors("bucket")]
        return bounded, later

    assert run(scenario()) == (["k2", "k3"], ["k3"])


# -- semantic matching with a deterministic embedder ----------------------------


class TableEmbedder:
    """Vectors looked up by text, so similarities are known exactly."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    async def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [self.table[text] for text in texts]


def test_semantic_hit_needs_the_threshold_and_the_same_parameters() -> None:
    embedder = TableEmbedder(
        {
            "capital of France?": [1.0, 0.0, 0.0],
            "France's capital city?": [0.95, 0.31, 0.0],  # cosine 0.95
            "sourdough recipe?": [0.0, 0.0, 1.0],
        }
    )

    async def scenario() -> list[tuple[str, float | None]]:
        cache = ResponseCache(MemoryBackend(), embedder=embedder)
        first = await cache.lookup(CHAT, chat("capital of France?"), SEMANTIC)
        await cache.store(first, answer("Paris"))
        results = []
        for body in (
            chat("France's capital city?"),
            chat("sourdough recipe?"),
            chat("France's capital city?", temperature=1),
        ):
            lookup = await cache.lookup(CHAT, body, SEMANTIC)
            similarity = None if lookup.similarity is None else round(lookup.similarity, 2)
            results.append((lookup.status.value, similarity))
        return results

    assert run(scenario()) == [("SEMANTIC_HIT", 0.95), ("MISS", None), ("MISS", None)]


def test_semantic_refresh_embeds_when_storing() -> None:
    embedder = TableEmbedder({"q": [1.0, 0.0], "q?": [1.0, 0.01]})

    async def scenario() -> str:
        cache = ResponseCache(MemoryBackend(), embedder=embedder)
        refresh = await cache.lookup(CHAT, chat("q"), SEMANTIC, force_refresh=True)
        await cache.store(refresh, answer("A"))
        return (await cache.lookup(CHAT, chat("q?"), SEMANTIC)).status.value

    assert run(scenario()) == "SEMANTIC_HIT"
    assert embedder.calls == [["q"], ["q?"]]


def test_failures_become_misses() -> None:
    class BrokenBackend(MemoryBackend):
        async def get(self, key: str) -> bytes | None:
            raise CacheBackendError("redis: connection refused")

    async def broken_embedder(texts: Sequence[str]) -> list[list[float]]:
        raise ConnectionError("embeddings route is down")

    async def scenario() -> tuple[list[str], int, int]:
        backend_down = ResponseCache(BrokenBackend())
        embedder_down = ResponseCache(MemoryBackend(), embedder=broken_embedder)
        statuses = [
            (await backend_down.lookup(CHAT, chat("Hi"), SIMPLE)).status.value,
            (await embedder_down.lookup(CHAT, chat("Hi"), SEMANTIC)).status.value,
        ]
        return statuses, backend_down.errors, embedder_down.errors

    assert run(scenario()) == (["MISS", "MISS"], 1, 1)
