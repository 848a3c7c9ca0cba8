"""Request and response previews derived from a root span's inputs and outputs."""

from __future__ import annotations

import orjson
import pytest

from traceway.store.previews import request_preview, response_preview


def js(value: object) -> str:
    return orjson.dumps(value).decode()


SYSTEM_ONLY = js({"messages": [{"role": "system", "content": "no user"}]})
TOOL_CALL = js({"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": []}}]})


@pytest.mark.parametrize(
    ("inputs", "preview"),
    [
        (None, None),
        (js({"messages": [{"role": "user", "content": "Hi"}]}), "Hi"),
        (
            js(
                {
                    "model": "gpt-4o",
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "first"},
                        {"role": "assistant", "content": "ok"},
                        {"role": "user", "content": "second"},
                    ],
                }
            ),
            "second",
        ),
        (js([{"role": "user", "content": "a bare message list"}]), "a bare message list"),
        (
            js(
                {
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "look at"},
                                {"type": "image_url", "image_url": {"url": "data:..."}},
                                {"type": "text", "text": "this"},
                            ],
                        }
                    ]
                }
            ),
            "look at\nthis",
        ),
        (SYSTEM_ONLY, SYSTEM_ONLY),  # no user message: the whole input
        (js({"question": "why?", "k": 3}), '{"question":"why?","k":3}'),
        ('{ "spaced" : [1, 2] }', '{"spaced":[1,2]}'),
        (js("just a string"), "just a string"),
        ("not json", "not json"),
    ],
)
def test_request_preview(inputs: str | None, preview: str | None) -> None:
    assert request_preview(inputs) == preview


@pytest.mark.parametrize(
    ("outputs", "preview"),
    [
        (None, None),
        (js({"choices": [{"message": {"role": "assistant", "content": "Paris."}}]}), "Paris."),
        (js({"choices": [{"text": "legacy completion"}]}), "legacy completion"),
        (js({"role": "assistant", "content": "a message"}), "a message"),
        (
            js({"type": "message", "content": [{"type": "text", "text": "anthropic style"}]}),
            "anthropic style",
        ),
        (TOOL_CALL, TOOL_CALL),  # no text content: the whole output
        (js(42), "42"),
        (js("done"), "done"),
        ("oops {", "oops {"),
    ],
)
def test_response_preview(outputs: str | None, preview: str | None) -> None:
    assert response_preview(outputs) == preview


def test_previews_are_at_most_a_thousand_characters() -> None:
    long_message = js({"messages": [{"role": "user", "content": "y" * 3_000}]})
    assert request_preview(long_message) == "y" * 1_000
    assert response_preview(js(list(range(2_000)))) == js(list(range(2_000)))[:1_000]
