"""``@trace``: record each call of a function as a span.

Plain functions, coroutines, generators and async generators each get a wrapper
of the same kind, so ``inspect.iscoroutinefunction`` and friends still answer
truthfully.  A generator's span stays open until it is exhausted or closed and
is current only while the generator's own code runs, not while its consumer
handles an item.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context

from traceway.tracing._internal import logger
from traceway.tracing._lifecycle import capture_inputs as _capture_inputs
from traceway.tracing._lifecycle import end_error as _end_error
from traceway.tracing._lifecycle import end_ok as _end_ok
from traceway.tracing._lifecycle import start_current as _start
from traceway.tracing.signature import ArgumentBinder
from traceway.tracing.span import SpanType

__all__ = ["trace"]

F = TypeVar("F", bound=Callable[..., Any])
OutputReducer = Callable[[list[Any]], Any]

_get_current = otel_context.get_current
_attach = otel_context.attach
_detach = otel_context.detach


@overload
def trace(func: F, /) -> F: ...


@overload
def trace(
    *,
    name: str | None = None,
    span_type: str = SpanType.UNKNOWN,
    attributes: Mapping[str, Any] | None = None,
    output_reducer: OutputReducer | None = None,
) -> Callable[[F], F]: ...


def trace(
    func: Any = None,
    /,
    *,
    name: str | None = None,
    span_type: str = SpanType.UNKNOWN,
    attributes: Mapping[str, Any] | None = None,
    output_reducer: OutputReducer | None = None,
) -> Any:
    """Record each call of the decorated function as a span.

    Works on plain and ``async`` functions, generators and async generators,
    with or without arguments.  Inputs are the bound arguments (defaults
    applied, ``self``/``cls`` left out); outputs the return value, or for
    generators the yielded items as a list (or ``output_reducer(items)``).  An
    exception sets status ERROR, adds an ``exception`` event and propagates
    unchanged.

    >>> @trace
    ... def greet(name: str) -> str:
    ...     return f"hello {name}"
    >>> @trace(name="retrieve", span_type=SpanType.RETRIEVER)
    ... async def search(query: str) -> list[str]:
    ...     return []
    """
    if func is None:
        return functools.partial(
            _decorate,
            name=name,
            span_type=span_type,
            attributes=attributes,
            output_reducer=output_reducer,
        )
    return _decorate(
        func, name=name, span_type=span_type, attributes=attributes, output_reducer=output_reducer
    )


def _decorate(
    func: Any,
    *,
    name: str | None,
    span_type: str,
    attributes: Mapping[str, Any] | None,
    output_reducer: OutputReducer | None,
) -> Any:
    if isinstance(func, classmethod | staticmethod):
        wrapped = _decorate(
            func.__func__,
            name=name,
            span_type=span_type,
            attributes=attributes,
            output_reducer=output_reducer,
        )
        return type(func)(wrapped)
    span_name = name or getattr(func, "__name__", None) or repr(func)
    static = dict(attributes) if attributes else None
    binder = ArgumentBinder(func)
    if inspect.isasyncgenfunction(func):
        wrapper = _wrap_async_generator(func, span_name, span_type, static, binder, output_reducer)
    elif inspect.isgeneratorfunction(func):
        wrapper = _wrap_generator(func, span_name, span_type, static, binder, output_reducer)
    elif inspect.iscoroutinefunction(func):
        wrapper = _wrap_coroutine(func, span_name, span_type, static, binder)
    else:
        wrapper = _wrap_function(func, span_name, span_type, static, binder)
    return functools.wraps(func)(wrapper)


def _wrap_function(
    func: Callable[..., Any],
    name: str,
    span_type: str,
    attributes: dict[str, Any] | None,
    binder: ArgumentBinder,
) -> Callable[..., Any]:
    def traced(*args: Any, **kwargs: Any) -> Any:
        started = _start(name, span_type, attributes)
        if started is None:
            return func(*args, **kwargs)
        span, token = started
        if span._recording:
            _capture_inputs(span, binder, args, kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            _detach(token)
            _end_error(span, exc)
            raise
        _detach(token)
        _end_ok(span, result)
        return result

    return traced


def _wrap_coroutine(
    func: Callable[..., Any],
    name: str,
    span_type: str,
    attributes: dict[str, Any] | None,
    binder: ArgumentBinder,
) -> Callable[..., Any]:
    async def traced(*args: Any, **kwargs: Any) -> Any:
        started = _start(name, span_type, attributes)
        if started is None:
            return await func(*args, **kwargs)
        span, token = started
        if span._recording:
            _capture_inputs(span, binder, args, kwargs)
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            _detach(token)
            _end_error(span, exc)
            raise
        _detach(token)
        _end_ok(span, result)
        return result

    return traced


def _reduce(items: list[Any], reducer: OutputReducer | None) -> Any:
    if reducer is None:
        return items
    try:
        return reducer(items)
    except Exception:
        logger.warning("traceway: output_reducer failed; recording the items", exc_info=True)
        return items


def _wrap_generator(
    func: Callable[..., Generator[Any, Any, Any]],
    name: str,
    span_type: str,
    attributes: dict[str, Any] | None,
    binder: ArgumentBinder,
    reducer: OutputReducer | None,
) -> Callable[..., Any]:
    def traced(*args: Any, **kwargs: Any) -> Any:
        started = _start(name, span_type, attributes)
        if started is None:
            return (yield from func(*args, **kwargs))
        span, token = started
        if span._recording:
            _capture_inputs(span, binder, args, kwargs)
        # The span is current only while the generator's own code runs.
        span_context = _get_current()
        _detach(token)
        items: list[Any] = []
        try:
            generator = func(*args, **kwargs)
            send: Callable[[Any], Any] = generator.send
            value: Any = None
            while True:
                token = _attach(span_context)
                try:
                    item = send(value)
                except StopIteration as stop:
                    result = stop.value
                    break
                finally:
                    _detach(token)
                items.append(item)
                try:
                    value = yield item
                    send = generator.send
                except GeneratorExit:
                    token = _attach(span_context)
                    try:
                        generator.close()
                    finally:
                        _detach(token)
                    raise
                except BaseException as exc:
                    send, value = generator.throw, exc
        except GeneratorExit:
            _end_ok(span, _reduce(items, reducer))
            raise
        except BaseException as exc:
            _end_error(span, exc)
            raise
        _end_ok(span, _reduce(items, reducer))
        return result

    return traced


def _wrap_async_generator(
    func: Callable[..., AsyncGenerator[Any, Any]],
    name: str,
    span_type: str,
    attributes: dict[str, Any] | None,
    binder: ArgumentBinder,
    reducer: OutputReducer | None,
) -> Callable[..., Any]:
    async def traced(*args: Any, **kwargs: Any) -> Any:
        started = _start(name, span_type, attributes)
        if started is None:
            async for item in func(*args, **kwargs):
                yield item
            return
        span, token = started
        if span._recording:
            _capture_inputs(span, binder, args, kwargs)
        span_context = _get_current()
        _detach(token)
        items: list[Any] = []
        try:
            generator = func(*args, **kwargs)
            send: Callable[[Any], Any] = generator.asend
            value: Any = None
            while True:
                token = _attach(span_context)
                try:
                    item = await send(value)
                except StopAsyncIteration:
                    break
                finally:
                    _detach(token)
                items.append(item)
                try:
                    value = yield item
                    send = generator.asend
                except GeneratorExit:
                    token = _attach(span_context)
                    try:
                        await generator.aclose()
                    finally:
                        _detach(token)
                    raise
                except BaseException as exc:
                    send, value = generator.athrow, exc
        except GeneratorExit:
            _end_ok(span, _reduce(items, reducer))
            raise
        except BaseException as exc:
            _end_error(span, exc)
            raise
        _end_ok(span, _reduce(items, reducer))

    return traced
