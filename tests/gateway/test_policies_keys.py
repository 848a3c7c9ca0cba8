"""Gateway API keys and virtual keys on the request path, with the real ``openai`` client."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

import openai
import orjson
import pytest

from tests.gateway.conftest import RunningGateway, settings
from tests.gateway.fakes.openai_server import FakeOpenAI
from traceway.gateway import GatewaySettings, create_standalone_app
from traceway.gateway.keys import (
    GatewayKeyInfo,
    StaticKeyResolver,
    VirtualKeyCredentials,
    display_prefix,
    new_gateway_key,
)
from traceway.store import open_store
from traceway.store.keys import KeyStore, StoreKeyResolver

MESSAGES = [{"role": "user", "content": "hello keys"}]
TOKEN = new_gateway_key(lambda n: b"\x01" * n)
SCOPED = new_gateway_key(lambda n: b"\x02" * n)
UPSTREAM_KEY = "sk-upstream-secret"
VK_SECRET = "sk-virtual-key-secret"


def error_of(raised: pytest.ExceptionInfo[openai.APIStatusError]) -> tuple[int, Any]:
    return raised.value.status_code, raised.value.body


@pytest.fixture
def resolver(fake_openai: FakeOpenAI) -> StaticKeyResolver:
    return StaticKeyResolver(
        {
            TOKEN: GatewayKeyInfo(1, "ci", display_prefix(TOKEN)),
            SCOPED: GatewayKeyInfo(2, "scoped", display_prefix(SCOPED), models=("echo",)),
        },
        {
            "openai-prod": VirtualKeyCredentials(
                slug="openai-prod",
                provider="openai",
                api_key=VK_SECRET,
                custom_host=fake_openai.url,
            )
        },
    )


@pytest.fixture
def keyed(
    start_gateway: Callable[..., RunningGateway], resolver: StaticKeyResolver
) -> RunningGateway:
    """A gateway that requires gateway keys."""
    return start_gateway(settings(require_gateway_keys=True), key_resolver=resolver)


def openai_route(fake: FakeOpenAI) -> dict[str, str]:
    config = {"provider": "openai", "custom_host": fake.url, "api_key": UPSTREAM_KEY}
    return {"x-traceway-config": json.dumps(config)}


def test_a_request_without_a_gateway_key_is_refused(keyed: RunningGateway) -> None:
    with (
        keyed.client(api_key="sk-provider-key") as client,
        pytest.raises(openai.AuthenticationError) as raised,
    ):
        client.chat.completions.create(model="echo", messages=MESSAGES)
    assert error_of(raised) == (
        401,
        {
            "message": "You didn't provide a gateway API key. Send it as "
            "'Authorization: Bearer tw-...' (or in x-traceway-api-key).",
            "type": "authentication_error",
            "param": None,
            "code": None,
        },
    )
    assert raised.value.response.headers["www-authenticate"] == "Bearer"


def test_an_unknown_gateway_key_is_refused(keyed: RunningGateway) -> None:
    unknown = new_gateway_key(lambda n: b"\x09" * n)
    with (
        keyed.client(api_key=unknown) as client,
        pytest.raises(openai.AuthenticationError) as raised,
    ):
        client.chat.completions.create(model="echo", messages=MESSAGES)
    assert error_of(raised) == (
        401,
        {
            "message": f"Incorrect gateway API key provided: {display_prefix(unknown)}***. "
            "It is unknown or has been revoked.",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        },
    )


def test_a_gateway_key_in_authorization_never_reaches_the_provider(
    keyed: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    with keyed.client(api_key=TOKEN, default_headers=openai_route(fake_openai)) as client:
        completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert completion.choices[0].message.content == "Hello from upstream"
    (sent,) = fake_openai.requests
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert TOKEN not in json.dumps(sent.headers)


def test_a_gateway_key_in_its_own_header_leaves_authorization_to_the_provider(
    keyed: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    headers = {
        "x-traceway-api-key": TOKEN,
        "x-traceway-provider": "openai",
        "x-traceway-custom-host": fake_openai.url,
    }
    with keyed.client(api_key="sk-callers-own", default_headers=headers) as client:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert fake_openai.requests[0].headers["authorization"] == "Bearer sk-callers-own"


def test_a_key_limited_to_models_gets_403_for_another(keyed: RunningGateway) -> None:
    with keyed.client(api_key=SCOPED) as client:
        assert client.chat.completions.create(model="echo", messages=MESSAGES).choices
        with pytest.raises(openai.PermissionDeniedError) as raised:
            client.chat.completions.create(model="mock", messages=MESSAGES)
    assert error_of(raised) == (
        403,
        {
            "message": "this gateway key may not use model 'mock' (allowed: echo)",
            "type": "permission_error",
            "param": None,
            "code": "model_not_allowed",
        },
    )


def test_requiring_keys_without_a_key_store_fails_closed(
    start_gateway: Callable[..., RunningGateway],
) -> None:
    gw = start_gateway(settings(require_gateway_keys=True))
    with gw.client(api_key=TOKEN) as client, pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="echo", messages=MESSAGES)
    assert error_of(raised)[1]["message"] == (
        "gateway keys are required but no key store is configured"
    )
    with pytest.raises(ValueError, match="needs a key store"):
        create_standalone_app(GatewaySettings(require_gateway_keys=True))


@pytest.fixture
def key_store() -> Iterator[KeyStore]:
    store = open_store("sqlite://")
    try:
        yield KeyStore.for_store(store)
    finally:
        store.close()


def test_a_revoked_key_gets_401(
    start_gateway: Callable[..., RunningGateway], key_store: KeyStore
) -> None:
    created = key_store.create_gateway_key("ci")
    # ttl_s=0: no cached verdicts, so the revocation bites on the next request.
    gw = start_gateway(
        settings(require_gateway_keys=True), key_resolver=StoreKeyResolver(key_store, ttl_s=0)
    )
    with gw.client(api_key=created.token) as client:
        assert client.chat.completions.create(model="echo", messages=MESSAGES).choices
        key_store.revoke_gateway_key(created.key.key_id)
        with pytest.raises(openai.AuthenticationError) as raised:
            client.chat.completions.create(model="echo", messages=MESSAGES)
    assert error_of(raised)[1]["code"] == "invalid_api_key"


# -- virtual keys --------------------------------------------------------------


@pytest.fixture
def vk_gateway(
    start_gateway: Callable[..., RunningGateway], resolver: StaticKeyResolver
) -> RunningGateway:
    """A traced gateway with a key store (keys not required)."""
    return start_gateway(settings(), key_resolver=resolver, traced=True)


@pytest.mark.parametrize("where", ["header", "config"])
def test_a_virtual_key_supplies_provider_key_and_host(
    vk_gateway: RunningGateway, fake_openai: FakeOpenAI, where: str
) -> None:
    headers = (
        {"x-traceway-virtual-key": "openai-prod"}
        if where == "header"
        else {"x-traceway-config": json.dumps({"virtual_key": "openai-prod"})}
    )
    with vk_gateway.client(api_key="placeholder", default_headers=headers) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "Hello from upstream"
    assert raw.headers["x-traceway-provider"] == "openai"
    (sent,) = fake_openai.requests
    assert sent.headers["authorization"] == f"Bearer {VK_SECRET}"
    # Never in a trace.
    exported = orjson.dumps([asdict(s) for s in vk_gateway.spans(2)], default=str).decode()
    assert VK_SECRET not in exported
    assert "openai-prod" not in exported


def test_an_unknown_virtual_key_is_401(vk_gateway: RunningGateway) -> None:
    headers = {"x-portkey-virtual-key": "nope"}
    with (
        vk_gateway.client(default_headers=headers) as client,
        pytest.raises(openai.AuthenticationError) as raised,
    ):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert error_of(raised)[1] == {
        "message": "Invalid virtual key 'nope': there is no such key.",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }


@pytest.mark.parametrize(
    "headers",
    [
        {"x-traceway-virtual-key": "openai-prod", "x-traceway-custom-host": "http://127.0.0.1:9"},
        {
            "x-traceway-config": json.dumps(
                {"virtual_key": "openai-prod", "custom_host": "http://127.0.0.1:9"}
            )
        },
    ],
)
def test_a_virtual_keys_secret_only_goes_to_its_own_host(
    vk_gateway: RunningGateway, fake_openai: FakeOpenAI, headers: dict[str, str]
) -> None:
    with (
        vk_gateway.client(default_headers=headers) as client,
        pytest.raises(openai.BadRequestError) as raised,
    ):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert error_of(raised)[1]["message"] == (
        "a request using a virtual key may not name a custom host: "
        "the key's requests go to the host stored with it"
    )
    assert fake_openai.requests == []
