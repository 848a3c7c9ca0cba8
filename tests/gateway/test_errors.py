"""Errors the gateway itself answers: OpenAI error JSON with the right status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import RunningGateway, settings


def error(
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def post(gw: RunningGateway, path: str, **kwargs: Any) -> httpx.Response:
    with httpx.Client(base_url=gw.url) as http:
        return http.post(path, **kwargs)


@pytest.mark.parametrize(
    ("request_kwargs", "status", "body"),
    [
        (
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            None,  # orjson's message is checked by prefix below
        ),
        ({"json": [1, 2]}, 400, error("The body of your request must be a JSON object.")),
        (
            {"json": {"messages": []}},
            400,
            error("you must provide a model parameter", param="model"),
        ),
        (
            {"json": {"model": "m"}, "headers": {"x-traceway-provider": "nope"}},
            400,
            None,
        ),
        (
            {"json": {"model": "m"}, "headers": {"x-traceway-config": "{bad"}},
            400,
            None,
        ),
        (
            {"json": {"model": "m"}, "headers": {"x-traceway-config": "missing-id"}},
            400,
            error("unknown config 'missing-id'", param="config", code="config_not_found"),
        ),
        (
            {"json": {"model": "m"}, "headers": {"x-traceway-config": '{"strategy": {}}'}},
            400,
            error("invalid config: strategy.mode: Field required", param="config"),
        ),
    ],
)
def test_bad_requests(
    gw: RunningGateway, request_kwargs: dict[str, Any], status: int, body: dict[str, Any] | None
) -> None:
    response = post(gw, "/v1/chat/completions", **request_kwargs)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert set(payload["error"]) == {"message", "type", "param", "code"}
    if body is not None:
        assert payload == body
    assert payload["error"]["type"] == "invalid_request_error"


def test_error_messages_for_json_provider_and_config(gw: RunningGateway) -> None:
    bad_json = post(gw, "/v1/chat/completions", content=b"{not json").json()["error"]["message"]
    assert bad_json.startswith("We could not parse the JSON body of your request:")
    unknown = post(
        gw, "/v1/chat/completions", json={"model": "m"}, headers={"x-traceway-provider": "nope"}
    ).json()
    assert unknown["error"]["message"].startswith("unknown provider 'nope' (known: ")
    assert unknown["error"]["param"] == "provider"


def test_unknown_route_and_wrong_method(gw: RunningGateway) -> None:
    with httpx.Client(base_url=gw.url) as http:
        missing = http.post("/v1/chat/completion", json={})
        wrong_method = http.get("/v1/chat/completions")
        models_post = http.post("/v1/models", json={})
    assert missing.status_code == 404
    assert missing.json() == error("Invalid URL (POST /v1/chat/completion)")
    assert wrong_method.status_code == 405
    assert wrong_method.json() == error("Invalid URL (GET /v1/chat/completions)")
    assert models_post.status_code == 404


def test_body_too_large_is_413(start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway(settings(max_body_bytes=100))
    response = post(gw, "/v1/chat/completions", json={"model": "echo", "pad": "x" * 200})
    assert response.status_code == 413
    assert response.json() == error("request body is larger than 100 bytes")


def test_errors_carry_the_trace_id_header(gw: RunningGateway) -> None:
    response = post(gw, "/v1/chat/completions", json={}, headers={"x-portkey-trace-id": "my-trace"})
    assert response.status_code == 400
    assert response.headers["x-traceway-trace-id"] == "my-trace"
    assert response.headers["x-portkey-trace-id"] == "my-trace"
