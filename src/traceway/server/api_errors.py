"""The REST API's error: one exception, one JSON shape, for every router under ``/api``."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["ApiError", "error_response", "json_response"]


class ApiError(Exception):
    """Answered as ``{"error": {"code", "message"[, "position"]}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.position = position


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type="application/json")


def error_response(exc: ApiError) -> Response:
    detail: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.position is not None:
        detail["position"] = exc.position
    return json_response({"error": detail}, exc.status)
