"""Gateway fixtures: a fake OpenAI upstream, and the gateway served by uvicorn in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
import uvicorn

from tests.gateway.fakes.openai_server import FakeOpenAI
from traceway.gateway import Gateway, GatewaySettings
from traceway.gateway.tracing import GatewayTracer
from traceway.tracing.export import SimpleProcessor
from traceway.tracing.span import FinishedSpan
from traceway.tracing.testing import IncrementalIdGenerator, InMemoryExporter
from traceway.tracing.tracer import Tracer

API_KEY = "sk-test-key-123"


@dataclass
class RunningGateway:
    url: str  # the gateway's root; the OpenAI base URL is ``url + "/v1"``
    gateway: Gateway
    sleeps: list[float] = field(default_factory=list)
    exporter: InMemoryExporter | None = None

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def client(self, **options: Any) -> openai.OpenAI:
        options.setdefault("api_key", API_KEY)
        return openai.OpenAI(base_url=self.base_url, max_retries=0, **options)

    def async_client(self, **options: Any) -> openai.AsyncOpenAI:
        options.setdefault("api_key", API_KEY)
        return openai.AsyncOpenAI(base_url=self.base_url, max_retries=0, **options)

    def spans(self, count: int) -> list[FinishedSpan]:
        """The exported spans once there are ``count`` of them (spans end after the response)."""
        assert self.exporter is not None, "start the gateway with traced=True"
        deadline = time.monotonic() + 10
        while len(self.exporter.spans) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        return list(self.exporter.spans)


def settings(**overrides: Any) -> GatewaySettings:
    """Test settings: loopback upstreams allowed (the fake runs on 127.0.0.1)."""
    overrides.setdefault("allowed_custom_hosts", ["127.0.0.1"])
    return GatewaySettings(**overrides)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn (uvloop + httptools, as in production) in a thread.

    uvloop rather than ``tests.support.servers``' asyncio loop: in a thread of the
    test process the asyncio loop adds ~40 ms to every response, which makes
    tests that send hundreds of requests slow.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", loop="uvloop", http="httptools"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("gateway did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def running_gateway(
    gateway_settings: GatewaySettings | None = None, *, traced: bool = False, **options: Any
) -> Iterator[RunningGateway]:
    """Serve a :class:`Gateway` on a free port; retries do not really sleep."""
    sleeps: list[float] = []

    async def no_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    exporter = None
    if traced:
        exporter = InMemoryExporter()
        tracer = Tracer(SimpleProcessor(exporter), id_generator=IncrementalIdGenerator())
        options["tracer"] = GatewayTracer(tracer=tracer)
    options.setdefault("sleep", no_sleep)
    gateway = Gateway(gateway_settings or settings(), **options)
    with serve(gateway) as url:
        yield RunningGateway(url=url, gateway=gateway, sleeps=sleeps, exporter=exporter)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def gw() -> Iterator[RunningGateway]:
    """A gateway with default settings (its default route is the mock provider)."""
    with running_gateway() as running:
        yield running


@pytest.fixture
def start_gateway() -> Iterator[Callable[..., RunningGateway]]:
    """Start gateways with custom settings; all are stopped after the test."""
    stack: list[Any] = []

    def start(gateway_settings: GatewaySettings | None = None, **options: Any) -> RunningGateway:
        context = running_gateway(gateway_settings, **options)
        stack.append(context)
        return context.__enter__()

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)
