"""Two ``traceway gateway`` processes on one Redis share the cache and the limits' counters.

Each process is the real command line (``traceway gateway --config FILE
--redis-url URL``) on its own port; both read one settings file whose Redis key
prefixes are unique to this run, and both route to the fake OpenAI upstream,
which records every request that reaches it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.fakes.openai_server import FakeOpenAI
from tests.support.redis_keys import REDIS_URL, own_prefix
from tests.support.servers import free_port

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
#: One US dollar per token: the fake answers with 5 + 4 tokens, so a call costs 9 USD.
BUDGET_USD = 20


@dataclass
class Replicas:
    urls: list[str]
    fake: FakeOpenAI

    def client(self, replica: int, **headers: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.urls[replica]}/v1",
            api_key="sk-test",
            max_retries=0,
            default_headers=headers,
        )


def settings_file(path: Path, fake: FakeOpenAI, prefix: str) -> Path:
    settings: dict[str, Any] = {
        "cache_backend": "redis",  # redis_url comes from --redis-url
        "cache_key_prefix": f"{prefix}cache:",
        "allowed_custom_hosts": ["127.0.0.1"],
        "default_route": {
            "provider": "openai",
            "custom_host": fake.url,
            "api_key": "sk-upstream",
            "cache": {"mode": "simple", "max_age": 300},
        },
        "pricing": {"openai": {"gpt-4o": {"input": 1_000_000, "output": 1_000_000}}},
        "limits": {
            "key_prefix": f"{prefix}limits:",
            "rules": [
                {"scope": "metadata.user_id", "requests_per_minute": 3},
                {"scope": "metadata.team", "budget_usd": BUDGET_USD, "budget_period": "total"},
            ],
        },
    }
    path.write_text(json.dumps(settings))
    return path


def start(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``traceway gateway`` (its output goes to ``log``); wait until it is healthy."""
    port = free_port()
    command = [
        sys.executable, "-m", "traceway.cli", "gateway",
        "--port", str(port), "--config", str(config), "--redis-url", REDIS_URL,
        "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"traceway gateway exited with {process.returncode}:\n{log.read_text()}"
            )
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"traceway gateway did not answer /health:\n{log.read_text()}")


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def replicas(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    folder = tmp_path_factory.mktemp("replicas")
    with own_prefix() as prefix:
        config = settings_file(folder / "gateway.json", upstream, prefix)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            urls = []
            for replica in range(2):
                process, url = start(config, folder / f"gateway-{replica}.log")
                processes.append(process)
                urls.append(url)
            yield Replicas(urls, upstream)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()


def ask(client: openai.OpenAI, question: str, **options: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": question}], **options
    )


def test_an_answer_cached_by_one_replica_is_a_hit_on_the_other(replicas: Replicas) -> None:
    question = f"shared cache {uuid.uuid4().hex}"
    before = len(replicas.fake.requests)
    with replicas.client(0) as first, replicas.client(1) as second:
        miss = ask(first, question)
        hit = ask(second, question)
        stream_miss = list(ask(first, question + " (streamed)", stream=True).parse())
        stream_hit_raw = ask(second, question + " (streamed)", stream=True)
        stream_hit = list(stream_hit_raw.parse())
    assert [r.headers["x-traceway-cache-status"] for r in (miss, hit, stream_hit_raw)] == [
        "MISS",
        "HIT",
        "HIT",
    ]
    assert hit.content == miss.content
    texts = [
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        for chunks in (stream_miss, stream_hit)
    ]
    assert texts == ["Hello from upstream", "Hello from upstream"]
    assert len(replicas.fake.requests) - before == 2  # one per question: the hits stayed home


def test_replicas_share_rate_limit_counters(replicas: Replicas) -> None:
    user = {"x-traceway-metadata": json.dumps({"user_id": f"u-{uuid.uuid4().hex}"})}
    with replicas.client(0, **user) as first, replicas.client(1, **user) as second:
        for client in (first, second, first):
            ask(client, f"limited {uuid.uuid4().hex}")
        with pytest.raises(openai.RateLimitError) as raised:
            ask(second, f"limited {uuid.uuid4().hex}")
    assert raised.value.body["message"].startswith(  # type: ignore[index]
        "rate limit exceeded: 3 requests per minute for metadata.user_id=u-"
    )


def test_a_shared_budget_stops_spending_within_one_request(replicas: Replicas) -> None:
    team = {"x-traceway-metadata": json.dumps({"team": f"t-{uuid.uuid4().hex}"})}
    before = len(replicas.fake.requests)
    answered = 0
    with (
        replicas.client(0, **team) as first,
        replicas.client(1, **team) as second,
        pytest.raises(openai.APIStatusError) as raised,
    ):
        for turn in range(10):
            ask((first, second)[turn % 2], f"spend {uuid.uuid4().hex}")
            answered += 1
    # 9 + 9 = 18 USD is under 20: the third call is admitted and crosses it.
    assert (answered, len(replicas.fake.requests) - before) == (3, 3)
    assert answered * 9 <= BUDGET_USD + 9
    assert raised.value.status_code == 402
    assert raised.value.body["code"] == "budget_exceeded"  # type: ignore[index]
