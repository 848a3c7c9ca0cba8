"""Bad input gets the documented error, the server stays up, nothing stored changes."""

from __future__ import annotations

import gzip

import httpx
import pytest
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.integration.test_otlp_ingest import record_app_trace
from tests.support.live_server import RunningServer


@pytest.fixture(scope="module")
def baseline(server: RunningServer) -> tuple[str, dict[str, object]]:
    """One stored trace whose every byte must survive the abuse below."""
    spans, trace_id = record_app_trace("bad-input-baseline")
    sender = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces")
    assert sender.export(spans) == SpanExportResult.SUCCESS
    return trace_id, server.get(f"/api/traces/{trace_id}").json()


def assert_unchanged(server: RunningServer, baseline: tuple[str, dict[str, object]]) -> None:
    trace_id, before = baseline
    assert server.get(f"/api/traces/{trace_id}").json() == before
    assert server.get("/api/health").json() == {"status": "ok"}


def post(server: RunningServer, body: bytes, **headers: str) -> httpx.Response:
    headers.setdefault("content-type", "application/x-protobuf")
    return server.http.post("/v1/traces", content=body, headers=headers)


def status_of(response: httpx.Response) -> status_pb2.Status:
    status = status_pb2.Status()
    status.ParseFromString(response.content)
    return status


def test_garbage_protobuf_is_400_with_a_status_message(server, baseline) -> None:
    response = post(server, b"\xff\xfe this is not protobuf \x00\x01")
    assert response.status_code == 400
    assert status_of(response).code == 400
    assert status_of(response).message
    assert_unchanged(server, baseline)


def test_truncated_protobuf_is_400(server, baseline) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    spans, _ = record_app_trace("truncated")
    body = encode_spans(spans).SerializeToString()
    response = post(server, body[: len(body) // 2])
    assert response.status_code == 400
    assert_unchanged(server, baseline)


def test_wrong_content_type_is_415(server, baseline) -> None:
    response = post(server, b"hello", **{"content-type": "text/plain"})
    assert response.status_code == 415
    assert_unchanged(server, baseline)


def test_invalid_json_is_400_in_json(server, baseline) -> None:
    response = post(server, b'{"resourceSpans": [', **{"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["code"] == 400
    assert_unchanged(server, baseline)


def test_bad_gzip_is_400(server, baseline) -> None:
    response = post(server, b"not gzip at all", **{"content-encoding": "gzip"})
    assert response.status_code == 400
    assert_unchanged(server, baseline)


def test_oversize_body_is_413(server, baseline) -> None:
    limit = 64 * 1024 * 1024
    response = post(server, b"\x00" * (limit + 1))
    assert response.status_code == 413
    assert_unchanged(server, baseline)


def test_gzip_bomb_is_413(server, baseline) -> None:
    bomb = gzip.compress(b"\x00" * (65 * 1024 * 1024))
    response = post(server, bomb, **{"content-encoding": "gzip"})
    assert response.status_code == 413
    assert_unchanged(server, baseline)


def test_get_on_ingest_is_405(server) -> None:
    assert server.get("/v1/traces").status_code == 405


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=st.binary(max_size=512), as_json=st.booleans(), gzipped=st.booleans())
def test_random_bodies_never_break_the_server(server, baseline, body, as_json, gzipped) -> None:
    headers = {"content-type": "application/json" if as_json else "application/x-protobuf"}
    if gzipped:
        headers["content-encoding"] = "gzip"
    response = post(server, body, **headers)
    # Random bytes can happen to be a valid (empty or id-less) request: then 200.
    assert response.status_code in (200, 400)
    assert_unchanged(server, baseline)


MALFORMED_PIECES = st.sampled_from(
    [
        "status",
        "=",
        "'ERROR'",
        "AND",
        "tags.",
        "duration_ms",
        ">",
        "500",
        "(",
        ")",
        "IN",
        "LIKE",
        "'",
        '"',
        "==",
        "OR",
        "nope",
        "metadata.x",
        ",",
        "`",
        "1.2.3",
        "; DROP TABLE traces; --",
    ]
)


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    pieces=st.lists(MALFORMED_PIECES, min_size=1, max_size=7),
    noise=st.text(max_size=12),
)
def test_malformed_filters_get_a_400_that_says_where(server, baseline, pieces, noise) -> None:
    filter_text = " ".join(pieces) + noise
    response = server.get("/api/traces", params={"filter": filter_text})
    if response.status_code == 200:  # the pieces happened to form a valid filter
        assert "traces" in response.json()
    else:
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "INVALID_FILTER"
        assert "position" in error["message"] or "position" in error
    assert_unchanged(server, baseline)
