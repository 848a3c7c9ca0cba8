"""Gateway API keys and virtual keys in the store, and the resolver the gateway calls.

>>> from traceway.store import open_store
>>> store = open_store("sqlite://")
>>> keys = KeyStore.for_store(store)
>>> created = keys.create_gateway_key("ci", models=["gpt-4o-mini"])
>>> keys.verify_gateway_key(created.token).name
'ci'
>>> keys.revoke_gateway_key(created.key.key_id).revoked
True
>>> keys.verify_gateway_key(created.token) is None
True
>>> store.close()

A gateway key's plaintext exists only in :class:`CreatedGatewayKey` (shown once);
a virtual key's API key is encrypted before it reaches SQL and decrypted only by
:meth:`KeyStore.virtual_key_credentials`.  Both tables stay small (one row per
key a person made), so listings read them whole.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import Connection, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from traceway.gateway.keys import (
    GatewayKeyInfo,
    SecretBox,
    VirtualKeyCredentials,
    display_prefix,
    hash_gateway_key,
    looks_like_gateway_key,
    new_gateway_key,
)
from traceway.store import schema
from traceway.store.database import Database, describe_error
from traceway.store.errors import StoreError
from traceway.store.sql import insert_for
from traceway.store.store import Store

__all__ = [
    "CreatedGatewayKey",
    "GatewayKey",
    "KeyStore",
    "KeyValidationError",
    "StoreKeyResolver",
    "VirtualKey",
    "VirtualKeyExists",
]

#: ``last_used_at_ms`` is written at most this often per key: a write per request
#: would put the hot path behind the database.
LAST_USED_RESOLUTION_MS = 60_000
#: How long the resolver trusts an answer: the longest a revocation takes to bite.
DEFAULT_TTL_S = 5.0
MAX_SECRET_CHARS = 16_384
#: Slugs and provider names: safe in a header, a URL path and a log line.
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_g = schema.gateway_keys.c
_v = schema.virtual_keys.c


class KeyValidationError(StoreError):
    """A key's name, scope, slug, provider, host or secret is not acceptable."""


class VirtualKeyExists(StoreError):
    """A virtual key with this slug already exists."""

    def __init__(self, slug: str) -> None:
        super().__init__(f"a virtual key with slug {slug!r} already exists")
        self.slug = slug


@dataclass(slots=True)
class GatewayKey:
    """A gateway key as stored: everything but the key itself."""

    key_id: int
    name: str
    prefix: str
    models: list[str] | None
    configs: list[str] | None
    created_at_ms: int
    last_used_at_ms: int | None = None
    revoked_at_ms: int | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at_ms is not None

    def info(self) -> GatewayKeyInfo:
        """What the gateway needs to know about this key."""
        return GatewayKeyInfo(
            key_id=self.key_id,
            name=self.name,
            prefix=self.prefix,
            models=None if self.models is None else tuple(self.models),
            configs=None if self.configs is None else tuple(self.configs),
        )


@dataclass(slots=True)
class CreatedGatewayKey:
    """A new key and its plaintext ``token``: show it once, it cannot be read back."""

    key: GatewayKey
    token: str = field(repr=False)


@dataclass(slots=True)
class VirtualKey:
    """A virtual key as listed: never its secret."""

    slug: str
    name: str
    provider: str
    custom_host: str | None
    options: dict[str, Any]
    created_at_ms: int


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class KeyStore:
    """Gateway keys and virtual keys on a store's database; thread-safe.

    ``secret_box`` encrypts virtual keys; when it is not given it is made from
    ``TRACEWAY_SECRET_KEY`` the first time a virtual key is created or read, so
    gateway keys work without it.
    """

    def __init__(
        self,
        database: Database,
        *,
        write_lock: threading.Lock | None = None,
        now_ms: Callable[[], int] = _wall_clock_ms,
        secret_box: SecretBox | None = None,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._db = database
        lock = write_lock or threading.Lock()
        # SQLite has one writer at a time (the store's lock queues them); an
        # in-memory database has one connection, so readers take turns too.
        self._write_lock: AbstractContextManager[Any] = (
            lock if database.dialect == "sqlite" else nullcontext()
        )
        self._read_lock: AbstractContextManager[Any] = (
            lock if database.single_connection else nullcontext()
        )
        self._now_ms = now_ms
        self._box = secret_box
        self._random_bytes = random_bytes

    @classmethod
    def for_store(cls, store: Store, **options: Any) -> KeyStore:
        """The key store on ``store``'s database, sharing its write lock."""
        return cls(store.database, write_lock=store.write_lock, **options)

    # --- gateway keys ----------------------------------------------------------

    def create_gateway_key(
        self,
        name: str,
        *,
        models: Sequence[str] | None = None,
        configs: Sequence[str] | None = None,
    ) -> CreatedGatewayKey:
        """Create a key limited to ``models`` / ``configs`` (``None``: any)."""
        name = _name(name)
        models = _scope("models", models)
        configs = _scope("configs", configs)
        token = new_gateway_key(self._random_bytes)
        created_at = self._now_ms()
        statement = (
            schema.gateway_keys.insert()
            .values(
                name=name,
                key_hash=hash_gateway_key(token),
                prefix=display_prefix(token),
                models=_dumps(models),
                configs=_dumps(configs),
                created_at_ms=created_at,
            )
            .returning(_g.key_id)
        )
        with self._write() as conn:
            key_id = conn.execute(statement).scalar_one()
        key = GatewayKey(key_id, name, display_prefix(token), models, configs, created_at)
        return CreatedGatewayKey(key, token)

    def list_gateway_keys(self) -> list[GatewayKey]:
        """Every gateway key, revoked ones included, oldest first."""
        with self._read() as conn:
            rows = conn.execute(select(schema.gateway_keys).order_by(_g.key_id)).all()
        return [_gateway_key(row) for row in rows]

    def get_gateway_key(self, key_id: int) -> GatewayKey | None:
        """The key with this id, or ``None``."""
        with self._read() as conn:
            row = conn.execute(select(schema.gateway_keys).where(_g.key_id == key_id)).first()
        return None if row is None else _gateway_key(row)

    def revoke_gateway_key(self, key_id: int) -> GatewayKey | None:
        """Revoke a key (again is a no-op); ``None`` if there is no such key."""
        with self._write() as conn:
            conn.execute(
                update(schema.gateway_keys)
                .where(_g.key_id == key_id, _g.revoked_at_ms.is_(None))
                .values(revoked_at_ms=self._now_ms())
            )
            row = conn.execute(select(schema.gateway_keys).where(_g.key_id == key_id)).first()
        return None if row is None else _gateway_key(row)

    def verify_gateway_key(self, token: str) -> GatewayKey | None:
        """The unrevoked key whose plaintext is ``token``, else ``None``; notes its use."""
        if not looks_like_gateway_key(token):
            return None
        query = select(schema.gateway_keys).where(_g.key_hash == hash_gateway_key(token))
        with self._read() as conn:
            row = conn.execute(query).first()
        if row is None or row.revoked_at_ms is not None:
            return None
        key = _gateway_key(row)
        now = self._now_ms()
        if key.last_used_at_ms is None or now - key.last_used_at_ms >= LAST_USED_RESOLUTION_MS:
            stale = now - LAST_USED_RESOLUTION_MS
            with self._write() as conn:
                conn.execute(
                    update(schema.gateway_keys)
                    .where(
                        _g.key_id == key.key_id,
                        or_(_g.last_used_at_ms.is_(None), _g.last_used_at_ms <= stale),
                    )
                    .values(last_used_at_ms=now)
                )
            key.last_used_at_ms = now
        return key

    # --- virtual keys ----------------------------------------------------------

    def create_virtual_key(
        self,
        slug: str,
        *,
        provider: str,
        api_key: str,
        name: str | None = None,
        custom_host: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> VirtualKey:
        """Store provider credentials under ``slug``, the API key encrypted.

        Raises :class:`~traceway.gateway.keys.SecretKeyError` without
        ``TRACEWAY_SECRET_KEY``, :class:`VirtualKeyExists` for a taken slug.
        """
        slug = _slug(slug)
        record = VirtualKey(
            slug=slug,
            name=_name(name if name is not None else slug),
            provider=_provider(provider),
            custom_host=_custom_host(custom_host),
            options=_options(options),
            created_at_ms=self._now_ms(),
        )
        if not isinstance(api_key, str) or not api_key.strip():
            raise KeyValidationError("a virtual key needs a non-empty api_key")
        if len(api_key) > MAX_SECRET_CHARS:
            raise KeyValidationError(f"api_key is longer than {MAX_SECRET_CHARS} characters")
        ciphertext = self._secret_box().encrypt(api_key.strip(), context=slug)
        statement = (
            insert_for(self._db.dialect, schema.virtual_keys)
            .values(
                slug=slug,
                name=record.name,
                provider=record.provider,
                custom_host=record.custom_host,
                options=_dumps(record.options) if record.options else None,
                api_key_ciphertext=ciphertext,
                created_at_ms=record.created_at_ms,
            )
            .on_conflict_do_nothing(index_elements=[_v.slug])
            .returning(_v.slug)
        )
        with self._write() as conn:
            if conn.execute(statement).first() is None:
                raise VirtualKeyExists(slug)
        return record

    def list_virtual_keys(self) -> list[VirtualKey]:
        """Every virtual key by slug, without secrets."""
        with self._read() as conn:
            rows = conn.execute(select(*_VIRTUAL_COLUMNS).order_by(_v.slug)).all()
        return [_virtual_key(row) for row in rows]

    def get_virtual_key(self, slug: str) -> VirtualKey | None:
        """The virtual key with this slug, without its secret."""
        with self._read() as conn:
            row = conn.execute(select(*_VIRTUAL_COLUMNS).where(_v.slug == slug)).first()
        return None if row is None else _virtual_key(row)

    def delete_virtual_key(self, slug: str) -> bool:
        """Delete a virtual key and its secret; ``False`` if there was none."""
        with self._write() as conn:
            result = conn.execute(schema.virtual_keys.delete().where(_v.slug == slug))
        return bool(result.rowcount)

    def virtual_key_credentials(self, slug: str) -> VirtualKeyCredentials | None:
        """The decrypted credentials behind ``slug`` (for the gateway only), or ``None``.

        Raises :class:`~traceway.gateway.keys.KeysError` when they cannot be decrypted.
        """
        query = select(*_VIRTUAL_COLUMNS, _v.api_key_ciphertext).where(_v.slug == slug)
        with self._read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        record = _virtual_key(row)
        return VirtualKeyCredentials(
            slug=record.slug,
            provider=record.provider,
            api_key=self._secret_box().decrypt(row.api_key_ciphertext, context=record.slug),
            custom_host=record.custom_host,
            provider_options=record.options,
        )

    # --- plumbing --------------------------------------------------------------

    def _secret_box(self) -> SecretBox:
        if self._box is None:
            self._box = SecretBox.from_env()
        return self._box

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._write_lock, _translated(), self._db.writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._read_lock, _translated(), self._db.reader.connect() as conn:
            yield conn


_VIRTUAL_COLUMNS = (_v.slug, _v.name, _v.provider, _v.custom_host, _v.options, _v.created_at_ms)


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {describe_error(exc)}") from exc


def _gateway_key(row: Any) -> GatewayKey:
    return GatewayKey(
        key_id=row.key_id,
        name=row.name,
        prefix=row.prefix,
        models=_loads(row.models),
        configs=_loads(row.configs),
        created_at_ms=row.created_at_ms,
        last_used_at_ms=row.last_used_at_ms,
        revoked_at_ms=row.revoked_at_ms,
    )


def _virtual_key(row: Any) -> VirtualKey:
    return VirtualKey(
        slug=row.slug,
        name=row.name,
        provider=row.provider,
        custom_host=row.custom_host,
        options=_loads(row.options) or {},
        created_at_ms=row.created_at_ms,
    )


def _dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _text(what: str, value: Any, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise KeyValidationError(f"{what} must be a non-empty string")
    value = value.strip()
    if len(value) > limit:
        raise KeyValidationError(f"{what} is at most {limit} characters, {value[:40]!r}... is not")
    if "\x00" in value:
        raise KeyValidationError(f"{what} may not contain NUL characters")
    return value


def _name(name: Any) -> str:
    return _text("a key's name", name, schema.MAX_KEY_NAME_CHARS)


def _scope(what: str, names: Sequence[str] | None) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, str):
        raise KeyValidationError(f"{what} must be a list of names")
    cleaned = list(dict.fromkeys(_text(f"each of {what}", n, 256) for n in names))
    if not cleaned:
        # An empty list would read as "no limit" somewhere and "nothing" elsewhere.
        raise KeyValidationError(f"{what} must name at least one (leave it out to allow all)")
    return cleaned


def _slug(slug: Any) -> str:
    slug = _text("a virtual key's slug", slug, schema.MAX_SLUG_CHARS)
    if not _IDENTIFIER.fullmatch(slug):
        raise KeyValidationError(
            f"slug {slug!r} may only hold letters, digits, '-', '_' and '.', "
            "starting with a letter or digit"
        )
    return slug


def _provider(provider: Any) -> str:
    provider = _text("provider", provider, schema.MAX_PROVIDER_CHARS)
    if not _IDENTIFIER.fullmatch(provider):
        raise KeyValidationError(f"{provider!r} is not a provider name")
    return provider


def _custom_host(host: str | None) -> str | None:
    if host is None or (isinstance(host, str) and not host.strip()):
        return None
    host = _text("custom_host", host, 2048)
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise KeyValidationError(f"custom_host {host!r} is not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        # The host is listed in clear; credentials belong in the encrypted api_key.
        raise KeyValidationError("custom_host may not contain credentials; put them in api_key")
    return host.rstrip("/")


def _options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    if not options:
        return {}
    if not isinstance(options, Mapping):
        raise KeyValidationError("options must be an object of provider settings")
    cleaned: dict[str, Any] = {}
    for key, value in options.items():
        key = _text("an option name", key, 64)
        if value is not None and not isinstance(value, str | int | float | bool):
            raise KeyValidationError(f"option {key!r} must be a string, number or boolean")
        cleaned[key] = value
    return cleaned


class StoreKeyResolver:
    """The gateway's :class:`~traceway.gateway.keys.KeyResolver` over a :class:`KeyStore`.

    Database calls run in worker threads.  Answers (a key's record, or that it is
    unknown; a virtual key's credentials) are cached per process for ``ttl_s``
    seconds, so a revocation or deletion takes effect within that time; ``ttl_s=0``
    caches nothing.  Concurrent misses for one key share a single lookup.  Use one
    resolver per event loop.
    """

    def __init__(
        self,
        keys: KeyStore,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._pending: dict[tuple[str, str], asyncio.Task[Any]] = {}

    async def verify_gateway_key(self, token: str) -> GatewayKeyInfo | None:
        """The key's record if ``token`` is a known, unrevoked gateway key."""
        if not looks_like_gateway_key(token):
            return None  # no lookup, no cache entry: garbage cannot fill the cache
        return await self._cached(("gateway", hash_gateway_key(token)), self._verify, token)

    async def resolve_virtual_key(self, slug: str) -> VirtualKeyCredentials | None:
        """The decrypted credentials behind ``slug``, or ``None``."""
        return await self._cached(("virtual", slug), self._keys.virtual_key_credentials, slug)

    def clear(self) -> None:
        """Forget every cached answer (the next requests read the database)."""
        self._cache.clear()

    def _verify(self, token: str) -> GatewayKeyInfo | None:
        key = self._keys.verify_gateway_key(token)
        return None if key is None else key.info()

    async def _cached(self, slot: tuple[str, str], lookup: Callable[[str], Any], arg: str) -> Any:
        now = self._clock()
        hit = self._cache.get(slot)
        if hit is not None and hit[0] > now:
            return hit[1]
        task = self._pending.get(slot)
        if task is None:
            task = asyncio.create_task(asyncio.to_thread(lookup, arg))
            self._pending[slot] = task
            task.add_done_callback(lambda done: self._settle(slot, done))
        # A caller that gives up (its client left) must not cancel the others' lookup.
        return await asyncio.shield(task)

    def _settle(self, slot: tuple[str, str], task: asyncio.Task[Any]) -> None:
        self._pending.pop(slot, None)
        if self._ttl_s <= 0 or task.cancelled() or task.exception() is not None:
            return  # failures are not cached: the next request tries again
        if len(self._cache) >= self._max_entries:
            self._evict()
        self._cache.pop(slot, None)
        self._cache[slot] = (self._clock() + self._ttl_s, task.result())

    def _evict(self) -> None:
        now = self._clock()
        for slot in [s for s, (expires, _) in self._cache.items() if expires <= now]:
            del self._cache[slot]
        while len(self._cache) >= self._max_entries:
            del self._cache[next(iter(self._cache))]  # the oldest entry
