"""Request headers that steer the gateway, and the response headers it sets.

Every routing header exists under two names: ``x-traceway-<name>`` and Portkey's
``x-portkey-<name>``, so Portkey users switch by changing only ``base_url``.
When both are sent the ``x-traceway-`` one wins.  Parsing is one pass over the
raw ASGI header list with no regular expressions: it runs on every request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from traceway.gateway.errors import GatewayError

__all__ = ["RequestOptions", "parse_headers", "response_headers"]

_TRACEWAY = b"x-traceway-"
_PORTKEY = b"x-portkey-"
_TRACEWAY_LEN = len(_TRACEWAY)
_PORTKEY_LEN = len(_PORTKEY)


@dataclass(slots=True)
class RequestOptions:
    """What the caller's headers ask of the gateway (secrets included: never trace this)."""

    provider: str | None = None
    api_key: str | None = None  # the provider key, from ``Authorization: Bearer``
    config: str | None = None  # inline JSON or a saved config id
    virtual_key: str | None = None
    gateway_key: str | None = None  # ``x-portkey-api-key``: the gateway's own key
    custom_host: str | None = None
    metadata: dict[str, Any] | None = None
    trace_id: str | None = None
    request_timeout_ms: int | None = None
    cache_force_refresh: bool = False
    traceparent: str | None = None
    tracestate: str | None = None
    forward_headers: dict[str, str] = field(default_factory=dict)
    #: Settings some providers read: Azure's deployment / api version, the mock's latency.
    provider_options: dict[str, str] = field(default_factory=dict)


def _parse_metadata(value: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"x-traceway-metadata is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise GatewayError(400, "x-traceway-metadata must be a JSON object")
    return parsed


def _parse_timeout(value: str) -> int:
    try:
        timeout = int(value)
    except ValueError:
        timeout = -1
    if timeout <= 0:
        raise GatewayError(
            400, f"x-traceway-request-timeout must be a positive number of milliseconds: {value!r}"
        )
    return timeout


def _parse_bool(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


def _text(value: str) -> str:
    return value


# Header suffix -> (option slot, parser).  Looked up by full header name, so most
# headers cost one dict lookup.
_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "provider": ("provider", _text),
    "config": ("config", _text),
    "custom-host": ("custom_host", _text),
    "metadata": ("metadata", _parse_metadata),
    "trace-id": ("trace_id", _text),
    "request-timeout": ("request_timeout_ms", _parse_timeout),
    "virtual-key": ("virtual_key", _text),
    "api-key": ("gateway_key", _text),
    "cache-force-refresh": ("cache_force_refresh", _parse_bool),
}
#: OpenAI's account headers: passed upstream as they are.
_OPENAI_HEADERS = frozenset({b"openai-organization", b"openai-project", b"openai-beta"})
#: Full header name -> (slot, parser, is a Portkey alias).
_KNOWN: dict[bytes, tuple[str, Callable[[str], Any], bool]] = {
    prefix + suffix.encode(): (slot, parse, prefix == _PORTKEY)
    for suffix, (slot, parse) in _OPTIONS.items()
    for prefix in (_TRACEWAY, _PORTKEY)
}


def _other(
    options: RequestOptions,
    name: bytes,
    value: bytes,
    forwarded: list[str],
    aliases: dict[str, str],
) -> None:
    """The rarer routing headers: forwarded-header lists and provider settings."""
    if name.startswith(_TRACEWAY):
        suffix, alias = name[_TRACEWAY_LEN:].decode("latin-1"), False
    elif name.startswith(_PORTKEY):
        suffix, alias = name[_PORTKEY_LEN:].decode("latin-1"), True
    else:
        return
    if suffix == "forward-headers":
        forwarded.extend(h.strip().lower() for h in value.decode().split(",") if h.strip())
    elif suffix.startswith(("azure-", "mock-")):
        key = suffix.replace("-", "_")
        if alias:
            aliases[key] = value.decode()
        else:
            options.provider_options[key] = value.decode()


def parse_headers(raw: Iterable[tuple[bytes, bytes]]) -> RequestOptions:
    """Read the routing headers from an ASGI header list (names are lower-case).

    >>> opts = parse_headers([(b"x-portkey-provider", b"openai"), (b"authorization", b"Bearer k")])
    >>> (opts.provider, opts.api_key)
    ('openai', 'k')
    """
    options = RequestOptions()
    portkey: list[tuple[str, Callable[[str], Any], str]] = []
    forwarded: list[str] = []
    aliased_settings: dict[str, str] = {}
    headers = raw if isinstance(raw, list) else list(raw)
    for name, value in headers:
        known = _KNOWN.get(name)
        if known is not None:
            slot, parse, alias = known
            if alias:
                portkey.append((slot, parse, value.decode()))
            else:
                setattr(options, slot, parse(value.decode()))
        elif name == b"authorization":
            text = value.decode()
            scheme, _, token = text.partition(" ")
            options.api_key = token.strip() if scheme.lower() == "bearer" else text
        elif name == b"traceparent":
            options.traceparent = value.decode("latin-1")
        elif name == b"tracestate":
            options.tracestate = value.decode("latin-1")
        elif name == b"api-key":
            if options.api_key is None:
                options.api_key = value.decode()
        elif name in _OPENAI_HEADERS:
            options.forward_headers[name.decode()] = value.decode()
        elif name.startswith(b"x-"):
            _other(options, name, value, forwarded, aliased_settings)
    for slot, parse, text in portkey:
        # An x-traceway-* header of the same name wins.
        if getattr(options, slot) in (None, False):
            setattr(options, slot, parse(text))
    for key, text in aliased_settings.items():
        options.provider_options.setdefault(key, text)
    if forwarded:
        wanted = set(forwarded)
        for name, value in headers:
            key = name.decode("latin-1")
            if key in wanted:
                options.forward_headers[key] = value.decode()
    return options


def response_headers(
    *, provider: str | None, trace_id: str, retries: int, option_index: str | None
) -> list[tuple[bytes, bytes]]:
    """The routing outcome as response headers, under both prefixes."""
    pairs = [(b"trace-id", trace_id.encode()), (b"retry-attempt-count", str(retries).encode())]
    if provider:
        pairs.append((b"provider", provider.encode()))
    if option_index:
        pairs.append((b"last-used-option-index", option_index.encode()))
    out: list[tuple[bytes, bytes]] = []
    for name, value in pairs:
        out.append((_TRACEWAY + name, value))
        out.append((_PORTKEY + name, value))
    return out
