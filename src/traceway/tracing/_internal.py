"""How the SDK treats its own failures.

Telemetry must never break the application, so errors inside the SDK's span
hooks are logged and swallowed.  Under pytest they are re-raised instead, so a
bug in the SDK fails the test that exposed it rather than hiding in a log.
"""

from __future__ import annotations

import logging
import os
from typing import Final

from opentelemetry import context as otel_context

__all__ = [
    "SUPPRESS_INSTRUMENTATION_KEY",
    "handle_internal_error",
    "logger",
    "raise_internal_errors",
]

logger: Final = logging.getLogger("traceway")

#: The context key OpenTelemetry instrumentations check before recording anything.
SUPPRESS_INSTRUMENTATION_KEY: Final = otel_context._SUPPRESS_INSTRUMENTATION_KEY

#: ``None`` means "decide from the environment": raise while pytest runs a test.
RAISE_INTERNAL_ERRORS: bool | None = None


def raise_internal_errors() -> bool:
    """Whether internal errors propagate (tests) instead of being logged (production)."""
    if RAISE_INTERNAL_ERRORS is not None:
        return RAISE_INTERNAL_ERRORS
    return "PYTEST_CURRENT_TEST" in os.environ


def handle_internal_error(what: str) -> None:
    """Log the exception being handled; re-raise it when errors must be loud.

    Call only from an ``except`` block.
    """
    if raise_internal_errors():
        raise  # the exception the caller is handling
    logger.exception("traceway: internal error while %s; tracing continues", what)
