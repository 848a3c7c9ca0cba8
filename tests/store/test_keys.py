"""Gateway keys and virtual keys in the store, on SQLite and PostgreSQL, and the
cached resolver the gateway calls."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import inspect, select, text

from traceway.gateway.keys import (
    DecryptionError,
    GatewayKeyInfo,
    SecretBox,
    SecretKeyError,
    VirtualKeyCredentials,
    hash_gateway_key,
)
from traceway.store import Store, StoreError
from traceway.store.database import connect
from traceway.store.keys import (
    LAST_USED_RESOLUTION_MS,
    CreatedGatewayKey,
    GatewayKey,
    KeyStore,
    KeyValidationError,
    StoreKeyResolver,
    VirtualKey,
    VirtualKeyExists,
)
from traceway.store.schema import gateway_keys, virtual_keys

SECRET = "a-test-secret-of-more-than-32-characters"
T0 = 1_700_000_000_000


class Clock:
    """A settable clock in ms (the key store's) and seconds (the resolver's)."""

    def __init__(self) -> None:
        self.ms = T0

    def now_ms(self) -> int:
        return self.ms

    def seconds(self) -> float:
        return self.ms / 1000


def counting_bytes() -> Callable[[int], bytes]:
    """Key material 1, 2, 3... so tokens are predictable."""
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(store: Store, clock: Clock) -> KeyStore:
    # The shared fixture empties only the trace tables between PostgreSQL tests.
    with store.database.writer.begin() as conn:
        if store.database.dialect == "postgresql":
            conn.execute(text("TRUNCATE gateway_keys, virtual_keys RESTART IDENTITY"))
    return KeyStore.for_store(
        store,
        now_ms=clock.now_ms,
        secret_box=SecretBox(SECRET),
        random_bytes=counting_bytes(),
    )


def test_the_migrations_create_the_key_tables(store: Store) -> None:
    with store.database.reader.connect() as conn:
        assert {"gateway_keys", "virtual_keys"} <= set(inspect(conn).get_table_names())


# --- gateway keys ------------------------------------------------------------


def test_create_list_and_revoke_gateway_keys(keys: KeyStore, clock: Clock) -> None:
    first = keys.create_gateway_key("ci", models=["gpt-4o", "gpt-4o-mini", "gpt-4o"])
    clock.ms += 1
    second = keys.create_gateway_key("  batch  ", configs=["prod"])
    assert first == CreatedGatewayKey(
        GatewayKey(1, "ci", "tw-AAAAAA", ["gpt-4o", "gpt-4o-mini"], None, T0),
        "tw-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE",
    )
    assert second.key == GatewayKey(2, "batch", "tw-AAAAAA", None, ["prod"], T0 + 1)
    assert keys.list_gateway_keys() == [first.key, second.key]

    clock.ms += 1
    revoked = keys.revoke_gateway_key(1)
    assert revoked == GatewayKey(
        1, "ci", "tw-AAAAAA", ["gpt-4o", "gpt-4o-mini"], None, T0, revoked_at_ms=T0 + 2
    )
    assert revoked is not None and revoked.revoked
    clock.ms += 1
    assert keys.revoke_gateway_key(1) == revoked  # revoking again keeps the first time
    assert keys.revoke_gateway_key(99) is None
    assert keys.get_gateway_key(1) == revoked
    assert keys.get_gateway_key(99) is None
    assert keys.list_gateway_keys() == [revoked, second.key]


def test_only_the_hash_of_a_key_is_stored(keys: KeyStore, store: Store) -> None:
    created = keys.create_gateway_key("ci")
    with store.database.reader.connect() as conn:
        row = conn.execute(select(gateway_keys)).one()
    assert row._asdict() == {
        "key_id": 1,
        "name": "ci",
        "key_hash": hash_gateway_key(created.token),
        "prefix": created.token[:9],
        "models": None,
        "configs": None,
        "created_at_ms": T0,
        "last_used_at_ms": None,
        "revoked_at_ms": None,
    }
    assert "token" not in repr(created) and created.token not in repr(created)


def test_verify_finds_active_keys_only_and_notes_their_use(keys: KeyStore, clock: Clock) -> None:
    created = keys.create_gateway_key("ci", models=["m"])
    clock.ms = T0 + 10
    verified = keys.verify_gateway_key(created.token)
    assert verified == GatewayKey(1, "ci", "tw-AAAAAA", ["m"], None, T0, last_used_at_ms=T0 + 10)
    assert verified.info() == GatewayKeyInfo(1, "ci", "tw-AAAAAA", models=("m",))
    # Uses within the resolution are not written again; a later one is.
    clock.ms = T0 + 10 + LAST_USED_RESOLUTION_MS - 1
    keys.verify_gateway_key(created.token)
    assert keys.list_gateway_keys()[0].last_used_at_ms == T0 + 10
    clock.ms = T0 + 10 + LAST_USED_RESOLUTION_MS
    keys.verify_gateway_key(created.token)
    assert keys.list_gateway_keys()[0].last_used_at_ms == T0 + 10 + LAST_USED_RESOLUTION_MS

    keys.revoke_gateway_key(1)
    assert keys.verify_gateway_key(created.token) is None
    assert keys.verify_gateway_key("tw-" + "A" * 43) is None  # well formed, unknown
    assert keys.verify_gateway_key("sk-whatever") is None


@pytest.mark.parametrize(
    ("name", "scopes", "message"),
    [
        ("", {}, "a key's name must be a non-empty string"),
        ("x" * 257, {}, "a key's name is at most 256 characters"),
        ("a\x00b", {}, "a key's name may not contain NUL characters"),
        ("ci", {"models": []}, "models must name at least one (leave it out to allow all)"),
        ("ci", {"configs": "prod"}, "configs must be a list of names"),
        ("ci", {"models": ["ok", " "]}, "each of models must be a non-empty string"),
    ],
)
def test_bad_gateway_keys_are_refused(
    keys: KeyStore, name: str, scopes: dict[str, object], message: str
) -> None:
    with pytest.raises(KeyValidationError) as caught:
        keys.create_gateway_key(name, **scopes)
    assert str(caught.value).startswith(message)
    assert keys.list_gateway_keys() == []


# --- virtual keys ------------------------------------------------------------


def test_create_list_resolve_and_delete_virtual_keys(keys: KeyStore, clock: Clock) -> None:
    created = keys.create_virtual_key(
        "vllm-local",
        provider="vllm",
        api_key=" sk-vllm-secret ",
        name="Local vLLM",
        custom_host="http://vllm.internal:8000/v1/",
        options={"api_version": "2024-10-21", "latency_ms": 5},
    )
    clock.ms += 1
    plain = keys.create_virtual_key("openai-prod", provider="openai", api_key="sk-live-123")
    assert created == VirtualKey(
        "vllm-local",
        "Local vLLM",
        "vllm",
        "http://vllm.internal:8000/v1",
        {"api_version": "2024-10-21", "latency_ms": 5},
        T0,
    )
    assert plain == VirtualKey("openai-prod", "openai-prod", "openai", None, {}, T0 + 1)
    assert keys.list_virtual_keys() == [plain, created]
    assert keys.get_virtual_key("vllm-local") == created
    assert keys.virtual_key_credentials("vllm-local") == VirtualKeyCredentials(
        "vllm-local",
        "vllm",
        "sk-vllm-secret",
        "http://vllm.internal:8000/v1",
        {"api_version": "2024-10-21", "latency_ms": 5},
    )
    assert keys.virtual_key_credentials("nope") is None

    assert keys.delete_virtual_key("vllm-local")
    assert not keys.delete_virtual_key("vllm-local")
    assert keys.get_virtual_key("vllm-local") is None
    assert keys.virtual_key_credentials("vllm-local") is None
    assert keys.list_virtual_keys() == [plain]


def test_the_secret_is_encrypted_at_rest(keys: KeyStore, store: Store) -> None:
    keys.create_virtual_key("openai-prod", provider="openai", api_key="sk-live-123")
    with store.database.reader.connect() as conn:
        row = conn.execute(select(virtual_keys)).one()._asdict()
    assert "sk-live-123" not in str(row)
    ciphertext = row.pop("api_key_ciphertext")
    assert SecretBox(SECRET).decrypt(ciphertext, context="openai-prod") == "sk-live-123"
    assert row == {
        "slug": "openai-prod",
        "name": "openai-prod",
        "provider": "openai",
        "custom_host": None,
        "options": None,
        "created_at_ms": T0,
    }


def test_a_taken_slug_is_refused(keys: KeyStore) -> None:
    keys.create_virtual_key("openai-prod", provider="openai", api_key="sk-1")
    with pytest.raises(VirtualKeyExists) as caught:
        keys.create_virtual_key("openai-prod", provider="anthropic", api_key="sk-2")
    assert str(caught.value) == "a virtual key with slug 'openai-prod' already exists"
    assert keys.virtual_key_credentials("openai-prod").api_key == "sk-1"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"slug": "-bad"}, "slug '-bad' may only hold letters, digits"),
        ({"slug": "has space"}, "slug 'has space' may only hold"),
        ({"slug": "x" * 101}, "a virtual key's slug is at most 100 characters"),
        ({"provider": "open ai"}, "'open ai' is not a provider name"),
        ({"api_key": "  "}, "a virtual key needs a non-empty api_key"),
        ({"custom_host": "ftp://host"}, "custom_host 'ftp://host' is not an http(s) URL"),
        ({"custom_host": "http://"}, "custom_host 'http://' is not an http(s) URL"),
        (
            {"custom_host": "https://user:pw@host/v1"},
            "custom_host may not contain credentials; put them in api_key",
        ),
        ({"options": {"nested": {"a": 1}}}, "option 'nested' must be a string, number or boolean"),
    ],
)
def test_bad_virtual_keys_are_refused(
    keys: KeyStore, fields: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"slug": "ok", "provider": "openai", "api_key": "sk-1"}
    arguments.update(fields)
    with pytest.raises(KeyValidationError) as caught:
        keys.create_virtual_key(**arguments)
    assert str(caught.value).startswith(message)
    assert keys.list_virtual_keys() == []


def test_virtual_keys_need_the_secret_key_and_decrypt_only_with_it(
    store: Store, keys: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys.create_virtual_key("openai-prod", provider="openai", api_key="sk-live-123")
    monkeypatch.delenv("TRACEWAY_SECRET_KEY", raising=False)
    from_env = KeyStore.for_store(store)
    assert from_env.create_gateway_key("works-without-it").key.name == "works-without-it"
    assert [k.slug for k in from_env.list_virtual_keys()] == ["openai-prod"]
    with pytest.raises(SecretKeyError, match=r"^TRACEWAY_SECRET_KEY is not set"):
        from_env.create_virtual_key("other", provider="openai", api_key="sk-2")
    with pytest.raises(SecretKeyError):
        from_env.virtual_key_credentials("openai-prod")

    monkeypatch.setenv("TRACEWAY_SECRET_KEY", "another-test-secret-also-over-32-characters")
    with pytest.raises(DecryptionError):
        KeyStore.for_store(store).virtual_key_credentials("openai-prod")
    monkeypatch.setenv("TRACEWAY_SECRET_KEY", SECRET)
    credentials = KeyStore.for_store(store).virtual_key_credentials("openai-prod")
    assert credentials is not None and credentials.api_key == "sk-live-123"


def test_database_failures_are_store_errors() -> None:
    unmigrated = connect("sqlite://")
    try:
        with pytest.raises(StoreError, match=r"^database error: no such table: gateway_keys"):
            KeyStore(unmigrated).list_gateway_keys()
    finally:
        unmigrated.dispose()


# --- the resolver ------------------------------------------------------------


class CountingKeys(KeyStore):
    """Counts lookups reaching the database; can hold them until released."""

    lookups = 0
    gate: threading.Event | None = None

    def verify_gateway_key(self, token: str) -> GatewayKey | None:
        self.lookups += 1
        if self.gate is not None:
            self.gate.wait(10)
        return super().verify_gateway_key(token)

    def virtual_key_credentials(self, slug: str) -> VirtualKeyCredentials | None:
        self.lookups += 1
        return super().virtual_key_credentials(slug)


@pytest.fixture
def counting(keys: KeyStore, store: Store, clock: Clock) -> CountingKeys:
    return CountingKeys.for_store(
        store, now_ms=clock.now_ms, secret_box=SecretBox(SECRET), random_bytes=counting_bytes()
    )


def test_revocation_takes_effect_within_the_ttl(counting: CountingKeys, clock: Clock) -> None:
    token = counting.create_gateway_key("ci").token
    resolver = StoreKeyResolver(counting, ttl_s=5.0, clock=clock.seconds)

    async def scenario() -> list[object]:
        seen: list[object] = [await resolver.verify_gateway_key(token)]
        counting.revoke_gateway_key(1)
        clock.ms += 4_999
        seen.append(await resolver.verify_gateway_key(token))  # still cached
        clock.ms += 1
        seen.append(await resolver.verify_gateway_key(token))  # expired: read again
        seen.append(await resolver.verify_gateway_key("tw-junk"))  # never looked up
        return seen

    info = GatewayKeyInfo(1, "ci", "tw-AAAAAA")
    assert asyncio.run(scenario()) == [info, info, None, None]
    assert counting.lookups == 2


def test_ttl_zero_reads_every_time_and_misses_are_cached_too(
    counting: CountingKeys, clock: Clock
) -> None:
    token = counting.create_gateway_key("ci").token
    uncached = StoreKeyResolver(counting, ttl_s=0, clock=clock.seconds)
    cached = StoreKeyResolver(counting, ttl_s=5, clock=clock.seconds)
    unknown = "tw-" + "B" * 43

    async def scenario() -> list[object]:
        first = await uncached.verify_gateway_key(token)
        counting.revoke_gateway_key(1)
        return [
            first,
            await uncached.verify_gateway_key(token),
            await cached.verify_gateway_key(unknown),
            await cached.verify_gateway_key(unknown),
        ]

    assert asyncio.run(scenario()) == [GatewayKeyInfo(1, "ci", "tw-AAAAAA"), None, None, None]
    assert counting.lookups == 3


def test_concurrent_misses_share_one_lookup(counting: CountingKeys, clock: Clock) -> None:
    token = counting.create_gateway_key("ci").token
    resolver = StoreKeyResolver(counting, ttl_s=0, clock=clock.seconds)
    counting.gate = threading.Event()

    async def scenario() -> list[GatewayKeyInfo | None]:
        calls = [asyncio.ensure_future(resolver.verify_gateway_key(token)) for _ in range(20)]
        await asyncio.sleep(0.05)
        assert counting.gate is not None
        counting.gate.set()
        return await asyncio.gather(*calls)

    assert asyncio.run(scenario()) == [GatewayKeyInfo(1, "ci", "tw-AAAAAA")] * 20
    assert counting.lookups == 1


def test_virtual_keys_resolve_through_the_cache(counting: CountingKeys, clock: Clock) -> None:
    counting.create_virtual_key("openai-prod", provider="openai", api_key="sk-live-123")
    resolver = StoreKeyResolver(counting, ttl_s=5, clock=clock.seconds)

    async def scenario() -> list[object]:
        seen: list[object] = [await resolver.resolve_virtual_key("openai-prod")]
        counting.delete_virtual_key("openai-prod")
        seen.append(await resolver.resolve_virtual_key("openai-prod"))
        resolver.clear()
        seen.append(await resolver.resolve_virtual_key("openai-prod"))
        return seen

    credentials = VirtualKeyCredentials("openai-prod", "openai", "sk-live-123")
    assert asyncio.run(scenario()) == [credentials, credentials, None]
    assert counting.lookups == 2


def test_failed_lookups_are_not_cached(
    store: Store, keys: KeyStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys.create_virtual_key("openai-prod", provider="openai", api_key="sk-live-123")
    monkeypatch.setenv("TRACEWAY_SECRET_KEY", "another-test-secret-also-over-32-characters")
    wrong = StoreKeyResolver(KeyStore.for_store(store), ttl_s=5, clock=clock.seconds)

    async def attempt() -> VirtualKeyCredentials | None:
        return await wrong.resolve_virtual_key("openai-prod")

    for _ in range(2):
        with pytest.raises(DecryptionError):
            asyncio.run(attempt())


def test_the_cache_is_bounded(keys: KeyStore, clock: Clock) -> None:
    resolver = StoreKeyResolver(keys, ttl_s=60, max_entries=3, clock=clock.seconds)
    tokens = [f"tw-{chr(ord('A') + i)}" + "A" * 42 for i in range(5)]

    async def scenario() -> None:
        for token in tokens:
            await resolver.verify_gateway_key(token)

    asyncio.run(scenario())
    assert len(resolver._cache) == 3
    assert list(resolver._cache) == [("gateway", hash_gateway_key(t)) for t in tokens[2:]]
