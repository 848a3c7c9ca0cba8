"""Carrying the current span across threads and pools.

asyncio tasks inherit the context by themselves; threads do not.  Wrap a
callable with :func:`wrap_context` where it is handed to another thread, or use
:class:`ContextThreadPoolExecutor`, and spans started there nest under the span
that was current when the work was submitted.

>>> import traceway
>>> with traceway.ContextThreadPoolExecutor(max_workers=4) as pool:
...     with traceway.start_span("fan-out"):
...         results = list(pool.map(len, ["a", "bb"]))
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context

__all__ = ["ContextThreadPoolExecutor", "wrap_context"]

P = ParamSpec("P")
R = TypeVar("R")


def wrap_context(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` running in the OpenTelemetry context current now, wherever it is called.

    Safe to call concurrently from several threads.
    """
    captured = otel_context.get_current()

    @functools.wraps(fn)
    def in_context(*args: P.args, **kwargs: P.kwargs) -> R:
        token = otel_context.attach(captured)
        try:
            return fn(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return in_context


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in the submitter's tracing context."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        return super().submit(wrap_context(fn), *args, **kwargs)
