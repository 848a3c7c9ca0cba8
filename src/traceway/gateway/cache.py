"""The response cache: simple (exact request) and semantic (similar question) modes.

A route config turns it on in Portkey's shape::

    {"cache": {"mode": "semantic", "max_age": 3600, "similarity_threshold": 0.9},
     "provider": "openai"}

*Simple* mode answers a request seen before (same model, messages and every
parameter that changes the answer; see :mod:`traceway.gateway._cache_keys`).
*Semantic* mode also answers a request whose last user message means the same
as a cached one (cosine similarity of embeddings at or above the threshold, with
the rest of the request identical).  Streams are cached too: the assembled
answer is stored and replayed as OpenAI's SSE chunks.  Only complete, 2xx,
non-error answers are stored.  Entries live in a bounded in-process LRU
(:class:`MemoryBackend`) or in Redis (:class:`RedisBackend`, shared by replicas).

The cache never fails a request: a store that cannot be reached, or an embedder
that errs, makes the request a miss (logged, and counted in ``errors``).

How to wire it (in ``Gateway._proxy``, :mod:`traceway.gateway.app`)
--------------------------------------------------------------------
1. Config: in ``compile_config``, ``CachePolicy.from_config(cfg.cache)`` for the
   top-level config, kept on :class:`~traceway.gateway.config.Route` (e.g.
   ``route.cache: CachePolicy | None``); it raises the same 400 as other config errors.
2. Startup: ``Gateway`` owns one ``ResponseCache(backend, embedder=...)``
   (``MemoryBackend()`` by default, ``RedisBackend.from_url(url)`` when settings
   name a Redis; ``embedder=LocalEmbedder()`` with ``.load()`` called at startup,
   or :func:`openai_embedder` over the gateway's embeddings route); ``close()`` it
   on shutdown.
3. After ``parse_json_object`` and ``routes.resolve``, before the router::

       lookup = await cache.lookup(endpoint, body, route.cache,
                                   options.cache_force_refresh, namespace=...)

   ``namespace`` keeps tenants apart: e.g. the virtual key, or a hash of the
   provider key, plus ``route.source``.  If ``lookup.entry`` is not ``None``,
   answer from it without calling the router: JSON (``send_json(send, 200,
   lookup.entry, headers)``), or, when ``body["stream"]``, the events of
   ``replay_stream(lookup.entry, include_usage)`` (``include_usage`` from
   ``body["stream_options"]``) relayed like an upstream stream.
4. Always add ``lookup.headers`` to the response headers
   (``x-traceway-cache-status`` and ``x-portkey-cache-status``), and record
   ``metrics.record_cache(lookup.status)``.
5. After a miss (or refresh): ``await cache.store(lookup, response.body,
   status=response.status)`` for a JSON answer; for a stream, keep the relayed
   pieces when ``lookup.storable`` and, after a relay that ended without error,
   ``await cache.store_stream(lookup, pieces)``.  Both are no-ops when disabled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import orjson

from traceway.gateway._cache_backends import (
    CacheBackend,
    CacheBackendError,
    MemoryBackend,
    RedisBackend,
)
from traceway.gateway._cache_keys import CACHEABLE_ENDPOINTS, request_key, semantic_parts
from traceway.gateway._cache_replay import replay_events, replay_stream
from traceway.gateway._semantic import (
    HAVE_NUMPY,
    Embedder,
    LocalEmbedder,
    best_match,
    openai_embedder,
    pack,
)
from traceway.gateway.errors import GatewayError
from traceway.gateway.streams import aggregate_stream, iter_events

__all__ = [
    "CacheBackend",
    "CacheBackendError",
    "CacheLookup",
    "CachePolicy",
    "CacheStatus",
    "Embedder",
    "LocalEmbedder",
    "MemoryBackend",
    "RedisBackend",
    "ResponseCache",
    "cache_headers",
    "openai_embedder",
    "replay_events",
    "replay_stream",
]

logger = logging.getLogger(__name__)

#: Portkey's default ``max_age``: seven days.
DEFAULT_MAX_AGE_S = 7 * 24 * 3600
DEFAULT_SIMILARITY_THRESHOLD = 0.95
_WARN_INTERVAL_S = 10.0


class CacheStatus(StrEnum):
    """The ``x-traceway-cache-status`` response header."""

    HIT = "HIT"
    SEMANTIC_HIT = "SEMANTIC_HIT"
    MISS = "MISS"
    REFRESH = "REFRESH"
    DISABLED = "DISABLED"


_HEADER_NAMES = (b"x-traceway-cache-status", b"x-portkey-cache-status")
_HEADERS = {
    status: [(name, status.value.encode()) for name in _HEADER_NAMES] for status in CacheStatus
}


def cache_headers(status: CacheStatus) -> list[tuple[bytes, bytes]]:
    """The cache status under both header prefixes (a fresh list: callers may extend it)."""
    return list(_HEADERS[status])


def _invalid(message: str) -> GatewayError:
    return GatewayError(400, f"invalid config: cache: {message}", param="cache")


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """A route's ``cache`` setting, validated."""

    mode: Literal["simple", "semantic"] = "simple"
    max_age_s: float = DEFAULT_MAX_AGE_S
    similarity_threshold: float = DEFAULT_SIMILARITY_THRESHOLD

    @classmethod
    def from_config(cls, config: Any) -> CachePolicy | None:
        """Read Portkey's ``cache`` value: ``None`` (off), ``"simple"``, or an object.

        Raises :class:`GatewayError` (400) naming what is wrong.

        >>> CachePolicy.from_config({"mode": "semantic", "max_age": 60})
        CachePolicy(mode='semantic', max_age_s=60.0, similarity_threshold=0.95)
        """
        if config is None or config is False:
            return None
        if isinstance(config, str):
            config = {"mode": config}
        if not isinstance(config, Mapping):
            raise _invalid("expected an object such as {'mode': 'simple', 'max_age': 3600}")
        unknown = set(config) - {"mode", "max_age", "similarity_threshold"}
        if unknown:
            raise _invalid(f"unknown field {sorted(unknown)[0]!r}")
        mode = config.get("mode", "simple")
        if mode not in ("simple", "semantic"):
            raise _invalid(f"mode must be 'simple' or 'semantic', not {mode!r}")
        max_age = config.get("max_age", DEFAULT_MAX_AGE_S)
        if isinstance(max_age, bool) or not isinstance(max_age, int | float) or max_age <= 0:
            raise _invalid(f"max_age must be a positive number of seconds, not {max_age!r}")
        threshold = config.get("similarity_threshold", DEFAULT_SIMILARITY_THRESHOLD)
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0 < threshold <= 1
        ):
            raise _invalid(f"similarity_threshold must be in (0, 1], not {threshold!r}")
        return cls(mode=mode, max_age_s=float(max_age), similarity_threshold=float(threshold))


@dataclass(slots=True)
class CacheLookup:
    """What :meth:`ResponseCache.lookup` found, and what :meth:`ResponseCache.store` needs."""

    status: CacheStatus
    entry: bytes | None = None  # the cached answer (JSON) on a hit
    key: str | None = None  # where a fresh answer goes; None when caching is off
    endpoint: str = ""
    policy: CachePolicy | None = None
    bucket: str | None = None  # the semantic bucket, if the request has one
    text: str | None = None  # the text that was (or will be) embedded
    vector: bytes | None = None
    similarity: float | None = None  # of the matched question, on a semantic hit

    @property
    def hit(self) -> bool:
        return self.entry is not None

    @property
    def storable(self) -> bool:
        """Whether an answer to this request should be stored."""
        return self.key is not None and self.entry is None

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return cache_headers(self.status)


def _storable_answer(parsed: Any) -> bool:
    if not isinstance(parsed, dict) or "error" in parsed:
        return False
    if parsed.get("object") == "list":  # embeddings
        return bool(parsed.get("data"))
    choices = parsed.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    # A stream cut short has choices without a finish reason: not a whole answer.
    return all(isinstance(c, dict) and c.get("finish_reason") for c in choices)


class ResponseCache:
    """Looks answers up and stores them; one per gateway, shared by all requests.

    >>> cache = ResponseCache(MemoryBackend())
    >>> policy = CachePolicy.from_config({"mode": "simple", "max_age": 60})
    """

    def __init__(
        self,
        backend: CacheBackend | None = None,
        *,
        embedder: Embedder | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Without an ``embedder``, semantic policies behave as simple ones.

        ``clock`` (monotonic seconds) drives the default in-process backend's expiry
        and the rate of failure warnings.
        """
        if embedder is not None and not HAVE_NUMPY:
            raise RuntimeError("the semantic cache needs NumPy: pip install numpy")
        self.backend: CacheBackend = backend if backend is not None else MemoryBackend(clock=clock)
        self.embedder = embedder
        #: Lookups and stores that failed (store unreachable, embedder error) and were skipped.
        self.errors = 0
        self._clock = clock
        self._warned_at = float("-inf")

    async def lookup(
        self,
        endpoint: str,
        body: Mapping[str, Any],
        policy: CachePolicy | None,
        force_refresh: bool = False,
        *,
        namespace: str = "",
    ) -> CacheLookup:
        """Find a cached answer for this request (see :class:`CacheStatus` for the outcomes)."""
        if policy is None or endpoint not in CACHEABLE_ENDPOINTS:
            return CacheLookup(CacheStatus.DISABLED)
        key = request_key(endpoint, body, namespace)
        lookup = CacheLookup(CacheStatus.MISS, key=key, endpoint=endpoint, policy=policy)
        if policy.mode == "semantic" and self.embedder is not None:
            parts = semantic_parts(endpoint, body, namespace)
            if parts is not None:
                lookup.bucket, lookup.text = parts
        if force_refresh:
            lookup.status = CacheStatus.REFRESH
            return lookup
        try:
            entry = await self.backend.get(key)
            if entry is not None:
                lookup.status, lookup.entry = CacheStatus.HIT, entry
                return lookup
            if lookup.bucket is not None:
                await self._semantic_lookup(lookup, policy)
        except CacheBackendError as exc:
            self._failed("cache lookup", exc)
        return lookup

    async def _semantic_lookup(self, lookup: CacheLookup, policy: CachePolicy) -> None:
        assert lookup.bucket is not None
        lookup.vector = await self._embed(lookup.text or "")
        if lookup.vector is None:
            return
        candidates = await self.backend.vectors(lookup.bucket)
        match = best_match(lookup.vector, candidates) if candidates else None
        if match is None or match[1] < policy.similarity_threshold:
            return
        entry = await self.backend.get(match[0])
        if entry is not None:
            lookup.status, lookup.entry, lookup.similarity = (
                CacheStatus.SEMANTIC_HIT,
                entry,
                match[1],
            )

    async def _embed(self, text: str) -> bytes | None:
        assert self.embedder is not None
        try:
            vectors = await self.embedder([text])
            return pack(vectors[0])
        except Exception as exc:
            # The embedder may be a network call: its failures make a miss, not an error.
            self._failed("embedding for the semantic cache", exc)
            return None

    def _failed(self, what: str, exc: Exception) -> None:
        self.errors += 1
        # A store that is down fails every request: log at a bounded rate, count all.
        now = self._clock()
        if now - self._warned_at >= _WARN_INTERVAL_S:
            self._warned_at = now
            logger.warning("%s failed, treated as a miss (%d so far): %s", what, self.errors, exc)

    async def store(self, lookup: CacheLookup, response_body: bytes, *, status: int = 200) -> bool:
        """Store a JSON answer after a miss or refresh; returns whether it was stored.

        Only 2xx answers that are complete and not errors are kept.
        """
        if not lookup.storable or not 200 <= status < 300:
            return False
        try:
            parsed = orjson.loads(response_body)
        except orjson.JSONDecodeError:
            return False
        if not _storable_answer(parsed):
            return False
        return await self._put(lookup, response_body)

    async def store_stream(self, lookup: CacheLookup, pieces: Iterable[bytes]) -> bool:
        """Store what a relayed SSE stream amounts to (call once it ended without error)."""
        if not lookup.storable:
            return False
        pieces = list(pieces)
        if any(isinstance(e, dict) and "error" in e for e in iter_events(pieces)):
            return False
        answer = aggregate_stream(lookup.endpoint, pieces)
        if not _storable_answer(answer):
            return False
        return await self._put(lookup, orjson.dumps(answer))

    async def _put(self, lookup: CacheLookup, value: bytes) -> bool:
        assert lookup.key is not None and lookup.policy is not None
        ttl = lookup.policy.max_age_s
        try:
            await self.backend.set(lookup.key, value, ttl)
            if lookup.bucket is not None:
                if lookup.vector is None:  # a refresh skipped the lookup that embeds
                    lookup.vector = await self._embed(lookup.text or "")
                if lookup.vector is not None:
                    await self.backend.add_vector(lookup.bucket, lookup.key, lookup.vector, ttl)
        except CacheBackendError as exc:
            self._failed("cache store", exc)
            return False
        return True

    async def close(self) -> None:
        """Close the backend (safe to call twice)."""
        await self.backend.close()
