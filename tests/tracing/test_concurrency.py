"""Nesting across coroutines, generators, async generators and threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

import traceway
from traceway.tracing.span import FinishedSpan

from .builders import finished, without_stacktraces

Exported = Callable[[], list[FinishedSpan]]


def tree(spans: list[FinishedSpan]) -> dict[str, str | None]:
    """Each span's parent, by name (names are unique in these tests)."""
    names = {s.span_id: s.name for s in spans}
    return {s.name: names.get(s.parent_span_id) if s.parent_span_id else None for s in spans}


def test_gathered_coroutines_each_nest_under_their_caller(exported: Exported) -> None:
    @traceway.trace
    async def fetch(doc: str) -> str:
        await asyncio.sleep(0)
        return doc.upper()

    @traceway.trace
    async def fan_out(docs: list[str]) -> list[str]:
        return list(await asyncio.gather(*(fetch(d) for d in docs)))

    assert asyncio.run(fan_out(["a", "b"])) == ["A", "B"]

    spans = exported()
    assert sorted((s.name, s.inputs, s.outputs, s.parent_span_id) for s in spans) == [
        ("fan_out", '{"docs":["a","b"]}', '["A","B"]', None),
        ("fetch", '{"doc":"a"}', '"A"', f"{1:016x}"),
        ("fetch", '{"doc":"b"}', '"B"', f"{1:016x}"),
    ]
    assert {s.trace_id for s in spans} == {f"{1:032x}"}


def test_generator_span_is_current_only_while_its_body_runs(exported: Exported) -> None:
    seen_by_body: list[str | None] = []
    seen_by_consumer: list[str | None] = []

    def current_name() -> str | None:
        span = traceway.get_current_active_span()
        return span.name if span is not None else None

    @traceway.trace
    def leaf(i: int) -> int:
        return i

    @traceway.trace
    def produce(n: int) -> Iterator[int]:
        for i in range(n):
            seen_by_body.append(current_name())
            yield leaf(i)

    with traceway.start_span("consumer"):
        for _item in produce(2):
            seen_by_consumer.append(current_name())
            with traceway.start_span(f"handle-{_item}"):
                pass

    assert seen_by_body == ["produce", "produce"]
    assert seen_by_consumer == ["consumer", "consumer"]
    assert tree(exported()) == {
        "leaf": "produce",
        "handle-0": "consumer",
        "handle-1": "consumer",
        "produce": "consumer",
        "consumer": None,
    }


def test_generator_output_is_the_items_or_the_reducer_result(exported: Exported) -> None:
    @traceway.trace
    def tokens() -> Iterator[str]:
        yield "Hel"
        yield "lo"
        return "done"

    @traceway.trace(output_reducer="".join)
    def joined() -> Iterator[str]:
        yield "Hel"
        yield "lo"

    result: list[str] = []

    def collect() -> Iterator[str]:
        result.append((yield from tokens()))

    assert list(collect()) == ["Hel", "lo"]
    assert result == ["done"]
    assert list(joined()) == ["Hel", "lo"]

    assert exported() == [
        finished(1, "tokens", 1000, 2000, inputs="{}", outputs='["Hel","lo"]'),
        finished(2, "joined", 3000, 4000, trace=2, inputs="{}", outputs='"Hello"'),
    ]


def test_generator_send_throw_and_early_close_pass_through(exported: Exported) -> None:
    @traceway.trace
    def accumulator() -> Iterator[int]:
        total = 0
        while True:
            try:
                total += yield total
            except ArithmeticError:
                total = -1

    running = accumulator()
    assert next(running) == 0
    assert running.send(5) == 5
    assert running.throw(ZeroDivisionError()) == -1
    running.close()

    [span] = exported()
    assert (span.name, span.status, span.outputs) == ("accumulator", "OK", "[0,5,-1]")


def test_generator_failure_is_recorded_and_raised(exported: Exported) -> None:
    @traceway.trace
    def broken() -> Iterator[int]:
        yield 1
        raise RuntimeError("stream cut")

    with pytest.raises(RuntimeError, match="stream cut"):
        list(broken())

    [span] = without_stacktraces(exported())
    assert (span.status, span.status_message, span.outputs) == (
        "ERROR",
        "RuntimeError: stream cut",
        None,
    )
    assert [e.attributes["exception.message"] for e in span.events] == ["stream cut"]


def test_async_generator_is_current_only_while_its_body_runs(exported: Exported) -> None:
    seen: list[tuple[str, str | None]] = []

    def note(who: str) -> None:
        span = traceway.get_current_active_span()
        seen.append((who, span.name if span is not None else None))

    @traceway.trace(output_reducer=lambda items: {"chunks": len(items), "text": "".join(items)})
    async def stream(prompt: str) -> AsyncIterator[str]:
        for word in prompt.split():
            note("body")
            await asyncio.sleep(0)
            yield word

    async def main() -> list[str]:
        words = []
        with traceway.start_span("request"):
            async for word in stream("a b"):
                note("consumer")
                words.append(word)
        return words

    assert asyncio.run(main()) == ["a", "b"]
    assert seen == [
        ("body", "stream"),
        ("consumer", "request"),
        ("body", "stream"),
        ("consumer", "request"),
    ]
    spans = exported()
    assert tree(spans) == {"stream": "request", "request": None}
    assert spans[0].outputs == '{"chunks":2,"text":"ab"}'


def test_async_generator_closed_early_ends_its_span(exported: Exported) -> None:
    @traceway.trace
    async def numbers() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    async def main() -> int:
        agen = numbers()
        first = await agen.__anext__()
        await agen.aclose()
        return first

    assert asyncio.run(main()) == 0
    [span] = exported()
    assert (span.name, span.status, span.outputs) == ("numbers", "OK", "[0]")


def test_async_generator_failure_is_recorded(exported: Exported) -> None:
    @traceway.trace
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise ConnectionError("upstream closed")

    async def main() -> None:
        async for _ in failing():
            pass

    with pytest.raises(ConnectionError):
        asyncio.run(main())
    [span] = exported()
    assert (span.status, span.status_message) == ("ERROR", "ConnectionError: upstream closed")


def test_context_crosses_threads_with_wrap_context_and_the_executor(exported: Exported) -> None:
    @traceway.trace
    def work(i: int) -> int:
        return i * i

    with traceway.start_span("parent"):
        thread = threading.Thread(target=traceway.wrap_context(work), args=(1,))
        thread.start()
        thread.join()
        with traceway.ContextThreadPoolExecutor(max_workers=2) as pool:
            assert list(pool.map(work, [2, 3])) == [4, 9]
            assert pool.submit(work, 4).result() == 16

    spans = exported()
    parent = next(s for s in spans if s.name == "parent")
    children = [s for s in spans if s.name == "work"]
    assert sorted(s.inputs or "" for s in children) == ['{"i":1}', '{"i":2}', '{"i":3}', '{"i":4}']
    assert {(s.trace_id, s.parent_span_id) for s in children} == {(parent.trace_id, parent.span_id)}


def test_a_plain_thread_starts_its_own_trace(exported: Exported) -> None:
    @traceway.trace
    def work() -> None:
        pass

    with traceway.start_span("parent"):
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()

    spans = {s.name: s for s in exported()}
    assert spans["work"].parent_span_id is None
    assert spans["work"].trace_id != spans["parent"].trace_id
