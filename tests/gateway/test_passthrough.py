"""The ``openai`` provider: pass-through to an OpenAI-format upstream (a local fake)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import openai
import pytest

from tests.gateway.conftest import API_KEY, RunningGateway, settings
from tests.gateway.fakes.openai_server import CREATED, FakeOpenAI, Reply

MESSAGES = [{"role": "user", "content": "hi"}]


def upstream_headers(fake: FakeOpenAI) -> dict[str, str]:
    return {"x-traceway-provider": "openai", "x-traceway-custom-host": fake.url}


def test_chat_is_passed_through_with_the_callers_key(
    gw: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    with gw.client(default_headers=upstream_headers(fake_openai)) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=MESSAGES,
            temperature=0.2,  # type: ignore[arg-type]
        )
    completion = raw.parse()
    assert completion.model_dump(exclude_none=True) == {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": CREATED,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello from upstream",
                    "annotations": [],
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
        "system_fingerprint": "fp_fake",
    }
    (seen,) = fake_openai.requests
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["authorization"] == f"Bearer {API_KEY}"
    assert seen.body == {"model": "gpt-4o", "messages": MESSAGES, "temperature": 0.2}
    assert raw.headers["x-traceway-provider"] == "openai"
    assert raw.headers["x-traceway-last-used-option-index"] == "config"


def test_stream_is_relayed_as_openai_sse(gw: RunningGateway, fake_openai: FakeOpenAI) -> None:
    # The fake writes two events at once and splits others in half.
    with (
        httpx.Client(base_url=gw.base_url) as http,
        http.stream(
            "POST",
            "/chat/completions",
            headers={**upstream_headers(fake_openai), "authorization": f"Bearer {API_KEY}"},
            json={"model": "gpt-4o", "messages": MESSAGES, "stream": True},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        pieces = list(response.iter_raw())
    body = b"".join(pieces)
    events = [e for e in body.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    contents = [json.loads(e[6:])["choices"][0]["delta"].get("content") or "" for e in events[:-1]]
    assert "".join(contents) == "Hello from upstream"


def test_stream_with_usage_and_tool_call_deltas_through_the_client(
    gw: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    with gw.client(default_headers=upstream_headers(fake_openai)) as client:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,  # type: ignore[arg-type]
                tools=[tool],  # type: ignore[list-item]
                tool_choice="required",
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id == "call_fake1"
    arguments = "".join(tc.function.arguments or "" for tc in calls)  # type: ignore[union-attr]
    assert json.loads(arguments) == {"city": "Paris"}
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 9


def test_completions_embeddings_and_responses(gw: RunningGateway, fake_openai: FakeOpenAI) -> None:
    with gw.client(default_headers=upstream_headers(fake_openai)) as client:
        completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="x")
        embedding = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        response = client.responses.create(model="gpt-4o", input="hello")
    assert completion.choices[0].text == "Hello from upstream."
    assert [d.embedding for d in embedding.data] == [[0.5, -0.5, 0.25, 0.0], [0.5, -0.5, 0.25, 1.0]]
    assert response.output_text == "Hello from upstream"
    assert [r.path for r in fake_openai.requests] == [
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
    ]
    assert fake_openai.requests[1].body["encoding_format"] == "base64"


@pytest.mark.parametrize(
    ("reply", "error", "status"),
    [
        (Reply.error(400, "bad things"), openai.BadRequestError, 400),
        (Reply.error(401, "Incorrect API key provided"), openai.AuthenticationError, 401),
        (Reply.error(500, "boom"), openai.InternalServerError, 500),
        (Reply.error(503, "overloaded"), openai.InternalServerError, 503),
    ],
)
def test_upstream_errors_pass_through_with_their_status_and_body(
    gw: RunningGateway,
    fake_openai: FakeOpenAI,
    reply: Reply,
    error: type[openai.APIStatusError],
    status: int,
) -> None:
    fake_openai.script(reply)
    with (
        gw.client(default_headers=upstream_headers(fake_openai)) as client,
        pytest.raises(error) as raised,
    ):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert raised.value.status_code == status
    assert raised.value.body == reply.body["error"]


def test_non_json_upstream_errors_become_openai_errors(
    gw: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(Reply(status=502, raw=b"<html>Bad gateway</html>", content_type="text/html"))
    with httpx.Client(base_url=gw.base_url) as http:
        response = http.post(
            "/chat/completions",
            headers=upstream_headers(fake_openai),
            json={"model": "gpt-4o", "messages": MESSAGES},
        )
    assert response.status_code == 502
    assert response.json() == {
        "error": {
            "message": "<html>Bad gateway</html>",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


def test_unreachable_upstream_is_502(gw: RunningGateway) -> None:
    with FakeOpenAI() as gone:
        url = gone.url
    with httpx.Client(base_url=gw.base_url) as http:
        response = http.post(
            "/chat/completions",
            headers={"x-traceway-provider": "openai", "x-traceway-custom-host": url},
            json={"model": "gpt-4o", "messages": MESSAGES},
        )
    assert response.status_code == 502
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "upstream_unreachable")


def test_request_timeout_header_gives_408(
    start_gateway: Callable[..., RunningGateway], fake_openai: FakeOpenAI
) -> None:
    gw = start_gateway(settings())
    fake_openai.script(Reply.slow(2.0))
    with (
        gw.client(
            default_headers={**upstream_headers(fake_openai), "x-traceway-request-timeout": "100"}
        ) as client,
        pytest.raises(openai.APIStatusError) as raised,
    ):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert raised.value.status_code == 408
    assert raised.value.body == {
        "message": "the upstream did not answer within 100 ms",
        "type": "timeout_error",
        "param": None,
        "code": "request_timeout",
    }


def test_config_target_api_key_replaces_the_callers(
    gw: RunningGateway, fake_openai: FakeOpenAI
) -> None:
    config = {"provider": "openai", "custom_host": fake_openai.url, "api_key": "sk-from-config"}
    with gw.client(default_headers={"x-traceway-config": json.dumps(config)}) as client:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert fake_openai.requests[0].headers["authorization"] == "Bearer sk-from-config"


def test_forward_headers_and_override_params(gw: RunningGateway, fake_openai: FakeOpenAI) -> None:
    config = {
        "provider": "openai",
        "custom_host": fake_openai.url,
        "override_params": {"model": "gpt-4o-mini", "temperature": 0},
    }
    headers = {
        "x-traceway-config": json.dumps(config),
        "x-portkey-forward-headers": "x-team",
        "x-team": "search",
        "x-not-forwarded": "1",
    }
    with gw.client(default_headers=headers) as client:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=1)  # type: ignore[arg-type]
    (seen,) = fake_openai.requests
    assert seen.body == {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0}
    assert seen.headers["x-team"] == "search"
    assert "x-not-forwarded" not in seen.headers
