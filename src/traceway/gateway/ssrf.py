"""SSRF protection for custom hosts named by requests.

A request may point a target at any URL (``x-traceway-custom-host`` or a config's
``custom_host``).  Unless its host is allowed by the operator, the gateway
resolves it and refuses private, loopback, link-local, unique-local, multicast,
reserved and unspecified addresses and the cloud metadata endpoints.  Verdicts
are cached briefly so the resolver is not on every request's path.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from traceway.gateway.errors import GatewayError
from traceway.gateway.settings import ALLOWED_HOSTS_ENV

__all__ = ["HostGuard", "Resolver", "is_forbidden_address"]

#: ``resolver(host) -> addresses``; the default asks the event loop's resolver.
Resolver = Callable[[str], Awaitable[list[str]]]

_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "metadata.goog"})
_METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_CACHE_TTL_S = 60.0
_CACHE_SIZE = 1024


def is_forbidden_address(address: str) -> bool:
    """True for addresses a request must not reach through the gateway."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip in _METADATA_ADDRESSES
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


async def _resolve(host: str) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class HostGuard:
    """Decides whether a custom host may be used."""

    def __init__(
        self,
        allowed: Iterable[str] = (),
        *,
        resolver: Resolver = _resolve,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._allowed = frozenset(h.strip().lower().strip("[]") for h in allowed if h.strip())
        self._resolver = resolver
        self._clock = clock
        self._verdicts: dict[str, tuple[float, str | None]] = {}
        # URLs that passed, until when: most requests repeat a handful of hosts.
        self._passed: dict[str, float] = {}

    async def check(self, url: str) -> None:
        """Raise :class:`GatewayError` (400) unless ``url`` may be reached."""
        until = self._passed.get(url)
        if until is not None and until > self._clock():
            return
        await self._check(url)
        if len(self._passed) >= _CACHE_SIZE:
            self._passed.clear()
        self._passed[url] = self._clock() + _CACHE_TTL_S

    async def _check(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            host = ""
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not host:
            raise GatewayError(
                400,
                f"custom host {url!r} must be an http(s) URL",
                param="custom_host",
                code="invalid_custom_host",
            )
        if host in self._allowed:
            return
        cached = self._verdicts.get(host)
        now = self._clock()
        if cached is not None and cached[0] > now:
            reason = cached[1]
        else:
            reason = await self._judge(host)
            if len(self._verdicts) >= _CACHE_SIZE:
                self._verdicts.clear()
            self._verdicts[host] = (now + _CACHE_TTL_S, reason)
        if reason is not None:
            raise GatewayError(
                400,
                f"custom host {host!r} is refused: {reason}. "
                f"To allow it, add it to {ALLOWED_HOSTS_ENV}.",
                param="custom_host",
                code="custom_host_forbidden",
            )

    async def _judge(self, host: str) -> str | None:
        """Why ``host`` is refused, or ``None`` when it may be used."""
        if host in _METADATA_HOSTS:
            return "it is a cloud metadata endpoint"
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                addresses = await self._resolver(host)
            except OSError as exc:
                return f"it does not resolve ({exc})"
        if not addresses:
            return "it does not resolve"
        for address in addresses:
            if address in self._allowed:
                continue
            if is_forbidden_address(address):
                return f"it resolves to the non-public address {address}"
        return None
