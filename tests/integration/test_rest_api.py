"""The REST API as a client sees it: experiments, search, pagination, delete, tags."""

from __future__ import annotations

import json
import time

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tests.support.live_server import RunningServer


def send_traces(
    server: RunningServer, experiment: str, specs: list[dict[str, object]]
) -> list[str]:
    """One root span per spec: name, error, tags, metadata, duration (ms), span_type."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"traceway.experiment": experiment}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("api-test")
    ids = []
    start = time.time_ns() - 10_000_000_000
    for index, spec in enumerate(specs):
        begin = start + index * 1_000_000
        span = tracer.start_span(str(spec["name"]), start_time=begin)
        span.set_attribute("traceway.span.type", str(spec.get("span_type", "CHAIN")))
        if spec.get("tags"):
            span.set_attribute("traceway.trace.tags", json.dumps(spec["tags"]))
        if spec.get("metadata"):
            span.set_attribute("traceway.trace.metadata", json.dumps(spec["metadata"]))
        if spec.get("error"):
            span.set_status(Status(StatusCode.ERROR, "boom"))
        span.end(end_time=begin + int(spec.get("duration", 10)) * 1_000_000)  # type: ignore[call-overload]
        ids.append(format(span.get_span_context().trace_id, "032x"))
    provider.shutdown()
    sender = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces")
    assert sender.export(memory.get_finished_spans()) == SpanExportResult.SUCCESS
    return ids


def names(server: RunningServer, experiment: str, **params: object) -> list[str]:
    response = server.get("/api/traces", params={"experiment": experiment, **params})
    assert response.status_code == 200, response.text
    return [t["name"] for t in response.json()["traces"]]


def test_health_and_openapi(server: RunningServer) -> None:
    assert server.get("/api/health").json() == {"status": "ok"}
    schema = server.get("/api/openapi.json").json()
    for path in (
        "/api/experiments",
        "/api/experiments/by-name/{name}",
        "/api/traces",
        "/api/traces/{trace_id}",
        "/api/traces/{trace_id}/tags",
    ):
        assert path in schema["paths"]


def test_experiments_create_list_get(server: RunningServer, experiment: str) -> None:
    created = server.http.post("/api/experiments", json={"name": experiment})
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == experiment
    again = server.http.post("/api/experiments", json={"name": experiment})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "EXPERIMENT_EXISTS"
    fetched = server.get(f"/api/experiments/by-name/{experiment}").json()
    assert fetched["experiment_id"] == body["experiment_id"]
    listed = server.get("/api/experiments").json()["experiments"]
    assert experiment in [e["name"] for e in listed]
    missing = server.get("/api/experiments/by-name/no-such-experiment")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "EXPERIMENT_NOT_FOUND"
    empty_name = server.http.post("/api/experiments", json={"name": ""})
    assert empty_name.status_code == 400


def test_experiment_counts(server: RunningServer, experiment: str) -> None:
    send_traces(server, experiment, [{"name": "a"}, {"name": "b", "error": True}])
    listed = {e["name"]: e for e in server.get("/api/experiments").json()["experiments"]}
    assert listed[experiment]["trace_count"] == 2
    assert listed[experiment]["error_count"] == 1


def test_filters(server: RunningServer, experiment: str) -> None:
    send_traces(
        server,
        experiment,
        [
            {"name": "fast-ok", "duration": 5, "tags": {"env": "prod"}},
            {"name": "slow-error", "duration": 900, "error": True, "tags": {"env": "prod"}},
            {"name": "slow-ok", "duration": 700, "metadata": {"user_id": "u1"}},
            {"name": "agent", "duration": 50, "span_type": "AGENT"},
        ],
    )
    assert names(server, experiment, filter="status = 'ERROR'") == ["slow-error"]
    assert names(
        server,
        experiment,
        filter="status = 'OK' AND duration_ms > 500",
    ) == ["slow-ok"]
    assert sorted(names(server, experiment, filter="tags.env = 'prod'")) == [
        "fast-ok",
        "slow-error",
    ]
    assert names(server, experiment, filter="metadata.user_id = 'u1'") == ["slow-ok"]
    assert names(server, experiment, filter="span_type = 'AGENT'") == ["agent"]
    assert names(server, experiment, filter="name LIKE 'slow%' AND duration_ms <= 700") == [
        "slow-ok"
    ]
    assert sorted(names(server, experiment, filter="name IN ('agent', 'fast-ok')")) == [
        "agent",
        "fast-ok",
    ]
    assert names(server, experiment, filter="name != 'agent' AND duration_ms >= 900") == [
        "slow-error"
    ]
    assert names(server, experiment, order_by="duration_ms DESC") == [
        "slow-error",
        "slow-ok",
        "agent",
        "fast-ok",
    ]


def test_malformed_filter_says_where(server: RunningServer, experiment: str) -> None:
    response = server.get("/api/traces", params={"filter": "status = 'OK' AND duration_ms >"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_FILTER"
    assert error["position"] == len("status = 'OK' AND duration_ms >")


def test_unknown_experiment_is_404(server: RunningServer) -> None:
    response = server.get("/api/traces", params={"experiment": "never-created"})
    assert response.status_code == 404


def test_keyset_pagination_walks_every_trace_once(server: RunningServer, experiment: str) -> None:
    ids = send_traces(server, experiment, [{"name": f"t{i:02d}"} for i in range(25)])
    seen: list[str] = []
    token = None
    while True:
        params = {"experiment": experiment, "page_size": 10}
        if token:
            params["page_token"] = token
        page = server.get("/api/traces", params=params).json()
        seen += [t["trace_id"] for t in page["traces"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == list(reversed(ids))  # newest first
    bad = server.get("/api/traces", params={"page_token": "not-a-token"})
    assert bad.status_code == 400


def test_get_trace_by_either_id_form_and_404(server: RunningServer, experiment: str) -> None:
    [trace_id] = send_traces(server, experiment, [{"name": "one"}])
    assert server.get(f"/api/traces/{trace_id}").json()["info"]["name"] == "one"
    assert server.get(f"/api/traces/tr-{trace_id}").json()["info"]["trace_id"] == trace_id
    missing = server.get(f"/api/traces/{'0' * 31}1")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "TRACE_NOT_FOUND"


def test_delete_by_ids_and_by_filter(server: RunningServer, experiment: str) -> None:
    ids = send_traces(
        server,
        experiment,
        [{"name": "keep"}, {"name": "drop-1"}, {"name": "drop-2", "error": True}],
    )
    by_id = server.http.request("DELETE", "/api/traces", json={"trace_ids": [ids[1]]})
    assert by_id.json() == {"deleted": 1}
    by_filter = server.http.request(
        "DELETE", "/api/traces", json={"experiment": experiment, "filter": "status = 'ERROR'"}
    )
    assert by_filter.json() == {"deleted": 1}
    assert names(server, experiment) == ["keep"]
    assert server.get(f"/api/traces/{ids[1]}").status_code == 404
    nothing = server.http.request("DELETE", "/api/traces", json={})
    assert nothing.status_code == 400


def test_patch_tags(server: RunningServer, experiment: str) -> None:
    [trace_id] = send_traces(server, experiment, [{"name": "t", "tags": {"a": "1", "b": "2"}}])
    patched = server.http.patch(
        f"/api/traces/{trace_id}/tags", json={"set": {"c": "3", "a": "9"}, "delete": ["b"]}
    )
    assert patched.status_code == 200
    assert patched.json()["tags"] == {"a": "9", "c": "3"}
    assert names(server, experiment, filter="tags.c = '3'") == ["t"]
    missing = server.http.patch(f"/api/traces/{'f' * 32}/tags", json={"set": {"x": "y"}})
    assert missing.status_code == 404
