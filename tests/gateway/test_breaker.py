"""Circuit breakers with an injected clock."""

from __future__ import annotations

from traceway.gateway.breaker import BreakerBoard, BreakerState, breaker_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def board(clock: Clock) -> BreakerBoard:
    return BreakerBoard(failure_threshold=3, window_s=10, cooldown_s=5, clock=clock)


def test_opens_after_threshold_failures_within_the_window() -> None:
    clock = Clock()
    breakers = board(clock)
    for _ in range(2):
        breakers.record("t", 500)
    assert breakers.state("t") is BreakerState.CLOSED
    breakers.record("t", 408)
    assert breakers.state("t") is BreakerState.OPEN
    assert not breakers.allow("t")


def test_old_failures_leave_the_window_and_4xx_do_not_count() -> None:
    clock = Clock()
    breakers = board(clock)
    breakers.record("t", 502)
    breakers.record("t", 503)
    clock.now += 11
    breakers.record("t", 500)
    for status in (400, 401, 429):
        breakers.record("t", status)
    assert breakers.state("t") is BreakerState.CLOSED
    assert breakers.allow("t")


def test_half_open_lets_one_probe_through() -> None:
    clock = Clock()
    breakers = board(clock)
    for _ in range(3):
        breakers.record("t", 500)
    clock.now += 5
    assert breakers.state("t") is BreakerState.HALF_OPEN
    assert breakers.allow("t")  # the probe
    assert not breakers.allow("t")  # others wait for its outcome
    breakers.record("t", 200)
    assert breakers.state("t") is BreakerState.CLOSED
    assert breakers.allow("t") and breakers.allow("t")


def test_a_failed_probe_reopens_for_another_cool_down() -> None:
    clock = Clock()
    breakers = board(clock)
    for _ in range(3):
        breakers.record("t", 500)
    clock.now += 6
    assert breakers.allow("t")
    breakers.record("t", 500)
    assert breakers.state("t") is BreakerState.OPEN
    clock.now += 4
    assert not breakers.allow("t")
    clock.now += 1
    assert breakers.allow("t")


def test_targets_are_independent_and_keys_hide_the_api_key() -> None:
    clock = Clock()
    breakers = board(clock)
    first = breaker_key("openai", "http://a", "sk-secret")
    second = breaker_key("openai", "http://a", "sk-other")
    assert first != second
    assert "sk-secret" not in first
    assert breaker_key("openai", None, None) == "openai|-|-"
    for _ in range(3):
        breakers.record(first, 500)
    assert not breakers.allow(first)
    assert breakers.allow(second)


def test_the_board_is_bounded() -> None:
    breakers = BreakerBoard(failure_threshold=2, clock=Clock(), max_targets=2)
    for key in ("a", "b", "c"):
        breakers.record(key, 500)
    breakers.record("a", 500)  # "a" was forgotten, so this is its first failure again
    assert breakers.state("a") is BreakerState.CLOSED
