"""Reading span payloads as conversations for the chat view."""

from __future__ import annotations

import json
from typing import Any

from traceway.server.ui_chat import ChatMessage, ChatView, ToolCall, chat_view


def test_openai_request_with_tool_call_and_result() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    inputs = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 14}'},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
    }
    outputs = {
        "choices": [
            {"finish_reason": "stop", "message": {"role": "assistant", "content": "14 °C."}}
        ]
    }
    assert chat_view("CHAT_MODEL", json.dumps(inputs), outputs) == ChatView(
        messages=[
            ChatMessage(role="system", texts=["Be brief."]),
            ChatMessage(role="user", texts=["Weather in Paris?"]),
            ChatMessage(
                role="assistant", tool_calls=[ToolCall("call_1", "get_weather", {"city": "Paris"})]
            ),
            ChatMessage(
                role="tool",
                texts=['{"temp_c": 14}'],
                tool_call_id="call_1",
                tool_name="get_weather",
            ),
            ChatMessage(role="assistant", texts=["14 °C."], is_output=True),
        ],
        tools=["get_weather"],
        finish_reason="stop",
    )


def test_anthropic_blocks_split_tool_results_into_their_own_messages() -> None:
    inputs = {
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "Look it up"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "tu_1", "name": "search", "input": {"q": 1}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "tu_1", "content": "found it"},
                    {"type": "text", "text": "thanks"},
                ],
            },
        ],
    }
    outputs = {"role": "assistant", "content": [{"type": "text", "text": "Done."}]}
    view = chat_view("LLM", inputs, outputs)
    assert view is not None
    assert [(m.role, m.texts, m.tool_name, m.is_output) for m in view.messages] == [
        ("system", ["You are terse."], None, False),
        ("user", ["Look it up"], None, False),
        ("assistant", [], None, False),
        ("tool", ["found it"], "search", False),
        ("user", ["thanks"], None, False),
        ("assistant", ["Done."], None, True),
    ]
    assert view.messages[2].tool_calls == [ToolCall("tu_1", "search", {"q": 1})]


def test_responses_api_and_plain_string_answers() -> None:
    inputs = {"instructions": "Answer in French.", "input": "Hello"}
    outputs = {
        "output": [
            {"type": "function_call", "call_id": "fc_1", "name": "translate", "arguments": "{}"},
            {"type": "message", "role": "assistant", "content": [{"text": "Bonjour"}]},
        ]
    }
    view = chat_view("CHAT_MODEL", inputs, outputs)
    assert view is not None
    assert [(m.role, m.texts, m.is_output) for m in view.messages] == [
        ("system", ["Answer in French."], False),
        ("user", ["Hello"], False),
        ("assistant", [], True),
        ("assistant", ["Bonjour"], True),
    ]
    assert view.messages[2].tool_calls == [ToolCall("fc_1", "translate", {})]

    prompt = chat_view("LLM", {"prompt": "2+2?"}, "4")
    assert prompt is not None
    assert [(m.role, m.texts) for m in prompt.messages] == [
        ("user", ["2+2?"]),
        ("assistant", ["4"]),
    ]


def test_payloads_that_are_not_conversations() -> None:
    not_chats: list[tuple[str, Any, Any]] = [
        ("TOOL", {"messages": [{"role": "user", "content": "x"}]}, None),  # not a model span
        ("CHAT_MODEL", {"question": "hi"}, {"answer": "yo"}),
        ("CHAT_MODEL", {"messages": []}, None),
        ("CHAT_MODEL", {"messages": [{"who": "user"}]}, None),
        ("CHAT_MODEL", "not json {", None),
        ("CHAT_MODEL", None, None),
    ]
    for span_type, inputs, outputs in not_chats:
        assert chat_view(span_type, inputs, outputs) is None, (span_type, inputs)
