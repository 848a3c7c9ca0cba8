"""Gateway keys and virtual keys made through the REST API of a real ``traceway server``.

This module's server requires gateway keys (as ``traceway server --require-keys``
does), encrypts virtual keys with a test secret, and lets configs name the fake
upstream on ``127.0.0.1``; all three are set before the module's server starts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.gateway.fakes.openai_server import FakeOpenAI
from tests.support.live_server import RunningServer
from traceway.gateway.keys import SECRET_KEY_ENV
from traceway.gateway.settings import ALLOWED_HOSTS_ENV, REQUIRE_KEYS_ENV

PROVIDER_SECRET = "sk-live-provider-secret-0123456789"
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module", autouse=True)
def server_environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(REQUIRE_KEYS_ENV, "1")
        patch.setenv(SECRET_KEY_ENV, "a test secret that is long enough for HKDF, 0123456789")
        patch.setenv(ALLOWED_HOSTS_ENV, "127.0.0.1")
        yield


def create_key(server: RunningServer, **scopes: Any) -> dict[str, Any]:
    response = server.http.post("/api/keys", json={"name": f"ci-{uuid.uuid4().hex[:6]}", **scopes})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def client(server: RunningServer, api_key: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=api_key, max_retries=0, default_headers=headers
    )


def forget_cached_keys(server: RunningServer) -> None:
    """Revocation bites within the resolver's cache time (5 s); do not wait for it here."""
    gateway = server.traceway.gateway
    assert gateway is not None and gateway.policies.key_resolver is not None
    gateway.policies.key_resolver.clear()  # type: ignore[attr-defined]


def test_a_gateway_key_works_until_it_is_revoked(server: RunningServer) -> None:
    created = create_key(server)
    with client(server, created["key"]) as keyed:
        answer = keyed.chat.completions.create(model="echo", messages=MESSAGES)
        assert answer.choices[0].message.content == "hello"
        revoked = server.http.delete(f"/api/keys/{created['key_id']}")
        assert revoked.status_code in (200, 204), revoked.text
        forget_cached_keys(server)
        with pytest.raises(openai.AuthenticationError) as raised:
            keyed.chat.completions.create(model="echo", messages=MESSAGES)
    assert raised.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    with (
        client(server, "sk-not-a-gateway-key") as anonymous,
        pytest.raises(openai.AuthenticationError),
    ):
        anonymous.chat.completions.create(model="echo", messages=MESSAGES)


def test_a_key_scoped_to_models(server: RunningServer) -> None:
    created = create_key(server, models=["echo"])
    with client(server, created["key"]) as keyed:
        keyed.chat.completions.create(model="echo", messages=MESSAGES)
        with pytest.raises(openai.PermissionDeniedError) as raised:
            keyed.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert raised.value.body["code"] == "model_not_allowed"  # type: ignore[index]


def test_a_virtual_keys_secret_goes_upstream_and_nowhere_else(
    server: RunningServer, fake: FakeOpenAI
) -> None:
    slug = f"openai-{uuid.uuid4().hex[:8]}"
    made = server.http.post(
        "/api/virtual-keys",
        json={
            "slug": slug,
            "provider": "openai",
            "api_key": PROVIDER_SECRET,
            "custom_host": fake.url,
        },
    )
    assert made.status_code == 201, made.text
    created = create_key(server)
    with client(server, created["key"], **{"x-traceway-virtual-key": slug}) as keyed:
        raw = keyed.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "Hello from upstream"
    (sent,) = fake.requests
    assert sent.headers["authorization"] == f"Bearer {PROVIDER_SECRET}"
    assert created["key"] not in json.dumps(sent.headers)
    stored = server.spans(raw.headers["x-traceway-trace-id"])
    listed = server.get("/api/virtual-keys")
    for text in (json.dumps(stored), listed.text, made.text):
        assert PROVIDER_SECRET not in text
    assert created["key"] not in json.dumps(stored)
    gateway_span = next(s for s in stored if s["span_type"] == "GATEWAY")
    assert gateway_span["attributes"]["traceway.gateway.key_id"] == created["key_id"]
