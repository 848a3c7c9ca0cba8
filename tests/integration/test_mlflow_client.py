"""The ``mlflow`` client (``mlflow-tracing`` 3.17) against a real ``traceway server``.

The code under test is the pattern MLflow + Portkey users run today, unchanged but
for two URLs: the tracking URI and the OpenAI client's ``base_url``.  Whatever the
client records must be found through Traceway's REST API and web UI, and through
the client's own read API.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mlflow
import openai
import pytest
from mlflow.entities import SpanType
from openai import OpenAI

from tests.support.live_server import RunningServer


@dataclass
class Seed:
    server: RunningServer
    experiment: str
    experiment_id: str
    client: OpenAI


@pytest.fixture
def seed(server: RunningServer, experiment: str) -> Iterator[Seed]:
    """The seed's setup, pointed at the test server."""
    mlflow.openai.autolog()
    mlflow.set_tracking_uri(server.url)
    created = mlflow.set_experiment(experiment)
    client = OpenAI(
        api_key="unused",
        base_url=f"{server.url}/v1",
        default_headers={"x-portkey-provider": "mock"},
    )
    try:
        yield Seed(server, experiment, created.experiment_id, client)
    finally:
        client.close()
        mlflow.openai.autolog(disable=True)
        # set_experiment exports the id for child processes; keep it out of later tests.
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


def flush(server: RunningServer) -> None:
    """Wait until the client and the gateway have sent everything they recorded."""
    mlflow.flush_trace_async_logging()
    assert server.traceway.gateway is not None
    assert server.traceway.gateway.tracer.force_flush(10)


def stored_trace(server: RunningServer, trace_id: str) -> dict[str, Any]:
    """The trace as Traceway's REST API returns it, asked for by MLflow's ``tr-`` id."""
    response = server.get(f"/api/traces/{trace_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def tree(trace: dict[str, Any]) -> list[tuple[int, str, str, str]]:
    """(depth, span type, name, status) of every span, depth first in start order."""
    spans = trace["spans"]
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        children.setdefault(span["parent_span_id"], []).append(span)
    rows: list[tuple[int, str, str, str]] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            rows.append((depth, span["span_type"], span["name"], span["status"]))
            walk(span["span_id"], depth + 1)

    walk(None, 0)
    assert len(rows) == len(spans), "every span hangs off the root"
    return rows


def test_seed_pattern(seed: Seed) -> None:
    @mlflow.trace(span_type=SpanType.CHAIN)
    def answer(question: str) -> str:
        response = seed.client.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": question}]
        )
        return response.choices[0].message.content or ""

    answered = answer("What does Traceway do?")
    chain_id = mlflow.get_last_active_trace_id()
    stream = seed.client.chat.completions.create(
        model="mock", messages=[{"role": "user", "content": "Stream it"}], stream=True
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    stream_id = mlflow.get_last_active_trace_id()
    assert chain_id is not None and stream_id is not None
    assert chain_id.startswith("tr-") and chain_id != stream_id

    flush(seed.server)
    chain = stored_trace(seed.server, chain_id)
    # The openai autolog of mlflow 3.17 sends a traceparent, so the gateway's spans of
    # the call join the client's trace under its CHAT_MODEL span.
    gateway_span = next(span for span in chain["spans"] if span["span_type"] == "GATEWAY")
    attempt = next(s for s in chain["spans"] if s["parent_span_id"] == gateway_span["span_id"])
    assert tree(chain) == [
        (0, "CHAIN", "answer", "OK"),
        (1, "CHAT_MODEL", "Completions", "OK"),
        (2, "GATEWAY", gateway_span["name"], "OK"),
        (3, attempt["span_type"], attempt["name"], "OK"),
    ]
    root = chain["spans"][0]
    assert (root["inputs"], root["outputs"]) == ({"question": "What does Traceway do?"}, answered)
    info = chain["info"]
    assert info["trace_id"] == chain_id.removeprefix("tr-")
    assert (info["name"], info["status"], info["span_count"]) == ("answer", "OK", 4)
    assert (info["request_preview"], info["response_preview"]) == (
        '{"question":"What does Traceway do?"}',
        answered,
    )
    # One LLM call, reported by the client and by the gateway, counted once.
    usage = attempt["input_tokens"], attempt["output_tokens"]
    assert (info["input_tokens"], info["output_tokens"]) == usage
    assert info["tags"]["mlflow.traceName"] == "answer"
    reported = json.loads(info["metadata"]["mlflow.trace.tokenUsage"])
    assert (reported["input_tokens"], reported["output_tokens"]) == usage

    streamed_trace = stored_trace(seed.server, stream_id)
    assert [row[:2] for row in tree(streamed_trace)] == [
        (0, "CHAT_MODEL"),
        (1, "GATEWAY"),
        (2, attempt["span_type"]),
    ]
    # The client's span holds the streamed answer whole, and so does the trace's preview.
    outputs = streamed_trace["spans"][0]["outputs"]
    assert outputs["choices"][0]["message"]["content"] == streamed
    info = streamed_trace["info"]
    assert (info["request_preview"], info["response_preview"]) == ("Stream it", streamed)

    listed = seed.server.get("/api/traces", params={"experiment": seed.experiment}).json()
    assert [t["trace_id"] for t in listed["traces"]] == [
        stream_id.removeprefix("tr-"),
        chain_id.removeprefix("tr-"),
    ]
    for trace_id in (chain_id, chain_id.removeprefix("tr-")):
        page = seed.server.get(f"/traces/{trace_id}")
        assert page.status_code == 200
        text = html.unescape(page.text)
        for span in chain["spans"]:
            assert span["name"] in text


def test_client_read_api(seed: Seed) -> None:
    @mlflow.trace(span_type=SpanType.CHAIN)
    def answer(question: str) -> str:
        mlflow.update_current_trace(tags={"team": "search"}, request_preview="Q: " + question)
        response = seed.client.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": question}]
        )
        return response.choices[0].message.content or ""

    answer("Where are my traces?")
    trace_id = mlflow.get_last_active_trace_id()
    assert trace_id is not None
    flush(seed.server)

    trace = mlflow.get_trace(trace_id)
    assert trace.info.trace_id == trace_id
    assert trace.info.experiment_id == seed.experiment_id
    assert trace.info.state.value == "OK"
    assert trace.info.request_preview == "Q: Where are my traces?"
    assert trace.info.tags["team"] == "search"
    assert [(span.name, span.span_type) for span in trace.data.spans][:2] == [
        ("answer", "CHAIN"),
        ("Completions", "CHAT_MODEL"),
    ]
    assert trace.data.spans[0].inputs == {"question": "Where are my traces?"}

    found = mlflow.search_traces(
        locations=[seed.experiment_id], filter_string="tags.team = 'search'", return_type="list"
    )
    assert [t.info.trace_id for t in found] == [trace_id]
    summary = stored_trace(seed.server, trace_id)["info"]
    assert (summary["request_preview"], summary["tags"]["team"]) == (
        "Q: Where are my traces?",
        "search",
    )


def test_failed_call(seed: Seed) -> None:
    @mlflow.trace(span_type=SpanType.CHAIN)
    def broken() -> str:
        response = seed.client.with_options(max_retries=0).chat.completions.create(
            model="error-500", messages=[{"role": "user", "content": "fail"}]
        )
        return response.choices[0].message.content or ""

    with pytest.raises(openai.InternalServerError):
        broken()
    trace_id = mlflow.get_last_active_trace_id()
    assert trace_id is not None
    flush(seed.server)
    trace = stored_trace(seed.server, trace_id)
    assert (trace["info"]["name"], trace["info"]["status"]) == ("broken", "ERROR")
    assert [row[:2] + row[3:] for row in tree(trace)][:3] == [
        (0, "CHAIN", "ERROR"),
        (1, "CHAT_MODEL", "ERROR"),
        (2, "GATEWAY", "ERROR"),
    ]
    exceptions = [event["name"] for event in trace["spans"][0]["events"]]
    assert exceptions == ["exception"]
