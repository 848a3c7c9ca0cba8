"""OTLP: encoding finished spans and sending them over OTLP/HTTP.

:func:`encode_spans` builds an ``ExportTraceServiceRequest`` (one resource,
scope ``traceway``) from :class:`FinishedSpan` values.  Besides a span's own
attributes it writes ``traceway.span.type`` and, when present,
``traceway.span.inputs`` / ``traceway.span.outputs`` (JSON text).  The exporter
sends the same request written straight to bytes by :func:`encode_request`,
without building message objects (much cheaper on the export thread).

:class:`OtlpHttpExporter` POSTs protobuf to an endpoint such as
``http://localhost:5000/v1/traces`` (see :func:`traces_url`), gzip-compressed
unless the endpoint is on this machine (``compression="auto"``: on loopback,
compressing costs CPU on both ends and saves nothing), one request per
experiment, naming it in the ``x-traceway-experiment`` header and the
``traceway.experiment`` resource attribute.  Connection failures and 429 / 502 /
503 / 504 answers are retried with bounded exponential backoff, then the batch
is dropped.  While the endpoint stays unreachable the exporter logs one warning,
tries each later batch once (connecting before encoding, so a dead server
costs almost nothing), and logs once more when delivery resumes::

    exporter = OtlpHttpExporter(traces_url("http://localhost:5000"), experiment="gateway")
    processor = BatchProcessor(exporter)
"""

from __future__ import annotations

import gzip
import http.client
import ipaddress
import operator
import os
import platform
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from traceway.tracing import semconv
from traceway.tracing._http import HttpResponse, HttpTransport
from traceway.tracing._internal import logger
from traceway.tracing._otlp_wire import encode_live_request, encode_request
from traceway.tracing.span import FinishedSpan, LiveSpan

__all__ = [
    "OtlpHttpExporter",
    "default_resource_attributes",
    "encode_request",
    "encode_spans",
    "traces_url",
]

RETRYABLE_STATUSES: Final = frozenset({429, 502, 503, 504})
_S = TypeVar("_S", FinishedSpan, LiveSpan)
_experiment_of: Final = operator.attrgetter("_experiment")


def traces_url(tracking_uri: str) -> str:
    """The OTLP traces endpoint of a tracking server: ``{uri}/v1/traces``."""
    return f"{tracking_uri.rstrip('/')}/v1/traces"


def default_resource_attributes(service_name: str | None = None) -> dict[str, Any]:
    """``service.name`` (``OTEL_SERVICE_NAME`` or ``unknown_service``) and SDK identity."""
    return {
        "service.name": service_name or os.environ.get("OTEL_SERVICE_NAME") or "unknown_service",
        "telemetry.sdk.name": "traceway",
        "telemetry.sdk.language": "python",
        "process.runtime.version": platform.python_version(),
    }


def encode_spans(
    spans: Sequence[FinishedSpan], resource_attributes: Mapping[str, Any]
) -> ExportTraceServiceRequest:
    """One OTLP request holding ``spans`` under a single resource."""
    return ExportTraceServiceRequest.FromString(encode_request(spans, resource_attributes))


class OtlpHttpExporter:
    """Sends spans as OTLP/HTTP protobuf (see the module docstring)."""

    def __init__(
        self,
        endpoint: str,
        *,
        headers: Mapping[str, str] | None = None,
        experiment: str | None = None,
        resource_attributes: Mapping[str, Any] | None = None,
        timeout_s: float = 10.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        transport: HttpTransport | None = None,
        compression: Literal["auto", "gzip", "none"] = "auto",
    ) -> None:
        if compression not in ("auto", "gzip", "none"):
            raise ValueError(f"compression must be 'auto', 'gzip' or 'none', not {compression!r}")
        #: ``"auto"``: gzip unless the endpoint is a loopback address or ``localhost``.
        self.compression = compression
        self._endpoint = endpoint
        self._local = _is_loopback(endpoint)
        self.headers = dict(headers or {})
        #: Experiment of spans that do not name one; ``None`` leaves it to the server.
        self.experiment = experiment
        self.resource_attributes = dict(resource_attributes or default_resource_attributes())
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._transport = transport or HttpTransport(timeout_s)
        self._stop = threading.Event()
        self._failing = False

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @endpoint.setter
    def endpoint(self, endpoint: str) -> None:
        """Send later batches to ``endpoint``; what was learnt about the old one is forgotten."""
        self._endpoint = endpoint
        self._local = _is_loopback(endpoint)
        self._failing = False

    def export(self, spans: Sequence[FinishedSpan]) -> bool:
        """Deliver ``spans``; False if any of them were dropped."""
        groups: dict[str | None, list[FinishedSpan]] = {}
        for span in spans:
            groups.setdefault(span.experiment or self.experiment, []).append(span)
        delivered = True
        for experiment, group in groups.items():
            delivered = self._send(experiment, group, encode_request) and delivered
        return delivered

    def export_live(self, spans: Sequence[LiveSpan]) -> bool:
        """:meth:`export` for ended live spans (a processor without span hooks)."""
        experiments = set(map(_experiment_of, spans))
        if len(experiments) == 1:  # the usual case, found without a Python loop
            experiment = experiments.pop() or self.experiment
            return self._send(experiment, list(spans), encode_live_request)
        groups: dict[str | None, list[LiveSpan]] = {}
        for span in spans:
            groups.setdefault(span._experiment or self.experiment, []).append(span)
        delivered = True
        for experiment, group in groups.items():
            delivered = self._send(experiment, group, encode_live_request) and delivered
        return delivered

    def shutdown(self) -> None:
        self._stop.set()
        self._transport.close()

    def _send(
        self,
        experiment: str | None,
        spans: list[_S],
        encode: Callable[[Sequence[_S], Mapping[str, Any]], bytes],
    ) -> bool:
        if self._failing:
            # Known to be down: one cheap connection attempt before paying for encoding.
            try:
                self._transport.connect(self.endpoint)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                return self._failed(repr(exc))
        resource = dict(self.resource_attributes)
        headers = {"Content-Type": "application/x-protobuf", **self.headers}
        if experiment is not None:
            resource[semconv.RESOURCE_EXPERIMENT] = experiment
            if experiment.isascii() and experiment.isprintable():
                headers[semconv.EXPERIMENT_HEADER] = experiment
        body = encode(spans, resource)
        if self.compression == "gzip" or (self.compression == "auto" and not self._local):
            body = gzip.compress(body, compresslevel=1, mtime=0)
            headers["Content-Encoding"] = "gzip"
        attempts = 1 if self._failing else self.max_retries + 1
        reason = ""
        for attempt in range(attempts):
            delay = 0.0
            try:
                response = self._transport.request("POST", self.endpoint, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                reason = repr(exc)
            except ValueError as exc:  # a malformed endpoint: retrying cannot help
                return self._failed(repr(exc))
            else:
                if 200 <= response.status < 300:
                    return self._succeeded()
                reason = f"HTTP {response.status}: {response.body[:200]!r}"
                if response.status not in RETRYABLE_STATUSES:
                    break
                delay = _retry_after(response)
            if attempt + 1 < attempts:
                delay = min(max(delay, self.backoff_s * 2**attempt), self.max_backoff_s)
                if self._stop.wait(delay):
                    break
        return self._failed(reason)

    def _succeeded(self) -> bool:
        if self._failing:
            self._failing = False
            logger.info("traceway: span export to %s resumed", self.endpoint)
        return True

    def _failed(self, reason: str) -> bool:
        if not self._failing:
            self._failing = True
            logger.warning(
                "traceway: cannot export spans to %s (%s); dropping spans until it is "
                "reachable again. The application is not affected.",
                self.endpoint,
                reason,
            )
        return False


def _is_loopback(url: str) -> bool:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _retry_after(response: HttpResponse) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return max(float(value), 0.0)
    except ValueError:
        return 0.0
