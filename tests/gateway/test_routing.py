"""Routing end to end: the openai client, the gateway over HTTP, fake and mock upstreams."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import RunningGateway, settings
from tests.gateway.fakes.openai_server import FakeOpenAI, Reply

MESSAGES: Any = [{"role": "user", "content": "route me"}]


def fake_target(fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "custom_host": fake.url, **extra}


def mock_target(model: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "mock", "override_params": {"model": model}, **extra}


def routed(gw: RunningGateway, config: dict[str, Any] | str, **headers: str) -> Any:
    """POST a chat completion with ``config``; returns the raw response of the openai client."""
    value = config if isinstance(config, str) else json.dumps(config)
    with gw.client(default_headers={"x-traceway-config": value, **headers}) as client:
        return client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)


def test_fallback_to_the_second_target(gw: RunningGateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply.error(500))
    config = {
        "strategy": {"mode": "fallback"},
        "targets": [fake_target(fake_openai), mock_target("echo")],
    }
    raw = routed(gw, config)
    assert raw.parse().choices[0].message.content == "route me"
    assert len(fake_openai.requests) == 1
    assert raw.headers["x-traceway-last-used-option-index"] == "config.targets[1]"
    assert raw.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    assert raw.headers["x-traceway-provider"] == "mock"
    assert raw.headers["x-traceway-retry-attempt-count"] == "0"


def test_fallback_between_two_openai_upstreams(gw: RunningGateway) -> None:
    with FakeOpenAI(answer="from primary") as primary, FakeOpenAI(answer="from backup") as backup:
        primary.script(Reply.error(503))
        config = {
            "strategy": {"mode": "fallback", "on_status_codes": [503]},
            "targets": [fake_target(primary), fake_target(backup)],
        }
        assert routed(gw, config).parse().choices[0].message.content == "from backup"
        primary.script(Reply.error(500))  # not listed: no fallback
        with pytest.raises(openai.InternalServerError):
            routed(gw, config)
        assert (len(primary.requests), len(backup.requests)) == (2, 1)


def test_retry_after_429_honours_retry_after(gw: RunningGateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply.error(429, headers={"retry-after": "0"}))
    config = fake_target(
        fake_openai, retry={"attempts": 2, "on_status_codes": [429], "use_retry_after_header": True}
    )
    raw = routed(gw, config)
    assert raw.parse().choices[0].message.content == "Hello from upstream"
    assert raw.headers["x-traceway-retry-attempt-count"] == "1"
    assert raw.headers["x-portkey-retry-attempt-count"] == "1"
    assert len(fake_openai.requests) == 2
    assert gw.sleeps == [0.0]


def test_retry_gives_up_with_the_last_answer(gw: RunningGateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.script(Reply.error(500), Reply.error(500), Reply.error(502))
    with pytest.raises(openai.APIStatusError) as raised:
        routed(gw, fake_target(fake_openai, retry={"attempts": 2}))
    assert raised.value.status_code == 502
    assert raised.value.response.headers["x-traceway-retry-attempt-count"] == "2"
    assert len(gw.sleeps) == 2


def test_loadbalance_end_to_end(start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway(settings(), rand=random.Random(1234).random)
    config = json.dumps(
        {
            "strategy": {"mode": "loadbalance"},
            "targets": [mock_target("echo", weight=3), mock_target("echo", weight=1)],
        }
    )
    picks = []
    with httpx.Client(base_url=gw.base_url, headers={"x-traceway-config": config}) as http:
        for _ in range(200):
            response = http.post("/chat/completions", json={"model": "m", "messages": MESSAGES})
            picks.append(response.headers["x-traceway-last-used-option-index"])
    share = picks.count("config.targets[0]") / len(picks)
    assert 0.65 <= share <= 0.85
    assert set(picks) == {"config.targets[0]", "config.targets[1]"}


def test_conditional_routing_on_metadata(gw: RunningGateway, fake_openai: FakeOpenAI) -> None:
    config = {
        "strategy": {
            "mode": "conditional",
            "conditions": [{"query": {"metadata.tier": {"$in": ["gold"]}}, "then": "premium"}],
            "default": "basic",
        },
        "targets": [
            {"name": "premium", **fake_target(fake_openai)},
            {"name": "basic", **mock_target("echo")},
        ],
    }
    gold = routed(gw, config, **{"x-traceway-metadata": '{"tier": "gold"}'})
    other = routed(gw, config, **{"x-portkey-metadata": '{"tier": "bronze"}'})
    assert gold.parse().choices[0].message.content == "Hello from upstream"
    assert other.parse().choices[0].message.content == "route me"
    assert len(fake_openai.requests) == 1


def test_saved_config_ids_and_named_configs(
    start_gateway: Callable[..., RunningGateway],
) -> None:
    saved = {"pc-echo": mock_target("echo")}
    lookups: list[str] = []

    def lookup(config_id: str) -> dict[str, Any] | None:
        lookups.append(config_id)
        return saved.get(config_id)

    gw = start_gateway(
        settings(configs={"named": mock_target("mock", override_params={"model": "echo"})}),
        config_lookup=lookup,
    )
    assert routed(gw, "pc-echo").parse().choices[0].message.content == "route me"
    assert routed(gw, "named").parse().choices[0].message.content == "route me"
    with pytest.raises(openai.BadRequestError):
        routed(gw, "pc-missing")
    assert lookups == ["pc-echo", "pc-missing"]


def test_request_timeout_in_config_gives_408(gw: RunningGateway) -> None:
    config = {"provider": "mock", "request_timeout": 50}
    with (
        gw.client(default_headers={"x-traceway-config": json.dumps(config)}) as client,
        pytest.raises(openai.APIStatusError) as raised,
    ):
        client.chat.completions.create(model="echo@2000ms", messages=MESSAGES)
    assert raised.value.status_code == 408


@pytest.mark.parametrize("prefix", ["x-traceway-", "x-portkey-"])
def test_every_header_alias_end_to_end(
    gw: RunningGateway, fake_openai: FakeOpenAI, prefix: str
) -> None:
    def call(headers: dict[str, str], model: str = "gpt-4o") -> httpx.Response:
        with httpx.Client(base_url=gw.base_url) as http:
            return http.post(
                "/chat/completions",
                headers={prefix + k: v for k, v in headers.items()},
                json={"model": model, "messages": MESSAGES},
            )

    # provider + custom-host
    answer = call({"provider": "openai", "custom-host": fake_openai.url})
    assert answer.json()["choices"][0]["message"]["content"] == "Hello from upstream"
    # config
    config = json.dumps(mock_target("echo"))
    assert call({"config": config}).headers[prefix + "last-used-option-index"] == "config"
    # metadata drives conditional routing
    conditional = json.dumps(
        {
            "strategy": {
                "mode": "conditional",
                "conditions": [{"query": {"metadata.env": "prod"}, "then": "p"}],
                "default": "d",
            },
            "targets": [{"name": "p", **mock_target("echo")}, {"name": "d", **mock_target("mock")}],
        }
    )
    routed_prod = call({"config": conditional, "metadata": '{"env": "prod"}'})
    assert routed_prod.headers[prefix + "last-used-option-index"] == "config.targets[0]"
    # trace-id is echoed under both names
    traced = call({"trace-id": "req-42", "provider": "mock"}, model="echo")
    assert traced.headers["x-traceway-trace-id"] == traced.headers["x-portkey-trace-id"] == "req-42"
    # request-timeout
    assert (
        call({"provider": "mock", "request-timeout": "30"}, model="echo@2000ms").status_code == 408
    )
    # the gateway key, virtual key and cache flag are accepted (acted on by later layers)
    accepted = call(
        {
            "provider": "mock",
            "api-key": "gw-key",
            "virtual-key": "vk",
            "cache-force-refresh": "true",
        },
        model="echo",
    )
    assert accepted.status_code == 200


def test_response_headers_on_success(gw: RunningGateway) -> None:
    with gw.client() as client:
        raw = client.chat.completions.with_raw_response.create(model="echo", messages=MESSAGES)
    headers = {k: v for k, v in raw.headers.items() if k.startswith(("x-traceway-", "x-portkey-"))}
    trace_id = headers["x-traceway-trace-id"]
    assert len(trace_id) == 32
    assert headers == {
        "x-traceway-trace-id": trace_id,
        "x-portkey-trace-id": trace_id,
        "x-traceway-retry-attempt-count": "0",
        "x-portkey-retry-attempt-count": "0",
        "x-traceway-provider": "mock",
        "x-portkey-provider": "mock",
        "x-traceway-last-used-option-index": "config",
        "x-portkey-last-used-option-index": "config",
        "x-traceway-cache-status": "DISABLED",
        "x-portkey-cache-status": "DISABLED",
    }


def test_circuit_breaker_end_to_end(
    start_gateway: Callable[..., RunningGateway], fake_openai: FakeOpenAI
) -> None:
    clock = [1000.0]
    gw = start_gateway(
        settings(breaker={"failure_threshold": 2, "window_s": 60, "cooldown_s": 30}),
        clock=lambda: clock[0],
    )
    config = {
        "strategy": {"mode": "fallback"},
        "targets": [fake_target(fake_openai), mock_target("echo")],
    }
    fake_openai.script(Reply.error(500), Reply.error(500), Reply.error(500))
    indexes = [routed(gw, config).headers["x-traceway-last-used-option-index"] for _ in range(3)]
    assert indexes == ["config.targets[1]"] * 3
    assert len(fake_openai.requests) == 2  # open after two failures: the third skipped it
    clock[0] += 31  # half-open: one probe, which fails and reopens
    routed(gw, config)
    assert len(fake_openai.requests) == 3
    clock[0] += 31  # the next probe succeeds and closes the circuit
    assert routed(gw, config).headers["x-traceway-last-used-option-index"] == "config.targets[0]"
    assert routed(gw, config).headers["x-traceway-last-used-option-index"] == "config.targets[0]"
