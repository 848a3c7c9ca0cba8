"""The gateway's one exception: anything that ends a request with an OpenAI error.

Every failure the gateway itself detects (bad JSON, a bad config, a refused
custom host, an open circuit) is raised as :class:`GatewayError` and turned into
OpenAI error JSON in exactly one place, the app's error handler.  Upstream
failures are :class:`~traceway.gateway.providers.base.UpstreamError` and are
handled by the router.
"""

from __future__ import annotations

from collections.abc import Mapping

from traceway.gateway.providers.base import error_body, error_type_for_status

__all__ = ["GatewayError"]


class GatewayError(Exception):
    """A request the gateway answers with an OpenAI error body.

    >>> GatewayError(404, "no model").body()
    b'{"error":{"message":"no model","type":"invalid_request_error","param":null,"code":null}}'
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or error_type_for_status(status)
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        """The OpenAI error JSON for this error."""
        return error_body(self.message, type=self.type, param=self.param, code=self.code)
