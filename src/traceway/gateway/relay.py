"""Sending a routed request's answer, and settling what the answer decides.

For a complete (JSON) answer and for a stream alike, in order: the call's cost
(by the price table, on the attempt span that answered), the output guardrails
(446 / 246, redaction; on a stream, run on the assembled answer in place of the
upstream's ``[DONE]``), the cache store and the limiter's usage count (both
before the client sees the end of the answer, so the next request finds them),
then the answer, the spans and the metrics.

An answer the gateway made itself (a cache hit, a guardrail's 446) takes the
same path with no attempt: it costs nothing and is neither stored nor counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from traceway.gateway.asgi import Receive, Send, close_stream, send_json
from traceway.gateway.genai import parse_body
from traceway.gateway.guardrails import (
    AFTER,
    final_response,
    split_done,
    stream_denial_event,
    stream_status,
)
from traceway.gateway.policies import (
    Exchange,
    Policies,
    answer_usage,
    stream_usage,
    usage_tokens,
)
from traceway.gateway.providers.base import UpstreamError, error_body
from traceway.gateway.router import Call, Outcome
from traceway.gateway.streams import aggregate_stream

__all__ = ["Answerer"]

logger = logging.getLogger(__name__)

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_DONE = b"data: [DONE]\n\n"


def _full_answer(body: bytes, parsed: Any) -> Any:
    """The whole answer as JSON (``parse_body`` reads only the usage of large ones)."""
    if isinstance(parsed, dict) and "choices" in parsed:
        return parsed
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


class Answerer:
    """Answers requests for one gateway and keeps count of the streams in flight."""

    def __init__(self, policies: Policies, http: Callable[[], aiohttp.ClientSession]) -> None:
        self._policies = policies
        self._http = http
        self._streams = 0
        self._streams_done = asyncio.Event()
        self._streams_done.set()

    async def wait_for_streams(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for the streams in flight to end."""
        if not self._streams:
            return
        try:
            async with asyncio.timeout(grace_s):
                await self._streams_done.wait()
        except TimeoutError:
            logger.warning("gateway shutdown: %d streams still open, closing", self._streams)

    def _cost(self, outcome: Outcome, usage: Any, answered_model: Any) -> float | None:
        model = outcome.model or (answered_model if isinstance(answered_model, str) else None)
        return self._policies.cost_usd(outcome.provider, model, usage)

    def _record(
        self,
        call: Call,
        outcome: Outcome,
        exchange: Exchange,
        status: int,
        usage: Any,
        cost: float | None,
    ) -> None:
        lookup = exchange.lookup
        provider = outcome.provider or ("cache" if lookup is not None and lookup.hit else None)
        model = outcome.model or call.body.get("model")
        inputs, outputs = usage_tokens(usage)
        self._policies.metrics.record_request(
            provider,
            model if isinstance(model, str) else None,
            call.endpoint,
            status,
            time.perf_counter() - exchange.started,
            inputs,
            outputs,
            cost,
        )

    async def json(
        self,
        send: Send,
        call: Call,
        outcome: Outcome,
        exchange: Exchange,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Send a complete answer.

        Without policies that act on the answer, it goes out first and the
        bookkeeping (usage, cost, spans, metrics) follows: the caller does not wait
        for it.
        """
        response = outcome.response
        status, body = response.status, response.body
        attempt = outcome.attempt
        span = call.span
        guarded = call.route.guardrails is not None
        settle = guarded or exchange.lookup is not None or bool(exchange.subjects)
        arrived_ns = span.now()
        if not settle:
            await send_json(send, status, body, headers)
        usage: Any = None
        cost = None
        parsed: Any = None
        if attempt is not None:  # an upstream's 2xx answer
            if span.recording:
                # The attempt span reads the answer's model and finish reasons too.
                parsed = parse_body(body)
                if type(parsed) is dict:
                    usage = parsed.get("usage")
                    cost = self._cost(outcome, usage, parsed.get("model"))
            else:
                usage = answer_usage(body)
                if usage is not None:
                    cost = self._cost(outcome, usage, None)
            attempt.end(response, result=parsed, cost_usd=cost, ended_ns=arrived_ns)
        if settle:
            status, body = await self._settle_json(call, outcome, exchange, parsed, usage, cost)
            await send_json(send, status, body, headers)
        span.end(
            status=status,
            body=body,
            retries=outcome.retries,
            attempts=call.attempts,
            guarded=guarded,
        )
        self._record(call, outcome, exchange, status, usage, cost)

    async def _settle_json(
        self,
        call: Call,
        outcome: Outcome,
        exchange: Exchange,
        parsed: Any,
        usage: Any,
        cost: float | None,
    ) -> tuple[int, bytes]:
        """The policies' part of a complete answer: output guardrails, cache, usage."""
        policies = self._policies
        response = outcome.response
        status, body = response.status, response.body
        rails = call.route.guardrails
        if rails is not None:
            before = exchange.before
            answer = _full_answer(body, parsed) if parsed is not None else None
            if rails.after and status == 200 and not (before is not None and before.deny):
                if answer is None:
                    answer = _full_answer(body, None)
                started = call.span.now()
                after = await rails.run_output(
                    call.body,
                    answer if isinstance(answer, dict) else None,
                    call.options.metadata,
                    self._http(),
                    endpoint=call.endpoint,
                    status=status,
                )
                call.span.record_guardrails(started, AFTER, after.results)
                policies.count_checks(after)
                exchange.after = after
            status, body = final_response(status, body, before, exchange.after, parsed=answer)
        if outcome.attempt is not None:  # the gateway's own answers are not stored or counted
            lookup = exchange.lookup
            if lookup is not None and lookup.storable:
                await policies.cache.store(lookup, response.body, status=response.status)
            if exchange.subjects:
                await policies.record_usage(exchange.subjects, usage, cost)
        return status, body

    async def stream(
        self,
        receive: Receive,
        send: Send,
        call: Call,
        outcome: Outcome,
        exchange: Exchange,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Forward a stream event by event; stop pulling upstream if the client leaves."""
        response = outcome.response
        stream = response.stream
        assert stream is not None
        rails = call.route.guardrails
        hold_done = rails is not None and bool(rails.after)
        status = stream_status(response.status, exchange.before) if rails else response.status
        self._streams += 1
        self._streams_done.clear()
        gone = asyncio.Event()
        watcher = asyncio.ensure_future(self._watch_disconnect(receive, gone))
        pieces: list[bytes] = []
        error: str | None = None
        done = False
        try:
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [*_SSE_HEADERS, *headers],
                    }
                )
                async for piece in stream:
                    pieces.append(piece)
                    if hold_done:
                        # The output guardrails decide what replaces [DONE].
                        piece, ended = split_done(piece)
                        done = done or ended
                    if piece:
                        await send({"type": "http.response.body", "body": piece, "more_body": True})
                    if gone.is_set():
                        error = "client disconnected"
                        break
            except UpstreamError as exc:
                error = exc.message
                await self._stream_error(send, exc.status, exc.message)
            except Exception as exc:
                logger.exception("gateway: stream relay failed")
                error = f"{type(exc).__name__}: {exc}"
                await self._stream_error(send, 500, "the stream failed in the gateway")
            finally:
                watcher.cancel()
                await close_stream(stream)
            await self._settle_stream(send, call, outcome, exchange, pieces, error, done, status)
        finally:
            self._streams -= 1
            if not self._streams:
                self._streams_done.set()

    async def _settle_stream(
        self,
        send: Send,
        call: Call,
        outcome: Outcome,
        exchange: Exchange,
        pieces: list[bytes],
        error: str | None,
        done: bool,
        status: int,
    ) -> None:
        policies = self._policies
        span = call.span
        rails = call.route.guardrails
        lookup = exchange.lookup
        attempt = outcome.attempt
        storable = lookup is not None and attempt is not None and lookup.storable
        hold_done = rails is not None and bool(rails.after)
        result = None
        if span.recording or hold_done or storable:
            result = aggregate_stream(call.endpoint, pieces)
        usage: Any = None
        cost = None
        if attempt is not None:
            usage = result.get("usage") if result is not None else stream_usage(pieces)
            cost = self._cost(outcome, usage, result.get("model") if result else None)
        if rails is not None and hold_done and done and error is None:
            started = span.now()
            after = await rails.run_output(
                call.body,
                result,
                call.options.metadata,
                self._http(),
                endpoint=call.endpoint,
                status=outcome.response.status,
                streamed=True,
            )
            span.record_guardrails(started, AFTER, after.results)
            policies.count_checks(after)
            exchange.after = after
            denial = stream_denial_event(exchange.before, after)
            await send({"type": "http.response.body", "body": denial or _DONE, "more_body": True})
        if storable and error is None:
            assert lookup is not None
            # Stored as the upstream sent it: a hit meets the output guardrails again.
            await policies.cache.store_stream(lookup, pieces)
        if exchange.after is not None and exchange.after.deny:
            error = "an output guardrail denied the answer"
        if exchange.subjects and attempt is not None:
            await policies.record_usage(exchange.subjects, usage, cost)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if attempt is not None:
            attempt.end_stream(result, error, cost)
        span.end(
            status=status,
            result=result,
            error=error,
            retries=outcome.retries,
            attempts=call.attempts,
        )
        self._record(call, outcome, exchange, status, usage, cost)

    @staticmethod
    async def _stream_error(send: Send, status: int, message: str) -> None:
        # Headers are gone already: OpenAI reports mid-stream failures as an error event.
        event = error_body(message, type="server_error", code=str(status))
        await send(
            {"type": "http.response.body", "body": b"data: " + event + b"\n\n", "more_body": True}
        )

    @staticmethod
    async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
                return
