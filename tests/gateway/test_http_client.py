"""The gateway's upstream HTTP client against real sockets.

Each test runs a small HTTP/1.1 server on 127.0.0.1 written against asyncio
streams, so every byte the client sees is under the test's control (lengths,
chunking, closing, stalling), plus one HTTPS server with a self-signed
certificate.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from traceway.gateway.http_client import HttpClient, HttpConnectionError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}'


class Server:
    """Counts connections and requests; ``handler`` answers each connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.active = 0
        self.most_active = 0
        self.url = ""

    async def __aenter__(self) -> Server:
        return await self.start()

    async def start(self, tls: ssl.SSLContext | None = None) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One whole request (head and body), or ``None`` when the client hung up."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
    while await s.read_request(reader) is not None:
        writer.write(OK)
        await writer.drain()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def test_connections_are_kept_alive_and_reused() -> None:
    async def test() -> None:
        async with Server(keep_alive) as server, HttpClient() as client:
            for _ in range(5):
                reply = await client.post(f"{server.url}/v1/x", headers={}, body=b"{}")
                assert (reply.status, await reply.read()) == (200, b'{"a":1}')
                assert reply.content_type == "application/json"
        assert server.connections == 1
        assert len(server.requests) == 5

    run(test)


def test_the_request_is_sent_as_given() -> None:
    async def test() -> None:
        async with Server(keep_alive) as server, HttpClient() as client:
            reply = await client.post(
                f"{server.url}/v1/chat?api-version=1",
                headers={"Authorization": "Bearer sk-1", "Content-Type": "application/json"},
                body=b'{"model":"m"}',
            )
            await reply.read()
        head, _, body = server.requests[0].partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /v1/chat?api-version=1 HTTP/1.1"
        port = server.url.rsplit(":", 1)[1]
        assert set(lines[1:]) == {
            f"Host: 127.0.0.1:{port}".encode(),
            b"Authorization: Bearer sk-1",
            b"Content-Type: application/json",
            b"Content-Length: 13",
        }
        assert body == b'{"model":"m"}'

    run(test)


def test_chunked_and_close_delimited_bodies_are_read_whole() -> None:
    async def chunked(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(r) is not None:
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b"hello ", b"chunked ", b"world"):
                w.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await w.drain()
            w.write(b"0\r\n\r\n")

    async def until_close(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await w.drain()

    async def test() -> None:
        async with HttpClient() as client:
            async with Server(chunked) as server:
                for _ in range(2):
                    reply = await client.post(server.url, headers={}, body=b"")
                    assert await reply.read() == b"hello chunked world"
                assert server.connections == 1
            async with Server(until_close) as server:
                reply = await client.post(server.url, headers={}, body=b"")
                assert await reply.read() == b"until the end"

    run(test)


def test_a_stream_arrives_piece_by_piece_and_frees_its_connection() -> None:
    async def test() -> None:
        gate = asyncio.Event()  # the server sends each event only once the last one was read

        async def streaming(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
            while await s.read_request(r) is not None:
                w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
                w.write(b"Transfer-Encoding: chunked\r\n\r\n")
                for event in (b"data: 1\n\n", b"data: 2\n\n"):
                    w.write(b"%x\r\n%s\r\n" % (len(event), event))
                    await w.drain()
                    await gate.wait()
                    gate.clear()
                w.write(b"0\r\n\r\n")

        async def collect(url: str) -> list[bytes]:
            reply = await client.post(url, headers={}, body=b"")
            assert reply.content_type == "text/event-stream"
            pieces = []
            async for piece in reply.iter_chunks():
                pieces.append(piece)
                gate.set()
            return pieces

        async with Server(streaming) as server, HttpClient() as client:
            for _ in range(2):
                assert await collect(server.url) == [b"data: 1\n\n", b"data: 2\n\n"]
        assert server.connections == 1

    run(test)


def test_a_reply_released_before_its_end_closes_its_connection() -> None:
    async def slow_body(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(r) is not None:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{")
            await w.drain()
            await asyncio.sleep(0.1)
            w.write(b'"a":1}')
            await w.drain()

    async def test() -> None:
        async with Server(slow_body) as server, HttpClient() as client:
            (await client.post(server.url, headers={}, body=b"")).release()
            reply = await client.post(server.url, headers={}, body=b"")
            assert await reply.read() == b'{"a":1}'
            await (await client.post(server.url, headers={}, body=b"")).read()
        assert server.connections == 2  # the first was closed; the second, reused

    run(test)


def test_a_connection_the_server_closed_while_idle_is_replaced_transparently() -> None:
    async def one_request_each(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(OK)  # says nothing of closing, then closes: an idle timeout
        await w.drain()

    async def hangs_up_on_the_second(
        r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server
    ) -> None:
        await s.read_request(r)
        w.write(OK)
        await w.drain()
        await s.read_request(r)  # the close raced with this request: no byte of an answer

    async def test() -> None:
        async with Server(one_request_each) as server, HttpClient() as client:
            for _ in range(3):
                reply = await client.post(server.url, headers={}, body=b"{}")
                assert await reply.read() == b'{"a":1}'
                await asyncio.sleep(0.05)  # the close reaches the client first
        assert (server.connections, len(server.requests)) == (3, 3)
        async with Server(hangs_up_on_the_second) as server, HttpClient() as client:
            for _ in range(2):  # the second is sent on the kept connection, then again
                reply = await client.post(server.url, headers={}, body=b"{}")
                assert await reply.read() == b'{"a":1}'
        assert (server.connections, len(server.requests)) == (2, 3)

    run(test)


def test_a_silent_upstream_times_out() -> None:
    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        await asyncio.sleep(5)

    async def dribbling(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(6):  # a byte every 0.1 s: slower in total than the timeout
            w.write(b"1\r\nx\r\n")
            await w.drain()
            await asyncio.sleep(0.1)
        w.write(b"0\r\n\r\n")
        await w.drain()

    async def test() -> None:
        async with HttpClient() as client:
            async with Server(silent) as server:
                started = asyncio.get_running_loop().time()
                with pytest.raises(TimeoutError):
                    await client.post(server.url, headers={}, body=b"", read_timeout_s=0.3)
                assert asyncio.get_running_loop().time() - started < 2
            async with Server(dribbling) as server:
                reply = await client.post(server.url, headers={}, body=b"", read_timeout_s=0.3)
                assert await reply.read() == b"x" * 6

    run(test)


def test_failures_are_reported_as_such() -> None:
    async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"this is not HTTP\r\n\r\n")
        await w.drain()

    async def cut(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await w.drain()

    async def test() -> None:
        async with HttpClient() as client:
            async with Server(keep_alive) as server:
                closed_port = server.url
            with pytest.raises(HttpConnectionError, match="cannot connect"):
                await client.post(closed_port, headers={}, body=b"")
            async with Server(garbage) as server:
                with pytest.raises(HttpConnectionError, match="malformed"):
                    await client.post(server.url, headers={}, body=b"")
            async with Server(cut) as server:
                reply = await client.post(server.url, headers={}, body=b"")
                with pytest.raises(HttpConnectionError, match="closed"):
                    await reply.read()

    run(test)


def test_a_header_cannot_smuggle_another_line() -> None:
    async def test() -> None:
        async with Server(keep_alive) as server, HttpClient() as client:
            for headers in (
                {"Authorization": "Bearer sk\r\nX-Evil: 1"},
                {"X-Evil\r\nX-Other": "1"},
                {"Authorization": "Bearer sk\nX-Evil: 1"},
            ):
                with pytest.raises(ValueError, match="line break"):
                    await client.post(server.url, headers=headers, body=b"")
            with pytest.raises(ValueError):
                await client.post("ftp://127.0.0.1/x", headers={}, body=b"")
        assert server.requests == []

    run(test)


def test_at_most_limit_per_host_connections_at_once() -> None:
    async def slow(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while await s.read_request(r) is not None:
            s.active += 1
            s.most_active = max(s.most_active, s.active)
            await asyncio.sleep(0.05)
            s.active -= 1
            w.write(OK)
            await w.drain()

    async def test() -> None:
        async with Server(slow) as server, HttpClient(limit_per_host=2) as client:

            async def one() -> bytes:
                return await (await client.post(server.url, headers={}, body=b"")).read()

            assert await asyncio.gather(*(one() for _ in range(6))) == [b'{"a":1}'] * 6
        assert server.most_active == 2
        assert server.connections == 2

    run(test)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_verifies_the_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))

    async def test() -> None:
        server = await Server(keep_alive).start(tls=served)
        try:
            async with HttpClient(ssl_context=trusting) as client:
                for _ in range(2):
                    reply = await client.post(f"{server.url}/v1/x", headers={}, body=b"{}")
                    assert await reply.read() == b'{"a":1}'
            assert server.connections == 1
            async with HttpClient() as client:  # the system's CAs do not know this one
                with pytest.raises(HttpConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                    await client.post(f"{server.url}/v1/x", headers={}, body=b"{}")
        finally:
            await server.__aexit__()

    run(test)
