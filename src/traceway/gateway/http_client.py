"""The HTTP/1.1 client the gateway calls providers with: pooled, lean, on ``httptools``.

Every proxied request pays for its upstream call, and a general-purpose client
(cookies, redirects, proxies, tracing signals, multipart, ...) spent more CPU on
it than the whole rest of the gateway.  This client does only what a call to a
provider's API needs:

- ``POST`` (or any method) with a body already encoded, over kept-alive
  connections pooled per origin (``http``/``https``, system CAs for TLS), at most
  ``limit_per_host`` at once;
- the answer's status and headers as soon as they arrive, then its body whole
  (:meth:`HttpReply.read`) or piece by piece as it streams
  (:meth:`HttpReply.iter_chunks`); ``Content-Length``, chunked and
  close-delimited bodies are decoded by ``httptools`` (llhttp);
- a connect timeout, and a read timeout that is the longest the upstream may stay
  silent (the caller bounds the whole call with :func:`asyncio.timeout`);
- one retry on a fresh connection when a reused one turns out to have been closed
  by the server before it sent a byte (idle keep-alive connections race with the
  server's own idle timeout; the request was not processed).

Failures raise :class:`TimeoutError` (connect or read timeout) or
:class:`HttpConnectionError`; a URL or header that cannot be sent raises
:class:`ValueError`.  Redirects are not followed.  Header names in replies are
lower-case.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Final, cast
from urllib.parse import urlsplit

import httptools

__all__ = ["HttpClient", "HttpConnectionError", "HttpReply"]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_MAX_CACHED_URLS: Final = 1024
#: A streamed body buffered beyond this pauses reading until the reader catches up.
_HIGH_WATER: Final = 1024 * 1024


class HttpConnectionError(Exception):
    """The upstream could not be reached, or the connection broke before the answer ended."""


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str  # with the query string
    host_header: str

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def _parse_url(url: str) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r}: use http or https")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL are not supported")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in URL {url!r}")
    port = parts.port or _DEFAULT_PORTS[scheme]  # ValueError for a bad port
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"
    if any(c in path for c in " \r\n"):
        raise ValueError("the URL path holds spaces or line breaks")
    return _Target(scheme, host, port, path, host_header)


class _Connection(asyncio.Protocol):
    """One upstream connection: parses the answers that arrive on it."""

    __slots__ = (
        "_body",
        "_buffered",
        "_chunked_or_sized",
        "_failure",
        "_headers",
        "_last_data",
        "_loop",
        "_paused",
        "_read_timeout",
        "_reading",
        "_silence_timer",
        "closed",
        "complete",
        "got_bytes",
        "headers_done",
        "idle_since",
        "keep_alive",
        "parser",
        "transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._silence_timer: asyncio.TimerHandle | None = None
        self._read_timeout: float | None = None
        self._last_data = 0.0
        self._reset()

    def _reset(self) -> None:
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._chunked_or_sized = False
        self._failure: BaseException | None = None
        self.got_bytes = False
        self.headers_done: asyncio.Future[None] = self._loop.create_future()
        self.complete = False
        self.keep_alive = False
        self._reading: asyncio.Future[None] | None = None

    # -- the request ------------------------------------------------------------

    def send(self, data: bytes, read_timeout: float | None) -> None:
        assert self.transport is not None
        self._reset()
        self._read_timeout = read_timeout
        if read_timeout is not None:
            self._last_data = self._loop.time()
            self._silence_timer = self._loop.call_at(
                self._last_data + read_timeout, self._check_silence
            )
        self.transport.write(data)

    def _check_silence(self) -> None:
        timeout = self._read_timeout
        assert timeout is not None
        quiet = self._loop.time() - self._last_data
        if quiet < timeout:
            self._silence_timer = self._loop.call_at(self._last_data + timeout, self._check_silence)
            return
        self._silence_timer = None
        self._fail(TimeoutError(f"the upstream sent nothing for {timeout:g} s"))
        self.close()

    def _stop_timer(self) -> None:
        if self._silence_timer is not None:
            self._silence_timer.cancel()
            self._silence_timer = None

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self._read_timeout is not None:
            self._last_data = self._loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(HttpConnectionError("the upstream switched protocols"))
            self.close()
        except httptools.HttpParserError as exc:
            self._fail(HttpConnectionError(f"malformed answer from upstream: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        if self.complete:
            return
        if self.headers_done.done() and not self._chunked_or_sized and not self._headers_only():
            # A body delimited by the end of the connection: this is its end.
            self.on_message_complete()
            return
        reason = f": {exc}" if exc else ""
        self._fail(HttpConnectionError(f"the upstream closed the connection{reason}"))

    # -- httptools callbacks ----------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key == "content-length" or (key == "transfer-encoding" and "chunked" in text.lower()):
            self._chunked_or_sized = True
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        if not self.headers_done.done():
            self.headers_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        # Only known while the parser is in the message (it resets right after).
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True
        self._stop_timer()
        if not self.headers_done.done():
            self.headers_done.set_result(None)
        self._wake()

    # -- reading ----------------------------------------------------------------

    def _headers_only(self) -> bool:
        status = self.parser.get_status_code()
        return status in (204, 304) or 100 <= status < 200

    def _wake(self) -> None:
        reading = self._reading
        if reading is not None and not reading.done():
            reading.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self._stop_timer()
        if not self.headers_done.done():
            self.headers_done.set_exception(exc)
            self.headers_done.exception()  # retrieved: a reply may never be asked for
        reading = self._reading
        if reading is not None and not reading.done():
            reading.set_exception(exc)
        self._failure = exc

    @property
    def status(self) -> int:
        return self.parser.get_status_code()

    @property
    def headers(self) -> dict[str, str]:
        return self._headers

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed

    def _take_body(self) -> bytes:
        body = self._body
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self._buffered = 0
        return data

    async def _more(self) -> None:
        """Wait for the next piece of the answer (or its end, or a failure)."""
        if self._failure is not None:
            raise self._failure
        self._reading = self._loop.create_future()
        await self._reading

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body, or ``None`` at its end."""
        while not self._body:
            if self.complete:
                return None
            await self._more()
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()
        return self._take_body()

    async def read_all(self) -> bytes:
        while not self.complete:
            await self._more()
        return self._take_body()

    def close(self) -> None:
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()


class HttpReply:
    """An upstream's answer: status and headers now, the body when read."""

    __slots__ = ("_client", "_conn", "_origin", "_released", "headers", "status")

    def __init__(self, client: HttpClient, origin: tuple[str, str, int], conn: _Connection) -> None:
        self._client = client
        self._origin = origin
        self._conn = conn
        self._released = False
        self.status: int = conn.status
        self.headers: dict[str, str] = conn.headers

    @property
    def content_type(self) -> str:
        """The media type, lower-case, without parameters (``""`` when absent)."""
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()

    async def read(self) -> bytes:
        """The whole body; the connection goes back to the pool."""
        try:
            return await self._conn.read_all()
        finally:
            self.release()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; the connection goes back to the pool at its end."""
        try:
            while (chunk := await self._conn.next_chunk()) is not None:
                yield chunk
        finally:
            self.release()

    def release(self) -> None:
        """Give the connection back (or close it, when the body was not read to its end)."""
        if not self._released:
            self._released = True
            self._client._give_back(self._origin, self._conn)


class _Pool:
    __slots__ = ("idle", "slots")

    def __init__(self, limit: int) -> None:
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(limit)


class HttpClient:
    """Pools of kept-alive connections to upstreams; create and close on one event loop."""

    def __init__(
        self,
        *,
        limit_per_host: int = 100,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float | None = 600.0,
        keepalive_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._limit = limit_per_host
        self._connect_timeout = connect_timeout_s
        self._read_timeout = read_timeout_s
        self._keepalive = keepalive_s
        self._ssl = ssl_context
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._targets: dict[str, _Target] = {}
        self.closed = False

    async def post(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes,
        read_timeout_s: float | None = None,
        method: str = "POST",
    ) -> HttpReply:
        """Send ``body`` to ``url``; the reply's body must be read or released."""
        if self.closed:
            raise RuntimeError("the HTTP client is closed")
        target = self._targets.get(url)
        if target is None:
            target = _parse_url(url)
            if len(self._targets) >= _MAX_CACHED_URLS:
                self._targets.clear()
            self._targets[url] = target
        data = self._head(method, target, headers, len(body)) + body
        timeout = read_timeout_s if read_timeout_s is not None else self._read_timeout
        origin = target.origin
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool(self._limit)
        await pool.slots.acquire()
        conn: _Connection | None = None
        try:
            conn = self._idle(pool)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(target)
            conn.send(data, timeout)
            try:
                await conn.headers_done
            except HttpConnectionError:
                if not reused or conn.got_bytes:
                    raise
                conn.close()  # closed by the server while idle: once more, on a new one
                conn = None
                conn = await self._connect(target)
                conn.send(data, timeout)
                await conn.headers_done
        except BaseException:
            pool.slots.release()
            if conn is not None:
                conn.close()
            raise
        return HttpReply(self, origin, conn)

    def _head(self, method: str, target: _Target, headers: Mapping[str, str], size: int) -> bytes:
        lines = [f"{method} {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {size}\r\n\r\n")
        text = "".join(lines)
        # Exactly one line break per line: no header may smuggle in another.
        breaks = len(lines) + 2  # the first and the last piece end two lines each
        if text.count("\n") != breaks or text.count("\r") != breaks:
            raise ValueError("a header name or value holds a line break")
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("header values must be Latin-1 text") from None

    def _idle(self, pool: _Pool) -> _Connection | None:
        idle = pool.idle
        if not idle:
            return None
        oldest_kept = asyncio.get_running_loop().time() - self._keepalive
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be stale
            if not conn.closed and conn.idle_since >= oldest_kept:
                return conn
            conn.close()
        return None

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if target.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop),
                    target.host,
                    target.port,
                    ssl=tls,
                    server_hostname=target.host if tls is not None else None,
                )
        except TimeoutError:
            raise TimeoutError(
                f"could not connect to {target.host}:{target.port} "
                f"within {self._connect_timeout:g} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise HttpConnectionError(
                f"cannot connect to {target.host}:{target.port}: {exc}"
            ) from exc
        return conn

    def _give_back(self, origin: tuple[str, str, int], conn: _Connection) -> None:
        pool = self._pools.get(origin)
        if pool is None:  # closed meanwhile
            conn.close()
            return
        pool.slots.release()
        if conn.reusable() and not self.closed:
            conn.idle_since = asyncio.get_running_loop().time()
            pool.idle.append(conn)
        else:
            conn.close()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every idle connection; connections in use close when released."""
        self.closed = True
        for pool in self._pools.values():
            for conn in pool.idle:
                conn.close()
            pool.idle.clear()
        self._pools.clear()
