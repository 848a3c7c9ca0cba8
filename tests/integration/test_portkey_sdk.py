"""The ``portkey-ai`` SDK pointed at the gateway of a real ``traceway server``.

Portkey users switch by changing ``base_url`` alone: ``provider``, ``config``
(inline or a saved id), ``metadata`` and ``trace_id`` keep working, and every call
is found as a trace through Traceway's REST API and web UI.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from portkey_ai import Portkey

from tests.support.servers import serve_in_thread
from traceway.gateway.settings import GatewaySettings
from traceway.server.app import ServerSettings, TracewayServer, create_app
from traceway.store import open_store

#: First target fails (the mock's error-500 model), the second answers: Portkey's fallback.
FALLBACK: dict[str, Any] = {
    "strategy": {"mode": "fallback"},
    "targets": [
        {"provider": "mock", "override_params": {"model": "error-500"}},
        {"provider": "mock", "override_params": {"model": "echo"}},
    ],
}
SAVED_CONFIG = "pc-fallback"


@dataclass
class Gateway:
    url: str
    http: httpx.Client
    server: TracewayServer

    def portkey(self, run: str, **options: Any) -> Portkey:
        """A Portkey client as a Portkey user builds one, tagged so this test finds its traces."""
        return Portkey(
            base_url=f"{self.url}/v1",
            api_key="unused",
            metadata={"test_run": run, "_user": "alice"},
            **options,
        )

    def traces(self, run: str) -> list[dict[str, Any]]:
        """Every trace of one test run, oldest first, with spans (REST API)."""
        # The gateway stores its spans from a background thread.
        assert self.server.gateway is not None
        assert self.server.gateway.tracer.force_flush(10)
        found = self.http.get(
            "/api/traces",
            params={"filter": f"metadata.test_run = '{run}'", "order_by": "start_time ASC"},
        )
        assert found.status_code == 200, found.text
        return [
            self.http.get(f"/api/traces/{summary['trace_id']}").json()
            for summary in found.json()["traces"]
        ]


@pytest.fixture(scope="module")
def gateway(store_url: str) -> Iterator[Gateway]:
    store = open_store(store_url)
    settings = ServerSettings(gateway=GatewaySettings(configs={SAVED_CONFIG: FALLBACK}))
    server = create_app(store, settings)
    try:
        with serve_in_thread(server.app) as url, httpx.Client(base_url=url, timeout=30) as http:
            yield Gateway(url, http, server)
    finally:
        store.close()


@pytest.fixture
def run() -> str:
    return uuid.uuid4().hex[:12]


def shape(trace: dict[str, Any]) -> list[tuple[str | None, str, str, str | None]]:
    """(parent span type, span type, status, model) of every span, in start order."""
    types = {span["span_id"]: span["span_type"] for span in trace["spans"]}
    return [
        (types.get(span["parent_span_id"]), span["span_type"], span["status"], span["model"])
        for span in trace["spans"]
    ]


def test_chat_stream_and_embeddings(gateway: Gateway, run: str) -> None:
    portkey = gateway.portkey(run, provider="mock", trace_id=f"checkout-{run}")
    completion = portkey.chat.completions.create(
        model="mock", messages=[{"role": "user", "content": "Hello"}]
    )
    answer = completion.choices[0].message.content
    # Portkey's trace id comes back as Portkey sends it.
    assert completion.get_headers()["trace-id"] == f"checkout-{run}"
    stream = portkey.chat.completions.create(
        model="mock", messages=[{"role": "user", "content": "Stream it"}], stream=True
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    embedding = portkey.embeddings.create(model="mock-embedding", input="vector me")
    assert answer and streamed and len(embedding.data[0].embedding) > 0

    chat, streamed_trace, embedded = gateway.traces(run)
    assert shape(chat) == [(None, "GATEWAY", "OK", None), ("GATEWAY", "CHAT_MODEL", "OK", "mock")]
    assert shape(streamed_trace) == shape(chat)
    assert shape(embedded) == [
        (None, "GATEWAY", "OK", None),
        ("GATEWAY", "EMBEDDING", "OK", "mock-embedding"),
    ]
    for trace, request, response in (
        (chat, "Hello", answer),
        (streamed_trace, "Stream it", streamed),
    ):
        info = trace["info"]
        assert (info["request_preview"], info["response_preview"]) == (request, response)
        assert info["metadata"] == {"test_run": run, "_user": "alice"}
        # The caller's trace id stays on the gateway's span, where the UI shows it.
        assert f"checkout-{run}" in trace["spans"][0]["attributes"].values()
    assert chat["info"]["input_tokens"] > 0 and chat["info"]["output_tokens"] > 0

    page = gateway.http.get(f"/traces/{chat['info']['trace_id']}")
    assert page.status_code == 200
    assert all(span["name"] in html.unescape(page.text) for span in chat["spans"])


@pytest.mark.parametrize("config", [FALLBACK, SAVED_CONFIG], ids=["inline", "saved"])
def test_fallback_config(gateway: Gateway, run: str, config: dict[str, Any] | str) -> None:
    portkey = gateway.portkey(run, config=config)
    completion = portkey.chat.completions.create(
        model="mock", messages=[{"role": "user", "content": "Fall back, please"}]
    )
    # The echo model of the second target answered.
    assert completion.choices[0].message.content == "Fall back, please"
    assert completion.get_headers()["last-used-option-index"] == "config.targets[1]"

    [trace] = gateway.traces(run)
    assert shape(trace) == [
        (None, "GATEWAY", "OK", None),
        ("GATEWAY", "CHAT_MODEL", "ERROR", "error-500"),
        ("GATEWAY", "CHAT_MODEL", "OK", "echo"),
    ]
    assert trace["info"]["status"] == "OK"
    failed = trace["spans"][1]
    assert "500" in failed["status_message"]
