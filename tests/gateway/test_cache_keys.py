"""Which requests the cache treats as the same request."""

from __future__ import annotations

from typing import Any

from traceway.gateway._cache_keys import request_key, semantic_parts
from traceway.gateway.providers.base import CHAT, COMPLETIONS, EMBEDDINGS

BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "temperature": 0.2,
    "response_format": {"type": "json_object", "schema": {"b": 1, "a": 2}},
}


def test_key_ignores_key_order_at_every_depth() -> None:
    shuffled = {
        "response_format": {"schema": {"a": 2, "b": 1}, "type": "json_object"},
        "temperature": 0.2,
        "messages": [
            {"content": "Be brief.", "role": "system"},
            {"content": "What is the capital of France?", "role": "user"},
        ],
        "model": "gpt-4o-mini",
    }
    assert request_key(CHAT, shuffled) == request_key(CHAT, BODY)


def test_key_ignores_fields_that_do_not_change_the_answer() -> None:
    noisy = {
        **BODY,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "alice",
        "metadata": {"request": "r-1"},
        "request_id": "r-1",
        "store": True,
    }
    assert request_key(CHAT, noisy) == request_key(CHAT, BODY)


def test_key_changes_with_what_changes_the_answer() -> None:
    base = request_key(CHAT, BODY)
    variants = [
        {**BODY, "temperature": 0.3},
        {**BODY, "model": "gpt-4o"},
        {**BODY, "seed": 7},
        {**BODY, "messages": [*BODY["messages"], {"role": "user", "content": "And Spain?"}]},
    ]
    keys = {request_key(CHAT, variant) for variant in variants}
    assert len(keys) == len(variants) and base not in keys


def test_key_is_scoped_by_endpoint_and_namespace() -> None:
    body = {"model": "m", "input": "hello"}
    keys = {
        request_key(EMBEDDINGS, body),
        request_key(COMPLETIONS, body),
        request_key(EMBEDDINGS, body, namespace="tenant-a"),
        request_key(EMBEDDINGS, body, namespace="tenant-b"),
    }
    assert len(keys) == 4


def test_semantic_parts_take_out_the_last_user_message() -> None:
    parts = semantic_parts(CHAT, BODY)
    assert parts is not None
    bucket, text = parts
    assert text == "What is the capital of France?"
    paraphrase = {
        **BODY,
        "stream": True,
        "messages": [BODY["messages"][0], {"role": "user", "content": "Capital city of France?"}],
    }
    assert semantic_parts(CHAT, paraphrase) == (bucket, "Capital city of France?")
    # Another model, other parameters or another system prompt: another bucket.
    others = [
        {**BODY, "model": "gpt-4o"},
        {**BODY, "temperature": 1.0},
        {**BODY, "messages": [{"role": "system", "content": "Be long."}, BODY["messages"][1]]},
    ]
    assert all(semantic_parts(CHAT, other)[0] != bucket for other in others)  # type: ignore[index]


def test_semantic_parts_of_text_parts_prompts_and_unsupported_requests() -> None:
    parts_body = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }
    image_body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
        ],
    }
    results = {
        "text parts": semantic_parts(CHAT, parts_body),
        "image": semantic_parts(CHAT, image_body),
        "no user message": semantic_parts(
            CHAT, {"model": "m", "messages": [{"role": "system", "content": "x"}]}
        ),
        "prompt": semantic_parts(COMPLETIONS, {"model": "m", "prompt": "Once upon"}),
        "embeddings": semantic_parts(EMBEDDINGS, {"model": "m", "input": "x"}),
    }
    assert {name: r and r[1] for name, r in results.items()} == {
        "text parts": "Hi",
        "image": None,
        "no user message": None,
        "prompt": "Once upon",
        "embeddings": None,
    }
