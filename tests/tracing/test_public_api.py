"""The package's public face: one sorted, complete ``__all__`` and a light import."""

from __future__ import annotations

import subprocess
import sys

import traceway
from traceway.tracing import (
    api,
    client,
    config,
    context,
    decorator,
    errors,
    propagation,
    span,
)

# Modules whose whole __all__ is for applications; the others (tracer, export,
# otlp, serialize, redaction, testing) are for the rest of the product and tests.
PUBLIC_MODULES = [api, client, config, context, decorator, errors, propagation]
# Public in their modules, but not part of the top-level API.
NOT_REEXPORTED = {
    "SpanEvent",
    "TRACEPARENT_HEADER",
    "dropped_spans",
    "export_stats",
    "format_traceparent",
    "last_trace_id",
}


def test_all_is_sorted_and_names_exist() -> None:
    assert traceway.__all__ == sorted(traceway.__all__)
    assert len(set(traceway.__all__)) == len(traceway.__all__)
    assert all(hasattr(traceway, name) for name in traceway.__all__)


def test_every_public_name_of_the_tracing_api_is_reexported() -> None:
    public = {name for module in PUBLIC_MODULES for name in module.__all__}
    public |= set(span.__all__)
    assert public - NOT_REEXPORTED == set(traceway.__all__)


def test_import_pulls_in_no_server_side_package() -> None:
    code = (
        "import sys, traceway\n"
        "heavy = {'aiohttp', 'starlette', 'fastapi', 'uvicorn', 'sqlalchemy', 'alembic',\n"
        "         'psycopg', 'redis', 'jinja2', 'pydantic', 'requests', 'httpx',\n"
        "         'opentelemetry.sdk', 'google.protobuf'}\n"
        "inside = {'traceway.gateway', 'traceway.server', 'traceway.store'}\n"
        "loaded = {m for m in sys.modules if m in heavy or m.startswith(tuple(inside))}\n"
        "print(sorted(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
