"""The official ``openai`` client against the gateway (default route: the mock provider)."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from tests.gateway.conftest import RunningGateway

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_sync_chat_completion(gw: RunningGateway) -> None:
    with gw.client() as client:
        completion = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "Hello gateway"}]
        )
    assert completion.object == "chat.completion"
    assert completion.model == "echo"
    assert completion.choices[0].message.content == "Hello gateway"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (9, 2)


def test_sync_stream_with_usage(gw: RunningGateway) -> None:
    with gw.client() as client:
        stream = client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_async_chat_and_stream(gw: RunningGateway) -> None:
    async def run() -> tuple[str | None, str]:
        async with gw.async_client() as client:
            plain = await client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "async hi"}]
            )
            stream = await client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "async stream"}], stream=True
            )
            pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        return plain.choices[0].message.content, "".join(pieces)

    assert asyncio.run(run()) == ("async hi", "async stream")


def test_tools_round_trip(gw: RunningGateway) -> None:
    with gw.client() as client:
        first = client.chat.completions.create(
            model="mock",
            messages=[{"role": "user", "content": "What does get_weather say for Oslo?"}],
            tools=[WEATHER],
        )
        call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert first.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "get_weather"  # type: ignore[union-attr]
        assert json.loads(call.function.arguments) == {"city": "example city"}  # type: ignore[union-attr]
        second = client.chat.completions.create(
            model="mock",
            messages=[
                {"role": "user", "content": "What does get_weather say for Oslo?"},
                first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
                {"role": "tool", "tool_call_id": call.id, "content": "-3C"},
            ],
            tools=[WEATHER],
        )
    assert second.choices[0].message.content == "The tool returned: -3C"


def test_streamed_tool_call(gw: RunningGateway) -> None:
    with gw.client() as client:
        stream = client.chat.completions.create(
            model="mock",
            messages=[{"role": "user", "content": "hi"}],
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            stream=True,
        )
        deltas = [c.choices[0].delta for c in stream if c.choices]
    calls = [tc for d in deltas for tc in d.tool_calls or []]
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    arguments = "".join(tc.function.arguments or "" for tc in calls)  # type: ignore[union-attr]
    assert json.loads(arguments) == {"city": "example city"}


def test_completions_embeddings_and_models(gw: RunningGateway) -> None:
    with gw.client() as client:
        completion = client.completions.create(model="echo", prompt="complete me")
        # The client asks for base64 by default and decodes it.
        embedding = client.embeddings.create(
            model="mock-embedding", input=["a", "b"], dimensions=16
        )
        floats = client.embeddings.create(
            model="mock-embedding", input="a", dimensions=16, encoding_format="float"
        )
        models = client.models.list()
        one = client.models.retrieve("echo")
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("no-such-model")
    assert completion.choices[0].text == "complete me"
    assert [len(d.embedding) for d in embedding.data] == [16, 16]
    assert embedding.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-6)
    assert [m.id for m in models.data] == [
        "mock",
        "echo",
        "mock-embedding",
        "error-429",
        "error-500",
    ]
    assert (one.id, one.owned_by) == ("echo", "traceway-mock")


def test_responses_api(gw: RunningGateway) -> None:
    with gw.client() as client:
        response = client.responses.create(model="echo", input="respond please")
        events = list(client.responses.create(model="echo", input="stream me", stream=True))
    assert response.output_text == "respond please"
    assert response.usage is not None and response.usage.output_tokens == 2
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]  # type: ignore[union-attr]
    assert "".join(deltas) == "stream me"


def test_injected_failures_raise_the_clients_errors(gw: RunningGateway) -> None:
    message = [{"role": "user", "content": "x"}]
    with gw.client() as client:
        with pytest.raises(openai.InternalServerError) as server_error:
            client.chat.completions.create(model="error-500", messages=message)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as rate_limited:
            client.chat.completions.create(model="error-429", messages=message)  # type: ignore[arg-type]
    assert server_error.value.status_code == 500
    assert rate_limited.value.response.headers["retry-after"] == "1"
    assert rate_limited.value.body["type"] == "rate_limit_error"  # type: ignore[index]
