"""Exceptions the SDK raises to application code.

Only the read side (``get_trace``, ``search_traces``) raises; recording spans
never does.  Transport errors are translated here, once::

    TracewayError
     ├── TracewayConnectionError   the server could not be reached
     └── TracewayHTTPError         the server answered with an error status
"""

from __future__ import annotations

__all__ = ["TracewayConnectionError", "TracewayError", "TracewayHTTPError"]


class TracewayError(Exception):
    """Base class of every error Traceway raises."""


class TracewayConnectionError(TracewayError):
    """The tracking server could not be reached (refused, timed out, DNS...)."""


class TracewayHTTPError(TracewayError):
    """The tracking server answered with an HTTP error status."""

    def __init__(self, status: int, message: str, url: str) -> None:
        super().__init__(f"HTTP {status} from {url}: {message}")
        self.status = status
        self.message = message
        self.url = url
