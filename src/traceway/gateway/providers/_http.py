"""Sending a translated request upstream and reading its answer.

Used by the providers that translate wire formats (Anthropic, Gemini).  Failures of
the network are translated here, once: a timeout becomes ``UpstreamError(408)``,
a connection that cannot be made or breaks becomes ``UpstreamError(502)``.  Once a stream has
started, the same failures can no longer change the status, so they end the stream
with an OpenAI error event instead.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any, Protocol

import orjson

from traceway.gateway.http_client import HttpClient, HttpConnectionError, HttpReply
from traceway.gateway.providers._openai_format import error_object
from traceway.gateway.providers._sse import DONE, SSEDecoder, SSEEvent, encode_data
from traceway.gateway.providers.base import UpstreamError, UpstreamResponse, error_response

__all__ = [
    "StreamTranslator",
    "bad_gateway",
    "post",
    "read",
    "read_payload",
    "response_headers",
    "translate_stream",
]

# They describe the upstream's body, which the provider replaces with a translation.
_BODY_HEADERS = frozenset(
    {"connection", "content-encoding", "content-length", "content-type", "keep-alive"}
    | {"transfer-encoding"}
)


class StreamTranslator(Protocol):
    """Turns a provider's stream events into OpenAI chunk (or error) objects."""

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]: ...

    def finish(self) -> list[dict[str, Any]]: ...


def response_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The upstream's headers worth passing on (rate limits, retry-after, request ids)."""
    return {k.lower(): v for k, v in headers.items() if k.lower() not in _BODY_HEADERS}


def bad_gateway(provider: str, message: str) -> UpstreamResponse:
    """A 502 for an upstream answer that cannot be understood."""
    return error_response(502, f"{provider}: {message}", code="bad_upstream_response")


async def post(
    http: HttpClient,
    url: str,
    *,
    provider: str,
    headers: Mapping[str, str],
    payload: Any,
    timeout_s: float | None,
) -> HttpReply:
    """POST ``payload`` as JSON; the caller reads (or streams) and releases the answer.

    ``timeout_s`` is the longest the upstream may stay silent (the router bounds
    the wait for the answer as a whole).
    """
    try:
        return await http.post(
            url, headers=headers, body=orjson.dumps(payload), read_timeout_s=timeout_s
        )
    except TimeoutError as exc:
        raise _timeout(provider, timeout_s) from exc
    except HttpConnectionError as exc:
        raise _unreachable(provider, exc) from exc
    except ValueError as exc:
        raise UpstreamError(
            400, f"{provider}: unusable upstream URL: {exc}", code="invalid_custom_host"
        ) from exc


async def read(resp: HttpReply, *, provider: str, timeout_s: float | None) -> bytes:
    """The whole body of ``resp``, which is released afterwards."""
    try:
        return await resp.read()
    except TimeoutError as exc:
        raise _timeout(provider, timeout_s) from exc
    except HttpConnectionError as exc:
        raise _unreachable(provider, exc) from exc
    finally:
        resp.release()


async def read_payload(resp: HttpReply, *, provider: str, timeout_s: float | None) -> Any:
    """The body of ``resp`` parsed as JSON, or as text when it is not JSON."""
    raw = await read(resp, provider=provider, timeout_s=timeout_s)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")


async def translate_stream(
    resp: HttpReply, translator: StreamTranslator, *, provider: str
) -> AsyncIterator[bytes]:
    """OpenAI SSE events translated from the upstream's event stream in ``resp``.

    Ends with ``data: [DONE]``, or with an OpenAI error event (and no ``[DONE]``)
    when the upstream reports an error or the stream breaks.
    """
    try:
        async with aclosing(_translated(resp, translator)) as objects:
            try:
                async for obj in objects:
                    yield encode_data(obj)
                    if "error" in obj:
                        return
            except TimeoutError:
                yield _stream_error(f"{provider}: the stream timed out", "timeout")
                return
            except HttpConnectionError as exc:
                message = f"{provider}: the stream broke off ({type(exc).__name__})"
                yield _stream_error(message, "upstream_unreachable")
                return
            except ValueError as exc:  # an undecodable event, or JSON that is not JSON
                message = f"{provider}: malformed event stream ({exc})"
                yield _stream_error(message, "bad_upstream_response")
                return
        yield DONE
    finally:
        resp.release()


async def _translated(
    resp: HttpReply, translator: StreamTranslator
) -> AsyncGenerator[dict[str, Any], None]:
    decoder = SSEDecoder()
    async for piece in resp.iter_chunks():
        for event in decoder.feed(piece):
            for obj in translator.feed(event):
                yield obj
    for event in decoder.close():
        for obj in translator.feed(event):
            yield obj
    for obj in translator.finish():
        yield obj


def _stream_error(message: str, code: str) -> bytes:
    return encode_data(error_object(message, type="server_error", code=code))


def _timeout(provider: str, timeout_s: float | None) -> UpstreamError:
    after = f" within {timeout_s:g} s" if timeout_s is not None else ""
    return UpstreamError(408, f"{provider}: no answer from upstream{after}", code="timeout")


def _unreachable(provider: str, exc: HttpConnectionError) -> UpstreamError:
    # The exception's text names host and port, never the request's headers.
    return UpstreamError(
        502, f"{provider}: cannot reach upstream: {exc}", code="upstream_unreachable"
    )
