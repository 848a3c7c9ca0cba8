"""Guardrail configs, hook results, and the 446 / 246 decisions (Portkey's shapes)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from traceway.gateway.errors import GatewayError
from traceway.gateway.guardrails import (
    GuardrailOutcome,
    GuardrailSet,
    denied_body,
    final_response,
    hook_results_json,
    split_done,
    stream_denial_event,
    stream_status,
)
from traceway.gateway.providers.base import CHAT, COMPLETIONS, EMBEDDINGS

CREATED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
STAMP = "2025-01-02T03:04:05.000Z"


class Ticks:
    """A clock that moves 5 ms each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.005
        return self.now


def build(config: dict[str, Any], *, clock: Any = None) -> GuardrailSet:
    rails = GuardrailSet.from_config(config, clock=clock or (lambda: 0.0), now=lambda: CREATED)
    assert rails is not None
    return rails


def chat(*messages: str | list[dict[str, Any]], model: str = "gpt-4o") -> dict[str, Any]:
    roles = ["user", "assistant"]
    return {
        "model": model,
        "messages": [{"role": roles[i % 2], "content": m} for i, m in enumerate(messages)],
    }


def answer(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
    }


def contains_check(verdict: bool, operator: str, words: list[str], found: list[str]) -> dict:
    tails = {
        ("none", True): "No words were found.",
        ("none", False): "Some words were found.",
        ("any", True): "At least one word was found.",
        ("any", False): "No words were found.",
    }
    return {
        "id": "default.contains",
        "verdict": verdict,
        "data": {
            "explanation": f"Check {'passed' if verdict else 'failed'} for '{operator}' words. "
            + tails[(operator, verdict)],
            "foundWords": found,
            "missingWords": [w for w in words if w not in found],
            "operator": operator,
        },
        "error": None,
        "transformed": False,
        "execution_time": 0,
        "created_at": STAMP,
    }


def test_inline_guardrail_denies_with_portkey_hook_result() -> None:
    rails = build(
        {
            "input_guardrails": [
                {"default.contains": {"operator": "none", "words": ["x"]}, "deny": True}
            ]
        }
    )
    outcome = asyncio.run(rails.run_input(chat("say x"), {}, None))
    assert outcome == GuardrailOutcome(
        verdict=False,
        deny=True,
        results=[
            {
                "id": "input_guardrail_0",
                "type": "guardrail",
                "verdict": False,
                "deny": True,
                "async": False,
                "checks": [contains_check(False, "none", ["x"], ["x"])],
                "feedback": None,
                "execution_time": 0,
                "created_at": STAMP,
            }
        ],
        transformed_body=None,
    )


def test_hooks_form_is_the_same_guardrail() -> None:
    hooks = build(
        {
            "before_request_hooks": [
                {
                    "type": "guardrail",
                    "id": "no-x",
                    "deny": True,
                    "checks": [
                        {
                            "id": "default.contains",
                            "parameters": {"operator": "none", "words": ["x"]},
                        }
                    ],
                }
            ]
        }
    )
    inline = build(
        {
            "input_guardrails": [
                {"contains": {"operator": "none", "words": ["x"]}, "deny": True, "id": "no-x"}
            ]
        }
    )
    first = asyncio.run(hooks.run_input(chat("say x"), {}, None))
    second = asyncio.run(inline.run_input(chat("say x"), {}, None))
    assert first == second
    assert first.results[0]["id"] == "no-x"


def test_hooks_and_checks_run_concurrently_and_time_themselves() -> None:
    clock = Ticks()
    rails = build(
        {
            "input_guardrails": [
                {"default.contains": {"operator": "any", "words": ["hi"]}},
                {"default.wordCount": {"minWords": 1, "maxWords": 3}, "deny": True},
            ],
            "before_request_hooks": [
                {
                    "id": "first",
                    "checks": [
                        {
                            "id": "default.characterCount",
                            "parameters": {"minCharacters": 1, "maxCharacters": 99},
                        }
                    ],
                }
            ],
        },
        clock=clock,
    )
    outcome = asyncio.run(rails.run_input(chat("hi there"), {}, None))
    assert [r["id"] for r in outcome.results] == ["first", "input_guardrail_0", "input_guardrail_1"]
    assert (outcome.verdict, outcome.deny) == (True, False)
    # The clock ticks 5 ms per read.  Run one after another, each hook would span
    # 15 ms; interleaved, each spans from its start (ticks 1-3) past every check
    # (ticks 4-9) to its end (ticks 10-12): 45 ms.
    assert [r["execution_time"] for r in outcome.results] == [45, 45, 45]
    assert [r["checks"][0]["execution_time"] for r in outcome.results] == [5, 5, 5]


def test_an_errored_check_passes_the_hook_unless_it_fails_on_error() -> None:
    config = {
        "input_guardrails": [
            {"default.wordCount": {"minWords": "one", "maxWords": 3}, "deny": True},
            {
                "default.wordCount": {"minWords": "one", "maxWords": 3, "fail_on_error": True},
                "deny": True,
            },
        ]
    }
    outcome = asyncio.run(build(config).run_input(chat("hello"), {}, None))
    assert [(r["verdict"], r["deny"]) for r in outcome.results] == [(True, False), (False, True)]
    assert [r["checks"][0]["error"] for r in outcome.results] == [
        {"name": "Error", "message": "Invalid or missing word count range"}
    ] * 2
    assert (outcome.verdict, outcome.deny) == (False, True)


def test_feedback_names_the_checks_that_passed_failed_and_erred() -> None:
    rails = build(
        {
            "before_request_hooks": [
                {
                    "id": "fb",
                    "on_fail": {"feedback": {"value": -10, "weight": 1, "metadata": {"team": "a"}}},
                    "on_success": {"feedback": {"value": 10, "weight": 1}},
                    "checks": [
                        {
                            "id": "default.contains",
                            "parameters": {"operator": "any", "words": ["hi"]},
                        },
                        {
                            "id": "default.contains",
                            "parameters": {"operator": "any", "words": ["zz"]},
                        },
                        {"id": "default.wordCount", "parameters": {}},
                    ],
                }
            ]
        }
    )
    outcome = asyncio.run(rails.run_input(chat("hi"), {}, None))
    assert outcome.results[0]["feedback"] == {
        "value": -10,
        "weight": 1,
        "metadata": {
            "team": "a",
            "successfulChecks": "default.contains",
            "failedChecks": "default.contains",
            "erroredChecks": "default.wordCount",
        },
    }


def test_async_hooks_report_but_never_deny_and_disabled_checks_are_dropped() -> None:
    rails = build(
        {
            "input_guardrails": [
                {
                    "default.contains": {"operator": "none", "words": ["x"]},
                    "deny": True,
                    "async": True,
                },
                {
                    "default.contains": {"operator": "none", "words": ["x"], "is_enabled": False},
                    "deny": True,
                },
            ]
        }
    )
    outcome = asyncio.run(rails.run_input(chat("x"), {}, None))
    assert [(r["verdict"], r["deny"], r["async"], len(r["checks"])) for r in outcome.results] == [
        (False, False, True, 1),
        (True, False, False, 0),
    ]
    assert (outcome.verdict, outcome.deny) == (False, False)


@pytest.mark.parametrize(
    ("body", "endpoint", "checked"),
    [
        (chat("first x", "reply", "last"), CHAT, "last"),
        (chat("last x"), CHAT, "last x"),
        (
            chat(
                [
                    {"type": "text", "text": "part one"},
                    {"type": "image_url", "image_url": {"url": "u"}},
                    {"type": "text", "text": "part x"},
                ]
            ),
            CHAT,
            "part one\npart x",
        ),
        ({"model": "m", "prompt": ["a", "b x"]}, COMPLETIONS, "a\nb x"),
    ],
)
def test_input_checks_read_the_last_message_like_portkey(
    body: dict[str, Any], endpoint: str, checked: str
) -> None:
    rails = build({"input_guardrails": [{"default.regexMatch": {"rule": ".*"}}]})
    outcome = asyncio.run(rails.run_input(body, {}, None, endpoint=endpoint))
    assert outcome.results[0]["checks"][0]["data"]["textExcerpt"] == checked


def test_hooks_are_skipped_where_portkey_skips_them() -> None:
    rails = build(
        {
            "input_guardrails": [
                {"default.contains": {"operator": "none", "words": ["x"]}, "deny": True}
            ],
            "output_guardrails": [
                {"default.contains": {"operator": "none", "words": ["x"]}, "deny": True}
            ],
        }
    )
    skipped_in = GuardrailOutcome(True, False, [{"id": "input_guardrail_0", "skipped": True}])
    skipped_out = GuardrailOutcome(True, False, [{"id": "output_guardrail_0", "skipped": True}])

    async def go() -> list[GuardrailOutcome]:
        return [
            await rails.run_input({"model": "e", "input": "x"}, {}, None, endpoint=EMBEDDINGS),
            await rails.run_output(chat("q"), answer("x"), {}, None, status=500),
            await rails.run_output(chat("q"), {}, {}, None, streamed=True),
        ]

    assert asyncio.run(go()) == [skipped_in, skipped_out, skipped_out]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"input_guardrails": [{"default.nope": {}}]},
            "input_guardrails[0].default.nope: unknown guardrail check 'default.nope'",
        ),
        ({"input_guardrails": ["pg-abc"]}, "input_guardrails[0]: saved guardrail 'pg-abc'"),
        ({"output_guardrails": {"default.pii": {}}}, "output_guardrails: must be a list"),
        (
            {"before_request_hooks": [{"type": "mutator", "checks": []}]},
            "before_request_hooks[0]: hooks of type 'mutator' are not supported",
        ),
        (
            {"after_request_hooks": [{"checks": [{"parameters": {}}]}]},
            "after_request_hooks[0].checks[0]: a check needs an 'id'",
        ),
        (
            {"input_guardrails": [{"default.pii": [1]}]},
            "input_guardrails[0].default.pii: the parameters of 'default.pii' must be an object",
        ),
        (
            {"input_guardrails": [{"default.pii": {}, "deny": "yes"}]},
            "'deny' must be true or false",
        ),
    ],
)
def test_config_mistakes_are_400s_that_say_where(config: dict[str, Any], message: str) -> None:
    with pytest.raises(GatewayError) as raised:
        GuardrailSet.from_config(config)
    assert raised.value.status == 400
    assert message in raised.value.message


def test_the_public_names_are_sorted_and_importable() -> None:
    from traceway.gateway import guardrails

    def isort_style(name: str) -> tuple[int, str]:
        # Constants, then classes, then functions (ruff's RUF022 order).
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert guardrails.__all__ == sorted(guardrails.__all__, key=isort_style)
    assert all(hasattr(guardrails, name) for name in guardrails.__all__)


def test_a_config_without_guardrails_has_no_set() -> None:
    assert GuardrailSet.from_config({"provider": "openai", "input_guardrails": []}) is None


# -- the decisions ------------------------------------------------------------------

RAILS = {
    "input_guardrails": [
        {"default.contains": {"operator": "none", "words": ["deny-me"]}, "deny": True}
    ],
    "before_request_hooks": [
        {
            "id": "soft",
            "checks": [
                {"id": "default.contains", "parameters": {"operator": "none", "words": ["soft"]}}
            ],
        }
    ],
    "output_guardrails": [
        {"default.contains": {"operator": "none", "words": ["secret"]}, "deny": True}
    ],
}


def outcomes(prompt: str, reply: str) -> tuple[GuardrailOutcome, GuardrailOutcome]:
    rails = build(RAILS)

    async def go() -> tuple[GuardrailOutcome, GuardrailOutcome]:
        before = await rails.run_input(chat(prompt), {}, None)
        after = await rails.run_output(chat(prompt), answer(reply), {}, None)
        return before, after

    return asyncio.run(go())


def test_input_deny_is_446_with_the_before_results() -> None:
    before, _ = outcomes("please deny-me", "fine")
    assert before.deny
    assert orjson.loads(denied_body(before)) == {
        "error": {
            "message": "The guardrail checks defined in the config failed. "
            "You can find more information in the `hook_results` object.",
            "type": "hooks_failed",
            "param": None,
            "code": None,
        },
        "hook_results": {"before_request_hooks": before.results, "after_request_hooks": []},
    }


def test_output_deny_is_446_with_both_sides() -> None:
    before, after = outcomes("hello", "the secret is 42")
    status, body = final_response(200, orjson.dumps(answer("the secret is 42")), before, after)
    assert status == 446
    assert orjson.loads(body)["hook_results"] == hook_results_json(before, after)["hook_results"]
    assert orjson.loads(body)["error"]["type"] == "hooks_failed"


def test_a_failed_hook_without_deny_is_246_with_the_answer_and_results() -> None:
    before, after = outcomes("a soft problem", "fine")
    status, body = final_response(200, orjson.dumps(answer("fine")), before, after)
    assert status == 246
    assert orjson.loads(body) == {**answer("fine"), **hook_results_json(before, after)}


def test_all_passing_keeps_the_status_and_adds_results() -> None:
    before, after = outcomes("hello", "fine")
    status, body = final_response(200, orjson.dumps(answer("fine")), before, after)
    assert status == 200
    assert orjson.loads(body) == {**answer("fine"), **hook_results_json(before, after)}


def test_no_guardrails_leaves_the_answer_byte_for_byte() -> None:
    raw = b'{"id": "x"}'
    assert final_response(201, raw, None, None) == (201, raw)


def test_output_redaction_replaces_the_answer() -> None:
    rails = build({"output_guardrails": [{"default.pii": {"redact": True}}]})
    after = asyncio.run(rails.run_output(chat("q"), answer("write to a@b.io"), {}, None))
    status, body = final_response(200, orjson.dumps(answer("write to a@b.io")), None, after)
    assert status == 200
    assert orjson.loads(body)["choices"][0]["message"]["content"] == "write to [EMAIL_1]"


def test_streams_start_246_after_a_soft_failure_and_end_with_an_error_on_deny() -> None:
    before, after = outcomes("a soft problem", "the secret")
    assert stream_status(200, before) == 246
    assert stream_status(200, None) == 200
    event = stream_denial_event(before, after)
    assert event is not None and event.startswith(b"data: ") and event.endswith(b"\n\n")
    assert orjson.loads(event[6:]) == orjson.loads(denied_body(before, after))
    _, fine = outcomes("hello", "fine")
    assert stream_denial_event(None, fine) is None


def test_output_hooks_on_a_stream_read_the_assembled_answer() -> None:
    rails = build(RAILS)
    after = asyncio.run(rails.run_output(chat("q"), answer("a secret"), {}, None, streamed=True))
    assert after.deny


@pytest.mark.parametrize(
    ("piece", "expected"),
    [
        (b"data: [DONE]\n\n", (b"", True)),
        (b'data: {"a":1}\n\ndata: [DONE]\n\n', (b'data: {"a":1}\n\n', True)),
        (b'data: {"a":1}\n\n', (b'data: {"a":1}\n\n', False)),
        (b'data: {"text":"data: [DONE]"}\n\n', (b'data: {"text":"data: [DONE]"}\n\n', False)),
    ],
)
def test_split_done(piece: bytes, expected: tuple[bytes, bool]) -> None:
    assert split_done(piece) == expected
