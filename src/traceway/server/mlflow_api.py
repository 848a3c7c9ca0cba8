"""The part of MLflow's tracking-server API the ``mlflow`` client uses to trace.

Pointing ``mlflow.set_tracking_uri`` at ``traceway server`` is enough: experiments
are Traceway's experiments (MLflow's experiment ``"0"`` is ``Default``), spans
arrive over OTLP at ``POST /v1/traces`` (see :mod:`.ingest`), and the trace info
the client sends when a trace ends is merged into the trace built from them.

=======  ========================================  =================================
method   path                                      MLflow API
=======  ========================================  =================================
GET      /version                                  server version (gates OTLP spans)
GET      /api/2.0/mlflow/experiments/get-by-name   GetExperimentByName
GET      /api/2.0/mlflow/experiments/get           GetExperiment
POST     /api/2.0/mlflow/experiments/create        CreateExperiment
POST     /api/3.0/mlflow/traces                    StartTraceV3 (the finished trace)
GET      /api/3.0/mlflow/traces/{trace_id}         GetTraceInfoV3
GET      /api/3.0/mlflow/traces/get                GetTrace
GET      /api/3.0/mlflow/traces/batchGet           BatchGetTraces
POST     /api/3.0/mlflow/traces/search             SearchTracesV3
PATCH    /api/2.0/mlflow/traces/{trace_id}/tags    SetTraceTag
DELETE   /api/2.0/mlflow/traces/{trace_id}/tags    DeleteTraceTag
=======  ========================================  =================================

Anything else under ``/api/2.0/mlflow/`` or ``/api/3.0/mlflow/`` answers 404 with
``ENDPOINT_NOT_FOUND``, which the client takes as "not supported here".  Errors
are MLflow's ``{"error_code", "message"}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from traceway.server.ingest import ExperimentCache
from traceway.server.mlflow_search import translate_filter, translate_order_by
from traceway.server.mlflow_wire import (
    NotFound,
    WireError,
    experiment_json,
    otel_trace_id,
    parse_trace_info,
    trace_info_json,
    trace_json,
)
from traceway.store import ExperimentExists, FilterError, Store, StoreError
from traceway.store.records import STATUS_IN_PROGRESS, Experiment

__all__ = ["MLFLOW_PATH_PREFIXES", "MLFLOW_SERVER_VERSION", "create_mlflow_api"]

#: The MLflow server version this API stands in for.  Clients send spans over OTLP
#: only to servers of 3.4 or later; a newer number would promise APIs not served here.
MLFLOW_SERVER_VERSION: Final = "3.4.0"
#: Paths the server routes here: ``/version`` and everything under these prefixes.
MLFLOW_PATH_PREFIXES: Final = ("/api/2.0/mlflow/", "/api/3.0/mlflow/")
MAX_BODY_BYTES: Final = 8 * 1024 * 1024
MAX_RESULTS: Final = 1000
DEFAULT_RESULTS: Final = 100
#: How long a trace info with explicit previews waits for its root span (see start_trace).
ROOT_WAIT_SECONDS: Final = 5.0
_ROOT_POLL_SECONDS: Final = 0.05

_V2: Final = "/api/2.0/mlflow"
_V3: Final = "/api/3.0/mlflow"
_STATUS: Final = {
    "INVALID_PARAMETER_VALUE": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "INTERNAL_ERROR": 500,
}

Handler = Callable[[Request], Awaitable[Response]]


class MlflowError(Exception):
    """An answer in MLflow's error shape; ``code`` is one of MLflow's error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def response(self) -> Response:
        body = {"error_code": self.code, "message": self.message}
        return _json(body, _STATUS.get(self.code, 400))


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type="application/json")


def _invalid(message: str) -> MlflowError:
    return MlflowError("INVALID_PARAMETER_VALUE", message)


def _missing(message: str) -> MlflowError:
    return MlflowError("RESOURCE_DOES_NOT_EXIST", message)


def _answering(handler: Handler) -> Handler:
    """Turn errors raised while answering into MLflow's error bodies, in one place."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except MlflowError as exc:
            return exc.response()
        except NotFound as exc:
            return _missing(str(exc)).response()
        except (WireError, FilterError) as exc:
            return _invalid(str(exc)).response()
        except StoreError as exc:
            return MlflowError("INTERNAL_ERROR", str(exc)).response()

    return wrapped


async def _body(request: Request) -> dict[str, Any]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _invalid(f"request body is larger than {MAX_BODY_BYTES} bytes")
    if not body:
        return {}
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"request body is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise _invalid("request body must be a JSON object")
    return parsed


def _param(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise _invalid(f"missing value for required parameter '{name}'")
    return value


def _trace_id(text: str) -> str:
    trace_id = otel_trace_id(text)
    if trace_id is None:
        raise _missing(f"Trace with ID {text} not found.")
    return trace_id


class _MlflowApi:
    """The endpoints, over one store; every store call runs in a worker thread."""

    def __init__(self, store: Store, experiments: ExperimentCache, root_wait_s: float) -> None:
        self._store = store
        self._experiments = experiments
        self._root_wait_s = root_wait_s

    # --- experiments -----------------------------------------------------------

    async def experiment_by_name(self, request: Request) -> Response:
        name = _param(request, "experiment_name")
        experiment = await run_in_threadpool(self._store.get_experiment_by_name, name)
        if experiment is None:
            raise _missing(f"Could not find experiment with name '{name}'")
        return _json({"experiment": experiment_json(experiment)})

    async def experiment(self, request: Request) -> Response:
        text = _param(request, "experiment_id")
        experiment = await run_in_threadpool(self._experiment, text)
        if experiment is None:
            raise _missing(f"No Experiment with id={text} exists")
        return _json({"experiment": experiment_json(experiment)})

    def _experiment(self, mlflow_id: str) -> Experiment | None:
        experiment_id = self._experiments.id_for_mlflow(mlflow_id)
        return None if experiment_id is None else self._store.get_experiment(experiment_id)

    async def create_experiment(self, request: Request) -> Response:
        name = (await _body(request)).get("name")
        if not isinstance(name, str) or not name.strip():
            raise _invalid("missing value for required parameter 'name'")
        try:
            experiment = await run_in_threadpool(self._store.create_experiment, name)
        except ExperimentExists as exc:
            raise MlflowError(
                "RESOURCE_ALREADY_EXISTS", f"Experiment '{name}' already exists."
            ) from exc
        except StoreError as exc:
            raise _invalid(str(exc)) from exc
        return _json({"experiment_id": str(experiment.experiment_id)})

    # --- traces ------------------------------------------------------------------

    async def start_trace(self, request: Request) -> Response:
        body = await _body(request)
        # Resolving the experiment may query the store: off the event loop.
        info = await run_in_threadpool(parse_trace_info, body, self._experiments.id_for_mlflow)
        if info.request_preview is not None or info.response_preview is not None:
            await self._await_root(info.trace_id)
        summary = await run_in_threadpool(self._store.merge_trace_info, info)
        if summary is None:  # pragma: no cover - the merge always leaves the row
            raise MlflowError("INTERNAL_ERROR", f"trace {info.trace_id} was not stored")
        return _json({"trace": {"trace_info": trace_info_json(summary)}})

    async def _await_root(self, trace_id: str) -> None:
        """Wait, within bounds, until the trace's root span is stored.

        The client sends the info and the spans from separate worker threads, so the
        info often arrives first.  Explicit previews are kept on the root span (see
        :mod:`traceway.store.trace_info`); merged before it, they would give way to
        previews derived from it.  Only infos with explicit previews wait (users set
        them rarely), and the client sends infos from a background thread.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._root_wait_s
        while True:
            summary = await run_in_threadpool(self._store.get_trace_summary, trace_id)
            # A trace's status is IN_PROGRESS exactly while its root span is missing.
            if summary is not None and summary.status != STATUS_IN_PROGRESS:
                return
            if loop.time() >= deadline:
                return
            await asyncio.sleep(_ROOT_POLL_SECONDS)

    async def trace_info(self, request: Request) -> Response:
        text = request.path_params["trace_id"]
        summary = await run_in_threadpool(self._store.get_trace_summary, _trace_id(text))
        if summary is None:
            raise _missing(f"Trace with ID {text} not found.")
        return _json({"trace": {"trace_info": trace_info_json(summary)}})

    async def trace(self, request: Request) -> Response:
        text = _param(request, "trace_id")
        trace = await run_in_threadpool(self._store.get_trace, _trace_id(text))
        if trace is None:
            raise _missing(f"Trace with ID {text} not found.")
        return _json({"trace": trace_json(trace)})

    async def batch_traces(self, request: Request) -> Response:
        ids = [otel_trace_id(text) for text in request.query_params.getlist("trace_ids")]
        traces = [
            trace
            for trace_id in dict.fromkeys(ids)
            if trace_id is not None
            and (trace := await run_in_threadpool(self._store.get_trace, trace_id)) is not None
        ]
        return _json({"traces": [trace_json(trace) for trace in traces]})

    async def search_traces(self, request: Request) -> Response:
        body = await _body(request)
        experiment_ids = await run_in_threadpool(self._location_ids, body.get("locations"))
        page_size = body.get("max_results", DEFAULT_RESULTS)
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            raise _invalid(f"max_results must be a positive integer, not {page_size!r}")
        order_by = body.get("order_by")
        if order_by is not None and not (
            isinstance(order_by, list) and all(isinstance(item, str) for item in order_by)
        ):
            raise _invalid("order_by must be a list of strings")
        page_token = body.get("page_token") or None
        if not experiment_ids:
            return _json({"traces": []})
        traces, token = await run_in_threadpool(
            lambda: self._store.search_traces(
                experiment_ids=experiment_ids,
                filter=translate_filter(body.get("filter")),
                order_by=translate_order_by(order_by),
                page_size=min(page_size, MAX_RESULTS),
                page_token=page_token if isinstance(page_token, str) else None,
            )
        )
        answer: dict[str, Any] = {"traces": [trace_info_json(trace) for trace in traces]}
        if token is not None:
            answer["next_page_token"] = token
        return _json(answer)

    def _location_ids(self, locations: Any) -> list[int]:
        """Traceway's ids of the experiments searched (unknown ones hold no traces)."""
        if not isinstance(locations, list) or not locations:
            raise _invalid("locations must name at least one experiment")
        ids: list[int] = []
        for location in locations:
            experiment = location.get("mlflow_experiment") if isinstance(location, dict) else None
            mlflow_id = experiment.get("experiment_id") if isinstance(experiment, dict) else None
            if not isinstance(mlflow_id, str):
                raise _invalid(f"unsupported trace location {location!r}")
            experiment_id = self._experiments.id_for_mlflow(mlflow_id)
            if experiment_id is not None:
                ids.append(experiment_id)
        return ids

    async def set_tag(self, request: Request) -> Response:
        body = await _body(request)
        key, value = body.get("key"), body.get("value")
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise _invalid("a tag needs a non-empty 'key' and a string 'value'")
        await self._tags(request.path_params["trace_id"], {key: value}, [])
        return _json({})

    async def delete_tag(self, request: Request) -> Response:
        key = (await _body(request)).get("key") or request.query_params.get("key")
        if not isinstance(key, str) or not key:
            raise _invalid("missing value for required parameter 'key'")
        await self._tags(request.path_params["trace_id"], {}, [key])
        return _json({})

    async def _tags(self, text: str, values: dict[str, str], removed: list[str]) -> None:
        trace_id = _trace_id(text)
        summary = await run_in_threadpool(
            lambda: self._store.set_trace_tags(trace_id, set=values, delete=removed)
        )
        if summary is None:
            raise _missing(f"Trace with ID {text} not found.")


async def _version(_: Request) -> Response:
    return PlainTextResponse(MLFLOW_SERVER_VERSION)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    error = MlflowError("ENDPOINT_NOT_FOUND", f"No API endpoint {scope.get('path', '')!r}")
    await error.response()(scope, receive, send)


def create_mlflow_api(
    store: Store, experiments: ExperimentCache, *, root_wait_s: float = ROOT_WAIT_SECONDS
) -> ASGIApp:
    """The ASGI app serving ``/version`` and the MLflow paths in the module's table.

    ``root_wait_s`` bounds how long a trace info with explicit previews waits for
    its root span before it is merged anyway.
    """
    api = _MlflowApi(store, experiments, root_wait_s)

    def route(path: str, handler: Handler, method: str) -> Route:
        return Route(path, _answering(handler), methods=[method])

    routes = [
        route("/version", _version, "GET"),
        route(f"{_V2}/experiments/get-by-name", api.experiment_by_name, "GET"),
        route(f"{_V2}/experiments/get", api.experiment, "GET"),
        route(f"{_V2}/experiments/create", api.create_experiment, "POST"),
        route(f"{_V3}/traces", api.start_trace, "POST"),
        route(f"{_V3}/traces/get", api.trace, "GET"),
        route(f"{_V3}/traces/batchGet", api.batch_traces, "GET"),
        route(f"{_V3}/traces/search", api.search_traces, "POST"),
        route(f"{_V3}/traces/{{trace_id}}", api.trace_info, "GET"),
        route(f"{_V2}/traces/{{trace_id}}/tags", api.set_tag, "PATCH"),
        route(f"{_V2}/traces/{{trace_id}}/tags", api.delete_tag, "DELETE"),
    ]
    return Router(routes=routes, default=_not_found)
