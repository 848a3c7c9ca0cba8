"""Rate limits and budgets on the request path, with the real ``openai`` client."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from tests.gateway.conftest import RunningGateway, settings
from tests.gateway.fakes.openai_server import FakeOpenAI
from tests.support.redis_keys import REDIS_URL, own_prefix
from traceway.gateway.keys import GatewayKeyInfo, StaticKeyResolver, display_prefix
from traceway.gateway.limits import LimitPolicy

MESSAGES = [{"role": "user", "content": "count me"}]
#: One US dollar per token: the fake answers with 5 + 4 tokens, so a call costs 9 USD.
DOLLAR_A_TOKEN = {"openai": {"gpt-4o": {"input": 1_000_000, "output": 1_000_000}}}


def limited(*rules: dict[str, Any], **options: Any) -> Any:
    return settings(limits=LimitPolicy(rules=list(rules), **options))


def metadata(**values: str) -> dict[str, str]:
    return {"x-traceway-metadata": json.dumps(values)}


def error_of(raised: pytest.ExceptionInfo[openai.APIStatusError]) -> tuple[int, Any]:
    return raised.value.status_code, raised.value.body


def test_requests_per_minute_per_metadata_value(
    start_gateway: Callable[..., RunningGateway],
) -> None:
    gw = start_gateway(limited({"scope": "metadata.user_id", "requests_per_minute": 2}))
    with gw.client() as client:
        create = client.chat.completions.create
        for _ in range(2):
            create(model="echo", messages=MESSAGES, extra_headers=metadata(user_id="u1"))
        with pytest.raises(openai.RateLimitError) as raised:
            create(model="echo", messages=MESSAGES, extra_headers=metadata(user_id="u1"))
        # Another user, and a request without the metadata key, are not limited by u1.
        create(model="echo", messages=MESSAGES, extra_headers=metadata(user_id="u2"))
        create(model="echo", messages=MESSAGES)
    assert error_of(raised) == (
        429,
        {
            "message": "rate limit exceeded: 2 requests per minute for metadata.user_id=u1",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        },
    )
    assert 1 <= int(raised.value.response.headers["retry-after"]) <= 60


def test_tokens_per_minute_count_the_answers(
    start_gateway: Callable[..., RunningGateway], fake_openai: FakeOpenAI
) -> None:
    gw = start_gateway(limited({"scope": "metadata.team", "tokens_per_minute": 15}))
    headers = {
        "x-traceway-provider": "openai",
        "x-traceway-custom-host": fake_openai.url,
        **metadata(team="t1"),
    }
    with gw.client(default_headers=headers) as client:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # 9 tokens
        list(  # 9 more, counted from the stream's usage
            client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert error_of(raised)[1]["message"] == (
        "rate limit exceeded: 15 tokens per minute for metadata.team=t1"
    )
    assert len(fake_openai.requests) == 2


def test_a_budget_stops_spending_within_one_request_of_its_limit(
    start_gateway: Callable[..., RunningGateway], fake_openai: FakeOpenAI
) -> None:
    rule = {"scope": "metadata.team", "budget_usd": 20, "budget_period": "total"}
    gw = start_gateway(settings(limits=LimitPolicy(rules=[rule]), pricing=DOLLAR_A_TOKEN))
    headers = {
        "x-traceway-provider": "openai",
        "x-traceway-custom-host": fake_openai.url,
        **metadata(team="t1"),
    }
    answered = 0
    with (
        gw.client(default_headers=headers) as client,
        pytest.raises(openai.APIStatusError) as raised,
    ):
        for _ in range(10):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            answered += 1
    # 9, 18 (under 20), 27 (the request in flight when it crossed), then refused.
    assert (answered, len(fake_openai.requests)) == (3, 3)
    assert answered * 9 <= 20 + 9
    assert error_of(raised) == (
        402,
        {
            "message": "budget exceeded: 20 USD in total for metadata.team=t1",
            "type": "insufficient_quota",
            "param": None,
            "code": "budget_exceeded",
        },
    )


def test_limits_per_gateway_key(start_gateway: Callable[..., RunningGateway]) -> None:
    token = "tw-" + "A" * 43
    resolver = StaticKeyResolver({token: GatewayKeyInfo(1, "ci", display_prefix(token))})
    gw = start_gateway(
        settings(
            require_gateway_keys=True,
            limits=LimitPolicy(rules=[{"scope": "gateway_key", "requests_per_minute": 1}]),
        ),
        key_resolver=resolver,
    )
    with gw.client(api_key=token) as client:
        client.chat.completions.create(model="echo", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(model="echo", messages=MESSAGES)
    message = error_of(raised)[1]["message"]
    assert message == "rate limit exceeded: 1 requests per minute for gateway_key=...AAAA"


@pytest.fixture
def prefix() -> Iterator[str]:
    with own_prefix() as value:
        yield value


@pytest.mark.redis
def test_two_gateways_on_one_redis_share_counters(
    start_gateway: Callable[..., RunningGateway], prefix: str
) -> None:
    shared = settings(
        redis_url=REDIS_URL,
        limits=LimitPolicy(
            rules=[{"scope": "metadata.user_id", "requests_per_minute": 3}], key_prefix=prefix
        ),
    )
    first, second = start_gateway(shared), start_gateway(shared)
    headers = metadata(user_id="u1")
    with (
        first.client(default_headers=headers) as one,
        second.client(default_headers=headers) as two,
    ):
        one.chat.completions.create(model="echo", messages=MESSAGES)
        two.chat.completions.create(model="echo", messages=MESSAGES)
        one.chat.completions.create(model="echo", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError):
            two.chat.completions.create(model="echo", messages=MESSAGES)
