"""The read side against a fake of the server's REST API contract."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

import traceway
from traceway import Span, Trace, TraceInfo

from .http_fakes import Reply, Request, free_port, serve

INFO: dict[str, Any] = {
    "trace_id": "a" * 32,
    "experiment_id": 3,
    "name": "agent",
    "start_time_ms": 1_700_000_000_000,
    "end_time_ms": 1_700_000_000_250,
    "duration_ms": 250,
    "status": "OK",
    "request_preview": "hi",
    "response_preview": "hello",
    "span_count": 2,
    "input_tokens": 10,
    "output_tokens": 5,
    "total_tokens": 15,
    "cost_usd": None,
    "tags": {"env": "prod"},
    "metadata": {"session_id": "s-1"},
    "a_field_from_a_newer_server": True,
}


def span_json(span_id: str, parent: str | None, name: str, start: int) -> dict[str, Any]:
    return {
        "trace_id": "a" * 32,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "span_type": "LLM" if parent else "AGENT",
        "start_time_ns": start,
        "end_time_ns": start + 100,
        "status": "OK",
        "status_message": "",
        "attributes": {"k": 1},
        "events": [],
        "inputs": {"q": "hi"},
        "outputs": "hello",
        "model": "gpt-4o" if parent else None,
        "provider": "openai" if parent else None,
        "input_tokens": 10 if parent else None,
        "output_tokens": 5 if parent else None,
        "total_tokens": 15 if parent else None,
        "cost_usd": 0.001 if parent else None,
    }


def rest_api(request: Request) -> Reply:
    url = urlsplit(request.path)
    if url.path == f"/api/traces/{'a' * 32}":
        spans = [span_json("2" * 16, "1" * 16, "llm", 200), span_json("1" * 16, None, "agent", 100)]
        return Reply(200, orjson.dumps({"info": INFO, "spans": spans}))
    if url.path.startswith("/api/traces/"):
        return Reply(404, b'{"detail": "trace not found"}')
    if url.path == "/api/traces":
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if query.get("filter") == "broken":
            return Reply(400, b'{"detail": "unexpected token at 0"}')
        page = int(query.get("page_token", "0"))
        size = int(query["page_size"])
        ids = [f"{i:032x}" for i in range(page, min(page + size, 5))]
        token = str(page + size) if page + size < 5 else None
        traces = [{**INFO, "trace_id": i, "name": str(query)} for i in ids]
        return Reply(200, orjson.dumps({"traces": traces, "next_page_token": token}))
    return Reply(500, b"oops")


def test_get_trace_returns_typed_spans_with_helpers() -> None:
    with serve(rest_api) as url:
        trace = traceway.get_trace("a" * 32, tracking_uri=url)
    assert isinstance(trace, Trace)
    assert trace.info == TraceInfo(
        trace_id="a" * 32,
        experiment_id=3,
        name="agent",
        start_time_ms=1_700_000_000_000,
        end_time_ms=1_700_000_000_250,
        duration_ms=250,
        status="OK",
        request_preview="hi",
        response_preview="hello",
        span_count=2,
        input_tokens=10,
        output_tokens=5,
        total_tokens=15,
        cost_usd=None,
        tags={"env": "prod"},
        metadata={"session_id": "s-1"},
    )
    assert [s.name for s in trace.spans] == ["agent", "llm"]
    assert trace.root is not None and trace.root.name == "agent"
    [llm] = trace.spans_by_name("llm")
    assert llm == Span(
        trace_id="a" * 32,
        span_id="2" * 16,
        parent_span_id="1" * 16,
        name="llm",
        span_type="LLM",
        start_time_ns=200,
        end_time_ns=300,
        status="OK",
        status_message="",
        attributes={"k": 1},
        events=[],
        inputs={"q": "hi"},
        outputs="hello",
        model="gpt-4o",
        provider="openai",
        input_tokens=10,
        output_tokens=5,
        total_tokens=15,
        cost_usd=0.001,
    )
    assert trace.spans_by_type("LLM") == [llm]
    assert trace.children(trace.root) == [llm]
    assert llm.duration_ms == 0.0001


def test_get_trace_of_an_unknown_id_is_none() -> None:
    with serve(rest_api) as url:
        assert traceway.get_trace("b" * 32, tracking_uri=url) is None


def test_search_traces_follows_pages_up_to_max_results() -> None:
    with serve(rest_api) as url:
        traceway.set_tracking_uri(url)
        found = traceway.search_traces(
            experiment="exp",
            filter="status = 'OK'",
            order_by=["duration_ms DESC", "start_time_ms"],
            max_results=4,
        )
        everything = traceway.search_traces(max_results=100)
    assert [t.trace_id for t in found] == [f"{i:032x}" for i in range(4)]
    assert found[0].name == str(
        {
            "experiment": "exp",
            "filter": "status = 'OK'",
            "order_by": "duration_ms DESC, start_time_ms",
            "page_size": "4",
        }
    )
    assert len(everything) == 5


def test_http_errors_raise_with_the_servers_message() -> None:
    with serve(rest_api) as url, pytest.raises(traceway.TracewayHTTPError) as raised:
        traceway.search_traces(filter="broken", tracking_uri=url)
    assert (raised.value.status, raised.value.message) == (400, "unexpected token at 0")
    assert isinstance(raised.value, traceway.TracewayError)


def test_an_unreachable_server_raises_a_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(traceway.TracewayConnectionError, match="cannot reach"):
        traceway.get_trace("a" * 32, tracking_uri=url)
