"""Streaming calls: the span stays open while the application reads the stream.

The client's ``Stream`` / ``AsyncStream`` object is handed back unchanged (same
class, same chunk objects, same exceptions); only its private chunk iterator is
replaced by a generator that passes every chunk through and notes it, and its
``close`` is wrapped.  The span ends when the stream is exhausted (status OK),
fails (ERROR, with what arrived so far), or is closed or dropped before its end
(marked abandoned).  The answer is aggregated once, at that moment.

Relies on ``Stream._iterator`` and ``Stream.close``, which have the same shape
in ``openai`` 1.x, 2.x and 3.x.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final

from traceway.integrations._openai_aggregate import aggregate, has_token
from traceway.integrations._openai_attributes import (
    STREAM_ABANDONED,
    STREAM_CHUNKS,
    TIME_TO_FIRST_TOKEN_MS,
    DeferredJson,
    record_failure,
    response_attributes,
)
from traceway.tracing._internal import handle_internal_error
from traceway.tracing.span import LiveSpan

__all__ = ["FIRST_TOKEN_EVENT", "StreamRecorder", "instrument_async_stream", "instrument_stream"]

#: Span event marking when the first generated token arrived.
FIRST_TOKEN_EVENT: Final = "first_token"


class StreamRecorder:
    """Notes the chunks of one stream and ends its span, exactly once."""

    __slots__ = ("_chunks", "_clock", "_ended", "_first_ns", "_kind", "_last_ns", "_span")

    def __init__(self, span: LiveSpan, kind: str) -> None:
        self._span = span
        self._kind = kind
        self._clock = span._tracer.clock
        self._chunks: list[Any] = []
        self._first_ns = 0
        # When the stream was handed over: where a stream dropped unread ends.
        self._last_ns = self._clock()
        self._ended = False

    def observe(self, chunk: Any) -> None:
        """Keep ``chunk`` (a reference: the client never changes it) and time it."""
        self._chunks.append(chunk)
        now = self._clock()
        self._last_ns = now
        if not self._first_ns and has_token(self._kind, chunk):
            self._first_ns = now

    def finish(
        self,
        *,
        error: BaseException | None = None,
        abandoned: bool = False,
        dropped: bool = False,
    ) -> None:
        """End the span with the aggregated answer.

        ``dropped``: the stream was garbage-collected unfinished, so the span
        ends at the last chunk rather than whenever the collector ran.
        """
        if self._ended:
            return
        self._ended = True
        span = self._span
        end_ns = self._last_ns if dropped else None
        try:
            if span._recording:
                self._record(span, error, abandoned or dropped)
        except Exception:
            span.end(end_ns)
            handle_internal_error("recording an openai stream")
        else:
            span.end(end_ns)

    def _record(self, span: LiveSpan, error: BaseException | None, abandoned: bool) -> None:
        output, stream_error = aggregate(self._kind, self._chunks)
        attributes = response_attributes(output)
        attributes[STREAM_CHUNKS] = len(self._chunks)
        if self._first_ns:
            attributes[TIME_TO_FIRST_TOKEN_MS] = (self._first_ns - span._start_ns) / 1e6
            span.add_event(FIRST_TOKEN_EVENT, timestamp=self._first_ns)
        if abandoned:
            attributes[STREAM_ABANDONED] = True
        span.set_attributes(attributes)
        # The aggregate is ours alone, so serialising it can wait for the export thread.
        span._outputs = DeferredJson(output, span._tracer.max_value_chars)  # type: ignore[assignment]
        if error is not None:
            record_failure(span, error)
        elif stream_error is not None:
            span.set_status("ERROR", stream_error)
        else:
            span.set_status("OK")

    def __del__(self) -> None:
        # Reached when the stream is collected before being read to the end or closed.
        self.finish(dropped=True)


def _traced_chunks(inner: Iterator[Any], recorder: StreamRecorder) -> Iterator[Any]:
    observe = recorder.observe
    try:
        for chunk in inner:
            observe(chunk)
            yield chunk
    except GeneratorExit:
        recorder.finish(dropped=True)
        raise
    except BaseException as exc:
        recorder.finish(error=exc)
        raise
    recorder.finish()


async def _traced_async_chunks(
    inner: AsyncIterator[Any], recorder: StreamRecorder
) -> AsyncIterator[Any]:
    observe = recorder.observe
    try:
        async for chunk in inner:
            observe(chunk)
            yield chunk
    except GeneratorExit:
        recorder.finish(dropped=True)
        raise
    except BaseException as exc:
        recorder.finish(error=exc)
        raise
    recorder.finish()


def instrument_stream(stream: Any, span: LiveSpan, kind: str) -> None:
    """Record ``stream`` (an ``openai.Stream``) on ``span``, which it now owns."""
    recorder = StreamRecorder(span, kind)
    stream._iterator = _traced_chunks(stream._iterator, recorder)
    close: Callable[[], None] = stream.close

    def traced_close() -> None:
        recorder.finish(abandoned=True)
        close()

    # An instance attribute: ``with stream:`` and ``stream.close()`` both find it.
    stream.close = traced_close


def instrument_async_stream(stream: Any, span: LiveSpan, kind: str) -> None:
    """Record ``stream`` (an ``openai.AsyncStream``) on ``span``, which it now owns."""
    recorder = StreamRecorder(span, kind)
    stream._iterator = _traced_async_chunks(stream._iterator, recorder)
    close: Callable[[], Any] = stream.close

    async def traced_close() -> None:
        recorder.finish(abandoned=True)
        await close()

    stream.close = traced_close
