"""Cost on the answering attempt span, and the Prometheus metrics of real traffic."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import RunningGateway, serve, settings
from tests.gateway.fakes.openai_server import FakeOpenAI, Reply
from tests.gateway.test_metrics import labels, parse
from traceway.gateway import create_standalone_app
from traceway.gateway.policies import answer_usage, stream_usage
from traceway.tracing.span import FinishedSpan

MESSAGES = [{"role": "user", "content": "what does it cost?"}]
#: USD per million tokens: the fake answers with 5 prompt and 4 completion tokens.
PRICING = {"openai": {"gpt-4o": {"input": 2.0, "output": 10.0}}}
COST = (5 * 2.0 + 4 * 10.0) / 1e6


def summary(spans: list[FinishedSpan]) -> list[tuple[str, str, Any, Any]]:
    return [
        (
            s.span_type,
            s.name,
            s.attributes.get("traceway.cost.usd"),
            s.attributes.get("gen_ai.usage.output_tokens"),
        )
        for s in sorted(spans, key=lambda s: s.start_time_ns)
    ]


@pytest.fixture
def priced(start_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return start_gateway(settings(pricing=PRICING), traced=True)


def route(fake: FakeOpenAI) -> dict[str, str]:
    return {"x-traceway-provider": "openai", "x-traceway-custom-host": fake.url}


def test_the_answering_attempt_carries_the_cost(
    priced: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Reply.error(500))  # the first attempt fails, the retry answers
    config = {"retry": {"attempts": 1}, "provider": "openai", "custom_host": fake_openai.url}
    with priced.client(default_headers={"x-traceway-config": json.dumps(config)}) as client:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert summary(priced.spans(3)) == [
        ("GATEWAY", "gateway chat/completions", None, None),
        ("CHAT_MODEL", "chat gpt-4o", None, None),  # the failed attempt cost nothing
        ("CHAT_MODEL", "chat gpt-4o", pytest.approx(COST), 4),
    ]


def test_a_stream_with_usage_is_priced_too(priced: RunningGateway, fake_openai: FakeOpenAI) -> None:
    with priced.client(default_headers=route(fake_openai)) as client:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[-1].usage is not None
        # Without usage in the stream there is nothing to price.
        list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert summary(priced.spans(4)) == [
        ("GATEWAY", "gateway chat/completions", None, None),
        ("CHAT_MODEL", "chat gpt-4o", pytest.approx(COST), 4),
        ("GATEWAY", "gateway chat/completions", None, None),
        ("CHAT_MODEL", "chat gpt-4o", None, None),
    ]


def test_metrics_count_real_traffic(fake_openai: FakeOpenAI) -> None:
    app = create_standalone_app(settings(pricing=PRICING))
    with serve(app) as url:
        with openai.OpenAI(
            base_url=f"{url}/v1", api_key="sk-x", max_retries=0, default_headers=route(fake_openai)
        ) as client:
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            list(
                client.chat.completions.create(
                    model="gpt-4o",
                    messages=MESSAGES,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
        with httpx.Client(base_url=url) as http:
            assert http.post("/v1/chat/completions", content=b"{oops").status_code == 400
            mock = http.post("/v1/chat/completions", json={"model": "echo", "messages": MESSAGES})
            assert mock.status_code == 200
            scraped = http.get("/metrics")
    assert scraped.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    _, samples = parse(scraped.text)
    prefix = "traceway_gateway_"
    openai_chat = {"provider": "openai", "model": "gpt-4o", "endpoint": "chat/completions"}
    wanted = {
        (prefix + "requests_total", labels(**openai_chat, status="200")): 2,
        (prefix + "errors_total", labels(**openai_chat)): 0,
        (prefix + "request_duration_seconds_count", labels(**openai_chat)): 2,
        (prefix + "tokens_total", labels(provider="openai", model="gpt-4o", type="input")): 10,
        (prefix + "tokens_total", labels(provider="openai", model="gpt-4o", type="output")): 8,
        (prefix + "cost_usd_total", labels(provider="openai", model="gpt-4o")): pytest.approx(
            2 * COST
        ),
        (
            prefix + "requests_total",
            labels(provider="none", model="none", endpoint="chat/completions", status="400"),
        ): 1,
        (
            prefix + "requests_total",
            labels(provider="mock", model="echo", endpoint="chat/completions", status="200"),
        ): 1,
    }
    assert {key: samples.get(key) for key in wanted} == wanted


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


@pytest.mark.parametrize(
    "answer",
    [
        {"id": "a", "choices": [{"message": {"content": "hi"}}], "usage": USAGE},
        # A value that reads "usage", after the key: the tail is not a usage object.
        {"id": "a", "usage": USAGE, "choices": [{"message": {"content": "usage"}}]},
        {
            "id": "a",
            "choices": [{"message": {"content": 'say "usage": {} please'}}],
            "usage": USAGE,
        },
    ],
)
def test_usage_is_read_from_the_tail_of_an_answer(answer: dict[str, Any]) -> None:
    assert answer_usage(json.dumps(answer).encode()) == USAGE


def test_answers_and_streams_without_usage() -> None:
    assert answer_usage(b'{"id": "a", "choices": []}') is None
    assert answer_usage(b"not json") is None
    chunk = b'data: {"choices": [{"delta": {"content": "x"}}], "usage": null}\n\n'
    last = b'data: {"choices": [], "usage": ' + json.dumps(USAGE).encode() + b"}\n\n"
    assert stream_usage([chunk, chunk]) is None
    assert stream_usage([chunk, last, b"data: [DONE]\n\n"]) == USAGE
