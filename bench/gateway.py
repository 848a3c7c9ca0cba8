"""Gateway overhead: Traceway side by side with LiteLLM, Portkey, a bare proxy and the upstream.

One run on a 2-core machine: the nginx mock upstream (``peers/nginx.conf``), an OTLP sink
(``peers/otlp-sink-nginx.conf``, nginx too) and ``wrk`` share core 0 (``--load-core``); each
target runs alone on core 1 (``--gateway-core``), started before its cases and stopped after
them, in interleaved rounds.  Targets:

- ``upstream``: nginx hit directly (the floor);
- ``bare``: ``bench/bare_proxy.py``, raw ASGI + pooled aiohttp on uvicorn (uvloop, httptools);
- ``traceway``: ``traceway gateway`` with tracing on, exporting OTLP to the sink;
- ``litellm``: LiteLLM proxy (``peers/litellm.yaml``) from ``bench/.work/litellm-venv``;
- ``portkey``: ``@portkey-ai/gateway`` from ``bench/.work/portkey``; its streaming cases run
  the patched copy (``peers/portkey-stream-fix.cjs``) unless ``--portkey-stock-stream``,
  since 1.15.2 answers HTTP 500 to every stream on Node 20.

Cases: JSON and SSE chat completions, each at ``-c32`` (requests/s, CPU per request) and
``-c1 --latency`` (p50/p99).  Before measuring, a target must answer each mode with 200 and
the mock's exact content; a ``wrk`` run that saw any non-2xx answer or socket error fails
its case instead of giving a number.  Missing peers are installed by ``peers/setup.sh``.

    python bench/gateway.py [--quick] [--rounds 3] [--duration 10] [--targets a,b] [--write]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from peers.harness import (
    Measure,
    Processes,
    core_busy_seconds,
    group_cpu_seconds,
    nginx_binary,
    port_free,
    run_wrk,
    start_nginx,
    verify,
)
from results import write_section  # bench/results.py: one section per script

SECTION = "Gateway overhead"
HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
WORK = HERE / ".work"
RUN = WORK / "run"  # logs and generated nginx configs of the last run
VENV_BIN = Path(sys.executable).parent
JSON_PORT, SSE_PORT, SINK_PORT = 18080, 18081, 14318
PORTS = {"bare": 14001, "traceway": 14100, "litellm": 14000, "portkey": 14787}
TARGETS = ("upstream", "bare", "traceway", "litellm", "portkey")
LABELS = {
    "upstream": "upstream (nginx, direct)",
    "bare": "bare proxy (ASGI + aiohttp)",
    "traceway": "**Traceway** (tracing on)",
    "litellm": "LiteLLM proxy",
    "portkey": "Portkey gateway",
}
EXPECTED = {False: "Hello! How can I help you today?", True: "Hello! How can I help?"}
MODES = (("json", False), ("sse", True))


@dataclass(frozen=True)
class Server:
    """How to start one target for one mode; equal servers are started once for both."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = HERE
    startup_s: float = 30.0


@dataclass(frozen=True)
class Target:
    """What wrk loads: its port and, per mode, its server, routing headers and model."""

    name: str
    port: int
    server: Callable[[bool], Server | None]  # by `stream`; None: nothing to start
    headers: Callable[[bool], dict[str, str]] = lambda stream: {}
    model: Callable[[bool], str] = lambda stream: "gpt-4o"

    def url_port(self, stream: bool) -> int:
        return SSE_PORT if self.name == "upstream" and stream else self.port


def upstream_base(stream: bool) -> str:
    return f"http://127.0.0.1:{SSE_PORT if stream else JSON_PORT}"


def traceway_command(port: int, export_to: str) -> tuple[list[str], str]:
    """``traceway gateway`` when the CLI has it, else the same standalone app under uvicorn."""
    cli = VENV_BIN / "traceway"
    if subprocess.run([cli, "gateway", "--help"], capture_output=True).returncode == 0:
        argv = [str(cli), "gateway", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--log-level", "warning", "--export-to", export_to]
        return argv, "`traceway gateway --export-to`"
    script = (
        "import uvicorn\n"
        "from traceway.gateway.settings import GatewaySettings\n"
        "from traceway.gateway.standalone import create_standalone_app\n"
        f"app = create_standalone_app(GatewaySettings(), export_to={export_to!r})\n"
        f"uvicorn.run(app, host='127.0.0.1', port={port}, loop='uvloop', http='httptools',"
        " log_level='warning', access_log=False)\n"
    )
    return [sys.executable, "-c", script], "its standalone app under uvicorn (no CLI command yet)"


def build_targets(core: int, portkey_stock_stream: bool) -> dict[str, Target]:
    pin = ["taskset", "-c", str(core)]
    bare = [str(VENV_BIN / "python"), "-m", "uvicorn", "bare_proxy:app", "--app-dir", str(HERE)]
    bare += ["--host", "127.0.0.1", "--port", str(PORTS["bare"]), "--loop", "uvloop"]
    bare += ["--http", "httptools", "--log-level", "warning", "--no-access-log"]
    traceway, _ = traceway_command(PORTS["traceway"], f"http://127.0.0.1:{SINK_PORT}")
    litellm = [str(WORK / "litellm-venv/bin/litellm"), "--config", str(PEERS / "litellm.yaml")]
    litellm += ["--host", "127.0.0.1", "--port", str(PORTS["litellm"]), "--num_workers", "1"]
    litellm_env = {
        "LITELLM_MASTER_KEY": "sk-fake",  # the bearer token wrk-chat.lua sends
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
    }

    def portkey(stream: bool) -> Server:
        folder = "portkey-streamfix" if stream and not portkey_stock_stream else "portkey"
        script = "node_modules/@portkey-ai/gateway/build/start-server.js"
        argv = ["node", script, "--headless", f"--port={PORTS['portkey']}"]
        return Server(pin + argv, {"NODE_ENV": "production"}, WORK / folder)

    def routed(prefix: str) -> Callable[[bool], dict[str, str]]:
        return lambda stream: {
            f"x-{prefix}-provider": "openai",
            f"x-{prefix}-custom-host": f"{upstream_base(stream)}/v1",
        }

    return {
        "upstream": Target("upstream", JSON_PORT, lambda stream: None),
        "bare": Target(
            "bare",
            PORTS["bare"],
            lambda stream: Server(pin + bare, {"BARE_PROXY_UPSTREAM": upstream_base(stream)}),
        ),
        "traceway": Target(
            "traceway",
            PORTS["traceway"],
            lambda stream: Server(pin + traceway, {"TRACEWAY_ALLOWED_CUSTOM_HOSTS": "127.0.0.1"}),
            headers=routed("traceway"),
        ),
        "litellm": Target(
            "litellm",
            PORTS["litellm"],
            lambda stream: Server(pin + litellm, litellm_env, RUN, startup_s=120.0),
            model=lambda stream: "gpt-4o-stream" if stream else "gpt-4o",
        ),
        "portkey": Target("portkey", PORTS["portkey"], portkey, headers=routed("portkey")),
    }


# -- the run -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """Every measurement of a run, keyed by (target, mode, connections)."""

    measures: dict[tuple[str, str, int], list[Measure]] = field(default_factory=dict)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    exports: list[int] = field(default_factory=lambda: [0, 0, 0])  # see sink_totals


def sink_totals(folder: Path) -> tuple[int, int, int]:
    """(export requests, of which not 200, body bytes) the OTLP sink has logged so far."""
    path = folder / "traces.log"
    rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    rows = [row for row in rows if len(row) == 2]
    bad = sum(1 for status, _ in rows if status != "200")
    return len(rows), bad, sum(int(size) for _, size in rows if size.isdigit())


def measure_mode(
    target: Target, stream: bool, pid: int | None, args: argparse.Namespace, out: Outcome
) -> None:
    """Verify one mode of a running target, warm it up, then run its two cases once."""
    mode = "sse" if stream else "json"
    why = verify(
        target.url_port(stream), target.model(stream), stream, target.headers(stream),
        EXPECTED[stream],
    )  # fmt: skip
    if why is not None:
        out.failures[(target.name, mode)] = why
        print(f"  {target.name:9} {mode:4}: {why}", flush=True)
        return
    env = {
        "MODEL": target.model(stream),
        "STREAM": "1" if stream else "0",
        "AUTH": "sk-fake",
        "HEADERS": "\n".join(f"{k}: {v}" for k, v in target.headers(stream).items()),
    }
    port = target.url_port(stream)
    run_wrk(port, 32, min(2.0, args.duration), args.load_core, env)  # warm-up, not kept
    for conns in (32, 1):
        cpu = group_cpu_seconds(pid) if pid else 0.0
        busy, start = core_busy_seconds(args.gateway_core), time.monotonic()
        result = run_wrk(port, conns, args.duration, args.load_core, env)
        wall = time.monotonic() - start
        if pid:
            used = group_cpu_seconds(pid) - cpu
            result.cpu_ms = used * 1e3 / result.requests if result.requests else None
            result.foreign = max(0.0, core_busy_seconds(args.gateway_core) - busy - used) / wall
        out.measures.setdefault((target.name, mode, conns), []).append(result)
        shown = result.error or (
            f"{result.rps:,.0f} req/s"
            if conns > 1
            else f"p50 {fmt(result.p50_ms)} ms, p99 {fmt(result.p99_ms)} ms"
        )
        print(f"  {target.name:9} {mode:4} c={conns:<2}: {shown}", flush=True)


def run_target(
    procs: Processes, target: Target, first_round: bool, sink: Path, args: argparse.Namespace,
    out: Outcome,
) -> None:  # fmt: skip
    """Start the target (once per distinct server), measure both modes, stop it."""
    running: Server | None = None
    pid: int | None = None
    before = sink_totals(sink)
    for _, stream in MODES:
        server = target.server(stream)
        if server is not None and server != running:
            procs.stop(target.name)
            pid = procs.start(target.name, server.argv, server.env, server.cwd)
            running = server
            try:
                procs.wait_ready(target.name, target.port, server.startup_s)
            except RuntimeError as exc:
                print(f"  {target.name:9}: {exc}", flush=True)
                out.failures[(target.name, "sse" if stream else "json")] = "fails to start"
                continue
        if target.name == "portkey" and not stream and first_round:
            stock = verify(target.port, "gpt-4o", True, target.headers(True), EXPECTED[True])
            out.notes.append(f"Portkey 1.15.2 as published, streaming: {stock or 'answers 200'}.")
        measure_mode(target, stream, pid, args, out)
    procs.stop(target.name)
    if target.name == "traceway":
        after = sink_totals(sink)
        out.exports = [e + a - b for e, a, b in zip(out.exports, after, before, strict=True)]


def run(args: argparse.Namespace) -> Outcome:
    """Start the upstream and the sink, then every target in turn, ``args.rounds`` times."""
    targets = build_targets(args.gateway_core, args.portkey_stock_stream)
    busy = [p for p in (JSON_PORT, SSE_PORT, SINK_PORT, *PORTS.values()) if not port_free(p)]
    if busy:
        raise SystemExit(f"ports already in use on 127.0.0.1: {busy} (another run?)")
    out = Outcome()
    procs = Processes(RUN)
    (RUN / "sink" / "traces.log").unlink(missing_ok=True)
    try:
        start_nginx(
            procs, "mock-upstream", "nginx.conf", "/tmp/peers-nginx", RUN / "upstream",
            args.load_core,
        )  # fmt: skip
        sink = start_nginx(
            procs, "otlp-sink", "otlp-sink-nginx.conf", "/tmp/peers-otlp-sink", RUN / "sink",
            args.load_core,
        )  # fmt: skip
        for name, port in (("mock-upstream", JSON_PORT), ("mock-upstream", SSE_PORT)):
            procs.wait_ready(name, port, 10)
        procs.wait_ready("otlp-sink", SINK_PORT, 10)
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}/{args.rounds}", flush=True)
            for name in args.targets:
                run_target(procs, targets[name], round_no == 1, sink, args, out)
    finally:
        procs.stop_all()
    if "traceway" in args.targets:
        requests, bad, size = out.exports
        out.notes.append(
            f"Tracing was on: the OTLP sink received {requests:,} export requests "
            f"({size / 1e6:,.1f} MB of spans; {bad} not answered 200) during the Traceway cases."
        )
    return out


# -- the report --------------------------------------------------------------------------

Cell = float | str | None  # a median, why the case failed, or not measured


def median(out: Outcome, name: str, mode: str, conns: int, attr: str) -> Cell:
    """The median over rounds, the failure that stopped the case, or None if not run."""
    if (name, mode) in out.failures:
        return out.failures[(name, mode)]
    runs = out.measures.get((name, mode, conns), [])
    if errors := [m.error for m in runs if m.error]:
        return f"fails ({errors[0]})"
    values = [v for v in (getattr(m, attr) for m in runs) if v is not None]
    return statistics.median(values) if values else None


def added_p50(out: Outcome, name: str, mode: str) -> Cell:
    p50, base = median(out, name, mode, 1, "p50_ms"), median(out, "upstream", mode, 1, "p50_ms")
    if isinstance(p50, float) and isinstance(base, float):
        return p50 - base
    return p50 if isinstance(p50, str) else None


def foreign_share(out: Outcome, name: str, mode: str) -> str:
    """The median share of the target's core that other processes took during its cases."""
    runs = out.measures.get((name, mode, 32), []) + out.measures.get((name, mode, 1), [])
    shares = [m.foreign for m in runs if m.foreign is not None]
    return f"{statistics.median(shares):.0%}" if shares else "-"


def ratio(a: Cell, b: Cell) -> Cell:
    return a / b if isinstance(a, float) and isinstance(b, float) and b > 0 else None


def fmt(value: Cell, kind: str = "ms") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if kind == "rps":
        return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
    if kind == "x":
        return f"{value:.3f}x" if value < 0.1 else f"{value:.2f}x"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def tables(out: Outcome, names: list[str]) -> str:
    head = (
        "| target | req/s (c=32) | CPU ms/request (c=32) | p50 ms (c=1) | p99 ms (c=1) "
        "| added p50 ms | core used by others |\n|---|---:|---:|---:|---:|---:|---:|\n"
    )
    parts = []
    for mode, title in (("json", "Non-streaming (JSON)"), ("sse", "Streaming (SSE)")):
        rows = []
        for name in names:
            own = name != "upstream"  # nginx shares the load core: its CPU is not its own
            if isinstance(failed := median(out, name, mode, 32, "rps"), str):
                rows.append(f"| {LABELS[name]} | {failed} | | | | | |")
                continue
            cells = [
                fmt(median(out, name, mode, 32, "rps"), "rps"),
                fmt(median(out, name, mode, 32, "cpu_ms")) if own else "-",
                fmt(median(out, name, mode, 1, "p50_ms")),
                fmt(median(out, name, mode, 1, "p99_ms")),
                fmt(added_p50(out, name, mode)) if own else "0",
                foreign_share(out, name, mode) if own else "-",
            ]
            rows.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
        parts.append(f"**{title}**\n\n{head}" + "\n".join(rows))
    peers = [p for p in ("bare", "portkey", "litellm") if p in names]
    if "traceway" in names and peers:
        lines = [
            "| Traceway / peer | req/s JSON | req/s SSE | added p50 JSON | added p50 SSE "
            "| CPU/request JSON | CPU/request SSE |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for peer in peers:
            ratios = [
                ratio(median(out, "traceway", m, 32, "rps"), median(out, peer, m, 32, "rps"))
                for m, _ in MODES
            ]
            ratios += [
                ratio(added_p50(out, "traceway", m), added_p50(out, peer, m)) for m, _ in MODES
            ]
            ratios += [
                ratio(median(out, "traceway", m, 32, "cpu_ms"), median(out, peer, m, 32, "cpu_ms"))
                for m, _ in MODES
            ]
            lines.append(f"| {LABELS[peer]} | " + " | ".join(fmt(r, "x") for r in ratios) + " |")
        parts.append(
            "**Ratios** (req/s: above 1x Traceway serves more; added p50 and CPU per request: "
            "below 1x Traceway adds less latency or spends less CPU. CPU per request is the "
            "figure least moved by other load on the machine)\n\n" + "\n".join(lines)
        )
    return "\n\n".join(parts)


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def versions() -> str:
    def dist(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    get = "import importlib.metadata as m; print(m.version('litellm'))"
    package = WORK / "portkey/node_modules/@portkey-ai/gateway/package.json"
    portkey = json.loads(package.read_text())["version"] if package.exists() else "not installed"
    wrk = _output(["wrk", "-v"]).split()  # "wrk debian/4.1.0-3+b2 [epoll] Copyright ..."
    pairs = [
        ("traceway", dist("traceway")),
        ("litellm", _output([str(WORK / "litellm-venv/bin/python"), "-c", get])),
        ("@portkey-ai/gateway", portkey),
        ("node", _output(["node", "--version"]).lstrip("v")),
        ("nginx", _output([nginx_binary(), "-v"]).rsplit("/", 1)[-1]),
        ("wrk", wrk[1].removeprefix("debian/") if len(wrk) > 1 else "unknown"),
        ("uvicorn", dist("uvicorn")),
        ("aiohttp", dist("aiohttp")),
    ]
    return "Versions: " + ", ".join(f"{name} {version}" for name, version in pairs) + "."


def report(out: Outcome, args: argparse.Namespace, traceway_how: str) -> str:
    rounds = f"medians of {args.rounds} interleaved rounds" if args.rounds > 1 else "one round"
    method = (
        f"`python bench/gateway.py{' --quick' if args.quick else ''}`: nginx mock upstream, "
        f"OTLP sink and `wrk -t1` on core {args.load_core}; each target alone on core "
        f"{args.gateway_core}; {args.duration:g} s per case after a warm-up, {rounds}. Each "
        "request is a 2-message `gpt-4o` chat completion answered by the mock (JSON on :18080, "
        "SSE on :18081); every target was first checked to answer it with 200 and the mock's "
        "text. Added p50 = target p50 - upstream p50 at c=1, same mode. A case whose wrk run "
        "saw any non-2xx answer or socket error shows why it failed instead of a number."
    )
    notes = [f"Traceway ran as {traceway_how}, exporting OTLP to the sink."]
    if "portkey" in args.targets and not args.portkey_stock_stream:
        notes.append(
            "Portkey's streaming rows use a local fix (`bench/peers/portkey-stream-fix.cjs`: "
            "copy the streamed Response before adding headers, as proposed upstream); its JSON "
            "rows use the package as published."
        )
    foreign = [m.foreign for runs in out.measures.values() for m in runs if m.foreign is not None]
    if foreign:
        notes.append(
            f"Other processes on this machine used a median {statistics.median(foreign):.0%} "
            f"(max {max(foreign):.0%}) of core {args.gateway_core} during the cases (column "
            f"'core used by others'); load average {args.load_before:.2f} before the run. Such "
            "load inflates latency and lowers req/s unevenly between targets; CPU per request "
            "moves least. Compare within this run only."
        )
    if ("bare", "sse") in out.failures:
        notes.append(
            "`bench/bare_proxy.py` reads and parses the whole answer as JSON, so it does not relay "
            "streams: there is no bare-proxy baseline for streaming."
        )
    bullets = "\n".join(f"- {note}" for note in notes + out.notes)
    return f"{method}\n\n{tables(out, args.targets)}\n\n{bullets}\n\n{versions()}\n"


def _interrupt(*_: object) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s per case, one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per case")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset")
    parser.add_argument("--load-core", type=int, default=0, help="core for upstream and wrk")
    parser.add_argument("--gateway-core", type=int, default=1, help="core for the target")
    parser.add_argument(
        "--portkey-stock-stream", action="store_true",
        help="stream through Portkey as published (fails on Node 20)",
    )  # fmt: skip
    parser.add_argument(
        "--no-install", action="store_true", help="name missing peers/setup.sh steps, not run them"
    )
    parser.add_argument("--write", action="store_true", help=f"write the '{SECTION}' section")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds = 3.0, 1
    chosen = {t.strip() for t in args.targets.split(",") if t.strip()}
    if unknown := chosen - set(TARGETS):
        parser.error(f"unknown targets {sorted(unknown)}; choose from {', '.join(TARGETS)}")
    args.targets = [t for t in TARGETS if t in chosen]  # the table's order
    if steps := missing_setup(args.targets):
        setup = ["bash", str(PEERS / "setup.sh"), *steps]
        if args.no_install:
            raise SystemExit(f"peers missing: run {' '.join(setup)}")
        print(f"installing peers: {' '.join(setup)}", flush=True)
        subprocess.run(setup, check=True)
    # Every way to stop the run unwinds through `finally`, which stops what it started (also
    # when started in the background, where the shell leaves SIGINT ignored).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    args.load_before = os.getloadavg()[0]
    traceway_how = traceway_command(PORTS["traceway"], "")[1]
    try:
        outcome = run(args)
    except KeyboardInterrupt:
        print("interrupted: every process the run started is stopped", file=sys.stderr)
        return 130
    body = report(outcome, args, traceway_how)
    print("\n" + body)
    if args.write:
        write_section(SECTION, body)
        print(f"wrote the '{SECTION}' section of bench/RESULTS.md")
    return 0


def missing_setup(names: list[str]) -> list[str]:
    """The ``peers/setup.sh`` steps still needed for these targets."""
    steps = []
    if not (shutil.which("wrk") and shutil.which("taskset") and Path(nginx_binary()).exists()):
        steps.append("system")
    if "litellm" in names and not list((WORK / "litellm-venv").glob(".installed-*")):
        steps.append("litellm")
    if "portkey" in names and not list((WORK / "portkey-streamfix").glob(".patched-*")):
        steps.append("portkey")
    return steps


if __name__ == "__main__":
    sys.exit(main())
