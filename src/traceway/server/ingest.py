"""OTLP/HTTP trace ingest: ``POST /v1/traces``.

Status codes follow the OTLP/HTTP specification: 200 with an
``ExportTraceServiceResponse`` (carrying ``partial_success`` when spans were
rejected), 400 for a body that cannot be decoded, 413 above the size limit, 415
for other content types.  Error bodies are ``google.rpc.Status`` messages in the
request's encoding.  Decoding and writing run in a worker thread so the event
loop keeps serving while a batch is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import orjson
from google.rpc import status_pb2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from traceway.server.otlp import (
    DecodedBatch,
    OtlpDecodeError,
    PayloadTooLarge,
    UnsupportedMediaType,
    decode_request,
    encode_partial_success,
)
from traceway.store import Store
from traceway.store.records import SpanRecord
from traceway.tracing.semconv import DEFAULT_EXPERIMENT, EXPERIMENT_HEADER

__all__ = ["MLFLOW_EXPERIMENT_HEADER", "ExperimentCache", "OtlpIngest"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
#: The header the ``mlflow`` client names its experiment with, by id ("0" is MLflow's
#: default experiment, which is Traceway's ``Default``).
MLFLOW_EXPERIMENT_HEADER = "x-mlflow-experiment-id"


class ExperimentCache:
    """Experiment name → id, remembered so ingest does not query for it per batch."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._ids: dict[str, int] = {}
        self._known_ids: set[int] = set()

    def id_for(self, name: str) -> int:
        experiment_id = self._ids.get(name)
        if experiment_id is None:
            experiment_id = self._store.get_or_create_experiment(name).experiment_id
            self._ids[name] = experiment_id
        return experiment_id

    def id_for_mlflow(self, mlflow_id: str) -> int | None:
        """The experiment an MLflow experiment id names; ``None`` if there is none."""
        text = mlflow_id.strip()
        if text == "0":
            return self.id_for(DEFAULT_EXPERIMENT)
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            return None
        experiment_id = int(text)
        if experiment_id not in self._known_ids:
            if self._store.get_experiment(experiment_id) is None:
                return None
            self._known_ids.add(experiment_id)
        return experiment_id

    def forget(self) -> None:
        self._ids.clear()
        self._known_ids.clear()


class OtlpIngest:
    """The ASGI endpoint; ``on_stored`` hears of every batch written (for live views)."""

    def __init__(
        self,
        store: Store,
        experiments: ExperimentCache,
        *,
        max_body_bytes: int,
        on_stored: Callable[[Sequence[SpanRecord]], None] | None = None,
    ) -> None:
        self._store = store
        self._experiments = experiments
        self._max_body_bytes = max_body_bytes
        self._on_stored = on_stored

    async def handle(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        as_json = content_type.split(";", 1)[0].strip().lower() == JSON
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self._max_body_bytes:
            return _status(413, "request body exceeds the ingest size limit", as_json)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self._max_body_bytes:
                return _status(413, "request body exceeds the ingest size limit", as_json)
        header_experiment = request.headers.get(EXPERIMENT_HEADER) or None
        mlflow_experiment = request.headers.get(MLFLOW_EXPERIMENT_HEADER)
        experiment_id: int | None = None
        if header_experiment is None and mlflow_experiment is not None:
            experiment_id = await run_in_threadpool(
                self._experiments.id_for_mlflow, mlflow_experiment
            )
            if experiment_id is None:
                return _status(400, f"no experiment with id {mlflow_experiment!r}", as_json)
        try:
            rejected, message = await run_in_threadpool(
                self._ingest,
                bytes(body),
                content_type,
                request.headers.get("content-encoding"),
                header_experiment,
                experiment_id,
            )
        except UnsupportedMediaType as exc:
            return _status(415, str(exc) or f"unsupported content type {content_type!r}", as_json)
        except PayloadTooLarge as exc:
            return _status(413, str(exc) or "request body exceeds the ingest size limit", as_json)
        except OtlpDecodeError as exc:
            return _status(400, str(exc), as_json)
        return Response(
            encode_partial_success(rejected, message, as_json=as_json),
            media_type=JSON if as_json else PROTOBUF,
        )

    def _ingest(
        self,
        body: bytes,
        content_type: str,
        content_encoding: str | None,
        header_experiment: str | None,
        experiment_id: int | None = None,
    ) -> tuple[int, str]:
        batch: DecodedBatch = decode_request(
            body,
            content_type=content_type,
            content_encoding=content_encoding,
            max_body_bytes=self._max_body_bytes,
        )
        for resource_experiment, spans in batch.spans_by_experiment.items():
            if not spans:
                continue
            if experiment_id is None:
                name = header_experiment or resource_experiment or DEFAULT_EXPERIMENT
                self._store.write_spans(self._experiments.id_for(name), spans)
            else:
                self._store.write_spans(experiment_id, spans)
            if self._on_stored is not None:
                self._on_stored(spans)
        return batch.rejected, batch.rejection_message


def _status(code: int, message: str, as_json: bool) -> Response:
    """An OTLP error response: a ``google.rpc.Status`` in the request's encoding."""
    if as_json:
        return Response(orjson.dumps({"code": code, "message": message}), code, media_type=JSON)
    body = status_pb2.Status(code=code, message=message).SerializeToString()
    return Response(body, code, media_type=PROTOBUF)
