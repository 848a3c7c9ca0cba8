"""Gateway overhead, quickly: requests/s through Traceway vs a bare proxy vs the upstream.

One run starts, each in its own process:

- a fast upstream (aiohttp, uvloop) answering every POST with a fixed
  ``chat.completion``, plus an OTLP sink that accepts ``/v1/traces`` (so the
  gateway's spans are really exported and the cost is counted);
- ``bench/bare_proxy.py`` under uvicorn (uvloop + httptools), pinned to core 1;
- ``traceway gateway`` (``create_standalone_app``) under the same uvicorn,
  pinned to core 1, routing with ``x-traceway-provider: openai`` and
  ``x-traceway-custom-host: <upstream>``, with tracing exported to the sink,
  and once more with tracing off;

then drives each with an aiohttp client (``--concurrency`` 32, ``--seconds`` 5,
after a 1 s warm-up) pinned with the upstream to core 0, ``--repeats`` times in
turn, and prints medians of requests/s, p50 latency, the proxy process's CPU time
per request (read from ``/proc``; steadier than req/s on a shared machine) and
the ratios to the bare proxy.

    python bench/gateway_quick.py [--seconds 5] [--concurrency 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
        "system_fingerprint": "fp_bench",
    }
)
REQUEST = orjson.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello."},
        ],
        "temperature": 0.2,
    }
)

GATEWAY_SCRIPT = """
import sys, uvicorn
from traceway.gateway import GatewaySettings, create_standalone_app
port, export_to = int(sys.argv[1]), (sys.argv[2] or None)
settings = GatewaySettings(allowed_custom_hosts=["127.0.0.1"])
app = create_standalone_app(settings, export_to=export_to)
uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *command] if shutil.which("taskset") else command


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


def serve_upstream(port: int) -> None:
    """The upstream and OTLP sink (run in a child process)."""
    import uvloop
    from aiohttp import web

    async def completion(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=COMPLETION, content_type="application/json")

    async def traces(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    app.router.add_post("/{tail:.*}", completion)
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop()
    )


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all its threads), from ``/proc``."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(
    url: str, headers: dict[str, str], concurrency: int, seconds: float, pid: int | None
) -> tuple[float, float, float]:
    """Requests/s, p50 latency (ms) and the server's CPU µs per request, after a warm-up.

    CPU per request is the steadier figure on a shared machine: throughput drops
    when another process takes the core, CPU per request hardly moves.
    """
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        loop = asyncio.get_running_loop()

        async def worker(until: float, latencies: list[float] | None) -> int:
            done = 0
            while loop.time() < until:
                started = time.perf_counter()
                async with http.post(url, data=REQUEST, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url} answered {response.status}")
                if latencies is not None:
                    latencies.append(time.perf_counter() - started)
                done += 1
            return done

        warm_until = loop.time() + 1.0
        await asyncio.gather(*(worker(warm_until, None) for _ in range(concurrency)))
        latencies: list[float] = []
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        until = loop.time() + seconds
        counts = await asyncio.gather(*(worker(until, latencies) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu_before
    done = sum(counts)
    return done / elapsed, statistics.median(latencies) * 1000, cpu / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return

    if shutil.which("taskset"):
        os.sched_setaffinity(0, {0})  # the driver shares core 0 with the upstream
    python = sys.executable
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{BENCH}"}
    upstream_port, bare_port, traced_port, untraced_port = (free_port() for _ in range(4))
    upstream = f"http://127.0.0.1:{upstream_port}"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        uvicorn = ["--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]
        commands = {
            upstream_port: pinned(0, [python, __file__, "--serve-upstream", str(upstream_port)]),
            bare_port: pinned(
                1,
                [python, "-m", "uvicorn", "bare_proxy:app", "--port", str(bare_port), *uvicorn,
                 "--no-access-log"],
            ),
            traced_port: pinned(1, [python, "-c", GATEWAY_SCRIPT, str(traced_port), upstream]),
            untraced_port: pinned(1, [python, "-c", GATEWAY_SCRIPT, str(untraced_port), ""]),
        }  # fmt: skip
        for port, command in commands.items():
            extra = {"BARE_PROXY_UPSTREAM": upstream} if port == bare_port else {}
            process = subprocess.Popen(command, cwd=BENCH, env={**env, **extra})
            processes.append(process)
            wait_for_port(port, process)

        gateway_headers = {
            "authorization": "Bearer sk-bench",
            "x-traceway-provider": "openai",
            "x-traceway-custom-host": f"{upstream}/v1",
        }
        pids = dict(zip(commands, (p.pid for p in processes), strict=True))
        targets = {
            "upstream direct": (f"{upstream}/v1/chat/completions", {}, None),
            "bare ASGI+aiohttp proxy": (
                f"http://127.0.0.1:{bare_port}/v1/chat/completions",
                {"authorization": "Bearer sk-bench"},
                pids[bare_port],
            ),
            "traceway gateway, tracing on": (
                f"http://127.0.0.1:{traced_port}/v1/chat/completions",
                gateway_headers,
                pids[traced_port],
            ),
            "traceway gateway, tracing off": (
                f"http://127.0.0.1:{untraced_port}/v1/chat/completions",
                gateway_headers,
                pids[untraced_port],
            ),
        }
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in targets}
        for repeat in range(args.repeats):
            for name, (url, headers, pid) in targets.items():
                run = asyncio.run(drive(url, headers, args.concurrency, args.seconds, pid))
                results[name].append(run)
                rps, p50, cpu = run
                print(
                    f"  run {repeat + 1}: {name:30} {rps:7.0f} req/s  p50 {p50:6.2f} ms"
                    f"  {cpu:6.0f} µs CPU/req"
                )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()

    medians = {
        name: tuple(statistics.median(run[i] for run in runs) for i in range(3))
        for name, runs in results.items()
    }
    bare_rps, _, bare_cpu = medians["bare ASGI+aiohttp proxy"]
    print(f"\nmedians of {args.repeats} runs, c={args.concurrency}, {args.seconds:.0f} s each")
    print(
        f"{'target':30} {'req/s':>7} {'p50 ms':>7} {'vs bare':>8} {'CPU µs/req':>11} "
        f"{'capacity vs bare':>17}"
    )
    for name, (rps, p50, cpu) in medians.items():
        capacity = f"{bare_cpu / cpu:17.2f}" if cpu else f"{'-':>17}"
        cpu_text = f"{cpu:11.0f}" if cpu else f"{'-':>11}"
        print(f"{name:30} {rps:7.0f} {p50:7.2f} {rps / bare_rps:8.2f} {cpu_text} {capacity}")
    print("capacity vs bare = bare proxy CPU per request / this CPU per request (one core)")


if __name__ == "__main__":
    main()
