"""The key endpoints of the REST API as a client sees them, and what the gateway
then makes of the keys they manage."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from traceway.gateway.errors import GatewayError
from traceway.gateway.headers import parse_headers
from traceway.gateway.keys import GatewayKeyInfo, VirtualKeyCredentials, authorize
from traceway.server.api import create_api
from traceway.store import Store, open_store
from traceway.store.keys import KeyStore, StoreKeyResolver

SECRET = "a-test-secret-of-more-than-32-characters"
PROVIDER_KEY = "sk-very-secret-provider-key-0123456789"
T0 = 1_700_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'traceway.db'}")
    yield store
    store.close()


@pytest.fixture
def keys(store: Store, monkeypatch: pytest.MonkeyPatch) -> KeyStore:
    monkeypatch.setenv("TRACEWAY_SECRET_KEY", SECRET)
    ticks = iter(range(T0, T0 + 1_000_000))
    return KeyStore.for_store(store, now_ms=lambda: next(ticks))


@pytest.fixture
def client(store: Store, keys: KeyStore) -> Iterator[TestClient]:
    api = create_api(store, keys=keys)
    with TestClient(api) as client:
        yield client


def gateway_key(key_id: int, name: str, prefix: str, **fields: object) -> dict[str, object]:
    return {
        "key_id": key_id,
        "name": name,
        "prefix": prefix,
        "scopes": {"models": None, "configs": None},
        "created_at_ms": T0,
        "last_used_at_ms": None,
        "revoked": False,
        "revoked_at_ms": None,
        **fields,
    }


def test_gateway_keys_are_created_listed_and_revoked(client: TestClient) -> None:
    created = client.post("/api/keys", json={"name": "ci", "models": ["gpt-4o*"]})
    assert created.status_code == 201
    body = created.json()
    token = body.pop("key")
    assert token.startswith("tw-") and len(token) == 46
    scopes = {"models": ["gpt-4o*"], "configs": None}
    assert body == gateway_key(1, "ci", token[:9], scopes=scopes)

    listed = client.get("/api/keys")
    assert listed.json() == {"keys": [body]}
    assert token not in listed.text

    revoked = client.delete("/api/keys/1")
    assert revoked.status_code == 200
    assert revoked.json() == {**body, "revoked": True, "revoked_at_ms": T0 + 1}
    assert client.get("/api/keys").json() == {"keys": [revoked.json()]}


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "error"),
    [
        ("DELETE", "/api/keys/7", None, 404, ("KEY_NOT_FOUND", "no gateway key with id 7")),
        (
            "DELETE",
            "/api/keys/abc",
            None,
            400,
            (
                "INVALID_REQUEST",
                "path.key_id: Input should be a valid integer, unable to parse "
                "string as an integer",
            ),
        ),
        (
            "POST",
            "/api/keys",
            {"name": "ci", "configs": []},
            400,
            ("INVALID_REQUEST", "configs must name at least one (leave it out to allow all)"),
        ),
        (
            "POST",
            "/api/keys",
            {"name": ""},
            400,
            ("INVALID_REQUEST", "body.name: String should have at least 1 character"),
        ),
        (
            "DELETE",
            "/api/virtual-keys/nope",
            None,
            404,
            ("VIRTUAL_KEY_NOT_FOUND", "no virtual key with slug 'nope'"),
        ),
        (
            "POST",
            "/api/virtual-keys",
            {"provider": "openai", "api_key": PROVIDER_KEY},
            400,
            ("INVALID_REQUEST", "a virtual key needs a slug or a name"),
        ),
    ],
)
def test_errors_are_one_line_with_a_code(
    client: TestClient,
    method: str,
    path: str,
    payload: object,
    status: int,
    error: tuple[str, str],
) -> None:
    response = client.request(method, path, json=payload)
    assert response.status_code == status
    code, message = error
    assert response.json() == {"error": {"code": code, "message": message}}


def test_virtual_keys_are_created_listed_and_deleted(client: TestClient) -> None:
    created = client.post(
        "/api/virtual-keys",
        json={
            "name": "Local vLLM",
            "provider": "vllm",
            "api_key": PROVIDER_KEY,
            "custom_host": "http://vllm.internal:8000/v1",
            "options": {"latency_ms": 5},
        },
    )
    assert created.status_code == 201
    vllm = {
        "slug": "local-vllm",
        "name": "Local vLLM",
        "provider": "vllm",
        "custom_host": "http://vllm.internal:8000/v1",
        "options": {"latency_ms": 5},
        "created_at_ms": T0,
    }
    assert created.json() == vllm
    other = client.post(
        "/api/virtual-keys", json={"slug": "openai-prod", "provider": "openai", "api_key": "sk-2"}
    )
    assert other.status_code == 201
    openai: dict[str, object] = {
        "slug": "openai-prod",
        "name": "openai-prod",
        "provider": "openai",
        "custom_host": None,
        "options": {},
        "created_at_ms": T0 + 1,
    }
    assert client.get("/api/virtual-keys").json() == {"virtual_keys": [vllm, openai]}

    again = client.post(
        "/api/virtual-keys", json={"slug": "openai-prod", "provider": "openai", "api_key": "sk-3"}
    )
    assert again.status_code == 409
    assert again.json()["error"] == {
        "code": "VIRTUAL_KEY_EXISTS",
        "message": "a virtual key with slug 'openai-prod' already exists",
    }

    deleted = client.delete("/api/virtual-keys/local-vllm")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert client.get("/api/virtual-keys").json() == {"virtual_keys": [openai]}


def test_without_the_secret_key_virtual_keys_are_refused(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRACEWAY_SECRET_KEY")
    response = client.post(
        "/api/virtual-keys", json={"slug": "s", "provider": "openai", "api_key": PROVIDER_KEY}
    )
    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "code": "SECRET_KEY_MISSING",
            "message": "TRACEWAY_SECRET_KEY is not set; virtual keys are encrypted with it "
            "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')",
        }
    }
    assert client.get("/api/virtual-keys").json() == {"virtual_keys": []}


def test_a_virtual_keys_secret_is_never_in_a_response_or_a_log_record(
    client: TestClient, keys: KeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    responses = [
        client.post(
            "/api/virtual-keys",
            json={"slug": "openai-prod", "provider": "openai", "api_key": PROVIDER_KEY},
        ),
        client.post(
            "/api/virtual-keys",
            json={"slug": "openai-prod", "provider": "openai", "api_key": PROVIDER_KEY},
        ),
        client.post(
            "/api/virtual-keys",
            json={"slug": "bad slug", "provider": "openai", "api_key": PROVIDER_KEY},
        ),
        client.post(
            "/api/virtual-keys",
            json={"slug": "s", "provider": "openai", "api_key": PROVIDER_KEY, "options": [1]},
        ),
        client.post(
            "/api/virtual-keys",
            json={"slug": "s", "provider": "openai", "api_key": PROVIDER_KEY, "custom_host": "x"},
        ),
        client.get("/api/virtual-keys"),
        client.get("/api/openapi.json"),
    ]
    assert [r.status_code for r in responses] == [201, 409, 400, 400, 400, 200, 200]
    resolver = StoreKeyResolver(keys, ttl_s=0)
    credentials = asyncio.run(resolver.resolve_virtual_key("openai-prod"))
    assert credentials == VirtualKeyCredentials("openai-prod", "openai", PROVIDER_KEY)
    responses.append(client.delete("/api/virtual-keys/openai-prod"))

    for response in responses:
        assert PROVIDER_KEY not in response.text
    assert caplog.records  # the capture was live
    for record in caplog.records:
        assert PROVIDER_KEY not in record.getMessage()
        assert PROVIDER_KEY not in repr(record.__dict__)


def test_a_revoked_key_gets_401_at_the_gateway(client: TestClient, keys: KeyStore) -> None:
    token = client.post("/api/keys", json={"name": "app", "models": ["gpt-4o"]}).json()["key"]
    resolver = StoreKeyResolver(keys, ttl_s=0)

    def authorized(model: str) -> GatewayKeyInfo:
        options = parse_headers([(b"authorization", f"Bearer {token}".encode())])
        return asyncio.run(authorize(resolver, options, model=model))

    assert authorized("gpt-4o") == GatewayKeyInfo(1, "app", token[:9], models=("gpt-4o",))
    with pytest.raises(GatewayError) as out_of_scope:
        authorized("gpt-4o-mini")
    assert out_of_scope.value.status == 403
    assert client.get("/api/keys").json()["keys"][0]["last_used_at_ms"] is not None

    assert client.delete("/api/keys/1").status_code == 200
    with pytest.raises(GatewayError) as revoked:
        authorized("gpt-4o")
    assert (revoked.value.status, revoked.value.code) == (401, "invalid_api_key")


def test_the_endpoints_are_in_the_openapi_schema(client: TestClient) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    assert {
        path: sorted(paths[path])
        for path in paths
        if path.startswith(("/api/keys", "/api/virtual-keys"))
    } == {
        "/api/keys": ["get", "post"],
        "/api/keys/{key_id}": ["delete"],
        "/api/virtual-keys": ["get", "post"],
        "/api/virtual-keys/{slug}": ["delete"],
    }
