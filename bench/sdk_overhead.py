"""SDK overhead: microseconds per traced call, Traceway side by side with its peers.

Runs, in one invocation and pinned to one core (``taskset -c 1`` when available):

- the untraced call;
- ``@traceway.trace`` capturing inputs and outputs, exporting to a drop exporter
  (the full pipeline: queue, export thread, conversion, redaction; no network);
- the same exporting over OTLP/HTTP to a closed port (the server-down path);
- a raw OpenTelemetry SDK span (``TracerProvider`` + ``BatchSpanProcessor`` with a
  no-op exporter), no inputs or outputs;
- ``@mlflow.trace`` from ``mlflow-tracing`` with its exporter's ``export`` stubbed
  out (everything in-process still runs; nothing is sent);

plus ``python -X importtime`` of ``import traceway`` and ``import mlflow``.  Each
variant runs in its own process, ``--repeats`` times in turn, ``--rounds`` timed
rounds each; the table shows medians.  ``--write`` puts the table in the "SDK
overhead" section of ``bench/RESULTS.md``.

    python bench/sdk_overhead.py [--repeats 3] [--rounds 5] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from results import cpu_model, version, write_section  # bench/results.py: shared helpers

SECTION = "SDK overhead"
PINNED_ENV = "TRACEWAY_BENCH_PINNED"

VARIANTS = {
    "untraced": "untraced call",
    "traceway": "`@traceway.trace`, inputs + outputs, drop exporter",
    "traceway_down": "`@traceway.trace`, inputs + outputs, OTLP to a closed port",
    "otel": "raw OpenTelemetry SDK span, BatchSpanProcessor + no-op exporter",
    "mlflow": "`@mlflow.trace` (mlflow-tracing), export stubbed out",
}
CALLS = {"mlflow": 1_000}
DEFAULT_CALLS = 20_000


def work(query: str, k: int = 3, filters: dict[str, str] | None = None) -> dict[str, Any]:
    """The traced function: small inputs and outputs, like a retriever call."""
    return {"query": query, "k": k, "hits": [f"doc-{i}" for i in range(k)]}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- variants (each runs in its own process) ---------------------------------


def setup_untraced() -> tuple[Callable[..., Any], Callable[[], dict[str, Any]]]:
    return work, dict


def setup_traceway(down: bool) -> tuple[Callable[..., Any], Callable[[], dict[str, Any]]]:
    import traceway

    if down:
        traceway.set_tracking_uri(f"http://127.0.0.1:{closed_port()}")
    else:

        class DropExporter:
            def export(self, spans: Any) -> bool:
                return True

            def shutdown(self) -> None:
                pass

        traceway.configure(exporter=DropExporter())

    def stats() -> dict[str, Any]:
        traceway.flush(timeout=2)
        export_stats = traceway.tracing.export_stats()
        return {"queue_full_drops": export_stats.dropped_queue_full if export_stats else 0}

    return traceway.trace(work), stats


def setup_otel() -> tuple[Callable[..., Any], Callable[[], dict[str, Any]]]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class NoopExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoopExporter()))
    tracer = provider.get_tracer("bench")

    def traced(*args: Any, **kwargs: Any) -> Any:
        with tracer.start_as_current_span("work"):
            return work(*args, **kwargs)

    return traced, dict


def setup_mlflow() -> tuple[Callable[..., Any], Callable[[], dict[str, Any]]]:
    os.environ["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{closed_port()}"
    import mlflow
    from mlflow.entities.trace_location import MlflowExperimentLocation
    from mlflow.tracing.export.mlflow_v3 import MlflowV3SpanExporter
    from mlflow.tracing.provider import set_destination

    exported = [0]

    def stub(self: Any, spans: Any) -> None:
        exported[0] += len(spans)

    MlflowV3SpanExporter.export = stub  # type: ignore[method-assign]
    # An explicit experiment: the default lookup asks the (absent) tracking server.
    set_destination(MlflowExperimentLocation("0"))
    return mlflow.trace(work), lambda: {"spans_reaching_exporter": exported[0]}


def run_variant(name: str, rounds: int) -> dict[str, Any]:
    if name == "untraced":
        fn, stats = setup_untraced()
    elif name in ("traceway", "traceway_down"):
        fn, stats = setup_traceway(down=name == "traceway_down")
    elif name == "otel":
        fn, stats = setup_otel()
    else:
        fn, stats = setup_mlflow()
    calls = CALLS.get(name, DEFAULT_CALLS)
    filters = {"lang": "en"}
    for _ in range(calls // 5):
        fn("what is traceway?", k=3, filters=filters)
    per_call = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn("what is traceway?", k=3, filters=filters)
        per_call.append((time.perf_counter() - start) / calls * 1e6)
    return {"us": per_call, **stats()}


# -- the driver --------------------------------------------------------------


def pin_to_one_core() -> str:
    """Re-run this script under ``taskset -c 1`` once; describe the pinning."""
    if os.environ.get(PINNED_ENV):
        return os.environ[PINNED_ENV]
    taskset = shutil.which("taskset")
    if taskset is None or (os.cpu_count() or 1) < 2:
        os.environ[PINNED_ENV] = "not pinned (taskset unavailable)"
        return os.environ[PINNED_ENV]
    os.environ[PINNED_ENV] = "pinned to CPU 1 with taskset"
    os.execv(taskset, [taskset, "-c", "1", sys.executable, *sys.argv])
    raise AssertionError("unreachable")


def import_ms(module: str, runs: int = 5) -> float:
    """Median cumulative ``-X importtime`` of ``module``, in milliseconds."""
    values = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
        )
        pattern = re.compile(rf"^import time:\s+\d+ \|\s+(\d+) \|\s{{1,2}}{re.escape(module)}$")
        for line in result.stderr.splitlines():
            match = pattern.match(line)
            if match:
                values.append(int(match.group(1)) / 1000)
    return statistics.median(values)


def measure(repeats: int, rounds: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {name: {"us": []} for name in VARIANTS}
    for _ in range(repeats):
        for name in VARIANTS:
            output = subprocess.run(
                [sys.executable, __file__, "--variant", name, "--rounds", str(rounds)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            data = json.loads(output.strip().splitlines()[-1])
            results[name]["us"].extend(data.pop("us"))
            for key, value in data.items():
                results[name][key] = results[name].get(key, 0) + value
    return results


def render(results: dict[str, dict[str, Any]], pinning: str, repeats: int, rounds: int) -> str:
    median = {name: statistics.median(r["us"]) for name, r in results.items()}
    base = median["untraced"]
    lines = [
        f"Run by `bench/sdk_overhead.py` on {cpu_model()}, {pinning}; each variant in its own "
        "process, "
        f"{repeats} x {rounds} timed rounds of {DEFAULT_CALLS:,} calls "
        f"({CALLS['mlflow']:,} for MLflow), median shown.  Versions: traceway "
        f"{version('traceway')}, opentelemetry-sdk {version('opentelemetry-sdk')}, "
        f"mlflow-tracing {version('mlflow-tracing')}.",
        "",
        "| call | µs / call | added µs | x raw OTel span | x `@mlflow.trace` |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, label in VARIANTS.items():
        us = median[name]
        added = "-" if name == "untraced" else f"{us - base:.1f}"
        vs_otel = "-" if name == "untraced" else f"{us / median['otel']:.2f}"
        vs_mlflow = "-" if name == "untraced" else f"{us / median['mlflow']:.3f}"
        lines.append(f"| {label} | {us:.1f} | {added} | {vs_otel} | {vs_mlflow} |")
    traceway_ms, mlflow_ms = import_ms("traceway"), import_ms("mlflow")
    lines += [
        "",
        "| import (`python -X importtime`, cumulative, median of 5) | ms |",
        "|---|---:|",
        f"| `import traceway` | {traceway_ms:.0f} |",
        f"| `import mlflow` (mlflow-tracing) | {mlflow_ms:.0f} |",
        "",
        "Notes: the Traceway rows include the export thread's work (it shares the pinned "
        "core); spans pushed out of a full queue during the tight loop: "
        f"{results['traceway'].get('queue_full_drops', 0):,} (drop exporter), "
        f"{results['traceway_down'].get('queue_full_drops', 0):,} (closed port, where the "
        "exporter is backing off).  MLflow's exporter received "
        f"{results['mlflow'].get('spans_reaching_exporter', 0):,} spans, so its in-process "
        "pipeline ran in full.  The OpenTelemetry row records no inputs or outputs.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.rounds)))
        return
    pinning = pin_to_one_core()
    body = render(measure(args.repeats, args.rounds), pinning, args.repeats, args.rounds)
    print(f"## {SECTION}\n\n{body}")
    if args.write:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()
