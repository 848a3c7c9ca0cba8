"""Gateway API keys and virtual keys: what the gateway asks, and the crypto behind them.

Two kinds of key, both kept server-side:

- **Gateway keys** (``tw-`` + 32 random bytes, urlsafe base64) let a client use
  the gateway when the server requires keys.  Only their SHA-256 is stored, plus
  a short display prefix.  A fast hash is enough: each key carries 256 bits of
  entropy, so guessing one from its hash is as hopeless as guessing the key; slow
  KDFs (bcrypt, scrypt) exist for low-entropy passwords and would only add
  milliseconds to every uncached request.
- **Virtual keys** name provider credentials (provider, API key, optional custom
  host and provider settings) by a slug.  The API key is encrypted at rest with
  AES-256-GCM under a key derived (HKDF-SHA256) from ``TRACEWAY_SECRET_KEY``; the
  slug is bound in as associated data, so a ciphertext copied onto another row
  does not decrypt.  No API returns it and nothing logs or traces it.

How the gateway wires this in (``app.py`` / ``router.py``; a :class:`KeyResolver`
is injected, as ``config_lookup`` is, because the gateway knows nothing of the
store — inside ``traceway server`` it is
``StoreKeyResolver(KeyStore.for_store(store))`` from :mod:`traceway.store.keys`)::

    # Gateway.__init__(..., key_resolver: KeyResolver | None = None)
    # GatewaySettings.require_gateway_keys: bool = False

    # _proxy(), right after parse_headers() and parse_json_object(), before routing:
    if settings.require_gateway_keys:
        if key_resolver is None:  # misconfiguration: refuse rather than run open
            raise GatewayError(500, "gateway keys are required but no key store is configured")
        key_info = await authorize(key_resolver, options, model=body.get("model"))
        # 401 missing / malformed / unknown / revoked key, 403 model or config out of
        # scope, both as GatewayError (OpenAI error JSON via the usual handler).
        # authorize() also removes a ``tw-`` key taken from Authorization from
        # ``options.api_key``, so it is never forwarded to a provider.  The span may
        # carry key_info.key_id / key_info.name; never the token.

    # Router._provider()/_leaf(), for each target (Leaf) before building the request:
    slug = leaf.virtual_key or call.options.virtual_key
    if slug:
        creds = await virtual_key_credentials(key_resolver, slug)  # 401 if unknown
        name = creds.provider                  # the virtual key names the provider
        api_key = leaf.api_key or creds.api_key
        host = leaf.custom_host or creds.custom_host
        provider_options = {**creds.provider_options, **leaf.provider_options}
        # creds.custom_host is not from a trusted config: pass it through
        # HostGuard.check() like a request-named host.

Where the gateway key is read: ``x-traceway-api-key`` / ``x-portkey-api-key``
(``RequestOptions.gateway_key``) when sent, otherwise ``Authorization: Bearer
tw-...`` (``RequestOptions.api_key`` when it starts with ``tw-``).  Without
``require_gateway_keys`` nothing here runs and no header is interpreted as a
gateway key.  When Authorization carries the gateway key, the provider key comes
from a virtual key or the config's ``api_key``.  Never put
:class:`VirtualKeyCredentials` or ``RequestOptions`` on a span: only the slug and
the provider name may be recorded.

Revocation and deletion take effect within the resolver's cache TTL (5 s by
default, per process): :class:`~traceway.store.keys.StoreKeyResolver` keeps
verified keys and resolved credentials that long so the request path does not
query the database on every call.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from traceway.gateway.errors import GatewayError
from traceway.gateway.headers import RequestOptions

__all__ = [
    "GATEWAY_KEY_PREFIX",
    "SECRET_KEY_ENV",
    "DecryptionError",
    "GatewayKeyInfo",
    "KeyResolver",
    "KeysError",
    "SecretBox",
    "SecretKeyError",
    "StaticKeyResolver",
    "VirtualKeyCredentials",
    "authorize",
    "display_prefix",
    "hash_gateway_key",
    "looks_like_gateway_key",
    "new_gateway_key",
    "presented_gateway_key",
    "scope_denial",
    "virtual_key_credentials",
]

logger = logging.getLogger(__name__)

GATEWAY_KEY_PREFIX = "tw-"
SECRET_KEY_ENV = "TRACEWAY_SECRET_KEY"
#: Random bytes in a gateway key, and the length of the key as text.
_KEY_BYTES = 32
_KEY_CHARS = len(GATEWAY_KEY_PREFIX) + 43  # 32 bytes are 43 base64 characters unpadded
#: Characters after ``tw-`` shown in listings: enough to tell keys apart, useless to guess.
_PREFIX_CHARS = 6
#: A shorter secret is refused: HKDF does not slow down guessing a weak one.
MIN_SECRET_CHARS = 32
_HKDF_INFO = b"traceway virtual keys v1"
_CIPHER_VERSION = "v1"
_NONCE_BYTES = 12
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class KeysError(Exception):
    """Virtual key crypto cannot work; the message is one human line.

    ::

        KeysError
         ├── SecretKeyError    TRACEWAY_SECRET_KEY is unset or too short
         └── DecryptionError   a stored secret does not decrypt with this key
    """


class SecretKeyError(KeysError):
    """``TRACEWAY_SECRET_KEY`` is missing or too short to encrypt virtual keys."""


class DecryptionError(KeysError):
    """A ciphertext was made with another secret key, or was altered."""


# --- gateway keys ------------------------------------------------------------


def new_gateway_key(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A fresh gateway key: ``tw-`` and 43 urlsafe base64 characters.

    >>> new_gateway_key(lambda n: bytes(n))
    'tw-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
    """
    text = base64.urlsafe_b64encode(random_bytes(_KEY_BYTES)).rstrip(b"=").decode()
    return GATEWAY_KEY_PREFIX + text


def looks_like_gateway_key(token: str) -> bool:
    """Whether ``token`` has a gateway key's shape (checked before any lookup)."""
    return (
        len(token) == _KEY_CHARS
        and token.startswith(GATEWAY_KEY_PREFIX)
        and _URLSAFE.issuperset(token[len(GATEWAY_KEY_PREFIX) :])
    )


def hash_gateway_key(token: str) -> str:
    """The stored form of a gateway key: SHA-256, 64 lowercase hex characters.

    >>> hash_gateway_key("tw-x")[:16]
    '4a562671b450192f'
    """
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(token: str) -> str:
    """The part of a key shown in listings, e.g. ``tw-AbC12x``."""
    return token[: len(GATEWAY_KEY_PREFIX) + _PREFIX_CHARS]


@dataclass(frozen=True, slots=True)
class GatewayKeyInfo:
    """A verified, unrevoked gateway key as the gateway sees it (never the key itself).

    ``models`` and ``configs`` are ``None`` when the key is not limited to some;
    an entry ending in ``*`` matches every name starting with the rest.
    """

    key_id: int
    name: str
    prefix: str
    models: tuple[str, ...] | None = None
    configs: tuple[str, ...] | None = None


def _matches(patterns: Sequence[str], value: str) -> bool:
    return any(
        value == pattern or (pattern.endswith("*") and value.startswith(pattern[:-1]))
        for pattern in patterns
    )


def scope_denial(
    key: GatewayKeyInfo, *, model: str | None, config: str | None
) -> tuple[str, str] | None:
    """``(code, message)`` saying why ``key`` may not make this request, or ``None``.

    ``model`` is the request's ``model``; ``config`` the ``x-traceway-config``
    header (a saved config id, or inline JSON, which no config-limited key may
    send).

    >>> key = GatewayKeyInfo(1, "ci", "tw-abcdef", models=("gpt-4o*",))
    >>> scope_denial(key, model="gpt-4o-mini", config=None) is None
    True
    >>> scope_denial(key, model="o3", config=None)
    ('model_not_allowed', "this gateway key may not use model 'o3' (allowed: gpt-4o*)")
    """
    if key.configs is not None:
        allowed = ", ".join(key.configs)
        text = (config or "").strip()
        if not text:
            return "config_not_allowed", f"this gateway key may only use the configs {allowed}"
        if text.startswith("{"):
            return "config_not_allowed", (
                f"this gateway key may not send an inline config (allowed configs: {allowed})"
            )
        if not _matches(key.configs, text):
            return "config_not_allowed", (
                f"this gateway key may not use config {text!r} (allowed configs: {allowed})"
            )
    if key.models is not None:
        allowed = ", ".join(key.models)
        if model is None:
            return "model_not_allowed", (
                f"this gateway key may only use the models {allowed}; name one as 'model'"
            )
        if not _matches(key.models, model):
            return "model_not_allowed", (
                f"this gateway key may not use model {model!r} (allowed: {allowed})"
            )
    return None


# --- virtual keys ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VirtualKeyCredentials:
    """What a virtual key stands for, decrypted: handle as a secret, never trace it."""

    slug: str
    provider: str
    api_key: str = field(repr=False)
    custom_host: str | None = None
    provider_options: Mapping[str, Any] = field(default_factory=dict)


class SecretBox:
    """Encrypts and decrypts virtual keys' secrets with a key from ``TRACEWAY_SECRET_KEY``.

    >>> box = SecretBox("correct horse battery staple, then some more")
    >>> box.decrypt(box.encrypt("sk-123", context="openai-prod"), context="openai-prod")
    'sk-123'
    """

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise SecretKeyError(
                f"{SECRET_KEY_ENV} is too short: use at least {MIN_SECRET_CHARS} random "
                f"characters ({_GENERATE_HINT})"
            )
        key = HKDF(algorithm=SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
            secret.encode()
        )
        self._aead = AESGCM(key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SecretBox:
        """The box for ``TRACEWAY_SECRET_KEY``; :class:`SecretKeyError` when it is unset."""
        secret = (os.environ if environ is None else environ).get(SECRET_KEY_ENV, "")
        if not secret:
            raise SecretKeyError(
                f"{SECRET_KEY_ENV} is not set; virtual keys are encrypted with it "
                f"({_GENERATE_HINT})"
            )
        return cls(secret)

    def encrypt(self, plaintext: str, *, context: str) -> str:
        """Ciphertext as text (``v1.`` + urlsafe base64), bound to ``context``."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), _associated(context))
        body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()
        return f"{_CIPHER_VERSION}.{body}"

    def decrypt(self, token: str, *, context: str) -> str:
        """The plaintext; :class:`DecryptionError` for another key, context or a damaged text."""
        version, _, body = token.partition(".")
        if version != _CIPHER_VERSION:
            raise DecryptionError(f"unknown ciphertext version {version[:8]!r}")
        try:
            raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DecryptionError("the ciphertext is not valid base64") from exc
        if len(raw) <= _NONCE_BYTES:
            raise DecryptionError("the ciphertext is truncated")
        try:
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _associated(context))
        except InvalidTag as exc:
            raise DecryptionError(
                f"the secret does not decrypt with this {SECRET_KEY_ENV} "
                "(it was encrypted under another one, or altered)"
            ) from exc
        return plain.decode()

    def __repr__(self) -> str:
        return "<SecretBox>"


def _associated(context: str) -> bytes:
    return b"traceway-virtual-key:" + context.encode()


# --- the interface the gateway calls ----------------------------------------


class KeyResolver(Protocol):
    """Looks keys up for the gateway; implementations must be cheap on the hot path."""

    async def verify_gateway_key(self, token: str) -> GatewayKeyInfo | None:
        """The key's record when ``token`` is a known, unrevoked gateway key, else ``None``."""
        ...

    async def resolve_virtual_key(self, slug: str) -> VirtualKeyCredentials | None:
        """The credentials behind ``slug``, or ``None`` if there is no such virtual key.

        Raises :class:`KeysError` when the credentials exist but cannot be decrypted.
        """
        ...


class StaticKeyResolver:
    """A fixed set of keys in memory: for tests, and gateways configured from a file.

    >>> import asyncio
    >>> token = new_gateway_key()
    >>> resolver = StaticKeyResolver({token: GatewayKeyInfo(1, "ci", display_prefix(token))})
    >>> asyncio.run(resolver.verify_gateway_key(token)).name
    'ci'
    """

    def __init__(
        self,
        gateway_keys: Mapping[str, GatewayKeyInfo] | None = None,
        virtual_keys: Mapping[str, VirtualKeyCredentials] | None = None,
    ) -> None:
        # Kept by hash, as the store keeps them.
        self._gateway = {hash_gateway_key(t): info for t, info in (gateway_keys or {}).items()}
        self._virtual = dict(virtual_keys or {})

    async def verify_gateway_key(self, token: str) -> GatewayKeyInfo | None:
        if not looks_like_gateway_key(token):
            return None
        return self._gateway.get(hash_gateway_key(token))

    async def resolve_virtual_key(self, slug: str) -> VirtualKeyCredentials | None:
        return self._virtual.get(slug)


def presented_gateway_key(options: RequestOptions) -> str | None:
    """The gateway key a request carries: ``x-traceway-api-key`` / ``x-portkey-api-key``,
    else a ``tw-`` token in ``Authorization: Bearer``."""
    if options.gateway_key:
        return options.gateway_key.strip()
    if options.api_key and options.api_key.startswith(GATEWAY_KEY_PREFIX):
        return options.api_key
    return None


def _unauthorized(message: str, code: str | None) -> GatewayError:
    return GatewayError(401, message, code=code, headers={"www-authenticate": "Bearer"})


async def authorize(
    resolver: KeyResolver, options: RequestOptions, *, model: Any
) -> GatewayKeyInfo:
    """Check the request's gateway key; raise :class:`GatewayError` 401 or 403.

    ``model`` is the request body's ``model``.  On success a ``tw-`` key taken
    from ``Authorization`` is removed from ``options.api_key``, so it never
    travels to a provider.
    """
    token = presented_gateway_key(options)
    if token is None:
        raise _unauthorized(
            "You didn't provide a gateway API key. Send it as 'Authorization: Bearer tw-...' "
            "(or in x-traceway-api-key).",
            None,
        )
    info = await resolver.verify_gateway_key(token)
    if info is None:
        raise _unauthorized(
            f"Incorrect gateway API key provided: {display_prefix(token)}***. "
            "It is unknown or has been revoked.",
            "invalid_api_key",
        )
    if options.api_key == token:
        options.api_key = None
    denial = scope_denial(
        info, model=model if isinstance(model, str) else None, config=options.config
    )
    if denial is not None:
        code, message = denial
        raise GatewayError(403, message, code=code)
    return info


async def virtual_key_credentials(resolver: KeyResolver | None, slug: str) -> VirtualKeyCredentials:
    """The credentials behind a virtual key; :class:`GatewayError` when it cannot be used.

    401 for an unknown (or deleted) slug, 400 when this gateway has no key store,
    500 when the stored secret does not decrypt (the reason goes to the log only).
    """
    if resolver is None:
        raise GatewayError(400, "virtual keys are not available on this gateway; name a provider")
    try:
        credentials = await resolver.resolve_virtual_key(slug)
    except KeysError as exc:
        logger.error("virtual key %r cannot be used: %s", slug, exc)
        raise GatewayError(
            500, f"virtual key {slug!r} cannot be used on this gateway (see its log)"
        ) from exc
    if credentials is None:
        raise _unauthorized(
            f"Invalid virtual key {slug!r}: there is no such key.", "invalid_api_key"
        )
    return credentials
