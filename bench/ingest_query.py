"""Ingest throughput and query latency of ``traceway server``.

Starts the real server (``--workers 1``: pinned to core 1 with taskset, the
senders on core 0) on a fresh SQLite file, then:

1. ingest: fills the store to ``--total-spans`` (default 1,000,000) with OTLP/HTTP
   protobuf batches of 512 spans (traces of 5 spans), in rounds of
   ``--round-batches`` from ``--concurrency`` senders, and reports the median
   round's spans/s and the range;
2. query: ``GET /api/traces`` (newest 100 of the experiment, and a filtered list)
   and ``GET /api/traces/{id}`` for a 1,000-span trace, p50/p95 over many calls.

Usage: ``python bench/ingest_query.py [--total-spans N] [--write]``; ``--write``
replaces the "Ingest and query" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import write_section

BATCH = 512
SPANS_PER_TRACE = 5
EXPERIMENT = "bench"


def _attr(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def make_batch(rng: random.Random, start_ns: int, spans_per_trace: int = SPANS_PER_TRACE) -> bytes:
    """One OTLP request: BATCH spans, whole traces of ``spans_per_trace``, root last."""
    spans = []
    while len(spans) < BATCH:
        trace_id = rng.getrandbits(128).to_bytes(16, "big")
        root_id = rng.getrandbits(64).to_bytes(8, "big")
        begin = start_ns + rng.randrange(0, 10**9)
        children = []
        for index in range(spans_per_trace - 1):
            children.append(
                Span(
                    trace_id=trace_id,
                    span_id=rng.getrandbits(64).to_bytes(8, "big"),
                    parent_span_id=root_id,
                    name=f"step-{index}",
                    start_time_unix_nano=begin + index * 1000,
                    end_time_unix_nano=begin + index * 1000 + 800,
                    attributes=[
                        _attr("traceway.span.type", "CHAT_MODEL" if index == 0 else "TOOL"),
                        _attr("gen_ai.request.model", "gpt-4o-mini"),
                        _attr("gen_ai.usage.input_tokens", 40),
                        _attr("gen_ai.usage.output_tokens", 12),
                        _attr(
                            "traceway.span.inputs", '{"messages":[{"role":"user","content":"hi"}]}'
                        ),
                        _attr("traceway.span.outputs", '{"content":"hello there"}'),
                    ],
                )
            )
        root = Span(
            trace_id=trace_id,
            span_id=root_id,
            name="handle",
            start_time_unix_nano=begin,
            end_time_unix_nano=begin + 5_000_000 + rng.randrange(0, 5_000_000),
            attributes=[
                _attr("traceway.span.type", "CHAIN"),
                _attr("traceway.span.inputs", '{"question":"what is up?"}'),
                _attr("traceway.trace.tags", '{"env":"bench"}'),
            ],
        )
        spans += [*children, root]
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans[:BATCH])])]
    )
    return request.SerializeToString()


async def send_batches(url: str, bodies: list[bytes], concurrency: int) -> float:
    """POST every body; returns elapsed seconds."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"content-type": "application/x-protobuf", "x-traceway-experiment": EXPERIMENT}

    async def sender(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            async with session.post(f"{url}/v1/traces", data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"ingest answered {response.status}")

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(sender(session) for _ in range(concurrency)))
        return time.perf_counter() - started


async def latencies(url: str, path: str, params: dict[str, str], calls: int) -> list[float]:
    out = []
    async with aiohttp.ClientSession() as session:
        for _ in range(calls):
            started = time.perf_counter()
            async with session.get(f"{url}{path}", params=params) as response:
                await response.read()
                assert response.status == 200, await response.text()
            out.append((time.perf_counter() - started) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_server(db: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "traceway.cli", "server", "--port", str(port),
        "--store", f"sqlite:///{db}", "--log-level", "warning", "--workers", str(workers),
    ]  # fmt: skip
    if shutil.which("taskset") and workers == 1:
        command = ["taskset", "-c", "1", *command]
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1)
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-spans", type=int, default=1_000_000)
    parser.add_argument("--round-batches", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--port", type=int, default=15123)
    parser.add_argument(
        "--workers", type=int, default=2, help="server processes (1 pins it to core 1)"
    )
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    if shutil.which("taskset") and args.workers == 1:
        os.sched_setaffinity(0, {0})
    rng = random.Random(7)
    now = time.time_ns()
    workdir = Path(tempfile.mkdtemp(prefix="traceway-bench-"))
    server = start_server(workdir / "bench.db", args.port, args.workers)
    url = f"http://127.0.0.1:{args.port}"
    try:
        # Rounds of batches, each over fresh connections, while the store grows to
        # --total-spans: the figure is the median round (and the range is shown).
        rates: list[float] = []
        stored = 0
        while stored < args.total_spans - BATCH:
            chunk = [make_batch(rng, now - 3600 * 10**9) for _ in range(args.round_batches)]
            elapsed = asyncio.run(send_batches(url, chunk, args.concurrency))
            rates.append(len(chunk) * BATCH / elapsed)
            stored += len(chunk) * BATCH
            print(f"  {stored:>9,} spans stored, this round {rates[-1]:,.0f} spans/s", flush=True)
        ingest_rate = statistics.median(rates)
        ingest_range = f"{min(rates):,.0f} to {max(rates):,.0f}"
        print(f"ingest: median {ingest_rate:,.0f} spans/s, range {ingest_range}", flush=True)
        # One big trace (1,000 spans) to read back whole.
        big = make_batch(rng, now, spans_per_trace=1000)  # first 512 spans of it
        big_request = ExportTraceServiceRequest()
        big_request.ParseFromString(big)
        big_trace_id = big_request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
        rest = ExportTraceServiceRequest()
        rest.ParseFromString(big)
        for span in rest.resource_spans[0].scope_spans[0].spans:
            span.span_id = rng.getrandbits(64).to_bytes(8, "big")
        asyncio.run(send_batches(url, [big, rest.SerializeToString()], 1))

        list_ms = asyncio.run(
            latencies(url, "/api/traces", {"experiment": EXPERIMENT, "page_size": "100"}, 200)
        )
        filtered_ms = asyncio.run(
            latencies(
                url,
                "/api/traces",
                {"experiment": EXPERIMENT, "filter": "duration_ms > 8 AND tags.env = 'bench'"},
                100,
            )
        )
        detail_ms = asyncio.run(latencies(url, f"/api/traces/{big_trace_id}", {}, 50))
        experiment_id = json.loads(
            urllib.request.urlopen(f"{url}/api/experiments/by-name/{EXPERIMENT}").read()
        )["experiment_id"]
        ui_list_ms = asyncio.run(latencies(url, f"/experiments/{experiment_id}", {}, 100))
        ui_trace_ms = asyncio.run(latencies(url, f"/traces/{big_trace_id}", {}, 50))
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)

    rows = [
        (
            "ingest, OTLP protobuf, batches of 512 spans, SQLite (median round)",
            f"{ingest_rate:,.0f} spans/s (rounds: {ingest_range})",
        ),
        (
            f"GET /api/traces newest 100 at {stored:,} spans",
            f"p50 {statistics.median(list_ms):.1f} ms, p95 {pct(list_ms, 0.95):.1f} ms",
        ),
        (
            "GET /api/traces with filter duration_ms + tags.env",
            f"p50 {statistics.median(filtered_ms):.1f} ms, p95 {pct(filtered_ms, 0.95):.1f} ms",
        ),
        (
            "GET /api/traces/{id}, 1,000-span trace",
            f"p50 {statistics.median(detail_ms):.1f} ms, p95 {pct(detail_ms, 0.95):.1f} ms",
        ),
        (
            "UI traces page (newest traces of the experiment)",
            f"p50 {statistics.median(ui_list_ms):.1f} ms, p95 {pct(ui_list_ms, 0.95):.1f} ms",
        ),
        (
            "UI trace page, 1,000-span trace",
            f"p50 {statistics.median(ui_trace_ms):.1f} ms, p95 {pct(ui_trace_ms, 0.95):.1f} ms",
        ),
        ("MLflow tracking server ingest (measured before, for reference)", "58 spans/s"),
    ]
    table = "| what | figure |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)
    print(table)
    if args.write:
        placement = (
            "server pinned to core 1, senders on core 0"
            if args.workers == 1
            else f"`traceway server --workers {args.workers}` and the senders share both cores"
        )
        note = (
            f"`python bench/ingest_query.py --workers {args.workers}`: {placement}; fresh "
            f"SQLite file filled to {args.total_spans:,} spans in rounds of "
            f"{args.round_batches} batches, each round from {args.concurrency} concurrent "
            "senders of pre-encoded batches over fresh keep-alive connections (how they "
            "fall on the workers varies the round's rate). "
            f"Ingest ratio vs MLflow's 58 spans/s: {ingest_rate / 58:,.0f}x.\n\n"
        )
        write_section("Ingest and query", note + table)


if __name__ == "__main__":
    main()
