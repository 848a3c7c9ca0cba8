"""``examples/openai_autolog.py`` run as a user would, against a real server whose
gateway answers with the mock provider and continues each call's trace."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integrations.conftest import RunningServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openai_autolog.py"


def tree(spans: list[dict[str, Any]]) -> list[tuple[int, str, str, str]]:
    """(depth, name, span type, status) in depth-first order, children by start time."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in sorted(spans, key=lambda s: s["start_time_ns"]):
        children.setdefault(span["parent_span_id"], []).append(span)
    rows: list[tuple[int, str, str, str]] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            rows.append((depth, span["name"], span["span_type"], span["status"]))
            walk(span["span_id"], depth + 1)

    walk(None, 0)
    assert len(rows) == len(spans), "every span hangs under the root"
    return rows


CALL = [
    (1, "chat.completions.create", "CHAT_MODEL", "OK"),
    (2, "gateway chat/completions", "GATEWAY", "OK"),
    (3, "chat gpt-4o", "CHAT_MODEL", "OK"),
]


def test_example_records_chain_call_and_gateway_spans_in_one_trace(
    server: RunningServer, experiment: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--base-url", server.url, "--experiment", experiment],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr

    question, streaming, agent = re.findall(r"trace=([0-9a-f]{32})", result.stdout)
    assert tree(server.spans(question)) == [(0, "ask_question", "CHAIN", "OK"), *CALL]
    assert tree(server.spans(agent)) == [
        (0, "weather_agent", "AGENT", "OK"),
        *CALL,
        (1, "get_weather", "TOOL", "OK"),
        *CALL,
    ]
    streamed = server.spans(streaming)
    assert tree(streamed) == [(0, "ask_streaming", "CHAIN", "OK"), *CALL]
    call = next(s for s in streamed if s["name"] == "chat.completions.create")
    answer = call["outputs"]["choices"][0]["message"]["content"]
    assert f"answer: {answer}" in result.stdout
    assert call["attributes"]["traceway.llm.stream_chunks"] > 2
    assert call["input_tokens"] > 0
    assert "traceway.llm.time_to_first_token_ms" in call["attributes"]
    # The example's traces are filed under the experiment it names.
    listed = server.http.get("/api/traces", params={"experiment": experiment}).json()["traces"]
    assert {t["trace_id"] for t in listed} >= {question, streaming, agent}
