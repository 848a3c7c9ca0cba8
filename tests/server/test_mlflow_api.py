"""MLflow's tracking API on ``traceway server``: experiments, trace info, the read side.

Every test runs over a SQLite file and over the real PostgreSQL server.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from traceway.server.app import ServerSettings, create_app
from traceway.server.ingest import ExperimentCache
from traceway.server.mlflow_api import MLFLOW_SERVER_VERSION, create_mlflow_api
from traceway.server.mlflow_previews import explicit_preview
from traceway.server.mlflow_search import translate_filter, translate_order_by
from traceway.store import FilterError, SpanRecord, Store, TraceSummary, open_store

NOW_MS = 1_700_000_000_000
#: 2023-11-14T22:13:20.250Z, the request time the trace infos below report.
START_MS = NOW_MS + 250
START_NS = START_MS * 1_000_000


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("mlflow") / "traceway.db"
        url = f"sqlite:///{path}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    opened = open_store(url, now_ms=lambda: NOW_MS)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def client(store: Store) -> Iterator[TestClient]:
    server = create_app(store, ServerSettings(gateway=None))
    with TestClient(server.app) as http:
        yield http


@pytest.fixture
def experiment(store: Store) -> tuple[str, int]:
    """A fresh experiment: (name, id)."""
    name = f"exp-{uuid.uuid4().hex[:10]}"
    return name, store.get_or_create_experiment(name).experiment_id


def new_trace_id() -> str:
    return uuid.uuid4().hex


def mlflow_spans(trace_id: str) -> list[SpanRecord]:
    """What the mlflow client sends for ``@mlflow.trace`` around an autologged chat call."""
    root = SpanRecord(
        trace_id=trace_id,
        span_id="a" * 16,
        parent_span_id=None,
        name="ask",
        span_type="CHAIN",
        start_time_ns=START_NS,
        end_time_ns=START_NS + 40_000_000,
        status="OK",
        inputs='{"q": "hi"}',
        outputs='"hello there"',
    )
    chat = SpanRecord(
        trace_id=trace_id,
        span_id="b" * 16,
        parent_span_id="a" * 16,
        name="Completions",
        span_type="CHAT_MODEL",
        start_time_ns=START_NS + 5_000_000,
        end_time_ns=START_NS + 35_000_000,
        status="OK",
        inputs='{"messages": [{"role": "user", "content": "hi"}], "model": "mock"}',
        outputs='{"choices": [{"message": {"role": "assistant", "content": "hello there"}}]}',
        input_tokens=3,
        output_tokens=2,
        total_tokens=5,
    )
    return [root, chat]


def trace_info(trace_id: str, experiment_id: int | str, /, **changes: Any) -> dict[str, Any]:
    """A StartTraceV3 body as the mlflow client 3.17 sends it for :func:`mlflow_spans`."""
    info: dict[str, Any] = {
        "trace_id": f"tr-{trace_id}",
        "trace_location": {
            "type": "MLFLOW_EXPERIMENT",
            "mlflow_experiment": {"experiment_id": str(experiment_id)},
        },
        "request_time": "2023-11-14T22:13:20.250Z",
        "execution_duration": "0.040s",
        "state": "OK",
        "trace_metadata": {
            "mlflow.traceInputs": '{"q": "hi"}',
            "mlflow.traceOutputs": '"hello there"',
            "mlflow.trace.session": "s-1",
            "mlflow.trace_schema.version": "3",
        },
        "tags": {"mlflow.traceName": "ask", "env": "test"},
        # What the client derives from the root span: not explicit.
        "request_preview": '{"q": "hi"}',
        "response_preview": '"hello there"',
    }
    info.update(changes)
    return {"trace": {"trace_info": info}}


def post_info(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/3.0/mlflow/traces", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def without_id(summary: TraceSummary | None) -> dict[str, Any]:
    assert summary is not None
    fields = asdict(summary)
    fields.pop("trace_id")
    return fields


def merged_summary(trace_id: str, experiment_id: int) -> TraceSummary:
    """The trace of :func:`mlflow_spans` with :func:`trace_info` merged in."""
    return TraceSummary(
        trace_id=trace_id,
        experiment_id=experiment_id,
        name="ask",
        start_time_ms=START_MS,
        end_time_ms=START_MS + 40,
        duration_ms=40,
        status="OK",
        request_preview='{"q":"hi"}',
        response_preview="hello there",
        span_count=2,
        input_tokens=3,
        output_tokens=2,
        total_tokens=5,
        cost_usd=None,
        tags={"env": "test", "mlflow.traceName": "ask"},
        metadata={
            "mlflow.trace.session": "s-1",
            "mlflow.trace_schema.version": "3",
            "mlflow.traceInputs": '{"q": "hi"}',
            "mlflow.traceOutputs": '"hello there"',
            "session_id": "s-1",
        },
    )


# --- the server's version and experiments -----------------------------------------


def test_version_admits_otlp_spans(client: TestClient) -> None:
    response = client.get("/version")
    assert (response.status_code, response.text) == (200, MLFLOW_SERVER_VERSION)
    # The client sends spans over OTLP only to servers of 3.4 or later.
    assert tuple(int(part) for part in response.text.split(".")) >= (3, 4)


def test_experiments(client: TestClient, store: Store) -> None:
    name = f"exp-{uuid.uuid4().hex[:10]}"
    missing = client.get(
        "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name}
    )
    assert (missing.status_code, missing.json()) == (
        404,
        {
            "error_code": "RESOURCE_DOES_NOT_EXIST",
            "message": f"Could not find experiment with name '{name}'",
        },
    )
    created = client.post("/api/2.0/mlflow/experiments/create", json={"name": name})
    assert created.status_code == 200
    experiment_id = created.json()["experiment_id"]
    expected = {
        "experiment": {
            "experiment_id": experiment_id,
            "name": name,
            "artifact_location": "",
            "lifecycle_stage": "active",
            "creation_time": NOW_MS,
            "last_update_time": NOW_MS,
            "tags": [],
        }
    }
    by_name = client.get(
        "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name}
    )
    by_id = client.get("/api/2.0/mlflow/experiments/get", params={"experiment_id": experiment_id})
    assert by_name.json() == by_id.json() == expected
    again = client.post("/api/2.0/mlflow/experiments/create", json={"name": name})
    assert (again.status_code, again.json()["error_code"]) == (400, "RESOURCE_ALREADY_EXISTS")
    # MLflow's default experiment is "0": Traceway's Default.
    default = client.get("/api/2.0/mlflow/experiments/get", params={"experiment_id": "0"})
    assert default.json()["experiment"]["name"] == "Default"
    unknown = client.get("/api/2.0/mlflow/experiments/get", params={"experiment_id": "987654"})
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "No Experiment with id=987654 exists"},
    )
    nameless = client.post("/api/2.0/mlflow/experiments/create", json={})
    assert (nameless.status_code, nameless.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


def test_other_mlflow_endpoints_are_not_found(client: TestClient) -> None:
    # The client takes ENDPOINT_NOT_FOUND as "this server does not have it".
    response = client.get("/api/2.0/mlflow/runs/get", params={"run_id": "1"})
    assert (response.status_code, response.json()["error_code"]) == (404, "ENDPOINT_NOT_FOUND")


# --- trace info: the write side ----------------------------------------------------


def test_info_after_spans(client: TestClient, store: Store, experiment: tuple[str, int]) -> None:
    _, experiment_id = experiment
    trace_id = new_trace_id()
    store.write_spans(experiment_id, mlflow_spans(trace_id))
    answer = post_info(client, trace_info(trace_id, experiment_id))
    assert answer == {
        "trace": {
            "trace_info": {
                "trace_id": f"tr-{trace_id}",
                "trace_location": {
                    "type": "MLFLOW_EXPERIMENT",
                    "mlflow_experiment": {"experiment_id": str(experiment_id)},
                },
                "request_time": "2023-11-14T22:13:20.250Z",
                "execution_duration": "0.040s",
                "state": "OK",
                "trace_metadata": {
                    **merged_summary(trace_id, experiment_id).metadata,
                    "mlflow.trace.tokenUsage": (
                        '{"input_tokens":3,"output_tokens":2,"total_tokens":5}'
                    ),
                },
                # The spans stay in the tracking store: the client uploads no span files.
                "tags": {
                    "mlflow.traceName": "ask",
                    "env": "test",
                    "mlflow.trace.spansLocation": "TRACKING_STORE",
                },
                "request_preview": '{"q":"hi"}',
                "response_preview": "hello there",
            }
        }
    }
    assert store.get_trace_summary(trace_id) == merged_summary(trace_id, experiment_id)


def test_info_before_spans_gives_the_same_trace(
    client: TestClient, store: Store, experiment: tuple[str, int]
) -> None:
    _, experiment_id = experiment
    first, second = new_trace_id(), new_trace_id()
    store.write_spans(experiment_id, mlflow_spans(first))
    post_info(client, trace_info(first, experiment_id))

    post_info(client, trace_info(second, experiment_id))
    # Before its spans the trace is what the info says.
    assert store.get_trace_summary(second) == replace(
        merged_summary(second, experiment_id),
        request_preview=None,
        response_preview=None,
        span_count=0,
        input_tokens=0,
        output_tokens=0,
        total_tokens=0,
    )
    store.write_spans(experiment_id, mlflow_spans(second)[1:])  # the child first
    store.write_spans(experiment_id, mlflow_spans(second)[:1])
    assert without_id(store.get_trace_summary(second)) == without_id(store.get_trace_summary(first))


def test_info_moves_a_trace_out_of_default(
    client: TestClient, store: Store, experiment: tuple[str, int]
) -> None:
    _, experiment_id = experiment
    trace_id = new_trace_id()
    # The gateway reports its part of the trace first, with no experiment.
    store.write_spans(
        store.get_or_create_experiment("Default").experiment_id, mlflow_spans(trace_id)
    )
    post_info(client, trace_info(trace_id, experiment_id))
    assert store.get_trace_summary(trace_id) == merged_summary(trace_id, experiment_id)


def test_explicit_previews_after_spans_survive_later_spans(
    client: TestClient, store: Store, experiment: tuple[str, int]
) -> None:
    _, experiment_id = experiment
    trace_id = new_trace_id()
    spans = mlflow_spans(trace_id)
    store.write_spans(experiment_id, spans[:1])
    post_info(
        client,
        trace_info(trace_id, experiment_id, request_preview="Why?", response_preview="Because."),
    )
    store.write_spans(experiment_id, spans[1:])
    summary = store.get_trace_summary(trace_id)
    assert summary is not None
    assert (summary.request_preview, summary.response_preview, summary.span_count) == (
        "Why?",
        "Because.",
        2,
    )


def test_explicit_previews_wait_for_the_root(
    client: TestClient, store: Store, experiment: tuple[str, int]
) -> None:
    _, experiment_id = experiment
    trace_id = new_trace_id()
    body = trace_info(trace_id, experiment_id, request_preview="Why?")
    answers: list[dict[str, Any]] = []
    sender = threading.Thread(target=lambda: answers.append(post_info(client, body)))
    sender.start()  # the client sends the info and the spans from different threads
    store.write_spans(experiment_id, mlflow_spans(trace_id))
    sender.join()
    assert answers[0]["trace"]["trace_info"]["request_preview"] == "Why?"
    assert store.get_trace_summary(trace_id) == replace(
        merged_summary(trace_id, experiment_id), request_preview="Why?"
    )


def test_explicit_previews_of_a_trace_without_spans(
    store: Store, experiment: tuple[str, int]
) -> None:
    _, experiment_id = experiment
    trace_id = new_trace_id()
    api = create_mlflow_api(store, ExperimentCache(store), root_wait_s=0)
    with TestClient(api) as http:
        post_info(http, trace_info(trace_id, experiment_id, request_preview="Why?"))
    summary = store.get_trace_summary(trace_id)
    assert summary is not None
    assert (summary.name, summary.status, summary.request_preview, summary.span_count) == (
        "ask",
        "OK",
        "Why?",
        0,
    )


@pytest.mark.parametrize(
    ("changes", "status", "error"),
    [
        ({"trace_id": "tr-123"}, 400, "INVALID_PARAMETER_VALUE"),
        ({"request_time": "yesterday"}, 400, "INVALID_PARAMETER_VALUE"),
        ({"execution_duration": 40}, 400, "INVALID_PARAMETER_VALUE"),
        ({"trace_location": {"type": "MLFLOW_EXPERIMENT"}}, 400, "INVALID_PARAMETER_VALUE"),
        (
            {"trace_location": {"mlflow_experiment": {"experiment_id": "987654"}}},
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
    ],
)
def test_bad_trace_info(
    client: TestClient,
    experiment: tuple[str, int],
    changes: dict[str, Any],
    status: int,
    error: str,
) -> None:
    body = trace_info(new_trace_id(), experiment[1], **changes)
    response = client.post("/api/3.0/mlflow/traces", json=body)
    assert (response.status_code, response.json()["error_code"]) == (status, error)


def test_trace_info_times_in_any_offset(
    client: TestClient, store: Store, experiment: tuple[str, int]
) -> None:
    trace_id = new_trace_id()
    body = trace_info(
        trace_id,
        experiment[1],
        request_time="2023-11-14T23:13:20.250999999+01:00",
        execution_duration="1.5s",
    )
    post_info(client, body)
    summary = store.get_trace_summary(trace_id)
    assert summary is not None
    assert (summary.start_time_ms, summary.duration_ms) == (START_MS, 1500)


# --- the read side -------------------------------------------------------------------


def test_get_and_search_traces(
    client: TestClient, store: Store, experiment: tuple[str, int]
) -> None:
    _, experiment_id = experiment
    trace_id = new_trace_id()
    store.write_spans(experiment_id, mlflow_spans(trace_id))
    info = post_info(client, trace_info(trace_id, experiment_id))["trace"]["trace_info"]

    assert client.get(f"/api/3.0/mlflow/traces/tr-{trace_id}").json() == {
        "trace": {"trace_info": info}
    }
    trace = client.get("/api/3.0/mlflow/traces/get", params={"trace_id": f"tr-{trace_id}"}).json()
    root, chat = trace["trace"]["spans"]
    assert trace["trace"]["trace_info"] == info
    assert root == {
        "trace_id": _b64(trace_id),
        "span_id": _b64("a" * 16),
        "name": "ask",
        "start_time_unix_nano": str(START_NS),
        "end_time_unix_nano": str(START_NS + 40_000_000),
        "attributes": [
            {"key": "mlflow.spanType", "value": {"string_value": "CHAIN"}},
            {"key": "mlflow.traceRequestId", "value": {"string_value": f"tr-{trace_id}"}},
            {
                "key": "mlflow.spanInputs",
                "value": {
                    "kvlist_value": {"values": [{"key": "q", "value": {"string_value": "hi"}}]}
                },
            },
            {"key": "mlflow.spanOutputs", "value": {"string_value": "hello there"}},
        ],
        "events": [],
        "status": {"code": "STATUS_CODE_OK", "message": ""},
    }
    assert chat["parent_span_id"] == _b64("a" * 16)

    batch = client.get(
        "/api/3.0/mlflow/traces/batchGet",
        params={"trace_ids": [f"tr-{trace_id}", "tr-" + "0" * 32]},
    )
    assert batch.json() == {"traces": [trace["trace"]]}

    search = {
        "locations": [
            {
                "type": "MLFLOW_EXPERIMENT",
                "mlflow_experiment": {"experiment_id": str(experiment_id)},
            }
        ],
        "filter": "attributes.status = 'OK' AND tags.env = 'test'",
        "order_by": ["timestamp_ms DESC"],
        "max_results": 10,
    }
    found = client.post("/api/3.0/mlflow/traces/search", json=search)
    assert found.json() == {"traces": [info]}
    none = client.post("/api/3.0/mlflow/traces/search", json={**search, "filter": "tags.env = 'x'"})
    assert none.json() == {"traces": []}
    bad = client.post("/api/3.0/mlflow/traces/search", json={**search, "filter": "run_id = 'x'"})
    assert (bad.status_code, bad.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")

    missing = client.get("/api/3.0/mlflow/traces/get", params={"trace_id": "tr-" + "0" * 32})
    assert (missing.status_code, missing.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_trace_tags(client: TestClient, store: Store, experiment: tuple[str, int]) -> None:
    trace_id = new_trace_id()
    store.write_spans(experiment[1], mlflow_spans(trace_id))
    path = f"/api/2.0/mlflow/traces/tr-{trace_id}/tags"
    assert client.patch(path, json={"key": "reviewed", "value": "yes"}).status_code == 200
    assert client.patch(path, json={"key": "stale", "value": "1"}).status_code == 200
    assert client.request("DELETE", path, json={"key": "stale"}).status_code == 200
    summary = store.get_trace_summary(trace_id)
    assert summary is not None and summary.tags == {"reviewed": "yes"}
    unknown = client.patch(
        "/api/2.0/mlflow/traces/tr-" + "0" * 32 + "/tags", json={"key": "a", "value": "b"}
    )
    assert unknown.status_code == 404


# --- spans over OTLP, named by MLflow's experiment id ----------------------------------


def otlp_body(trace_id: str) -> bytes:
    span = {
        "traceId": trace_id,
        "spanId": "c" * 16,
        "name": "ask",
        "startTimeUnixNano": str(START_NS),
        "endTimeUnixNano": str(START_NS + 1_000_000),
        "attributes": [{"key": "mlflow.spanType", "value": {"stringValue": '"CHAIN"'}}],
    }
    return orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-mlflow-experiment-id": "<id>"}, "<name>"),
        ({"x-mlflow-experiment-id": "0"}, "Default"),
        # Traceway's own header names the experiment when both are sent.
        ({"x-mlflow-experiment-id": "<id>", "x-traceway-experiment": "<name>-own"}, "<name>-own"),
    ],
)
def test_otlp_spans_in_the_mlflow_experiment(
    client: TestClient,
    store: Store,
    experiment: tuple[str, int],
    headers: dict[str, str],
    expected: str,
) -> None:
    name, experiment_id = experiment
    headers = {
        k: v.replace("<id>", str(experiment_id)).replace("<name>", name) for k, v in headers.items()
    }
    trace_id = new_trace_id()
    response = client.post(
        "/v1/traces",
        content=otlp_body(trace_id),
        headers={"content-type": "application/json", **headers},
    )
    assert response.status_code == 200, response.text
    summary = store.get_trace_summary(trace_id)
    assert summary is not None
    stored_in = store.get_experiment(summary.experiment_id)
    assert stored_in is not None
    assert stored_in.name == expected.replace("<name>", name)


@pytest.mark.parametrize("header", ["987654", "abc", ""])
def test_otlp_spans_in_an_unknown_mlflow_experiment(client: TestClient, header: str) -> None:
    response = client.post(
        "/v1/traces",
        content=otlp_body(new_trace_id()),
        headers={"content-type": "application/json", "x-mlflow-experiment-id": header},
    )
    assert (response.status_code, response.json()) == (
        400,
        {"code": 400, "message": f"no experiment with id {header!r}"},
    )


# --- translations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mlflow", "traceway"),
    [
        ("attributes.status = 'OK'", "status = 'OK'"),
        ("trace.status != 'ERROR' AND status = 'OK'", "status != 'ERROR' AND status = 'OK'"),
        ("timestamp_ms > 1700000000000", "start_time > 1700000000000"),
        ("attributes.execution_time_ms >= 500", "duration_ms >= 500"),
        (
            "tags.`my tag` = 'a' AND tag.env IN ('x', 'y')",
            "tags.`my tag` = 'a' AND tags.env IN ('x', 'y')",
        ),
        ("request_metadata.user LIKE 'al%'", "metadata.user LIKE 'al%'"),
        (
            "span.name = 'status' AND span.type = 'LLM'",
            "span.name = 'status' AND span_type = 'LLM'",
        ),
        ('trace.name = "timestamp_ms"', 'name = "timestamp_ms"'),
        ("", None),
    ],
)
def test_translate_filter(mlflow: str, traceway: str | None) -> None:
    assert translate_filter(mlflow) == traceway


def test_translate_filter_refuses_unknown_fields() -> None:
    with pytest.raises(FilterError, match=r"unsupported field 'attributes\.run_id' at position 14"):
        translate_filter("status = 'OK' attributes.run_id = 'x'")


@pytest.mark.parametrize(
    ("mlflow", "traceway"),
    [
        (["timestamp_ms DESC"], "start_time DESC"),
        (["attributes.execution_time_ms", "name"], "duration_ms ASC"),
        (["trace.name desc"], "name DESC"),
        ([], None),
        (None, None),
    ],
)
def test_translate_order_by(mlflow: list[str] | None, traceway: str | None) -> None:
    assert translate_order_by(mlflow) == traceway


def test_translate_order_by_refuses_unknown_fields() -> None:
    with pytest.raises(FilterError, match="unsupported order_by 'run_id DESC'"):
        translate_order_by(["run_id DESC"])


CHAT = (
    '{"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}]}'
)


@pytest.mark.parametrize(
    ("preview", "root", "role", "explicit"),
    [
        ("Hi", CHAT, "user", None),
        ("Custom", CHAT, "user", "Custom"),
        ('{"q": "hi"}', '{"q": "hi"}', "user", None),
        (
            "Hello",
            '{"choices": [{"message": {"role": "assistant", "content": "Hello"}}]}',
            "assistant",
            None,
        ),
        (
            "Hi",
            '{"input": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}',
            "user",
            None,
        ),
        ("Custom", "", "user", "Custom"),  # the root had no inputs: nothing to derive
        ("Custom", None, "user", "Custom"),
        ("Custom", "x" * 247 + "...", "user", None),  # cut metadata: cannot tell
        (None, CHAT, "user", None),
    ],
)
def test_explicit_preview(
    preview: str | None, root: str | None, role: str, explicit: str | None
) -> None:
    assert explicit_preview(preview, root, role=role) == explicit


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()
