"""Autolog overhead: what tracing adds to one ``client.chat.completions.create`` call.

Runs, in one invocation, ``traceway.openai.autolog()`` (exporting to a drop
exporter: the full pipeline of span, request and response capture, queue, export
thread, serialisation and redaction, with no network) side by side with
``mlflow.openai.autolog()`` (mlflow-tracing, its exporter's ``export`` stubbed out
and the experiment destination set, so its in-process pipeline runs in full but
nothing is sent), in two settings:

- end to end, against a fast local upstream (an asyncio server answering every
  request with the same ``chat.completion``, in its own process on CPU 0);
- with the client's ``create`` replaced by a stub returning a prebuilt
  ``ChatCompletion``: no HTTP and no client code, so what remains is each
  autolog's own work.

Each (library, setting) runs in its own process on CPU 1 (the export threads share
that core, so their work is counted) and alternates timed rounds with autolog off
and on, ``--rounds`` pairs, ``--repeats`` times in turn.  What an autolog adds is
the median of the paired differences, which cancels the drift of a busy machine;
CPU time (the client process's, every thread included) is the steadier figure, as
it leaves out the time spent waiting for the upstream.  ``--write`` puts the tables
in the "Autolog overhead" section of ``bench/RESULTS.md``.

    python bench/autolog_overhead.py [--repeats 3] [--rounds 10] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from results import cpu_model, version, write_section  # bench/results.py: shared helpers

SECTION = "Autolog overhead"
SERVER_CPU = 0
CLIENT_CPU = 1
LIBRARIES = {
    "traceway": "`traceway.openai.autolog()`, drop exporter",
    "mlflow": "`mlflow.openai.autolog()` (mlflow-tracing), export stubbed out",
}
SETTINGS = {
    "http": "plain `client.chat.completions.create`, local upstream",
    "stub": "`create` stubbed out (returns a prebuilt `ChatCompletion`)",
}
# Calls per timed round, by (library, setting): enough for rounds of about a second.
CALLS = {
    ("traceway", "http"): 300,
    ("mlflow", "http"): 100,
    ("traceway", "stub"): 3_000,
    ("mlflow", "stub"): 200,
}
MESSAGES: list[Any] = [
    {"role": "system", "content": "You answer questions about observability."},
    {"role": "user", "content": "What does a gateway span record?"},
]
COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "It records the route, each attempt, latency, tokens and cost.",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 28, "completion_tokens": 14, "total_tokens": 42},
    "system_fingerprint": "fp_bench",
}


def pin(cpu: int) -> None:
    """Pin this process to ``cpu`` when the machine has it."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


# -- the upstream (its own process) ----------------------------------------------


def serve(port_file: Path) -> None:
    """Answer every HTTP/1.1 request with ``COMPLETION`` until killed."""
    pin(SERVER_CPU)
    body = json.dumps(COMPLETION).encode()
    response = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def listen() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_file.write_text(str(server.sockets[0].getsockname()[1]))
        async with server:
            await server.serve_forever()

    asyncio.run(listen())


def start_upstream() -> tuple[subprocess.Popen[bytes], int]:
    port_file = Path(f"/tmp/traceway-bench-upstream-{os.getpid()}")
    port_file.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    deadline = time.monotonic() + 20
    while not port_file.exists() or not port_file.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the upstream did not start")
        time.sleep(0.05)
    port = int(port_file.read_text())
    port_file.unlink()
    return process, port


# -- client variants (each in its own process) -----------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Autolog:
    """One library's autolog, as a variant process drives it."""

    switch: Callable[[bool], None]  # turn it on (True) or off
    settle: Callable[[], None]  # wait for the export work of the calls made so far
    stats: Callable[[], dict[str, Any]]


def setup_traceway() -> Autolog:
    import traceway

    class DropExporter:
        def __init__(self) -> None:
            self.spans = 0

        def export(self, spans: Any) -> bool:
            self.spans += len(spans)
            return True

        def shutdown(self) -> None:
            pass

    exporter = DropExporter()
    traceway.configure(exporter=exporter)

    def switch(on: bool) -> None:
        traceway.openai.autolog(disable=not on)

    def stats() -> dict[str, Any]:
        traceway.flush(timeout=5)
        export_stats = traceway.tracing.export_stats()
        return {
            "spans_exported": exporter.spans,
            "queue_full_drops": export_stats.dropped_queue_full if export_stats else 0,
        }

    def settle() -> None:
        traceway.flush(timeout=5)

    return Autolog(switch, settle, stats)


def setup_mlflow() -> Autolog:
    os.environ["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{closed_port()}"
    import mlflow
    from mlflow.entities.trace_location import MlflowExperimentLocation
    from mlflow.tracing.export.mlflow_v3 import MlflowV3SpanExporter
    from mlflow.tracing.provider import set_destination

    exported = [0]

    def stub(self: Any, spans: Any) -> None:
        exported[0] += len(spans)

    MlflowV3SpanExporter.export = stub  # type: ignore[method-assign]
    # An explicit experiment: without it mlflow-tracing records nothing here.
    set_destination(MlflowExperimentLocation("0"))

    def switch(on: bool) -> None:
        # Off, MLflow's patch stays in place and passes calls through: its small cost
        # then counts as the baseline's, which if anything flatters MLflow.
        mlflow.openai.autolog(disable=not on)

    # Its export work is not waited for, which if anything flatters MLflow.
    return Autolog(switch, lambda: None, lambda: {"spans_exported": exported[0]})


def stub_create() -> None:
    """Replace ``chat.completions.create`` by a stub answering ``COMPLETION`` at once."""
    from openai.resources.chat.completions import Completions
    from openai.types.chat import ChatCompletion

    answer = ChatCompletion.model_validate(COMPLETION)

    def create(self: Any, **kwargs: Any) -> ChatCompletion:
        return answer

    Completions.create = create  # type: ignore[method-assign,assignment]


def run_variant(library: str, setting: str, port: int, rounds: int) -> dict[str, Any]:
    """Alternate timed rounds with ``library``'s autolog off and on; per-call µs."""
    pin(CLIENT_CPU)
    from openai import OpenAI

    if setting == "stub":
        stub_create()  # before autolog, which then wraps the stub
    autolog = setup_traceway() if library == "traceway" else setup_mlflow()
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-bench", max_retries=0)
    calls = CALLS[library, setting]

    def timed_round(on: bool) -> tuple[float, float]:
        autolog.switch(on)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0.2)
        autolog.settle()  # the round's export work belongs to the round
        # Process CPU time covers every thread, the export threads included.
        cpu = (time.process_time() - start_cpu) / calls * 1e6
        return (time.perf_counter() - start_wall) / calls * 1e6, cpu

    timed_round(True)  # warm-up
    results: dict[str, list[float]] = {"off_wall": [], "off_cpu": [], "on_wall": [], "on_cpu": []}
    for index in range(rounds):
        # Alternate which half of the pair goes first, so neither always follows the other.
        for on in (False, True) if index % 2 else (True, False):
            wall, cpu = timed_round(on)
            state = "on" if on else "off"
            results[f"{state}_wall"].append(wall)
            results[f"{state}_cpu"].append(cpu)
    client.close()
    return {**results, **autolog.stats()}


# -- the driver ----------------------------------------------------------------


def measure(repeats: int, rounds: int) -> dict[tuple[str, str], dict[str, Any]]:
    upstream, port = start_upstream()
    results: dict[tuple[str, str], dict[str, Any]] = {key: {} for key in CALLS}
    try:
        for _ in range(repeats):
            for library, setting in CALLS:
                command = [sys.executable, __file__, "--variant", f"{library}:{setting}"]
                output = subprocess.run(
                    [*command, "--port", str(port), "--rounds", str(rounds)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                data = json.loads(output.strip().splitlines()[-1])
                merged = results[library, setting]
                for key, value in data.items():
                    merged[key] = merged.get(key, [] if isinstance(value, list) else 0) + value
    finally:
        upstream.kill()
        upstream.wait()
    return results


def median_added(data: dict[str, Any], series: str) -> float:
    """The median over pairs of (autolog on) minus (autolog off), per call."""
    return statistics.median(
        on - off for on, off in zip(data[f"on_{series}"], data[f"off_{series}"], strict=True)
    )


def table(results: dict[tuple[str, str], dict[str, Any]], setting: str) -> list[str]:
    baseline = [value for library in LIBRARIES for value in results[library, setting]["off_cpu"]]
    baseline_wall = [
        value for library in LIBRARIES for value in results[library, setting]["off_wall"]
    ]
    mlflow_added = median_added(results["mlflow", setting], "cpu")
    lines = [
        "| call | wall µs / call | added wall µs | CPU µs / call | added CPU µs "
        "| added CPU, x MLflow's |",
        "|---|---:|---:|---:|---:|---:|",
        f"| {SETTINGS[setting]} | {statistics.median(baseline_wall):.1f} | - "
        f"| {statistics.median(baseline):.1f} | - | - |",
    ]
    for library, label in LIBRARIES.items():
        data = results[library, setting]
        added = median_added(data, "cpu")
        lines.append(
            f"| {label} | {statistics.median(data['on_wall']):.1f} "
            f"| {median_added(data, 'wall'):.1f} | {statistics.median(data['on_cpu']):.1f} "
            f"| {added:.1f} | {added / mlflow_added:.3f} |"
        )
    return lines


def render(results: dict[tuple[str, str], dict[str, Any]], repeats: int, rounds: int) -> str:
    pinned = "upstream on CPU 0, client on CPU 1" if (os.cpu_count() or 1) > 1 else "unpinned"
    added = {key: median_added(data, "cpu") for key, data in results.items()}
    added_wall = {key: median_added(data, "wall") for key, data in results.items()}
    ratio = {setting: added["traceway", setting] / added["mlflow", setting] for setting in SETTINGS}
    calls = ", ".join(
        f"{count:,} ({library}, {setting})" for (library, setting), count in CALLS.items()
    )
    spans = ", ".join(
        f"{results[key].get('spans_exported', 0):,} ({key[0]}, {key[1]})" for key in CALLS
    )
    drops = sum(results["traceway", setting].get("queue_full_drops", 0) for setting in SETTINGS)
    return "\n".join(
        [
            f"Run by `bench/autolog_overhead.py` on {cpu_model()}, {pinned}; each library "
            f"and setting in its own process, {repeats} x {rounds} pairs of timed rounds "
            f"with autolog off and on (calls per round: {calls}).  Added = median of the "
            "paired differences; CPU = the client process's CPU time, export threads "
            f"included.  Versions: traceway {version('traceway')}, openai "
            f"{version('openai')}, mlflow-tracing {version('mlflow-tracing')}.",
            "",
            "End to end, against a local upstream returning a fixed `chat.completion`:",
            "",
            *table(results, "http"),
            "",
            "Each autolog's own work, with the client's `create` stubbed out:",
            "",
            *table(results, "stub"),
            "",
            f"End to end Traceway adds {added['traceway', 'http']:.0f} µs of CPU per call "
            f"({added_wall['traceway', 'http']:.0f} µs wall) where MLflow adds "
            f"{added['mlflow', 'http']:.0f} µs ({added_wall['mlflow', 'http']:.0f} µs "
            f"wall): {ratio['http']:.3f}x.  Its own work is "
            f"{added['traceway', 'stub']:.0f} µs against MLflow's "
            f"{added['mlflow', 'stub']:.0f} µs: {ratio['stub']:.3f}x.  Target: at most "
            f"0.1x.  Load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the "
            f"end of the run.  Spans reaching the exporters: {spans}; Traceway's "
            f"queue-full drops: {drops}.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # "<library>:<setting>"
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.variant:
        library, setting = args.variant.split(":")
        print(json.dumps(run_variant(library, setting, args.port, args.rounds)))
        return
    body = render(measure(args.repeats, args.rounds), args.repeats, args.rounds)
    print(f"## {SECTION}\n\n{body}")
    if args.write:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()
