"""Routing headers: x-traceway-* names, their x-portkey-* aliases, and bad values."""

from __future__ import annotations

import pytest

from traceway.gateway.errors import GatewayError
from traceway.gateway.headers import RequestOptions, parse_headers, response_headers

ALIASED = {
    "provider": "openai",
    "config": "cfg-1",
    "virtual-key": "vk-1",
    "api-key": "gw-key",
    "custom-host": "http://127.0.0.1:8000/v1",
    "metadata": '{"user": "u1", "n": 2}',
    "trace-id": "trace-abc",
    "request-timeout": "1500",
    "cache-force-refresh": "true",
}
EXPECTED = RequestOptions(
    provider="openai",
    api_key="sk-upstream",
    config="cfg-1",
    virtual_key="vk-1",
    gateway_key="gw-key",
    custom_host="http://127.0.0.1:8000/v1",
    metadata={"user": "u1", "n": 2},
    trace_id="trace-abc",
    request_timeout_ms=1500,
    cache_force_refresh=True,
    traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
)


def raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in headers.items()]


@pytest.mark.parametrize("prefix", ["x-traceway-", "x-portkey-"])
def test_every_routing_header_under_both_prefixes(prefix: str) -> None:
    headers = {prefix + name: value for name, value in ALIASED.items()}
    headers["authorization"] = "Bearer sk-upstream"
    headers["traceparent"] = EXPECTED.traceparent or ""
    assert parse_headers(raw(headers)) == EXPECTED


def test_traceway_names_win_over_portkey_names() -> None:
    options = parse_headers(
        raw(
            {
                "x-portkey-provider": "groq",
                "x-traceway-provider": "openai",
                "x-portkey-trace-id": "p",
            }
        )
    )
    assert (options.provider, options.trace_id) == ("openai", "p")


def test_forward_headers_and_provider_options() -> None:
    options = parse_headers(
        raw(
            {
                "x-portkey-forward-headers": "x-team, X-Region",
                "x-team": "search",
                "x-region": "eu",
                "x-other": "no",
                "x-portkey-azure-deployment-id": "gpt4",
                "x-traceway-mock-latency-ms": "20",
            }
        )
    )
    assert options.forward_headers == {"x-team": "search", "x-region": "eu"}
    assert options.provider_options == {"azure_deployment_id": "gpt4", "mock_latency_ms": "20"}


def test_openai_account_headers_are_forwarded() -> None:
    options = parse_headers(raw({"openai-organization": "org-1", "openai-beta": "assistants=v2"}))
    assert options.forward_headers == {
        "openai-organization": "org-1",
        "openai-beta": "assistants=v2",
    }


def test_api_key_header_and_non_bearer_authorization() -> None:
    assert parse_headers(raw({"api-key": "az"})).api_key == "az"
    assert parse_headers(raw({"authorization": "Basic abc"})).api_key == "Basic abc"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"x-traceway-metadata": "{not json"}, "x-traceway-metadata is not valid JSON"),
        ({"x-portkey-metadata": "[1]"}, "x-traceway-metadata must be a JSON object"),
        ({"x-traceway-request-timeout": "soon"}, "x-traceway-request-timeout must be a positive"),
        ({"x-traceway-request-timeout": "0"}, "x-traceway-request-timeout must be a positive"),
    ],
)
def test_bad_header_values_are_400(headers: dict[str, str], message: str) -> None:
    with pytest.raises(GatewayError) as raised:
        parse_headers(raw(headers))
    assert raised.value.status == 400
    assert raised.value.message.startswith(message)


def test_response_headers_under_both_prefixes() -> None:
    assert response_headers(
        provider="mock", trace_id="t1", retries=2, option_index="config.targets[1]"
    ) == [
        (b"x-traceway-trace-id", b"t1"),
        (b"x-portkey-trace-id", b"t1"),
        (b"x-traceway-retry-attempt-count", b"2"),
        (b"x-portkey-retry-attempt-count", b"2"),
        (b"x-traceway-provider", b"mock"),
        (b"x-portkey-provider", b"mock"),
        (b"x-traceway-last-used-option-index", b"config.targets[1]"),
        (b"x-portkey-last-used-option-index", b"config.targets[1]"),
    ]
