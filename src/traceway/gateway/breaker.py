"""Circuit breakers, one per target.

A target is keyed by provider, custom host and a hash of its API key (the key
itself is never kept).  Its breaker opens after ``failure_threshold`` failures
(5xx, 408, unreachable) within ``window_s`` seconds; while open the router skips
the target, so a fallback moves straight to the next one.  After ``cooldown_s``
one request is let through as a probe (half-open): success closes the breaker,
failure opens it again for another cool-down.

The clock is injected so tests can move time without sleeping.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

__all__ = ["BreakerBoard", "BreakerState", "breaker_key", "is_failure"]


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def is_failure(status: int) -> bool:
    """Statuses that count against a target: it is down, not the request that is wrong."""
    return status >= 500 or status == 408


def breaker_key(provider: str, host: str | None, api_key: str | None) -> str:
    """A target's identity, without the secret: ``provider|host|hash(api_key)``."""
    digest = hashlib.blake2b(api_key.encode(), digest_size=8).hexdigest() if api_key else "-"
    return f"{provider}|{host or '-'}|{digest}"


@dataclass(slots=True)
class _Breaker:
    state: BreakerState = BreakerState.CLOSED
    failures: deque[float] = field(default_factory=deque)
    opened_at: float = 0.0
    probing: bool = False


class BreakerBoard:
    """All targets' breakers.  Not thread-safe: it lives on the event loop."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        window_s: float = 30.0,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        max_targets: int = 10_000,
    ) -> None:
        self._threshold = failure_threshold
        self._window = window_s
        self._cooldown = cooldown_s
        self._clock = clock
        self._max_targets = max_targets
        self._breakers: dict[str, _Breaker] = {}

    def state(self, key: str) -> BreakerState:
        """The state a request would see now (an expired cool-down reads as half-open)."""
        breaker = self._breakers.get(key)
        if breaker is None:
            return BreakerState.CLOSED
        if breaker.state is BreakerState.OPEN and self._cooled_down(breaker):
            return BreakerState.HALF_OPEN
        return breaker.state

    def allow(self, key: str) -> bool:
        """Whether a request may go to the target now; claims the probe when half-open."""
        breaker = self._breakers.get(key)
        if breaker is None or breaker.state is BreakerState.CLOSED:
            return True
        if breaker.state is BreakerState.OPEN:
            if not self._cooled_down(breaker):
                return False
            breaker.state = BreakerState.HALF_OPEN
            breaker.probing = False
        if breaker.probing:
            return False
        breaker.probing = True
        return True

    def record(self, key: str, status: int) -> None:
        """Record the outcome of a request that :meth:`allow` let through."""
        if is_failure(status):
            self._failure(key)
        else:
            self._success(key)

    def _success(self, key: str) -> None:
        breaker = self._breakers.get(key)
        if breaker is None:
            return
        if breaker.state is not BreakerState.CLOSED or not breaker.failures:
            del self._breakers[key]

    def _failure(self, key: str) -> None:
        now = self._clock()
        breaker = self._breakers.get(key)
        if breaker is None:
            if len(self._breakers) >= self._max_targets:
                # Bounded: forget the oldest target rather than grow without limit.
                del self._breakers[next(iter(self._breakers))]
            breaker = self._breakers[key] = _Breaker()
        if breaker.state is BreakerState.HALF_OPEN:
            self._open(breaker, now)
            return
        if breaker.state is BreakerState.OPEN:
            return
        failures = breaker.failures
        failures.append(now)
        while failures and failures[0] <= now - self._window:
            failures.popleft()
        if len(failures) >= self._threshold:
            self._open(breaker, now)

    def _open(self, breaker: _Breaker, now: float) -> None:
        breaker.state = BreakerState.OPEN
        breaker.opened_at = now
        breaker.probing = False
        breaker.failures.clear()

    def _cooled_down(self, breaker: _Breaker) -> bool:
        return self._clock() - breaker.opened_at >= self._cooldown
