"""The one interface every provider implements.

A provider turns an OpenAI-format request into its own wire format, sends it with
the gateway's pooled HTTP client (:mod:`traceway.gateway.http_client`), and turns
the answer back into OpenAI's format: JSON bytes for a plain response, OpenAI SSE
events for a stream.  Errors
from the upstream come back as an :class:`UpstreamResponse` whose body is OpenAI
error JSON; failures to reach it raise :class:`UpstreamError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from traceway.gateway.http_client import HttpClient

__all__ = [
    "Provider",
    "UpstreamError",
    "UpstreamRequest",
    "UpstreamResponse",
    "error_body",
    "error_response",
    "error_type_for_status",
]

#: Endpoints, named by their path under ``/v1/``.
CHAT = "chat/completions"
COMPLETIONS = "completions"
EMBEDDINGS = "embeddings"
RESPONSES = "responses"


@dataclass(slots=True)
class UpstreamRequest:
    endpoint: str  # CHAT | COMPLETIONS | EMBEDDINGS | RESPONSES
    body: dict[str, Any]  # the OpenAI-format request, override_params applied
    api_key: str | None = None
    base_url: str | None = None  # a custom host; None means the provider's default
    timeout_s: float | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    #: Provider-specific settings from the route (e.g. Azure's ``deployment_id``,
    #: ``api_version``; the mock's ``latency_ms``).
    provider_options: dict[str, Any] = field(default_factory=dict)

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return model if isinstance(model, str) else None


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: Mapping[str, str]  # the upstream's headers (retry-after, request ids)
    body: bytes = b""  # OpenAI-format JSON (a result, or an error object)
    stream: AsyncIterator[bytes] | None = None  # OpenAI SSE events, ending with [DONE]

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


class UpstreamError(Exception):
    """The upstream could not be reached or did not answer in time."""

    def __init__(self, status: int, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status  # 408 for timeouts, 502 for connection failures
        self.message = message
        self.code = code


class Provider(ABC):
    """A wire format.  Instances are stateless and shared by all requests."""

    name: ClassVar[str]
    default_base_url: ClassVar[str | None] = None
    #: True for providers that answer in-process (the mock): no network to break,
    #: so the circuit breaker leaves them alone.
    local: ClassVar[bool] = False

    @abstractmethod
    async def send(self, http: HttpClient, request: UpstreamRequest) -> UpstreamResponse: ...


_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_type_for_status(status: int) -> str:
    """The OpenAI error ``type`` that goes with an HTTP status."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(
    message: str,
    *,
    type: str,
    param: str | None = None,
    code: str | int | None = None,
) -> bytes:
    """OpenAI's error JSON: ``{"error": {"message", "type", "param", "code"}}``.

    >>> error_body("bad", type="invalid_request_error")
    b'{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}'
    """
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | int | None = None,
    headers: Mapping[str, str] | None = None,
) -> UpstreamResponse:
    """An :class:`UpstreamResponse` carrying an OpenAI error body for ``status``."""
    body = error_body(message, type=error_type_for_status(status), param=param, code=code)
    return UpstreamResponse(status=status, headers=dict(headers or {}), body=body)
