"""The Google (Gemini) provider: translation both ways, and exchanges with a fake Gemini API."""

from __future__ import annotations

import base64
import itertools
import struct
from collections.abc import Callable, Iterator
from typing import Any

import openai
import orjson
import pytest

from tests.gateway.conftest import RunningGateway
from tests.gateway.fakes.google_server import API_KEY, FakeGemini, Reply, fake_vector
from tests.gateway.provider_calls import payloads, send
from traceway.gateway.providers._openai_format import TranslationError
from traceway.gateway.providers._sse import DONE, SSEDecoder, SSEEvent
from traceway.gateway.providers.base import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    UpstreamError,
    UpstreamRequest,
)
from traceway.gateway.providers.google import (
    GeminiStreamTranslator,
    GoogleProvider,
    from_gemini_embed_response,
    from_gemini_response,
    gemini_error_to_openai,
    gemini_schema,
    to_gemini_embed_request,
    to_gemini_request,
)

NOW = 1_700_000_000
PNG = "iVBORw0KGgo="
MODEL = "gemini-2.5-flash"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "strict": True,
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "city": {"type": "string", "format": "uri-reference"},
                "unit": {"type": ["string", "null"], "enum": ["c", "f", None]},
            },
            "required": ["city"],
        },
    },
}
WEATHER_DECLARATION = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "nullable": True, "enum": ["c", "f", None]},
        },
        "required": ["city"],
    },
}


def counter_ids() -> Callable[[str], str]:
    numbers = itertools.count(1)
    return lambda prefix: f"{prefix}{next(numbers)}"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeGemini) -> FakeGemini:
    server.reset()
    return server


@pytest.fixture
def provider() -> GoogleProvider:
    return GoogleProvider(clock=lambda: NOW, new_id=counter_ids())


def chat(fake: FakeGemini, body: dict[str, Any], **kwargs: Any) -> UpstreamRequest:
    return UpstreamRequest(
        endpoint=CHAT, body={"model": MODEL} | body, api_key=API_KEY, base_url=fake.url, **kwargs
    )


# -- OpenAI request -> Gemini request ------------------------------------------------------


def test_request_translation_covers_a_whole_tool_using_conversation() -> None:
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use metric units."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather where these were taken?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1__thought__c2lnbmF0dXJl",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 18}'},
            {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
            {"role": "user", "content": "Thanks!"},
        ],
        "tools": [
            WEATHER_TOOL,
            {
                "type": "function",
                "function": {"name": "get_time", "parameters": {"type": "object"}},
            },
        ],
        "tool_choice": "required",
        "temperature": 0.3,
        "top_p": 0.8,
        "n": 2,
        "max_tokens": 256,
        "stop": ["END"],
        "seed": 7,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "answer",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                    "additionalProperties": False,
                },
            },
        },
    }
    # The thought signature came back inside the first call's id; tool results find
    # their function names through the ids of the calls they answer.
    body["messages"][4]["tool_call_id"] = "call_1__thought__c2lnbmF0dXJl"
    assert to_gemini_request(body) == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Weather where these were taken?"},
                    {"inlineData": {"mimeType": "image/png", "data": PNG}},
                    {
                        "fileData": {
                            "mimeType": "image/jpeg",
                            "fileUri": "https://example.com/cat.jpg",
                        }
                    },
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Checking."},
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "c2lnbmF0dXJl",
                    },
                    {"functionCall": {"name": "get_time", "args": {}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"celsius": 18}}},
                    {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}},
                    {"text": "Thanks!"},
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Be brief.\n\nUse metric units."}]},
        "tools": [{"functionDeclarations": [WEATHER_DECLARATION, {"name": "get_time"}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {
            "temperature": 0.3,
            "topP": 0.8,
            "candidateCount": 2,
            "seed": 7,
            "maxOutputTokens": 256,
            "stopSequences": ["END"],
            "responseMimeType": "application/json",
            "responseSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
        },
    }


def test_schemas_from_pydantic_are_narrowed_to_what_gemini_accepts() -> None:
    schema = {
        "$defs": {
            "Unit": {"enum": ["c", "f"], "title": "Unit", "type": "string"},
            "Place": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "near": {"$ref": "#/$defs/Place"}},
            },
        },
        "additionalProperties": False,
        "properties": {
            "unit": {"$ref": "#/$defs/Unit", "description": "Which unit"},
            "place": {"anyOf": [{"$ref": "#/$defs/Place"}, {"type": "null"}], "default": None},
            "kind": {"const": "forecast"},
            "when": {"type": "string", "format": "date-time"},
            "id": {"oneOf": [{"type": "integer"}, {"type": "string", "format": "uuid"}]},
            "tags": {"type": "array", "items": {"type": "string", "minLength": 1}},
        },
        "required": ["unit"],
        "title": "Query",
        "type": "object",
    }
    narrowed = gemini_schema(schema)
    place = narrowed["properties"]["place"]
    assert (place["nullable"], place["default"], place["type"]) == (True, None, "object")
    del narrowed["properties"]["place"]
    assert narrowed == {
        "properties": {
            "unit": {
                "enum": ["c", "f"],
                "title": "Unit",
                "type": "string",
                "description": "Which unit",
            },
            "kind": {"enum": ["forecast"]},
            "when": {"type": "string", "format": "date-time"},
            "id": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "tags": {"type": "array", "items": {"type": "string", "minLength": 1}},
        },
        "required": ["unit"],
        "title": "Query",
        "type": "object",
    }


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", {"functionCallingConfig": {"mode": "AUTO"}}),
        ("none", {"functionCallingConfig": {"mode": "NONE"}}),
        ("required", {"functionCallingConfig": {"mode": "ANY"}}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        ),
        (None, None),
    ],
)
def test_tool_choice_translation(tool_choice: Any, expected: Any) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": tool_choice,
    }
    assert to_gemini_request(body).get("toolConfig") == expected


@pytest.mark.parametrize(
    ("messages", "message", "param"),
    [
        (
            [{"role": "tool", "tool_call_id": "call_x", "content": "1"}],
            "tool_call_id does not match a tool call of an earlier assistant message",
            "messages[0].tool_call_id",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}],
            "media URLs must be data, http(s) or gs URLs",
            "messages[0].content[0]",
        ),
        ([{"role": "function", "content": "x"}], "unsupported role 'function'", "messages[0].role"),
    ],
)
def test_untranslatable_requests_name_the_problem(
    messages: list[dict[str, Any]], message: str, param: str
) -> None:
    with pytest.raises(TranslationError) as caught:
        to_gemini_request({"model": MODEL, "messages": messages})
    assert (caught.value.message, caught.value.param) == (message, param)


def test_embedding_requests() -> None:
    single = {"model": "gemini-embedding-001", "input": "hello", "dimensions": 4}
    assert to_gemini_embed_request(single) == (
        "embedContent",
        {"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4},
    )
    batch = {"model": "models/gemini-embedding-001", "input": ["a", "b"]}
    assert to_gemini_embed_request(batch) == (
        "batchEmbedContents",
        {
            "requests": [
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}},
            ]
        },
    )
    with pytest.raises(TranslationError):
        to_gemini_embed_request({"model": "m", "input": [[1, 2, 3]]})


# -- Gemini answers -> OpenAI answers ------------------------------------------------------


def test_response_translation_with_two_candidates_calls_and_usage() -> None:
    payload = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "thinking...", "thought": True},
                        {"text": "Let me "},
                        {"text": "check."},
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "c2ln",
                        },
                    ],
                },
                "finishReason": "STOP",
            },
            {
                "content": {"role": "model", "parts": [{"text": "Cut"}]},
                "finishReason": "MAX_TOKENS",
                "index": 1,
            },
        ],
        "usageMetadata": {
            "promptTokenCount": 100,
            "candidatesTokenCount": 20,
            "thoughtsTokenCount": 30,
            "cachedContentTokenCount": 64,
            "totalTokenCount": 150,
        },
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "resp-1",
    }
    result = from_gemini_response(payload, model=MODEL, created=NOW, new_id=counter_ids())
    assert result == {
        "id": "resp-1",
        "object": "chat.completion",
        "created": NOW,
        "model": "gemini-2.5-flash-001",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "call_1__thought__c2ln",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": "Cut", "refusal": None},
                "logprobs": None,
                "finish_reason": "length",
            },
        ],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 30},
        },
    }


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("OTHER", "stop"),
    ],
)
def test_finish_reasons(reason: str, expected: str) -> None:
    payload = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    result = from_gemini_response(payload, model=MODEL, created=NOW, new_id=counter_ids())
    assert result["choices"][0]["finish_reason"] == expected


def test_a_blocked_prompt_is_an_empty_content_filtered_choice() -> None:
    payload = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 5},
    }
    result = from_gemini_response(payload, model=MODEL, created=NOW, new_id=counter_ids())
    assert result["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": None, "refusal": None},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert result["id"] == "chatcmpl-1"


def test_stream_translation_with_a_call_and_usage() -> None:
    translator = GeminiStreamTranslator(
        model=MODEL, include_usage=True, created=NOW, new_id=counter_ids()
    )

    def piece(part: dict[str, Any], **extra: Any) -> dict[str, Any]:
        candidate = {"content": {"role": "model", "parts": [part]}}
        return {"candidates": [candidate | extra], "responseId": "r1"}

    usage = {"promptTokenCount": 8, "candidatesTokenCount": 5, "totalTokenCount": 13}
    pieces = [
        piece({"text": "Let "}),
        piece({"text": "me see."}),
        piece({"functionCall": {"name": "f", "args": {"a": 1}}}, finishReason="STOP")
        | {"usageMetadata": usage},
    ]
    chunks = [c for p in pieces for c in translator.feed(SSEEvent(None, orjson.dumps(p).decode()))]
    chunks += translator.finish()

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "r1",
            "object": "chat.completion.chunk",
            "created": NOW,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": '{"a":1}'},
    }
    assert chunks == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Let "}),
        chunk({"content": "me see."}),
        chunk({"tool_calls": [call]}),
        chunk({}, "tool_calls"),
        {
            "id": "r1",
            "object": "chat.completion.chunk",
            "created": NOW,
            "model": MODEL,
            "choices": [],
            "usage": {
                "prompt_tokens": 8,
                "completion_tokens": 5,
                "total_tokens": 13,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
        },
    ]


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (
            429,
            {"error": {"code": 429, "message": "Quota", "status": "RESOURCE_EXHAUSTED"}},
            {"message": "Quota", "type": "rate_limit_error", "code": "RESOURCE_EXHAUSTED"},
        ),
        (
            400,
            [{"error": {"code": 400, "message": "Bad", "status": "INVALID_ARGUMENT"}}],
            {"message": "Bad", "type": "invalid_request_error", "code": "INVALID_ARGUMENT"},
        ),
        (
            400,
            {
                "error": {
                    "code": 400,
                    "message": "API key not valid.",
                    "status": "INVALID_ARGUMENT",
                    "details": [{"reason": "API_KEY_INVALID"}],
                }
            },
            {
                "message": "API key not valid.",
                "type": "authentication_error",
                "code": "invalid_api_key",
            },
        ),
        (
            403,
            {"error": {"code": 403, "message": "No", "status": "PERMISSION_DENIED"}},
            {"message": "No", "type": "permission_error", "code": "PERMISSION_DENIED"},
        ),
        (
            503,
            {"error": {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}},
            {"message": "Overloaded", "type": "server_error", "code": "UNAVAILABLE"},
        ),
        (
            502,
            "upstream connect error",
            {
                "message": "google answered HTTP 502: upstream connect error",
                "type": "server_error",
                "code": None,
            },
        ),
    ],
)  # fmt: skip
def test_error_translation(status: int, payload: Any, expected: dict[str, Any]) -> None:
    assert gemini_error_to_openai(status, payload) == {"error": expected | {"param": None}}


def test_embedding_responses_as_floats_and_as_base64() -> None:
    batch = {"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25, 2.0]}]}
    assert from_gemini_embed_response(batch, model="gemini-embedding-001") == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
            {"object": "embedding", "index": 1, "embedding": [0.25, 2.0]},
        ],
        "model": "gemini-embedding-001",
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
    single = {"embedding": {"values": [0.5, -1.0]}}
    encoded = from_gemini_embed_response(single, model="m", encoding_format="base64")
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (0.5, -1.0)


# -- end to end against the fake Gemini API ------------------------------------------------


def test_text_with_system_prompt(fake: FakeGemini, provider: GoogleProvider) -> None:
    fake.script(Reply.text("Bonjour !"))
    body = {
        "messages": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hello"},
        ],
        "max_completion_tokens": 50,
    }
    response, stream = send(provider, chat(fake, body))
    assert (response.status, stream) == (200, None)
    assert response.json() == {
        "id": "fake-response-1",
        "object": "chat.completion",
        "created": NOW,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Bonjour !", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 4,
            "total_tokens": 13,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    [received] = fake.requests
    assert (received.method, received.path, received.query) == (
        "POST",
        f"/v1beta/models/{MODEL}:generateContent",
        {},
    )
    assert received.headers["x-goog-api-key"] == API_KEY
    assert received.body == {
        "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
        "systemInstruction": {"parts": [{"text": "Answer in French."}]},
        "generationConfig": {"maxOutputTokens": 50},
    }


def test_function_call_then_result_round_trip_keeps_the_thought_signature(
    fake: FakeGemini, provider: GoogleProvider
) -> None:
    fake.script(
        Reply.function_call("get_weather", {"city": "Paris"}, thought_signature="c2lnbmF0dXJl"),
        Reply.text("18 C in Paris."),
    )
    question = {"role": "user", "content": "Weather in Paris?"}
    first, _ = send(provider, chat(fake, {"messages": [question], "tools": [WEATHER_TOOL]}))
    assert first.status == 200, first.body
    answer = first.json()["choices"][0]
    assert answer["finish_reason"] == "tool_calls"
    [call] = answer["message"]["tool_calls"]
    assert call == {
        "id": "call_1__thought__c2lnbmF0dXJl",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    follow_up = [
        question,
        answer["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "18"},
    ]
    second, _ = send(provider, chat(fake, {"messages": follow_up, "tools": [WEATHER_TOOL]}))
    assert second.status == 200, second.body
    assert second.json()["choices"][0]["message"]["content"] == "18 C in Paris."
    sent = fake.requests[1].body
    assert sent["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": "c2lnbmF0dXJl",
                }
            ],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": 18}}}],
        },
    ]
    assert sent["tools"] == [{"functionDeclarations": [WEATHER_DECLARATION]}]


def test_images_forced_tool_and_two_candidates(fake: FakeGemini, provider: GoogleProvider) -> None:
    fake.script(Reply.text("A cat.", "A kitten."))
    body = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! Send a photo."},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/x.webp"}},
                    {"type": "text", "text": "What is this?"},
                ],
            },
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "n": 2,
    }
    response, _ = send(provider, chat(fake, body))
    assert response.status == 200, response.body
    assert [c["message"]["content"] for c in response.json()["choices"]] == ["A cat.", "A kitten."]
    sent = fake.requests[0].body
    assert [c["role"] for c in sent["contents"]] == ["user", "model", "user"]
    assert sent["contents"][2]["parts"][:2] == [
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/x.webp"}},
    ]
    assert sent["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert sent["generationConfig"] == {"candidateCount": 2}


def test_stop_sequences_and_max_tokens(fake: FakeGemini, provider: GoogleProvider) -> None:
    fake.script(Reply.text("one two", finish_reason="MAX_TOKENS"))
    body = {"messages": [{"role": "user", "content": "count"}], "stop": "END", "max_tokens": 2}
    response, _ = send(provider, chat(fake, body))
    assert response.json()["choices"][0]["finish_reason"] == "length"
    assert fake.requests[0].body["generationConfig"] == {
        "maxOutputTokens": 2,
        "stopSequences": ["END"],
    }


def test_streamed_text_with_usage(fake: FakeGemini, provider: GoogleProvider) -> None:
    fake.script(Reply.text("Hello there, friend"))
    body = {
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response, stream = send(provider, chat(fake, body))
    assert response.status == 200 and stream is not None
    assert stream[-1] == DONE
    assert (fake.requests[0].path, fake.requests[0].query) == (
        f"/v1beta/models/{MODEL}:streamGenerateContent",
        {"alt": "sse"},
    )
    chunks = payloads(stream)
    assert {(c["id"], c["object"], c["created"], c["model"]) for c in chunks} == {
        ("fake-response-1", "chat.completion.chunk", NOW, MODEL)
    }
    assert [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks[:-1]] == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hello "}, None),
        ({"content": "there, "}, None),
        ({"content": "friend"}, None),
        ({}, "stop"),
    ]
    assert (chunks[-1]["choices"], chunks[-1]["usage"]) == (
        [],
        {
            "prompt_tokens": 9,
            "completion_tokens": 4,
            "total_tokens": 13,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    )


def test_streamed_function_call(fake: FakeGemini, provider: GoogleProvider) -> None:
    fake.script(Reply.function_call("get_weather", {"city": "Oslo"}))
    body = {
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [WEATHER_TOOL],
        "stream": True,
    }
    _, stream = send(provider, chat(fake, body))
    assert stream is not None
    chunks = payloads(stream)
    assert all("usage" not in c for c in chunks)
    assert [c["choices"][0] for c in chunks] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        },
        {
            "index": 0,
            "delta": {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    }
                ]
            },
            "logprobs": None,
            "finish_reason": None,
        },
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"},
    ]


def test_error_mid_stream_ends_the_stream(fake: FakeGemini, provider: GoogleProvider) -> None:
    error = {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}
    fake.script(Reply.text("Hello there", stream_error=error))
    body = {"messages": [{"role": "user", "content": "Hi"}], "stream": True}
    _, stream = send(provider, chat(fake, body))
    assert stream is not None and DONE not in stream
    assert payloads(stream)[-1] == {
        "error": {
            "message": "The model is overloaded.",
            "type": "server_error",
            "param": None,
            "code": "UNAVAILABLE",
        }
    }


def test_rate_limit_gets_retry_after_from_retry_info(
    fake: FakeGemini, provider: GoogleProvider
) -> None:
    for stream in (False, True):
        fake.script(Reply.failure(429, "Quota exceeded", retry_delay="6.2s"))
        body = {"messages": [{"role": "user", "content": "Hi"}], "stream": stream}
        response, events = send(provider, chat(fake, body))
        assert (response.status, events, response.headers["retry-after"]) == (429, None, "7")
        assert response.json() == {
            "error": {
                "message": "Quota exceeded",
                "type": "rate_limit_error",
                "param": None,
                "code": "RESOURCE_EXHAUSTED",
            }
        }


@pytest.mark.parametrize(
    ("api_key", "status", "kind"),
    [("AIza-wrong-secret", 400, "authentication_error"), (None, 403, "permission_error")],
)
def test_bad_or_missing_key(
    fake: FakeGemini, provider: GoogleProvider, api_key: str | None, status: int, kind: str
) -> None:
    request = chat(fake, {"messages": [{"role": "user", "content": "Hi"}]})
    request.api_key = api_key
    response, _ = send(provider, request)
    assert (response.status, response.json()["error"]["type"]) == (status, kind)
    assert b"AIza-wrong-secret" not in response.body


def test_server_errors_keep_their_status(fake: FakeGemini, provider: GoogleProvider) -> None:
    fake.script(Reply.failure(500, "Internal error encountered."))
    response, _ = send(provider, chat(fake, {"messages": [{"role": "user", "content": "Hi"}]}))
    assert response.status == 500
    assert response.json() == {
        "error": {
            "message": "Internal error encountered.",
            "type": "server_error",
            "param": None,
            "code": "INTERNAL",
        }
    }


def test_blocked_prompt(fake: FakeGemini, provider: GoogleProvider) -> None:
    fake.script(Reply.blocked("PROHIBITED_CONTENT"))
    response, _ = send(provider, chat(fake, {"messages": [{"role": "user", "content": "..."}]}))
    assert response.json()["choices"][0]["finish_reason"] == "content_filter"


def test_embeddings(fake: FakeGemini, provider: GoogleProvider) -> None:
    model = "gemini-embedding-001"
    single = UpstreamRequest(
        endpoint=EMBEDDINGS,
        body={"model": model, "input": "hello", "dimensions": 4},
        api_key=API_KEY,
        base_url=fake.url,
    )
    response, _ = send(provider, single)
    assert response.json() == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": fake_vector("hello", 4)}],
        "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
    batch = UpstreamRequest(
        endpoint=EMBEDDINGS,
        body={"model": model, "input": ["a", "b"], "encoding_format": "base64"},
        api_key=API_KEY,
        base_url=fake.url,
    )
    response, _ = send(provider, batch)
    vectors = [
        list(struct.unpack("<8f", base64.b64decode(item["embedding"])))
        for item in response.json()["data"]
    ]
    as_float32 = [list(struct.unpack("<8f", struct.pack("<8f", *fake_vector(t)))) for t in "ab"]
    assert vectors == as_float32
    assert [r.path for r in fake.requests] == [
        f"/v1beta/models/{model}:embedContent",
        f"/v1beta/models/{model}:batchEmbedContents",
    ]


def test_untranslatable_request_is_a_400_without_calling_upstream(
    fake: FakeGemini, provider: GoogleProvider
) -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "audio_url"}]}]}
    response, _ = send(provider, chat(fake, body))
    assert (response.status, fake.requests) == (400, [])
    assert response.json()["error"] == {
        "message": "content part type 'audio_url' is not supported by provider google",
        "type": "invalid_request_error",
        "param": "messages[0].content[0]",
        "code": None,
    }


def test_other_endpoints_are_not_supported(fake: FakeGemini, provider: GoogleProvider) -> None:
    request = UpstreamRequest(endpoint=COMPLETIONS, body={"model": MODEL, "prompt": "x"})
    response, _ = send(provider, request)
    assert (response.status, fake.requests) == (400, [])
    assert response.json()["error"]["message"] == "endpoint not supported by provider google"


def test_timeout_is_408(fake: FakeGemini, provider: GoogleProvider) -> None:
    fake.script(Reply.text("late", delay_s=5))
    request = chat(fake, {"messages": [{"role": "user", "content": "Hi"}]}, timeout_s=0.2)
    with pytest.raises(UpstreamError) as caught:
        send(provider, request)
    assert (caught.value.status, caught.value.code) == (408, "timeout")


def test_unreachable_upstream_is_502(provider: GoogleProvider) -> None:
    with FakeGemini() as gone:
        url = gone.url  # a port that was just freed: nothing listens there now
    request = UpstreamRequest(
        endpoint=CHAT,
        body={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
        api_key=API_KEY,
        base_url=url,
    )
    with pytest.raises(UpstreamError) as caught:
        send(provider, request)
    assert (caught.value.status, caught.value.code) == (502, "upstream_unreachable")
    assert API_KEY not in caught.value.message


def test_sse_framing_split_anywhere_decodes_the_same() -> None:
    # Gemini ends events with "\r\n\r\n"; the network may cut between any two bytes.
    wire = b'data: {"a":1}\r\n\r\n: comment\r\ndata: {"b":\r\ndata: 2}\r\n\r\ndata: last'
    expected = [SSEEvent(None, '{"a":1}'), SSEEvent(None, '{"b":\n2}'), SSEEvent(None, "last")]
    whole = SSEDecoder()
    assert whole.feed(wire) + whole.close() == expected
    bytewise = SSEDecoder()
    events = [e for i in range(len(wire)) for e in bytewise.feed(wire[i : i + 1])]
    assert events + bytewise.close() == expected


# -- through the gateway, with the official openai client ----------------------------------


@pytest.fixture
def client(gw: RunningGateway, fake: FakeGemini) -> openai.OpenAI:
    headers = {"x-traceway-provider": "google", "x-traceway-custom-host": fake.url}
    return gw.client(api_key=API_KEY, default_headers=headers)


def test_openai_client_streams_a_function_call(client: openai.OpenAI, fake: FakeGemini) -> None:
    fake.script(Reply.function_call("get_weather", {"city": "Oslo"}))
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert [(c.index, c.function.name, c.function.arguments) for c in calls] == [
        (0, "get_weather", '{"city":"Oslo"}')
    ]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 13


def test_openai_client_embeddings(client: openai.OpenAI, fake: FakeGemini) -> None:
    # The openai client asks for base64 and decodes it: floats survive as float32.
    result = client.embeddings.create(model="gemini-embedding-001", input=["a", "b"])
    as_float32 = [list(struct.unpack("<8f", struct.pack("<8f", *fake_vector(t)))) for t in "ab"]
    assert [item.embedding for item in result.data] == as_float32
    assert fake.requests[0].path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"


def test_openai_client_sees_rate_limits_with_retry_after(
    client: openai.OpenAI, fake: FakeGemini
) -> None:
    fake.script(Reply.failure(429, "Quota exceeded", retry_delay="3s"))
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.body == {
        "message": "Quota exceeded",
        "type": "rate_limit_error",
        "param": None,
        "code": "RESOURCE_EXHAUSTED",
    }
