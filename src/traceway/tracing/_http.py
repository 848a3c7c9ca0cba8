"""A minimal HTTP/1.1 client on the standard library, with keep-alive.

The SDK must install into any application, so it carries no HTTP dependency.
One :class:`HttpTransport` keeps one connection per origin and reopens it after
a fork or when the server closed an idle connection.
"""

from __future__ import annotations

import http.client
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["HttpResponse", "HttpTransport"]

# Errors that mean a kept-alive connection went stale before the request was sent.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


@dataclass(slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # lowercase names


class HttpTransport:
    """Sends requests over kept-alive connections; raises ``OSError`` or ``HTTPException``."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._connections: dict[tuple[str, str], http.client.HTTPConnection] = {}
        self._pid = os.getpid()

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResponse:
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        existing = self._connections.get((parts.scheme, parts.netloc))
        reused = existing is not None and existing.sock is not None and self._pid == os.getpid()
        try:
            return self._send(parts.scheme, parts.netloc, method, target, body, headers or {})
        except _STALE:
            if not reused:
                raise
            return self._send(parts.scheme, parts.netloc, method, target, body, headers or {})

    def connect(self, url: str) -> None:
        """Open (or keep) the connection to ``url``'s origin; raises ``OSError`` if refused."""
        parts = urlsplit(url)
        connection = self._connection(parts.scheme, parts.netloc)
        if connection.sock is None:
            try:
                connection.connect()
            except BaseException:
                self._discard(parts.scheme, parts.netloc)
                raise

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def _send(
        self,
        scheme: str,
        netloc: str,
        method: str,
        target: str,
        body: bytes | None,
        headers: dict[str, str],
    ) -> HttpResponse:
        connection = self._connection(scheme, netloc)
        try:
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except BaseException:
            self._discard(scheme, netloc)
            raise
        if response.will_close:
            self._discard(scheme, netloc)
        return HttpResponse(response.status, data, {k.lower(): v for k, v in response.getheaders()})

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        if self._pid != os.getpid():
            # Connections inherited from the parent process share its sockets.
            self._connections.clear()
            self._pid = os.getpid()
        key = (scheme, netloc)
        connection = self._connections.get(key)
        if connection is None:
            if scheme == "https":
                connection = http.client.HTTPSConnection(netloc, timeout=self.timeout_s)
            elif scheme == "http":
                connection = http.client.HTTPConnection(netloc, timeout=self.timeout_s)
            else:
                raise ValueError(f"unsupported URL scheme {scheme!r}: use http or https")
            self._connections[key] = connection
        return connection

    def _discard(self, scheme: str, netloc: str) -> None:
        connection = self._connections.pop((scheme, netloc), None)
        if connection is not None:
            connection.close()
