"""The ``traceway`` command as a person runs it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port

TRACEWAY = [sys.executable, "-m", "traceway.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TRACEWAY, *args], capture_output=True, text=True, timeout=60)


def test_help_explains_every_option() -> None:
    result = run("server", "--help")
    assert result.returncode == 0
    for option in ("--host", "--port", "--store", "--max-ingest-mb", "--log-level"):
        assert option in result.stdout


def test_bad_store_url_is_one_line(tmp_path: Path) -> None:
    result = run("server", "--port", str(free_port()), "--store", "mysql://nope")
    assert result.returncode == 1
    assert result.stderr.startswith("traceway: error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_unreachable_postgres_is_one_line() -> None:
    result = run("server", "--port", str(free_port()), "--store", "postgresql://root@127.0.0.1:1/x")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("server", "--port", str(port), "--store", f"sqlite:///{tmp_path}/t.db")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"traceway: error: port {port} on 127.0.0.1 is already in use (choose another with --port)"
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_server_starts_answers_health_and_stops(tmp_path: Path, workers: int) -> None:
    port = free_port()
    db = tmp_path / "traceway.db"
    process = subprocess.Popen(
        [
            *TRACEWAY,
            "server",
            "--port",
            str(port),
            "--store",
            f"sqlite:///{db}",
            "--workers",
            str(workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert response.json() == {"status": "ok"}
        assert db.exists()
        # Every worker serves the same store: experiments made through one are seen by all.
        created = httpx.post(
            f"http://127.0.0.1:{port}/api/experiments", json={"name": "from-cli"}, timeout=5
        )
        assert created.status_code == 201
        for _ in range(4):
            listed = httpx.get(f"http://127.0.0.1:{port}/api/experiments", timeout=5).json()
            assert "from-cli" in [e["name"] for e in listed["experiments"]]
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why.
    assert process.returncode in (0, -15), stderr
    assert "Traceback" not in stderr
