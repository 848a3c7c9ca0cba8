"""Autolog's spans as the exporter receives them: ids 1, 2, 3..., a clock ticking
1000 ns per reading, and the fake OpenAI upstream, so whole spans can be compared."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

import traceway
from tests.gateway.fakes.openai_server import FakeOpenAI
from traceway.integrations._openai_aggregate import aggregate
from traceway.integrations._openai_attributes import CHAT
from traceway.tracing import config
from traceway.tracing.span import FinishedSpan, SpanEvent
from traceway.tracing.testing import FakeClock, IncrementalIdGenerator, InMemoryExporter

QUESTION = [{"role": "user", "content": "hi"}]


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[FinishedSpan]]]:
    """Autolog on, the global SDK exporting to memory; returns a flush-and-read function."""
    for name in ("TRACEWAY_TRACKING_URI", "TRACEWAY_EXPERIMENT", "TRACEWAY_SAMPLING_RATIO"):
        monkeypatch.delenv(name, raising=False)
    config.reset()
    memory = InMemoryExporter()
    traceway.configure(exporter=memory, id_generator=IncrementalIdGenerator(), clock=FakeClock())
    traceway.openai.autolog()

    def read() -> list[FinishedSpan]:
        assert traceway.flush(timeout=5)
        return list(memory.spans)

    yield read
    traceway.openai.autolog(disable=True)
    config.reset()


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as upstream:
        yield upstream


def test_stream_span_whole(exported: Callable[[], list[FinishedSpan]], fake: FakeOpenAI) -> None:
    with openai.OpenAI(base_url=fake.url, api_key="sk-x", max_retries=0) as client:
        stream = client.chat.completions.create(model="gpt-4o", messages=QUESTION, stream=True)
        chunks = list(stream)

    assert len(chunks) == 5  # role, three words, finish reason
    port = int(fake.url.split(":")[2].split("/")[0])
    # Clock readings: span start 1000, stream handed over 2000, one per chunk from
    # 3000 (the first word at 4000), span end 8000.
    assert exported() == [
        FinishedSpan(
            trace_id=f"{1:032x}",
            span_id=f"{1:016x}",
            parent_span_id=None,
            name="chat.completions.create",
            span_type="CHAT_MODEL",
            start_time_ns=1000,
            end_time_ns=8000,
            status="OK",
            attributes={
                "gen_ai.provider.name": "openai",
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "traceway.llm.stream": True,
                "server.address": "127.0.0.1",
                "server.port": port,
                "gen_ai.response.model": "gpt-4o",
                "gen_ai.response.id": "chatcmpl-fake",
                "gen_ai.response.finish_reasons": ["stop"],
                "traceway.llm.stream_chunks": 5,
                "traceway.llm.time_to_first_token_ms": 0.003,
            },
            events=[SpanEvent("first_token", 4000)],
            inputs='{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}',
            outputs=(
                '{"object":"chat.completion","id":"chatcmpl-fake","created":1700000000,'
                '"model":"gpt-4o","system_fingerprint":"fp_fake","choices":[{"index":0,'
                '"message":{"role":"assistant","content":"Hello from upstream"},'
                '"finish_reason":"stop"}]}'
            ),
        )
    ]
    assert fake.requests[0].headers["traceparent"] == f"00-{1:032x}-{1:016x}-01"


def test_sampled_out_call_still_propagates_the_decision(
    exported: Callable[[], list[FinishedSpan]], fake: FakeOpenAI
) -> None:
    traceway.configure(sampling_ratio=0.0)
    with openai.OpenAI(base_url=fake.url, api_key="sk-x", max_retries=0) as client:
        for _ in client.chat.completions.create(model="gpt-4o", messages=QUESTION, stream=True):
            pass
        client.embeddings.create(model="text-embedding-3-small", input="a")

    assert exported() == []
    flags = [r.headers["traceparent"].rsplit("-", 1)[1] for r in fake.requests]
    assert flags == ["00", "00"]


def test_azure_client_names_its_provider(
    exported: Callable[[], list[FinishedSpan]], fake: FakeOpenAI
) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=fake.host, api_key="azure-key", api_version="2024-10-21", max_retries=0
    ) as client:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)

    [span] = exported()
    assert span.attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert "azure-key" not in repr(span)
    assert fake.requests[0].path == "/openai/deployments/gpt-4o/chat/completions"


def chunk(choices: list[dict[str, object]], **fields: object) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": choices,
            **fields,
        }
    )


def test_aggregate_chat_interleaved_choices_tool_calls_and_refusal() -> None:
    def call(index: int, **function: str) -> dict[str, object]:
        return {"index": index, "function": function}

    chunks = [
        chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}]),
        chunk([{"index": 1, "delta": {"role": "assistant", "refusal": "I can"}}]),
        chunk(
            [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"id": "a", "type": "function", **call(0, name="f", arguments="")},
                            {"id": "b", "type": "function", **call(1, name="g", arguments='{"y"')},
                        ]
                    },
                }
            ]
        ),
        chunk([{"index": 1, "delta": {"refusal": "not."}, "finish_reason": "stop"}]),
        chunk([{"index": 0, "delta": {"tool_calls": [call(0, arguments='{"x":1}')]}}]),
        chunk([{"index": 0, "delta": {"tool_calls": [call(1, arguments=":2}")]}}]),
        chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
        chunk([], usage={"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}),
    ]

    assert aggregate(CHAT, chunks) == (
        {
            "object": "chat.completion",
            "id": "c1",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "a",
                                "type": "function",
                                "function": {"name": "f", "arguments": '{"x":1}'},
                            },
                            {
                                "id": "b",
                                "type": "function",
                                "function": {"name": "g", "arguments": '{"y":2}'},
                            },
                        ],
                    },
                    "finish_reason": "tool_calls",
                },
                {
                    "index": 1,
                    "message": {"role": "assistant", "content": None, "refusal": "I cannot."},
                    "finish_reason": "stop",
                },
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        },
        None,
    )


def test_aggregate_chat_legacy_function_call() -> None:
    chunks = [
        chunk([{"index": 0, "delta": {"function_call": {"name": "lookup", "arguments": ""}}}]),
        chunk([{"index": 0, "delta": {"function_call": {"arguments": '{"q":"x"}'}}}]),
        chunk([{"index": 0, "delta": {}, "finish_reason": "function_call"}]),
    ]

    output, _ = aggregate(CHAT, chunks)

    assert output["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "lookup", "arguments": '{"q":"x"}'},
            },
            "finish_reason": "function_call",
        }
    ]


def test_import_traceway_does_not_import_openai() -> None:
    code = (
        "import sys, traceway\n"
        "before = 'openai' in sys.modules\n"
        "traceway.openai.autolog()\n"
        "print(before, 'openai' in sys.modules, traceway.openai.SUPPORTED_OPENAI)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["False", "True", ">=1.40,<4"]


def test_streaming_response_calls_are_traced_without_outputs(
    exported: Callable[[], list[FinishedSpan]], fake: FakeOpenAI
) -> None:
    with (
        openai.OpenAI(base_url=fake.url, api_key="sk-x", max_retries=0) as client,
        client.chat.completions.with_streaming_response.create(
            model="gpt-4o", messages=QUESTION
        ) as response,
    ):
        # The application reads the body itself, after the traced call returned.
        assert response.parse().choices[0].message.content == "Hello from upstream"

    [span] = exported()
    assert (span.name, span.status, span.outputs) == ("chat.completions.create", "OK", None)
    assert span.inputs == '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
