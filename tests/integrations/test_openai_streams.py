"""Streaming calls under autolog, read back from a real server: the span lasts as long
as the stream, holds the whole answer, and the application's iteration is unchanged."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

import openai
import pytest

import traceway
from tests.gateway.fakes.openai_server import FakeOpenAI
from tests.integrations.conftest import last_trace_id, view
from tests.integrations.openai_wire import (
    RESPONSE_USAGE,
    chat_stream_failing_reply,
    responses_stream_reply,
)
from tests.support.live_server import RunningServer

pytestmark = pytest.mark.usefixtures("autolog")

QUESTION = [{"role": "user", "content": "What is Traceway?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
HEAD = {
    "object": "chat.completion",
    "id": "chatcmpl-fake",
    "created": 1_700_000_000,
    "model": "gpt-4o",
    "system_fingerprint": "fp_fake",
}
STREAM_ATTRIBUTES = {
    "gen_ai.provider.name": "openai",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "traceway.llm.stream": True,
    "server.address": "127.0.0.1",
    "gen_ai.response.model": "gpt-4o",
    "gen_ai.response.id": "chatcmpl-fake",
}


def timing(span: dict[str, Any]) -> float:
    """Pop the time to first token, checking it lies within the span."""
    ttft = span["attributes"].pop("traceway.llm.time_to_first_token_ms")
    assert 0 < ttft <= (span["end_time_ns"] - span["start_time_ns"]) / 1e6
    [event] = [e for e in span["events"] if e["name"] == "first_token"]
    assert span["start_time_ns"] < event["time_unix_nano"] <= span["end_time_ns"]
    return float(ttft)


def test_chat_stream_with_usage(
    server: RunningServer, client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    kwargs: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": QUESTION,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with traceway.start_span("consumer") as consumer:
        chunks = [chunk.to_dict() for chunk in client.chat.completions.create(**kwargs)]

    # The application reads exactly what it reads without autolog.
    traceway.openai.autolog(disable=True)
    assert [chunk.to_dict() for chunk in client.chat.completions.create(**kwargs)] == chunks
    assert [r.body for r in fake.requests] == [{**kwargs}] * 2

    _, span = server.spans(consumer.trace_id)
    timing(span)
    assert view(span) == {
        "name": "chat.completions.create",
        "span_type": "CHAT_MODEL",
        "status": "OK",
        "status_message": "",
        "attributes": {
            **STREAM_ATTRIBUTES,
            "gen_ai.usage.input_tokens": 5,
            "gen_ai.usage.output_tokens": 4,
            "gen_ai.response.finish_reasons": ["stop"],
            "traceway.llm.stream_chunks": len(chunks),
        },
        "events": ["first_token"],
        "inputs": kwargs,
        "outputs": {
            **HEAD,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from upstream"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
        },
    }
    assert span["input_tokens"] == 5


def test_chat_stream_with_tool_call_deltas(server: RunningServer, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="required",
        stream=True,
    )
    for _ in stream:
        pass

    [span] = server.spans(last_trace_id())
    timing(span)
    assert span["attributes"]["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert span["outputs"] == {
        **HEAD,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_fake1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
    }
    assert span["inputs"]["tools"] == [WEATHER_TOOL]


def test_stream_closed_half_way_is_ended_as_abandoned(
    server: RunningServer, client: openai.OpenAI
) -> None:
    with client.chat.completions.create(model="gpt-4o", messages=QUESTION, stream=True) as stream:
        for chunk in stream:
            if chunk.choices[0].delta.content:
                break

    [span] = server.spans(last_trace_id())
    timing(span)
    assert view(span) == {
        "name": "chat.completions.create",
        "span_type": "CHAT_MODEL",
        "status": "OK",
        "status_message": "",
        "attributes": {
            **STREAM_ATTRIBUTES,
            "traceway.llm.stream_chunks": 2,
            "traceway.llm.stream_abandoned": True,
        },
        "events": ["first_token"],
        "inputs": {"model": "gpt-4o", "messages": QUESTION, "stream": True},
        "outputs": {
            **HEAD,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello"},
                    "finish_reason": None,
                }
            ],
        },
    }


def test_stream_dropped_unread_is_ended_when_collected(
    server: RunningServer, client: openai.OpenAI
) -> None:
    with traceway.start_span("consumer") as consumer:
        stream = client.chat.completions.create(model="gpt-4o", messages=QUESTION, stream=True)
        next(stream)
    before_collection = time.time_ns()
    del stream
    gc.collect()

    _, span = server.spans(consumer.trace_id)
    # Ended at its last chunk, not whenever the collector happened to run.
    assert span["end_time_ns"] < before_collection
    assert span["attributes"]["traceway.llm.stream_abandoned"] is True
    assert span["attributes"]["traceway.llm.stream_chunks"] == 1
    assert span["outputs"]["choices"][0]["message"] == {"role": "assistant", "content": None}


def test_error_half_way_through_a_stream(
    server: RunningServer, client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    fake.script(chat_stream_failing_reply())
    received = []

    with pytest.raises(openai.APIError, match="The server had an error"):
        for chunk in client.chat.completions.create(model="gpt-4o", messages=QUESTION, stream=True):
            received.append(chunk.choices[0].delta.content)

    assert received == ["Half", " way"]
    [span] = server.spans(last_trace_id())
    assert (span["status"], span["status_message"]) == (
        "ERROR",
        "APIError: The server had an error",
    )
    assert span["attributes"]["traceway.llm.error_type"] == "server_error"
    assert span["outputs"]["choices"][0]["message"]["content"] == "Half way"
    assert [e["name"] for e in span["events"]] == ["first_token", "exception"]


def test_responses_stream(server: RunningServer, client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script(responses_stream_reply(["Hello", " there"]))

    events = list(client.responses.create(model="gpt-4o", input="Say hi", stream=True))

    assert events[-1].type == "response.completed"
    [span] = server.spans(last_trace_id())
    timing(span)
    assert view(span) == {
        "name": "responses.create",
        "span_type": "CHAT_MODEL",
        "status": "OK",
        "status_message": "",
        "attributes": {
            "gen_ai.provider.name": "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "traceway.llm.stream": True,
            "server.address": "127.0.0.1",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.response.id": "resp_fake",
            "gen_ai.usage.input_tokens": 7,
            "gen_ai.usage.output_tokens": 3,
            "gen_ai.response.finish_reasons": ["completed"],
            "traceway.llm.stream_chunks": len(events),
        },
        "events": ["first_token"],
        "inputs": {"model": "gpt-4o", "input": "Say hi", "stream": True},
        "outputs": events[-1].response.model_dump(exclude_unset=True),
    }
    assert span["outputs"]["usage"] == RESPONSE_USAGE
    assert span["outputs"]["output"][0]["content"][0]["text"] == "Hello there"


def test_responses_stream_cut_short_keeps_what_arrived(
    server: RunningServer, client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    fake.script(
        responses_stream_reply(
            [], tool_call=("get_weather", ['{"city"', ':"Paris"}']), complete=False
        )
    )

    for _ in client.responses.create(model="gpt-4o", input="Weather?", stream=True):
        pass

    [span] = server.spans(last_trace_id())
    output = span["outputs"]
    assert (output["status"], output["id"]) == ("in_progress", "resp_fake")
    assert output["output"] == [
        {
            "type": "function_call",
            "id": "fc_fake",
            "call_id": "call_fake",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
            "status": "in_progress",
        }
    ]
    assert span["attributes"]["gen_ai.response.finish_reasons"] == ["in_progress"]


def test_async_streams(
    server: RunningServer, async_client: Callable[[], openai.AsyncOpenAI], fake: FakeOpenAI
) -> None:
    fake.script(responses_stream_reply(["Hi"]))

    async def main() -> list[str]:
        texts = []
        async with async_client() as client:
            events = await client.responses.create(model="gpt-4o", input="hi", stream=True)
            async for event in events:
                texts.append(getattr(event, "delta", ""))
            stream = await client.chat.completions.create(
                model="gpt-4o",
                messages=QUESTION,
                stream=True,
                stream_options={"include_usage": True},
            )
            async with stream:
                async for chunk in stream:
                    texts.append(chunk.choices[0].delta.content if chunk.choices else "")
        return texts

    with traceway.start_span("async consumer") as consumer:
        texts = asyncio.run(main())

    assert "".join(t or "" for t in texts) == "HiHello from upstream"
    _, responses, chat = server.spans(consumer.trace_id)
    timing(responses)
    timing(chat)
    assert responses["outputs"]["output"][0]["content"][0]["text"] == "Hi"
    assert chat["outputs"]["choices"][0]["message"]["content"] == "Hello from upstream"
    assert (chat["status"], chat["input_tokens"], chat["output_tokens"]) == ("OK", 5, 4)
    assert "traceway.llm.stream_abandoned" not in chat["attributes"]


def test_raw_response_stream_and_stream_helpers(
    server: RunningServer, client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    with traceway.start_span("consumer") as consumer:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=QUESTION, stream=True
        )
        raw_text = "".join(c.choices[0].delta.content or "" for c in raw.parse())
        with client.chat.completions.stream(model="gpt-4o", messages=QUESTION) as stream:
            final = stream.get_final_completion()
        fake.script(responses_stream_reply(["Hi"]))
        with client.responses.stream(model="gpt-4o", input="hi") as events:
            response = events.get_final_response()

    assert raw_text == final.choices[0].message.content == "Hello from upstream"
    assert response.output_text == "Hi"
    _, from_raw, from_helper, from_responses_helper = server.spans(consumer.trace_id)
    for span in (from_raw, from_helper):
        assert span["name"] == "chat.completions.create"
        assert span["outputs"]["choices"][0]["message"]["content"] == "Hello from upstream"
        assert "traceway.llm.stream_abandoned" not in span["attributes"]
    # The helpers pass every parameter, unset ones as markers that are not recorded.
    assert from_helper["inputs"] == {"model": "gpt-4o", "messages": QUESTION, "stream": True}
    assert from_responses_helper["name"] == "responses.create"
    assert from_responses_helper["inputs"] == {"model": "gpt-4o", "input": "hi", "stream": True}
    output = from_responses_helper["outputs"]
    assert (output["output"][0]["content"][0]["text"], output["usage"]) == ("Hi", RESPONSE_USAGE)
