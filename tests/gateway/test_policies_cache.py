"""The response cache on the request path, with the real ``openai`` client."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from tests.gateway.conftest import RunningGateway, settings
from tests.gateway.fakes.openai_server import FakeOpenAI, Reply
from tests.support.redis_keys import REDIS_URL, own_prefix
from traceway.tracing.span import FinishedSpan

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def cached_route(fake: FakeOpenAI, **cache: Any) -> dict[str, str]:
    config = {
        "provider": "openai",
        "custom_host": fake.url,
        "cache": {"mode": "simple", "max_age": 60, **cache},
    }
    return {"x-traceway-config": json.dumps(config)}


def status_of(raw: Any) -> tuple[str, str]:
    return raw.headers["x-traceway-cache-status"], raw.headers["x-portkey-cache-status"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gw(start_gateway: Callable[..., RunningGateway], clock: Clock) -> RunningGateway:
    return start_gateway(settings(), traced=True, clock=clock)


def test_the_second_identical_request_is_a_hit_with_the_first_body(
    gw: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    with gw.client(default_headers=cached_route(fake_openai)) as client:
        chat = client.chat.completions.with_raw_response.create
        first = chat(model="gpt-4o", messages=QUESTION, temperature=0)
        second = chat(model="gpt-4o", messages=QUESTION, temperature=0, user="someone-else")
        other = chat(model="gpt-4o", messages=QUESTION, temperature=1)
    assert [status_of(r) for r in (first, second, other)] == [
        ("MISS", "MISS"),
        ("HIT", "HIT"),
        ("MISS", "MISS"),
    ]
    assert second.content == first.content
    assert [r.body["temperature"] for r in fake_openai.requests] == [0, 1]


def test_streams_are_cached_and_replayed_as_sse(
    gw: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    def stream(client: openai.OpenAI, **options: Any) -> tuple[str, list[Any]]:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=QUESTION, stream=True, **options
        )
        assert raw.headers["content-type"] == "text/event-stream; charset=utf-8"
        return raw.headers["x-traceway-cache-status"], list(raw.parse())

    with gw.client(default_headers=cached_route(fake_openai)) as client:
        miss, upstream = stream(client)
        hit, replayed = stream(client, stream_options={"include_usage": True})
        plain = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=QUESTION)
    assert (miss, hit, plain.headers["x-traceway-cache-status"]) == ("MISS", "HIT", "HIT")
    text = "".join(c.choices[0].delta.content or "" for c in replayed if c.choices)
    assert text == "".join(c.choices[0].delta.content or "" for c in upstream if c.choices)
    assert text == "Hello from upstream"
    assert [c.choices[0].finish_reason for c in replayed if c.choices][-1] == "stop"
    assert replayed[-1].choices == []  # the usage chunk asked for
    assert plain.parse().choices[0].message.content == "Hello from upstream"
    assert len(fake_openai.requests) == 1


def test_force_refresh_bypasses_and_refreshes(gw: RunningGateway, fake_openai: FakeOpenAI) -> None:
    headers = cached_route(fake_openai)
    with gw.client(default_headers=headers) as client:
        chat = client.chat.completions.with_raw_response.create
        chat(model="gpt-4o", messages=QUESTION)
        fake_openai.answer = "A fresher answer"
        refreshed = chat(
            model="gpt-4o",
            messages=QUESTION,
            extra_headers={"x-traceway-cache-force-refresh": "true"},
        )
        again = chat(model="gpt-4o", messages=QUESTION)
    assert [status_of(r)[0] for r in (refreshed, again)] == ["REFRESH", "HIT"]
    assert again.parse().choices[0].message.content == "A fresher answer"
    assert len(fake_openai.requests) == 2


def test_entries_expire_after_max_age(
    gw: RunningGateway, fake_openai: FakeOpenAI, clock: Clock
) -> None:
    with gw.client(default_headers=cached_route(fake_openai, max_age=60)) as client:
        chat = client.chat.completions.with_raw_response.create
        statuses = [status_of(chat(model="gpt-4o", messages=QUESTION))[0]]
        clock.now += 59
        statuses.append(status_of(chat(model="gpt-4o", messages=QUESTION))[0])
        clock.now += 2
        statuses.append(status_of(chat(model="gpt-4o", messages=QUESTION))[0])
    assert statuses == ["MISS", "HIT", "MISS"]


def test_errors_are_not_cached_and_callers_do_not_share_answers(
    gw: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Reply.error(500))
    headers = cached_route(fake_openai)
    with gw.client(default_headers=headers) as client:
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o", messages=QUESTION)
        first = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=QUESTION)
    with gw.client(api_key="sk-another-account", default_headers=headers) as client:
        other = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=QUESTION)
    assert [status_of(r)[0] for r in (first, other)] == ["MISS", "MISS"]
    assert len(fake_openai.requests) == 3


def test_without_a_cache_config_the_status_is_disabled(gw: RunningGateway) -> None:
    with gw.client() as client:
        raw = client.chat.completions.with_raw_response.create(model="echo", messages=QUESTION)
    assert status_of(raw) == ("DISABLED", "DISABLED")


def shape(spans: list[FinishedSpan]) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    return [
        (
            s.span_type,
            s.name,
            s.parent_span_id,
            {k: v for k, v in s.attributes.items() if k.startswith("traceway.cache.")},
        )
        for s in sorted(spans, key=lambda s: s.span_id)
    ]


def test_the_lookup_is_a_cache_span(gw: RunningGateway, fake_openai: FakeOpenAI) -> None:
    with gw.client(default_headers=cached_route(fake_openai)) as client:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
    spans = gw.spans(5)
    assert shape(spans) == [
        ("GATEWAY", "gateway chat/completions", None, {}),
        ("CACHE", "cache lookup", "0000000000000001", {
            "traceway.cache.status": "MISS", "traceway.cache.mode": "simple"}),
        ("CHAT_MODEL", "chat gpt-4o", "0000000000000001", {}),
        ("GATEWAY", "gateway chat/completions", None, {}),
        ("CACHE", "cache lookup", "0000000000000004", {
            "traceway.cache.status": "HIT", "traceway.cache.mode": "simple"}),
    ]  # fmt: skip


# -- semantic ------------------------------------------------------------------


def test_a_paraphrase_is_a_semantic_hit_with_the_local_model(
    gw: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    headers = cached_route(fake_openai, mode="semantic", similarity_threshold=0.9)
    questions = [
        "What is the capital of France?",
        "Which city is the capital of France?",  # the same question: ~0.94
        "What is the capital of Germany?",  # another question: ~0.66
    ]
    with gw.client(default_headers=headers) as client:
        answers = [
            client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=[{"role": "user", "content": q}]
            )
            for q in questions
        ]
    assert [status_of(a)[0] for a in answers] == ["MISS", "SEMANTIC_HIT", "MISS"]
    assert answers[1].content == answers[0].content
    assert [r.body["messages"][0]["content"] for r in fake_openai.requests] == [
        questions[0],
        questions[2],
    ]
    cache_spans = [s for s in gw.spans(8) if s.span_type == "CACHE"]
    similarity = cache_spans[1].attributes["traceway.cache.similarity"]
    assert 0.9 <= similarity < 1.0


def test_the_semantic_cache_can_embed_through_a_gateway_route(
    start_gateway: Callable[..., RunningGateway], fake_openai: FakeOpenAI
) -> None:
    embeddings = {"provider": "openai", "custom_host": fake_openai.url, "api_key": "sk-embed"}
    gw = start_gateway(
        settings(
            configs={"embeddings": embeddings},
            semantic_embedder="gateway",
            semantic_embedding_config="embeddings",
            semantic_embedding_model="text-embedding-3-small",
        )
    )
    headers = cached_route(fake_openai, mode="semantic", similarity_threshold=0.99)
    with gw.client(default_headers=headers) as client:
        statuses = [
            status_of(
                client.chat.completions.with_raw_response.create(
                    model="gpt-4o", messages=[{"role": "user", "content": question}]
                )
            )[0]
            for question in ("first question", "second question")
        ]
    # The fake embeds every text alike: any question in the bucket matches the first.
    assert statuses == ["MISS", "SEMANTIC_HIT"]
    assert [
        (r.path, r.body.get("model"), r.headers["authorization"]) for r in fake_openai.requests
    ] == [
        ("/v1/embeddings", "text-embedding-3-small", "Bearer sk-embed"),
        ("/v1/chat/completions", "gpt-4o", "Bearer sk-test-key-123"),
        ("/v1/embeddings", "text-embedding-3-small", "Bearer sk-embed"),
    ]


# -- Redis ---------------------------------------------------------------------


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own, deleted afterwards."""
    with own_prefix() as value:
        yield value


@pytest.mark.redis
def test_two_gateways_on_one_redis_share_answers(
    start_gateway: Callable[..., RunningGateway], fake_openai: FakeOpenAI, prefix: str
) -> None:
    shared = settings(cache_backend="redis", redis_url=REDIS_URL, cache_key_prefix=prefix)
    first, second = start_gateway(shared), start_gateway(shared)
    headers = cached_route(fake_openai)
    with (
        first.client(default_headers=headers) as one,
        second.client(default_headers=headers) as two,
    ):
        miss = one.chat.completions.with_raw_response.create(model="gpt-4o", messages=QUESTION)
        hit = two.chat.completions.with_raw_response.create(model="gpt-4o", messages=QUESTION)
    assert (status_of(miss)[0], status_of(hit)[0]) == ("MISS", "HIT")
    assert hit.content == miss.content
    assert len(fake_openai.requests) == 1
