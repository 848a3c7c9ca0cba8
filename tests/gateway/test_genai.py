"""GenAI attributes read from answers of every endpoint."""

from __future__ import annotations

import orjson

from traceway.gateway.genai import error_message, parse_body, response_attributes


def test_chat_answer() -> None:
    answer = {
        "id": "c1",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"finish_reason": "stop"}, {"finish_reason": "length"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
    }
    assert response_attributes(answer) == {
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.response.finish_reasons": ["stop", "length"],
    }


def test_responses_answer_and_junk() -> None:
    answer = {
        "id": "r1",
        "object": "response",
        "status": "completed",
        "model": "o3",
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
    assert response_attributes(answer) == {
        "gen_ai.response.model": "o3",
        "gen_ai.usage.input_tokens": 3,
        "gen_ai.usage.output_tokens": 4,
        "gen_ai.response.finish_reasons": ["completed"],
    }
    assert response_attributes([1, 2]) == {}
    assert response_attributes({"usage": "lots"}) == {}


def test_large_bodies_are_read_from_their_usage_tail() -> None:
    vector = [0.123456789] * 20_000
    body = orjson.dumps(
        {
            "object": "list",
            "data": [{"embedding": vector}],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 7, "total_tokens": 7},
        }
    )
    assert len(body) > 64 * 1024
    assert parse_body(body) == {"usage": {"prompt_tokens": 7, "total_tokens": 7}}
    assert parse_body(b"") is None
    assert parse_body(b"not json") is None


def test_error_message() -> None:
    body = {"error": {"message": "Rate limit reached", "type": "requests"}}
    assert error_message(body, 429) == "HTTP 429: Rate limit reached"
    assert error_message(None, 502) == "HTTP 502"
