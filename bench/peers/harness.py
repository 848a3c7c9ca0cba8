"""Running pinned servers and ``wrk`` for the gateway benchmark (``bench/gateway.py``).

- :class:`Processes` starts every server in its own session and stops the whole tree;
- :func:`start_nginx` runs one of this folder's nginx configs in the foreground;
- :func:`verify` checks that a server answers a chat completion with the expected text;
- :func:`run_wrk` / :func:`parse_wrk` load it and read the report, naming any error;
- :func:`group_cpu_seconds` / :func:`core_busy_seconds` say who used the CPU meanwhile.

Linux only (``/proc``, ``taskset``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Measure",
    "Processes",
    "answer_content",
    "core_busy_seconds",
    "group_cpu_seconds",
    "nginx_binary",
    "parse_wrk",
    "port_free",
    "run_wrk",
    "start_nginx",
    "verify",
]

PEERS = Path(__file__).resolve().parent
WRK_SCRIPT = PEERS / "wrk-chat.lua"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


class Processes:
    """Every server a run starts, by name, each in its own session (its own process group)
    so that stopping it also stops whatever it forked."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> int:
        """Start ``argv`` with its output in ``logs/NAME.log``; returns its pid (= pgid)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                argv, cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.running[name] = proc
        return proc.pid

    def wait_ready(self, name: str, port: int, timeout: float) -> None:
        """Wait until ``port`` accepts connections; fail at once if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running[name].poll() is not None:
                raise RuntimeError(f"{name} exited on start:\n{self.log_tail(name)}")
            if not port_free(port):
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"{name} did not listen on {port} in {timeout:.0f} s:\n{self.log_tail(name)}"
        )

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, name: str) -> None:
        """SIGTERM the process group, then SIGKILL it if it has not exited in 10 s."""
        proc = self.running.pop(name, None)
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        """Stop every server; a second Ctrl-C meanwhile kills the rest without waiting."""
        try:
            for name in list(self.running):
                self.stop(name)
        except KeyboardInterrupt:
            for proc in self.running.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            self.running.clear()
            raise


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def nginx_binary() -> str:
    # Debian puts nginx in /usr/sbin, which is not on every PATH.
    return shutil.which("nginx") or "/usr/sbin/nginx"


def start_nginx(
    procs: Processes, name: str, conf: str, placeholder: str, folder: Path, core: int
) -> Path:
    """Run ``PEERS/conf`` on ``core`` with its ``placeholder`` paths moved to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "nginx.conf"
    path.write_text((PEERS / conf).read_text().replace(placeholder, str(folder)))
    argv = ["taskset", "-c", str(core), nginx_binary(), "-p", str(folder), "-c", str(path)]
    # In the foreground, so the pid stopped at the end is nginx's master.
    argv += ["-e", str(folder / "error.log"), "-g", "daemon off;"]
    procs.start(name, argv, {}, folder)
    return folder


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of the live processes in group ``pgid`` (a server and its forks)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # after the ")": state, ppid, pgrp, ..., utime, stime
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def core_busy_seconds(core: int) -> float:
    """CPU seconds core ``core`` has spent on anything but idle and I/O wait since boot."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            values = [int(v) for v in line.split()[1:]]
            return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")
    raise ValueError(f"no core {core} in /proc/stat")


def request_body(model: str, stream: bool) -> bytes:
    """The request ``wrk-chat.lua`` sends, for checking an answer before the load."""
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello in one short sentence."},
        ],
    }
    return json.dumps({**body, "stream": True} if stream else body).encode()


def answer_content(raw: bytes, stream: bool) -> str:
    """The assistant's text in a JSON answer, or the joined deltas of an SSE one."""
    if not stream:
        return str(json.loads(raw)["choices"][0]["message"]["content"])
    parts, done = [], False
    for line in raw.decode().splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
        else:
            for choice in json.loads(data).get("choices", []):
                parts.append((choice.get("delta") or {}).get("content") or "")
    if not done:
        raise ValueError("the stream ended without data: [DONE]")
    return "".join(parts)


def verify(
    port: int, model: str, stream: bool, headers: dict[str, str], expected: str
) -> str | None:
    """None if ``port`` answers the benchmark's request with 200 and ``expected``, else why not."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sent = {"content-type": "application/json", "authorization": "Bearer sk-fake", **headers}
    try:
        conn.request("POST", "/v1/chat/completions", request_body(model, stream), sent)
        response = conn.getresponse()
        raw = response.read()
    except OSError as exc:
        return f"fails (no answer: {exc})"
    finally:
        conn.close()
    if response.status != 200:
        return f"fails (HTTP {response.status})"
    try:
        content = answer_content(raw, stream)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return f"fails (bad body: {exc})"
    return None if content == expected else f"fails (content {content!r})"


@dataclass
class Measure:
    """One ``wrk`` run; ``error`` set means its figures must not be shown."""

    rps: float
    requests: int
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_ms: float | None = None  # the target's CPU per request
    foreign: float | None = None  # share of the target's core used by other processes
    error: str | None = None


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def parse_wrk(out: str) -> Measure:
    """Requests/s, count and (with ``--latency``) p50/p99 from wrk's report; errors named."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    if rps is None or count is None:
        return Measure(0.0, 0, error=f"unreadable wrk report: {out.strip()[:200]!r}")
    result = Measure(float(rps.group(1)), int(count.group(1)))
    for pct, attr in (("50", "p50_ms"), ("99", "p99_ms")):
        found = re.search(rf"^\s+{pct}(?:\.0+)?%\s+(\S+)", out, re.M)
        if found:
            setattr(result, attr, _ms(found.group(1)))
    problems = []
    if bad := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        problems.append(f"{bad.group(1)} non-2xx")
    if errors := re.search(r"Socket errors: (.*)", out):
        problems.append(f"socket errors: {errors.group(1).strip()}")
    if result.requests == 0:
        problems.append("no request completed")
    result.error = "; ".join(problems) or None
    return result


def run_wrk(
    port: int, conns: int, duration: float, core: int, env: dict[str, str]
) -> Measure:  # fmt: skip
    """``wrk -t1`` with ``wrk-chat.lua`` on ``core``; ``--latency`` at one connection."""
    argv = ["taskset", "-c", str(core), "wrk", "-t1", f"-c{conns}", f"-d{duration:g}s"]
    argv += ["--timeout", "30s", "-s", str(WRK_SCRIPT)]
    argv += ["--latency"] if conns == 1 else []
    argv += [f"http://127.0.0.1:{port}"]
    done = subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=duration + 60
    )
    if done.returncode != 0:
        return Measure(0.0, 0, error=f"wrk exited {done.returncode}: {done.stderr.strip()}")
    return parse_wrk(done.stdout)
