"""Each tracing convention lands on the same stored fields."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traceway.server.conventions import REDACTED, span_record
from traceway.store.records import SpanRecord

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"
PARENT_ID = "00f067aa0ba902b7"


def record(attributes: dict[str, Any], **overrides: Any) -> SpanRecord:
    pieces: dict[str, Any] = {
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "parent_span_id": PARENT_ID,
        "name": "step",
        "start_time_ns": 1_000,
        "end_time_ns": 2_000,
        "status_code": 0,
        "status_message": "",
        "attributes": attributes,
        "events": [],
    }
    pieces.update(overrides)
    return span_record(**pieces)


def expected(**fields: Any) -> SpanRecord:
    base: dict[str, Any] = {
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "parent_span_id": PARENT_ID,
        "name": "step",
        "span_type": "UNKNOWN",
        "start_time_ns": 1_000,
        "end_time_ns": 2_000,
    }
    base.update(fields)
    return SpanRecord(**base)


def test_traceway_attributes() -> None:
    attributes = {
        "traceway.span.type": "CHAT_MODEL",
        "traceway.span.inputs": '{"messages": [{"role": "user", "content": "hi"}]}',
        "traceway.span.outputs": '"hello"',
        "traceway.cost.usd": 0.0025,
        "traceway.trace.tags": '{"env": "prod", "attempt": 2}',
        "traceway.trace.metadata": '{"session_id": "s-1", "user_id": "u-1"}',
        "traceway.trace.request_preview": "hi",
        "traceway.trace.response_preview": "hello",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 3,
        "gen_ai.response.finish_reasons": ["stop"],
    }
    assert record(attributes, status_code=1) == expected(
        span_type="CHAT_MODEL",
        status="OK",
        attributes={
            "traceway.span.type": "CHAT_MODEL",
            "traceway.cost.usd": 0.0025,
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 3,
            "gen_ai.response.finish_reasons": ["stop"],
        },
        inputs='{"messages": [{"role": "user", "content": "hi"}]}',
        outputs='"hello"',
        model="gpt-4o-mini-2024-07-18",
        provider="openai",
        input_tokens=12,
        output_tokens=3,
        total_tokens=15,
        cost_usd=0.0025,
        trace_tags={"env": "prod", "attempt": "2"},
        trace_metadata={"session_id": "s-1", "user_id": "u-1"},
        request_preview="hi",
        response_preview="hello",
    )


def test_mlflow_attributes() -> None:
    attributes = {
        "mlflow.spanType": json.dumps("CHAT_MODEL"),
        "mlflow.spanInputs": json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
        "mlflow.spanOutputs": json.dumps({"choices": [{"message": {"content": "hello"}}]}),
        "mlflow.chat.tokenUsage": json.dumps(
            {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
        ),
        "mlflow.traceRequestId": json.dumps("tr-1"),
        "mlflow.trace.session": json.dumps("session-9"),
        "mlflow.trace.user": "alice",
    }
    assert record(attributes) == expected(
        span_type="CHAT_MODEL",
        attributes={
            "mlflow.spanType": '"CHAT_MODEL"',
            "mlflow.chat.tokenUsage": attributes["mlflow.chat.tokenUsage"],
            "mlflow.traceRequestId": '"tr-1"',
            "mlflow.trace.session": '"session-9"',
            "mlflow.trace.user": "alice",
        },
        inputs=attributes["mlflow.spanInputs"],
        outputs=attributes["mlflow.spanOutputs"],
        input_tokens=3,
        output_tokens=2,
        total_tokens=5,
        trace_metadata={"session_id": "session-9", "user_id": "alice"},
    )


def test_openinference_attributes() -> None:
    attributes = {
        "openinference.span.kind": "LLM",
        "input.value": '{"prompt": "2+2?"}',
        "input.mime_type": "application/json",
        "output.value": "4",
        "llm.token_count.prompt": 7,
        "llm.token_count.completion": 1,
        "llm.token_count.total": 9,
        "llm.model_name": "claude-3-5-haiku",
        "llm.provider": "anthropic",
        "gen_ai.request.model": "ignored-when-openinference-names-it",
    }
    assert record(attributes) == expected(
        span_type="LLM",
        attributes={
            "openinference.span.kind": "LLM",
            "input.mime_type": "application/json",
            "llm.token_count.prompt": 7,
            "llm.token_count.completion": 1,
            "llm.token_count.total": 9,
            "llm.model_name": "claude-3-5-haiku",
            "llm.provider": "anthropic",
            "gen_ai.request.model": "ignored-when-openinference-names-it",
        },
        inputs='{"prompt": "2+2?"}',
        outputs='"4"',
        model="claude-3-5-haiku",
        provider="anthropic",
        input_tokens=7,
        output_tokens=1,
        total_tokens=9,
    )


@pytest.mark.parametrize(
    ("value", "mime_type", "stored"),
    [
        ("plain words", None, '"plain words"'),
        ("4", None, '"4"'),
        ('{"a": 1}', None, '{"a": 1}'),
        (" [1, 2]", None, " [1, 2]"),
        ("{not json", None, '"{not json"'),
        ('{"a": 1}', "text/plain", '"{\\"a\\": 1}"'),
        ("4", "application/json", "4"),
        ("oops", "application/json", '"oops"'),
    ],
)
def test_openinference_values_are_json_or_text(
    value: str, mime_type: str | None, stored: str
) -> None:
    attributes = {"openinference.span.kind": "CHAIN", "input.value": value}
    if mime_type is not None:
        attributes["input.mime_type"] = mime_type
    assert record(attributes).inputs == stored


@pytest.mark.parametrize(
    ("kind", "span_type"),
    [
        ("LLM", "LLM"),
        ("CHAIN", "CHAIN"),
        ("TOOL", "TOOL"),
        ("AGENT", "AGENT"),
        ("RETRIEVER", "RETRIEVER"),
        ("EMBEDDING", "EMBEDDING"),
        ("RERANKER", "RERANKER"),
        ("GUARDRAIL", "GUARDRAIL"),
        ("EVALUATOR", "CHAIN"),
        ("PROMPT", "CHAIN"),
        ("retriever", "RETRIEVER"),
        ("SOMETHING_NEW", "UNKNOWN"),
    ],
)
def test_openinference_span_kinds(kind: str, span_type: str) -> None:
    assert record({"openinference.span.kind": kind}).span_type == span_type


def test_genai_attributes() -> None:
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": "claude-3-5-haiku",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 4,
        "server.address": "api.anthropic.com",
    }
    assert record(attributes, status_code=2, status_message="overloaded") == expected(
        span_type="CHAT_MODEL",
        status="ERROR",
        status_message="overloaded",
        attributes=attributes,
        model="claude-3-5-haiku",
        provider="anthropic",
        input_tokens=10,
        output_tokens=4,
        total_tokens=14,
    )


def test_genai_older_usage_names_and_provider_preference() -> None:
    attributes = {
        "gen_ai.system": "openai",
        "gen_ai.provider.name": "azure.ai.openai",
        "gen_ai.usage.prompt_tokens": "21",
        "gen_ai.usage.completion_tokens": 5.0,
    }
    assert record(attributes) == expected(
        attributes=attributes,
        provider="azure.ai.openai",
        input_tokens=21,
        output_tokens=5,
        total_tokens=26,
    )


@pytest.mark.parametrize(
    ("operation", "span_type"),
    [
        ("chat", "CHAT_MODEL"),
        ("text_completion", "LLM"),
        ("generate_content", "LLM"),
        ("embeddings", "EMBEDDING"),
        ("execute_tool", "TOOL"),
        ("invoke_agent", "AGENT"),
        ("create_agent", "AGENT"),
        ("rerank", "UNKNOWN"),
    ],
)
def test_genai_operations(operation: str, span_type: str) -> None:
    assert record({"gen_ai.operation.name": operation}).span_type == span_type


def test_span_type_priority() -> None:
    everything = {
        "traceway.span.type": "AGENT",
        "mlflow.spanType": '"TOOL"',
        "openinference.span.kind": "RETRIEVER",
        "gen_ai.operation.name": "chat",
    }
    order = ["traceway.span.type", "mlflow.spanType", "openinference.span.kind"]
    types = []
    for dropped in range(len(order) + 1):
        attributes = {k: v for k, v in everything.items() if k not in order[:dropped]}
        types.append(record(attributes).span_type)
    assert types == ["AGENT", "TOOL", "RETRIEVER", "CHAT_MODEL"]


def test_explicit_unknown_lets_a_later_convention_decide() -> None:
    attributes = {"traceway.span.type": "UNKNOWN", "gen_ai.operation.name": "embeddings"}
    assert record(attributes).span_type == "EMBEDDING"


def test_payload_priority_and_every_payload_attribute_dropped() -> None:
    attributes = {
        "traceway.span.inputs": '{"from": "traceway"}',
        "mlflow.spanInputs": '{"from": "mlflow"}',
        "input.value": '{"from": "openinference"}',
        "mlflow.spanOutputs": '{"from": "mlflow"}',
        "output.value": "from openinference",
    }
    assert record(attributes) == expected(
        inputs='{"from": "traceway"}', outputs='{"from": "mlflow"}'
    )


def test_token_priority_and_totals() -> None:
    mlflow_and_genai = {
        "mlflow.chat.tokenUsage": '{"input_tokens": 1, "output_tokens": 2}',
        "llm.token_count.prompt": 10,
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 200,
    }
    only_output = {"gen_ai.usage.output_tokens": 8}
    totals = [
        (r.input_tokens, r.output_tokens, r.total_tokens)
        for r in (record(mlflow_and_genai), record(only_output), record({}))
    ]
    assert totals == [(1, 2, 3), (None, 8, 8), (None, None, None)]


def test_odd_values_degrade_instead_of_raising() -> None:
    attributes: dict[str, Any] = {
        "traceway.span.type": 7,
        "traceway.span.inputs": "{not json",
        "traceway.span.outputs": ["a", 1],
        "traceway.cost.usd": "NaN",
        "traceway.trace.tags": "[1, 2]",
        "traceway.trace.metadata": "{broken",
        "traceway.trace.request_preview": 42,
        "mlflow.spanType": '"NOT_A_TYPE',
        "mlflow.chat.tokenUsage": '{"input_tokens": "many"}',
        "mlflow.trace.session": {"nested": True},
        "llm.token_count.prompt": -3,
        "llm.token_count.total": True,
        "gen_ai.usage.input_tokens": "12abc",
        "gen_ai.usage.output_tokens": 10**30,
        "gen_ai.usage.total_tokens": "9" * 5000,
        "gen_ai.response.model": 3.5,
        "gen_ai.request.model": "",
        "gen_ai.operation.name": None,
    }
    kept = {
        key: value
        for key, value in attributes.items()
        if not key.startswith(("traceway.span.inputs", "traceway.span.outputs", "traceway.trace"))
    }
    assert record(attributes) == expected(
        attributes=kept,
        inputs='"{not json"',
        outputs='["a",1]',
        trace_metadata={"session_id": '{"nested":true}'},
        request_preview="42",
    )


def test_trace_tags_accept_a_mapping_and_coerce_values() -> None:
    tags = {"n": 1, "ok": True, "none": None, "list": [1, "a"], "s": "x"}
    assert record({"traceway.trace.tags": tags}).trace_tags == {
        "n": "1",
        "ok": "true",
        "none": "null",
        "list": '[1,"a"]',
        "s": "x",
    }


def test_explicit_metadata_wins_over_mlflow_session() -> None:
    attributes = {
        "traceway.trace.metadata": '{"session_id": "mine"}',
        "mlflow.trace.session": "theirs",
        "mlflow.trace.user": "",
    }
    assert record(attributes).trace_metadata == {"session_id": "mine"}


@pytest.mark.parametrize(("code", "status"), [(0, "UNSET"), (1, "OK"), (2, "ERROR"), (9, "UNSET")])
def test_status_codes(code: int, status: str) -> None:
    assert record({}, status_code=code).status == status


def test_secrets_are_redacted() -> None:
    attributes: dict[str, Any] = {
        "http.request.header.authorization": ["Bearer sk-live-1"],
        "Proxy-Authorization": "Basic abc",
        "openai.api_key": "sk-live-2",
        "x-api-key": "k3",
        "client.API-KEY": "k4",
        "db.password": "hunter2",
        "oauth.client_secret": "s5",
        "github.TOKEN": "ghp_6",
        "refresh_token": "r7",
        "gen_ai.usage.input_tokens": 5,
        "llm.token_count.prompt": 6,
        "gen_ai.request.max_tokens": 100,
        "llm.invocation_parameters.max_token": 50,
        "tokenizer": "cl100k",
        "headers": {"Authorization": "Bearer sk-live-8", "accept": "json", "inner": {"token": "t"}},
    }
    assert record(attributes).attributes == {
        "http.request.header.authorization": REDACTED,
        "Proxy-Authorization": REDACTED,
        "openai.api_key": REDACTED,
        "x-api-key": REDACTED,
        "client.API-KEY": REDACTED,
        "db.password": REDACTED,
        "oauth.client_secret": REDACTED,
        "github.TOKEN": REDACTED,
        "refresh_token": REDACTED,
        "gen_ai.usage.input_tokens": 5,
        "llm.token_count.prompt": 6,
        "gen_ai.request.max_tokens": 100,
        "llm.invocation_parameters.max_token": 50,
        "tokenizer": "cl100k",
        "headers": {"Authorization": REDACTED, "accept": "json", "inner": {"token": REDACTED}},
    }


def test_trace_tags_and_metadata_are_redacted_too() -> None:
    attributes = {
        "traceway.trace.tags": '{"deploy_token": "t", "env": "prod"}',
        "traceway.trace.metadata": '{"user_id": "u", "Stripe-Api-Key": "k"}',
    }
    result = record(attributes)
    assert (result.trace_tags, result.trace_metadata) == (
        {"deploy_token": REDACTED, "env": "prod"},
        {"user_id": "u", "Stripe-Api-Key": REDACTED},
    )


def test_event_attributes_are_redacted_too() -> None:
    events = [
        {"name": "retry", "time_unix_nano": 1_500, "attributes": {"api_key": "k", "n": 2}},
        {"name": "plain", "time_unix_nano": 1_600, "attributes": {}},
    ]
    assert record({}, events=events).events == [
        {"name": "retry", "time_unix_nano": 1_500, "attributes": {"api_key": REDACTED, "n": 2}},
        {"name": "plain", "time_unix_nano": 1_600, "attributes": {}},
    ]


def test_inputs_are_not_modified() -> None:
    attributes = {"traceway.span.inputs": "{}", "password": "p", "h": {"token": "t"}}
    events = [{"name": "e", "time_unix_nano": 1, "attributes": {"secret": "s"}}]
    before = copy.deepcopy((attributes, events))
    record(attributes, events=events)
    assert (attributes, events) == before


_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_keys = st.sampled_from(
    [
        "traceway.span.type",
        "traceway.span.inputs",
        "traceway.cost.usd",
        "traceway.trace.tags",
        "traceway.trace.metadata",
        "traceway.trace.request_preview",
        "mlflow.spanType",
        "mlflow.spanOutputs",
        "mlflow.chat.tokenUsage",
        "mlflow.trace.session",
        "openinference.span.kind",
        "input.value",
        "input.mime_type",
        "llm.token_count.total",
        "llm.model_name",
        "gen_ai.operation.name",
        "gen_ai.usage.input_tokens",
        "gen_ai.provider.name",
        "api_key",
    ]
) | st.text(max_size=12)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(attributes=st.dictionaries(_keys, _values | st.text(max_size=30), max_size=8))
def test_any_attribute_values_give_a_record(attributes: dict[str, Any]) -> None:
    result = record(attributes)
    assert result.span_type in {
        "LLM",
        "CHAT_MODEL",
        "CHAIN",
        "AGENT",
        "TOOL",
        "RETRIEVER",
        "EMBEDDING",
        "RERANKER",
        "PARSER",
        "MEMORY",
        "GUARDRAIL",
        "CACHE",
        "GATEWAY",
        "UNKNOWN",
    }
    for text in (result.inputs, result.outputs):
        if text is not None:
            json.loads(text)
    assert all(isinstance(v, str) for v in {**result.trace_tags, **result.trace_metadata}.values())
