"""The REST API under ``/api``: experiments and traces.

Endpoints are plain ``def`` functions (the store is synchronous, FastAPI runs them
in its worker threads) and answer with pre-built JSON, so listing 100 traces or
reading a 10,000-span trace does not pay for per-row model validation.  Every
error is ``{"error": {"code", "message"}}`` with a fitting status.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response

from traceway.server.api_errors import ApiError, error_response, json_response
from traceway.server.keys_api import create_keys_router
from traceway.server.schemas import (
    CreateExperiment,
    DeletedTraces,
    DeleteTraces,
    ErrorBody,
    ExperimentList,
    ExperimentOut,
    PatchTags,
    TraceList,
    TraceOut,
    TraceSummaryOut,
    experiment_json,
    trace_json,
    trace_summary_json,
)
from traceway.store import ExperimentExists, FilterError, Store, StoreError
from traceway.store.keys import KeyStore

__all__ = ["ApiError", "create_api"]

MAX_PAGE_SIZE = 1000
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    404: {"model": ErrorBody},
}


def normalize_trace_id(trace_id: str) -> str:
    """Accept the OpenTelemetry form and MLflow's ``tr-<32 hex>`` form alike."""
    trace_id = trace_id.strip().lower()
    return trace_id[3:] if trace_id.startswith("tr-") else trace_id


def create_api(store: Store, *, keys: KeyStore | None = None) -> FastAPI:
    api = FastAPI(
        title="Traceway",
        summary="Experiments and traces stored by the Traceway server.",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )

    @api.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc)

    @api.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return error_response(ApiError(400, "INVALID_REQUEST", message))

    def experiment_ids(name: str | None) -> list[int] | None:
        if name is None:
            return None
        experiment = store.get_experiment_by_name(name, counts=False)
        if experiment is None:
            raise ApiError(404, "EXPERIMENT_NOT_FOUND", f"no experiment named {name!r}")
        return [experiment.experiment_id]

    def filter_error(exc: FilterError) -> ApiError:
        return ApiError(400, "INVALID_FILTER", str(exc), getattr(exc, "position", None))

    api.include_router(create_keys_router(keys or KeyStore.for_store(store)))

    @api.get("/api/health", tags=["server"])
    def health() -> Response:
        try:
            store.get_experiment(0)  # one indexed query proves the database answers
        except StoreError as exc:
            return json_response({"status": "unavailable", "store": str(exc)}, 503)
        return json_response({"status": "ok"})

    @api.get("/api/experiments", response_model=ExperimentList, tags=["experiments"])
    def list_experiments() -> Response:
        return json_response(
            {"experiments": [experiment_json(e) for e in store.list_experiments()]}
        )

    @api.post(
        "/api/experiments",
        response_model=ExperimentOut,
        status_code=201,
        responses={**ERRORS, 409: {"model": ErrorBody}},
        tags=["experiments"],
    )
    def create_experiment(body: CreateExperiment) -> Response:
        try:
            experiment = store.create_experiment(body.name)
        except ExperimentExists as exc:
            raise ApiError(409, "EXPERIMENT_EXISTS", str(exc)) from exc
        return json_response(experiment_json(experiment), 201)

    @api.get(
        "/api/experiments/by-name/{name}",
        response_model=ExperimentOut,
        responses=ERRORS,
        tags=["experiments"],
    )
    def get_experiment_by_name(name: str) -> Response:
        experiment = store.get_experiment_by_name(name)
        if experiment is None:
            raise ApiError(404, "EXPERIMENT_NOT_FOUND", f"no experiment named {name!r}")
        return json_response(experiment_json(experiment))

    @api.get("/api/traces", response_model=TraceList, responses=ERRORS, tags=["traces"])
    def search_traces(
        experiment: Annotated[str | None, Query(description="Experiment name")] = None,
        filter: Annotated[
            str | None,
            Query(description="e.g. status = 'ERROR' AND tags.env = 'prod' AND duration_ms > 500"),
        ] = None,
        order_by: Annotated[str | None, Query(description="e.g. 'duration_ms DESC'")] = None,
        page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
        page_token: str | None = None,
    ) -> Response:
        try:
            traces, token = store.search_traces(
                experiment_ids=experiment_ids(experiment),
                filter=filter,
                order_by=order_by,
                page_size=page_size,
                page_token=page_token,
            )
        except FilterError as exc:
            raise filter_error(exc) from exc
        except StoreError as exc:
            raise ApiError(400, "INVALID_REQUEST", str(exc)) from exc
        return json_response(
            {"traces": [trace_summary_json(t) for t in traces], "next_page_token": token}
        )

    @api.get("/api/traces/{trace_id}", response_model=TraceOut, responses=ERRORS, tags=["traces"])
    def get_trace(trace_id: str) -> Response:
        trace = store.get_trace(normalize_trace_id(trace_id))
        if trace is None:
            raise ApiError(404, "TRACE_NOT_FOUND", f"no trace with id {trace_id!r}")
        return json_response(trace_json(trace))

    @api.delete("/api/traces", response_model=DeletedTraces, responses=ERRORS, tags=["traces"])
    def delete_traces(body: DeleteTraces) -> Response:
        if not body.trace_ids and not body.filter and not body.experiment:
            raise ApiError(400, "INVALID_REQUEST", "give trace_ids, or an experiment and filter")
        ids = [normalize_trace_id(t) for t in body.trace_ids] if body.trace_ids else None
        try:
            deleted = store.delete_traces(
                experiment_ids=experiment_ids(body.experiment),
                trace_ids=ids,
                filter=body.filter,
            )
        except FilterError as exc:
            raise filter_error(exc) from exc
        return json_response({"deleted": deleted})

    @api.patch(
        "/api/traces/{trace_id}/tags",
        response_model=TraceSummaryOut,
        responses=ERRORS,
        tags=["traces"],
    )
    def patch_tags(trace_id: str, body: PatchTags) -> Response:
        summary = store.set_trace_tags(
            normalize_trace_id(trace_id), set=body.set, delete=body.delete
        )
        if summary is None:
            raise ApiError(404, "TRACE_NOT_FOUND", f"no trace with id {trace_id!r}")
        return json_response(trace_summary_json(summary))

    return api
