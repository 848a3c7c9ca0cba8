"""``traceway.openai.autolog()`` with the real ``openai`` client, read back from a real server.

Non-streaming calls of every traced method, sync and async, raw responses,
errors, the ``traceparent`` header, and turning autolog off.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import openai
import pydantic
import pytest
from openai.resources.chat.completions import Completions

import traceway
from tests.gateway.fakes.openai_server import FakeOpenAI, Reply
from tests.integrations.conftest import API_KEY, last_trace_id, view
from tests.integrations.openai_wire import chat_json_reply
from tests.support.live_server import RunningServer
from tests.support.servers import free_port

pytestmark = pytest.mark.usefixtures("autolog")

QUESTION = [{"role": "user", "content": "What is Traceway?"}]
CHAT_OUTPUT = {
    "id": "chatcmpl-fake",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello from upstream",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    "system_fingerprint": "fp_fake",
}
CHAT_ATTRIBUTES = {
    "gen_ai.provider.name": "openai",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "server.address": "127.0.0.1",
    "gen_ai.response.model": "gpt-4o",
    "gen_ai.response.id": "chatcmpl-fake",
    "gen_ai.usage.input_tokens": 5,
    "gen_ai.usage.output_tokens": 4,
    "gen_ai.response.finish_reasons": ["stop"],
}


def chat_span(**changes: Any) -> dict[str, Any]:
    span = {
        "name": "chat.completions.create",
        "span_type": "CHAT_MODEL",
        "status": "OK",
        "status_message": "",
        "attributes": CHAT_ATTRIBUTES,
        "events": [],
        "inputs": {"model": "gpt-4o", "messages": QUESTION},
        "outputs": CHAT_OUTPUT,
    }
    return {**span, **changes}


def test_chat_completion_is_one_chat_model_span(
    server: RunningServer, client: openai.OpenAI
) -> None:
    messages = list(QUESTION)
    response = client.chat.completions.create(
        model="gpt-4o", messages=messages, temperature=0.2, max_tokens=50, seed=7, stop=["\n"]
    )
    # Appending the answer to the list passed in must not change the recorded request.
    messages.append({"role": "assistant", "content": response.choices[0].message.content})

    [span] = server.spans(last_trace_id())
    assert view(span) == chat_span(
        attributes={
            **CHAT_ATTRIBUTES,
            "gen_ai.request.temperature": 0.2,
            "gen_ai.request.max_tokens": 50,
            "gen_ai.request.seed": 7,
            "gen_ai.request.stop_sequences": ["\n"],
        },
        inputs={
            "model": "gpt-4o",
            "messages": QUESTION,
            "temperature": 0.2,
            "max_tokens": 50,
            "seed": 7,
            "stop": ["\n"],
        },
    )
    stored = {key: span[key] for key in ("model", "provider", "input_tokens", "output_tokens")}
    assert stored == {
        "model": "gpt-4o",
        "provider": "openai",
        "input_tokens": 5,
        "output_tokens": 4,
    }
    assert API_KEY not in json.dumps(span)


def test_the_issue_snippet_nests_the_call_under_the_chain(
    server: RunningServer, client: openai.OpenAI
) -> None:
    @traceway.trace(span_type=traceway.SpanType.CHAIN)
    def ask_question(question: str) -> str | None:
        response = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": question}]
        )
        return response.choices[0].message.content

    assert ask_question("What is Traceway?") == "Hello from upstream"

    chain, call = server.spans(last_trace_id())
    assert (chain["name"], chain["span_type"], chain["parent_span_id"]) == (
        "ask_question",
        "CHAIN",
        None,
    )
    assert call["parent_span_id"] == chain["span_id"]
    assert view(call) == chat_span()


def test_request_carries_traceparent_of_the_call_span(
    server: RunningServer, client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    client.chat.completions.create(
        model="gpt-4o", messages=QUESTION, extra_headers={"x-request-tag": "kept"}
    )

    [span] = server.spans(last_trace_id())
    [request] = fake.requests
    assert request.headers["traceparent"] == f"00-{span['trace_id']}-{span['span_id']}-01"
    assert request.headers["x-request-tag"] == "kept"
    assert view(span) == chat_span()


class Answer(pydantic.BaseModel):
    answer: int


def test_parse_records_the_parsed_answer_once(
    server: RunningServer, client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    fake.script(chat_json_reply('{"answer":42}'))

    completion = client.chat.completions.parse(
        model="gpt-4o", messages=QUESTION, response_format=Answer
    )

    assert completion.choices[0].message.parsed == Answer(answer=42)
    [span] = server.spans(last_trace_id())
    assert span["name"] == "chat.completions.parse"
    assert span["inputs"] == {"model": "gpt-4o", "messages": QUESTION, "response_format": "Answer"}
    message = span["outputs"]["choices"][0]["message"]
    assert (message["content"], message["parsed"]) == ('{"answer":42}', {"answer": 42})
    assert span["output_tokens"] == 6


def test_completions_create_is_an_llm_span(server: RunningServer, client: openai.OpenAI) -> None:
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", max_tokens=5)

    [span] = server.spans(last_trace_id())
    assert view(span) == {
        "name": "completions.create",
        "span_type": "LLM",
        "status": "OK",
        "status_message": "",
        "attributes": {
            "gen_ai.provider.name": "openai",
            "gen_ai.operation.name": "text_completion",
            "gen_ai.request.model": "gpt-3.5-turbo-instruct",
            "gen_ai.request.max_tokens": 5,
            "server.address": "127.0.0.1",
            "gen_ai.response.model": "gpt-3.5-turbo-instruct",
            "gen_ai.response.id": "cmpl-fake",
            "gen_ai.usage.input_tokens": 3,
            "gen_ai.usage.output_tokens": 4,
            "gen_ai.response.finish_reasons": ["stop"],
        },
        "events": [],
        "inputs": {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 5},
        "outputs": {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": 1_700_000_000,
            "model": "gpt-3.5-turbo-instruct",
            "choices": [
                {
                    "text": "Hello from upstream.",
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        },
    }


def test_embeddings_create_is_an_embedding_span(
    server: RunningServer, client: openai.OpenAI
) -> None:
    client.embeddings.create(
        model="text-embedding-3-small", input=["a", "b"], dimensions=4, encoding_format="float"
    )

    [span] = server.spans(last_trace_id())
    assert view(span) == {
        "name": "embeddings.create",
        "span_type": "EMBEDDING",
        "status": "OK",
        "status_message": "",
        "attributes": {
            "gen_ai.provider.name": "openai",
            "gen_ai.operation.name": "embeddings",
            "gen_ai.request.model": "text-embedding-3-small",
            "gen_ai.embeddings.dimension.count": 4,
            "gen_ai.request.encoding_formats": ["float"],
            "server.address": "127.0.0.1",
            "gen_ai.response.model": "text-embedding-3-small",
            "gen_ai.usage.input_tokens": 2,
        },
        "events": [],
        "inputs": {
            "model": "text-embedding-3-small",
            "input": ["a", "b"],
            "dimensions": 4,
            "encoding_format": "float",
        },
        "outputs": {
            "object": "list",
            "data": [
                {"object": "embedding", "index": 0, "embedding": [0.5, -0.5, 0.25, 0.0]},
                {"object": "embedding", "index": 1, "embedding": [0.5, -0.5, 0.25, 1.0]},
            ],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 2, "total_tokens": 2},
        },
    }


def test_responses_create_is_a_chat_model_span(
    server: RunningServer, client: openai.OpenAI
) -> None:
    response = client.responses.create(model="gpt-4o", input="Say hi", max_output_tokens=20)

    [span] = server.spans(last_trace_id())
    assert view(span) == {
        "name": "responses.create",
        "span_type": "CHAT_MODEL",
        "status": "OK",
        "status_message": "",
        "attributes": {
            "gen_ai.provider.name": "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.request.max_tokens": 20,
            "server.address": "127.0.0.1",
            "gen_ai.response.model": "gpt-4o",
            "gen_ai.response.id": "resp_fake",
            "gen_ai.usage.input_tokens": 3,
            "gen_ai.usage.output_tokens": 3,
            "gen_ai.response.finish_reasons": ["completed"],
        },
        "events": [],
        "inputs": {"model": "gpt-4o", "input": "Say hi", "max_output_tokens": 20},
        "outputs": response.model_dump(exclude_unset=True),
    }
    assert span["outputs"]["output"][0]["content"][0]["text"] == "Hello from upstream"


def test_async_client_is_traced(
    server: RunningServer, async_client: Callable[[], openai.AsyncOpenAI]
) -> None:
    async def main() -> None:
        async with async_client() as client:
            await client.chat.completions.create(model="gpt-4o", messages=QUESTION)
            await client.embeddings.create(model="text-embedding-3-small", input="a")
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=QUESTION
            )
            assert raw.parse().choices[0].message.content == "Hello from upstream"

    @traceway.trace(name="async main", span_type=traceway.SpanType.CHAIN)
    def run() -> None:
        asyncio.run(main())

    run()

    root, chat, embedding, raw_chat = server.spans(last_trace_id())
    assert root["name"] == "async main"
    assert {s["parent_span_id"] for s in (chat, embedding, raw_chat)} == {root["span_id"]}
    assert view(chat) == view(raw_chat) == chat_span()
    assert (embedding["name"], embedding["span_type"], embedding["status"]) == (
        "embeddings.create",
        "EMBEDDING",
        "OK",
    )


def test_with_raw_response_is_traced(server: RunningServer, client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=QUESTION)

    assert raw.status_code == 200
    assert raw.parse().choices[0].message.content == "Hello from upstream"
    [span] = server.spans(last_trace_id())
    assert view(span) == chat_span()


def test_http_error_marks_the_span_and_reaches_the_caller(
    server: RunningServer, client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    fake.script(Reply.error(429, "Rate limit reached for gpt-4o"))

    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)

    assert raised.value.status_code == 429
    [span] = server.spans(last_trace_id())
    assert view(span) == chat_span(
        status="ERROR",
        status_message="RateLimitError (HTTP 429): Rate limit reached for gpt-4o",
        attributes={
            "gen_ai.provider.name": "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "server.address": "127.0.0.1",
            "error.type": "RateLimitError",
            "http.response.status_code": 429,
            "traceway.llm.error_type": "requests",
            "traceway.llm.error_code": "rate_limit_exceeded",
        },
        events=["exception"],
        outputs=None,
    )
    event = span["events"][0]["attributes"]
    assert (event["exception.type"], event["exception.message"]) == (
        "RateLimitError",
        str(raised.value),
    )


def test_server_error_on_embeddings(
    server: RunningServer, client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    fake.script(Reply.error(500))

    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="text-embedding-3-small", input="a")

    [span] = server.spans(last_trace_id())
    assert (span["name"], span["status"], span["status_message"]) == (
        "embeddings.create",
        "ERROR",
        "InternalServerError (HTTP 500): fake upstream error 500",
    )
    assert span["attributes"]["traceway.llm.error_type"] == "server_error"


def test_timeout_marks_the_span(
    server: RunningServer, client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    fake.script(Reply.slow(5))

    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-4o", messages=QUESTION, timeout=0.2)

    [span] = server.spans(last_trace_id())
    assert (span["status"], span["status_message"]) == (
        "ERROR",
        "APITimeoutError: Request timed out.",
    )
    assert span["attributes"]["error.type"] == "APITimeoutError"
    assert span["inputs"] == {"model": "gpt-4o", "messages": QUESTION}


def test_connection_error_marks_the_span(server: RunningServer) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    with (
        openai.OpenAI(base_url=closed, api_key=API_KEY, max_retries=0) as client,
        pytest.raises(openai.APIConnectionError),
    ):
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)

    [span] = server.spans(last_trace_id())
    assert (span["status"], span["status_message"]) == (
        "ERROR",
        "APIConnectionError: Connection error.",
    )


def test_autolog_twice_traces_once_and_disable_restores_the_client(
    server: RunningServer, client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    traceway.openai.autolog()
    with traceway.start_span("twice") as parent:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
        # The raw-response accessor now holds the traced method...
        client.chat.completions.with_raw_response.create(model="gpt-4o", messages=QUESTION)
    spans = server.spans(parent.trace_id)
    assert [s["name"] for s in spans] == ["twice", *["chat.completions.create"] * 2]

    traceway.openai.autolog(disable=True)
    assert Completions.create.__module__.startswith("openai.resources.chat.completions")
    assert not hasattr(Completions.create, "_traceway_autolog")
    with traceway.start_span("after disable") as parent:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
        # ...which passes calls straight through once autolog is off.
        client.chat.completions.with_raw_response.create(model="gpt-4o", messages=QUESTION)
    assert [s["name"] for s in server.spans(parent.trace_id)] == ["after disable"]
    assert "traceparent" not in fake.requests[-1].headers
    assert "traceparent" not in fake.requests[-2].headers


def test_tracing_disabled_leaves_calls_alone(
    server: RunningServer, client: openai.OpenAI, fake: FakeOpenAI, experiment: str
) -> None:
    traceway.disable()
    response = client.chat.completions.create(model="gpt-4o", messages=QUESTION)

    assert response.choices[0].message.content == "Hello from upstream"
    assert "traceparent" not in fake.requests[0].headers
    assert traceway.flush(timeout=10)
    # Nothing was recorded, so the experiment was never created.
    assert server.http.get("/api/traces", params={"experiment": experiment}).status_code == 404
