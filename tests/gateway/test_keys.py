"""Gateway keys and virtual keys as the gateway sees them: format, hashing, crypto,
scopes, and the OpenAI errors a request gets."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import orjson
import pytest

from traceway.gateway.errors import GatewayError
from traceway.gateway.headers import parse_headers
from traceway.gateway.keys import (
    DecryptionError,
    GatewayKeyInfo,
    KeysError,
    SecretBox,
    SecretKeyError,
    StaticKeyResolver,
    VirtualKeyCredentials,
    authorize,
    display_prefix,
    hash_gateway_key,
    looks_like_gateway_key,
    new_gateway_key,
    presented_gateway_key,
    scope_denial,
    virtual_key_credentials,
)

SECRET = "a-test-secret-of-more-than-32-characters"
OTHER_SECRET = "another-test-secret-also-over-32-characters"
TOKEN = new_gateway_key(lambda n: bytes(range(n)))
SCOPED = new_gateway_key(lambda n: bytes(range(1, n + 1)))
CONFIGURED = new_gateway_key(lambda n: bytes(range(2, n + 2)))


def resolver() -> StaticKeyResolver:
    return StaticKeyResolver(
        {
            TOKEN: GatewayKeyInfo(1, "open", display_prefix(TOKEN)),
            SCOPED: GatewayKeyInfo(2, "scoped", display_prefix(SCOPED), models=("gpt-4o*",)),
            CONFIGURED: GatewayKeyInfo(3, "pinned", display_prefix(CONFIGURED), configs=("prod",)),
        },
        {"openai-prod": VirtualKeyCredentials("openai-prod", "openai", "sk-live-123")},
    )


def error_of(exc: GatewayError) -> tuple[int, dict[str, object], dict[str, str]]:
    return exc.status, orjson.loads(exc.body()), exc.headers


def run_authorize(headers: list[tuple[bytes, bytes]], model: object = "gpt-4o") -> GatewayKeyInfo:
    options = parse_headers(headers)
    return asyncio.run(authorize(resolver(), options, model=model))


# --- key format and hashing --------------------------------------------------


def test_new_keys_are_tw_and_32_random_bytes_urlsafe() -> None:
    key = new_gateway_key()
    assert key.startswith("tw-")
    assert len(key) == 46
    assert looks_like_gateway_key(key)
    assert new_gateway_key() != key
    assert TOKEN == "tw-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"


@pytest.mark.parametrize(
    "token",
    ["", "tw-", "sk-" + TOKEN[3:], TOKEN[:-1], TOKEN + "A", TOKEN[:-1] + "=", TOKEN[:-1] + "+"],
)
def test_tokens_without_the_shape_are_not_keys(token: str) -> None:
    assert not looks_like_gateway_key(token)


def test_keys_are_stored_as_sha256_with_a_short_display_prefix() -> None:
    assert hash_gateway_key(TOKEN) == hashlib.sha256(TOKEN.encode()).hexdigest()
    assert display_prefix(TOKEN) == "tw-AAECAw"


# --- virtual key encryption --------------------------------------------------


def test_encrypt_decrypt_round_trip() -> None:
    box = SecretBox(SECRET)
    sealed = box.encrypt("sk-live-123", context="openai-prod")
    assert sealed.startswith("v1.")
    assert "sk-live-123" not in sealed
    assert box.encrypt("sk-live-123", context="openai-prod") != sealed  # fresh nonce each time
    assert box.decrypt(sealed, context="openai-prod") == "sk-live-123"
    assert SecretBox(SECRET).decrypt(sealed, context="openai-prod") == "sk-live-123"


def test_wrong_secret_fails_cleanly() -> None:
    sealed = SecretBox(SECRET).encrypt("sk-live-123", context="openai-prod")
    with pytest.raises(DecryptionError) as caught:
        SecretBox(OTHER_SECRET).decrypt(sealed, context="openai-prod")
    assert str(caught.value) == (
        "the secret does not decrypt with this TRACEWAY_SECRET_KEY "
        "(it was encrypted under another one, or altered)"
    )


def test_a_ciphertext_moved_to_another_slug_does_not_decrypt() -> None:
    box = SecretBox(SECRET)
    sealed = box.encrypt("sk-live-123", context="openai-prod")
    with pytest.raises(DecryptionError):
        box.decrypt(sealed, context="openai-dev")


@pytest.mark.parametrize(
    ("damaged", "message"),
    [
        ("v2.AAAA", "unknown ciphertext version 'v2'"),
        ("v1.AAAA", "the ciphertext is truncated"),
        ("v1.%%%%", "the ciphertext is not valid base64"),
    ],
)
def test_damaged_ciphertexts_fail_with_one_line(damaged: str, message: str) -> None:
    with pytest.raises(DecryptionError, match=message):
        SecretBox(SECRET).decrypt(damaged, context="x")


def test_flipped_ciphertext_bit_is_detected() -> None:
    box = SecretBox(SECRET)
    sealed = box.encrypt("sk-live-123", context="s")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(DecryptionError):
        box.decrypt(flipped, context="s")


def test_secret_key_comes_from_the_environment() -> None:
    box = SecretBox.from_env({"TRACEWAY_SECRET_KEY": SECRET})
    assert SecretBox(SECRET).decrypt(box.encrypt("k", context="s"), context="s") == "k"
    with pytest.raises(SecretKeyError) as missing:
        SecretBox.from_env({})
    assert str(missing.value) == (
        "TRACEWAY_SECRET_KEY is not set; virtual keys are encrypted with it "
        "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    )
    with pytest.raises(SecretKeyError, match=r"^TRACEWAY_SECRET_KEY is too short"):
        SecretBox.from_env({"TRACEWAY_SECRET_KEY": "short"})
    assert isinstance(missing.value, KeysError)


def test_secrets_stay_out_of_reprs() -> None:
    credentials = VirtualKeyCredentials("s", "openai", "sk-live-123", "http://h")
    assert "sk-live-123" not in repr(credentials)
    assert SECRET not in repr(SecretBox(SECRET))


# --- scopes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("models", "configs", "model", "config", "denial"),
    [
        (None, None, None, None, None),
        (("gpt-4o",), None, "gpt-4o", None, None),
        (("gpt-4o*",), None, "gpt-4o-mini", "{}", None),
        (
            ("gpt-4o",),
            None,
            "gpt-4o-mini",
            None,
            (
                "model_not_allowed",
                "this gateway key may not use model 'gpt-4o-mini' (allowed: gpt-4o)",
            ),
        ),
        (
            ("a", "b"),
            None,
            None,
            None,
            (
                "model_not_allowed",
                "this gateway key may only use the models a, b; name one as 'model'",
            ),
        ),
        (None, ("prod",), "x", "prod", None),
        (None, ("prod-*",), "x", " prod-eu ", None),
        (
            None,
            ("prod",),
            "x",
            None,
            ("config_not_allowed", "this gateway key may only use the configs prod"),
        ),
        (
            None,
            ("prod",),
            "x",
            "dev",
            (
                "config_not_allowed",
                "this gateway key may not use config 'dev' (allowed configs: prod)",
            ),
        ),
        (
            None,
            ("prod",),
            "x",
            '{"provider": "openai"}',
            (
                "config_not_allowed",
                "this gateway key may not send an inline config (allowed configs: prod)",
            ),
        ),
    ],
)
def test_scope_denials(
    models: tuple[str, ...] | None,
    configs: tuple[str, ...] | None,
    model: str | None,
    config: str | None,
    denial: tuple[str, str] | None,
) -> None:
    key = GatewayKeyInfo(1, "k", "tw-abcdef", models=models, configs=configs)
    assert scope_denial(key, model=model, config=config) == denial


# --- what a request gets -----------------------------------------------------


def test_a_valid_bearer_key_passes_and_is_not_forwarded_upstream() -> None:
    options = parse_headers([(b"authorization", f"Bearer {TOKEN}".encode())])
    info = asyncio.run(authorize(resolver(), options, model="gpt-4o"))
    assert info == GatewayKeyInfo(1, "open", "tw-AAECAw")
    assert options.api_key is None


def test_a_portkey_api_key_header_carries_the_gateway_key_beside_a_provider_key() -> None:
    options = parse_headers(
        [(b"authorization", b"Bearer sk-provider"), (b"x-portkey-api-key", TOKEN.encode())]
    )
    assert presented_gateway_key(options) == TOKEN
    assert asyncio.run(authorize(resolver(), options, model="m")).key_id == 1
    assert options.api_key == "sk-provider"


def test_a_missing_key_is_401() -> None:
    with pytest.raises(GatewayError) as caught:
        run_authorize([(b"authorization", b"Bearer sk-provider")])
    assert error_of(caught.value) == (
        401,
        {
            "error": {
                "message": "You didn't provide a gateway API key. Send it as "
                "'Authorization: Bearer tw-...' (or in x-traceway-api-key).",
                "type": "authentication_error",
                "param": None,
                "code": None,
            }
        },
        {"www-authenticate": "Bearer"},
    )


@pytest.mark.parametrize(
    "token",
    [new_gateway_key(lambda n: b"\xff" * n), "tw-not-a-key", "tw-" + "A" * 43],
)
def test_an_unknown_or_malformed_key_is_401(token: str) -> None:
    with pytest.raises(GatewayError) as caught:
        run_authorize([(b"authorization", f"Bearer {token}".encode())])
    assert error_of(caught.value) == (
        401,
        {
            "error": {
                "message": f"Incorrect gateway API key provided: {token[:9]}***. "
                "It is unknown or has been revoked.",
                "type": "authentication_error",
                "param": None,
                "code": "invalid_api_key",
            }
        },
        {"www-authenticate": "Bearer"},
    )


def test_a_model_outside_the_keys_scope_is_403() -> None:
    assert run_authorize([(b"authorization", f"Bearer {SCOPED}".encode())]).key_id == 2
    with pytest.raises(GatewayError) as caught:
        run_authorize([(b"authorization", f"Bearer {SCOPED}".encode())], model="o3")
    assert error_of(caught.value) == (
        403,
        {
            "error": {
                "message": "this gateway key may not use model 'o3' (allowed: gpt-4o*)",
                "type": "permission_error",
                "param": None,
                "code": "model_not_allowed",
            }
        },
        {},
    )


def test_a_config_outside_the_keys_scope_is_403() -> None:
    bearer = (b"authorization", f"Bearer {CONFIGURED}".encode())
    assert run_authorize([bearer, (b"x-traceway-config", b"prod")]).key_id == 3
    with pytest.raises(GatewayError) as caught:
        run_authorize([bearer, (b"x-portkey-config", b"dev")])
    status, body, _ = error_of(caught.value)
    assert (status, body["error"]["code"]) == (403, "config_not_allowed")  # type: ignore[index]


def test_virtual_keys_resolve_to_credentials() -> None:
    credentials = asyncio.run(virtual_key_credentials(resolver(), "openai-prod"))
    assert credentials == VirtualKeyCredentials("openai-prod", "openai", "sk-live-123")


def test_an_unknown_virtual_key_is_401_and_none_without_a_key_store_is_400() -> None:
    with pytest.raises(GatewayError) as unknown:
        asyncio.run(virtual_key_credentials(resolver(), "nope"))
    assert error_of(unknown.value)[:2] == (
        401,
        {
            "error": {
                "message": "Invalid virtual key 'nope': there is no such key.",
                "type": "authentication_error",
                "param": None,
                "code": "invalid_api_key",
            }
        },
    )
    with pytest.raises(GatewayError) as unavailable:
        asyncio.run(virtual_key_credentials(None, "openai-prod"))
    assert unavailable.value.status == 400


class _Undecryptable:
    async def verify_gateway_key(self, token: str) -> GatewayKeyInfo | None:
        return None

    async def resolve_virtual_key(self, slug: str) -> VirtualKeyCredentials | None:
        raise DecryptionError("the secret does not decrypt with this TRACEWAY_SECRET_KEY")


def test_an_undecryptable_virtual_key_is_500_with_the_reason_only_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(GatewayError) as caught:
        asyncio.run(virtual_key_credentials(_Undecryptable(), "openai-prod"))
    assert error_of(caught.value)[:2] == (
        500,
        {
            "error": {
                "message": "virtual key 'openai-prod' cannot be used on this gateway (see its log)",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        },
    )
    assert [r.getMessage() for r in caplog.records if r.name.startswith("traceway")] == [
        "virtual key 'openai-prod' cannot be used: "
        "the secret does not decrypt with this TRACEWAY_SECRET_KEY"
    ]
