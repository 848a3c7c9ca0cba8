"""Deterministic text, token counts, tool calls and vectors for the mock provider.

Nothing here is random between runs: every answer is a pure function of the
request (its messages, ``seed`` and model), so tests and demos repeat exactly.
"""

from __future__ import annotations

import math
import random
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "Reply",
    "choose_tool",
    "count_tokens",
    "embed",
    "function_specs",
    "generate",
    "message_text",
    "plan_reply",
    "split_tokens",
    "tool_arguments",
    "truncate",
]

_VOCABULARY = [
    "the",
    "gateway",
    "routes",
    "each",
    "request",
    "to",
    "a",
    "provider",
    "and",
    "records",
    "a",
    "trace",
    "with",
    "spans",
    "for",
    "every",
    "attempt",
    "so",
    "latency",
    "tokens",
    "and",
    "cost",
    "stay",
    "visible",
    "while",
    "fallbacks",
    "retries",
    "and",
    "load",
    "balancing",
    "keep",
    "answers",
    "flowing",
    "when",
    "one",
    "upstream",
    "is",
    "slow",
    "or",
    "down",
]
_TOKEN = re.compile(r"\s*\S+|\s+")


def split_tokens(text: str) -> list[str]:
    """Stream-sized pieces of ``text`` (a word with its leading space); they join back to it."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    """A rough token count: words, and at least one for any non-empty text."""
    words = len(text.split())
    return words if words else (1 if text else 0)


def message_text(content: Any) -> str:
    """The text of a message ``content``: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    return "" if content is None else str(content)


def _seed(text: str, seed: Any) -> int:
    base = zlib.crc32(text.encode())
    return base ^ seed if isinstance(seed, int) and not isinstance(seed, bool) else base


def generate(prompt: str, *, seed: Any = None, index: int = 0) -> str:
    """A sentence of 8 to 23 words chosen by a generator seeded from the prompt."""
    rng = random.Random(_seed(prompt, seed) + index)
    words = [rng.choice(_VOCABULARY) for _ in range(8 + rng.randrange(16))]
    return " ".join(words).capitalize() + "."


def truncate(text: str, max_tokens: Any) -> tuple[str, bool]:
    """Cut ``text`` to ``max_tokens`` words; the flag says whether it was cut."""
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens <= 0:
        return text, False
    pieces = split_tokens(text)
    if len(text.split()) <= max_tokens:
        return text, False
    kept: list[str] = []
    words = 0
    for piece in pieces:
        if piece.strip():
            if words == max_tokens:
                break
            words += 1
        kept.append(piece)
    return "".join(kept).rstrip(), True


def _value_for(schema: Any, name: str) -> Any:
    if not isinstance(schema, Mapping):
        return f"example {name}"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    if kind == "array":
        return [_value_for(schema.get("items"), name)] if schema.get("items") else []
    if kind == "object":
        return tool_arguments(schema)
    return f"example {name}"


def tool_arguments(parameters: Any) -> dict[str, Any]:
    """Arguments that satisfy a JSON schema's required properties (all, if none are required)."""
    if not isinstance(parameters, Mapping):
        return {}
    properties = parameters.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    required = parameters.get("required")
    names: Iterable[str] = required if isinstance(required, list) and required else properties
    return {name: _value_for(properties.get(name), name) for name in names}


def embed(text: str, dimensions: int) -> list[float]:
    """A unit vector of ``dimensions`` floats, a pure function of ``text``."""
    rng = random.Random(zlib.crc32(text.encode()))
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


@dataclass(slots=True)
class Reply:
    """What the mock answers: text, or one tool call, with its usage."""

    text: str | None
    finish_reason: str  # "stop" | "length" | "tool_calls"
    prompt_tokens: int
    completion_tokens: int
    tool_name: str | None = None
    tool_arguments: str | None = None  # JSON text, as OpenAI sends it


def function_specs(tools: Any) -> list[tuple[str, Any]]:
    """``(name, parameters)`` of function tools, in Chat Completions or Responses shape."""
    specs: list[tuple[str, Any]] = []
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, Mapping):
            continue
        function = tool.get("function")
        spec: Mapping[str, Any] = function if isinstance(function, Mapping) else tool
        name = spec.get("name")
        if isinstance(name, str):
            specs.append((name, spec.get("parameters")))
    return specs


def choose_tool(
    tools: list[tuple[str, Any]], tool_choice: Any, text: str
) -> tuple[str, Any] | None:
    """The tool to call: forced by ``tool_choice``, or named in the user's message."""
    if not tools or tool_choice == "none":
        return None
    if isinstance(tool_choice, Mapping):
        forced = tool_choice.get("function")
        name = forced.get("name") if isinstance(forced, Mapping) else tool_choice.get("name")
        for spec in tools:
            if spec[0] == name:
                return spec
    lowered = text.lower()
    for spec in tools:
        name = spec[0].lower()
        if name in lowered or name.replace("_", " ") in lowered:
            return spec
    if tool_choice == "required" or isinstance(tool_choice, Mapping):
        return tools[0]
    return None


def plan_reply(
    conversation: list[tuple[str, str]],
    *,
    echo: bool,
    tools: list[tuple[str, Any]],
    tool_choice: Any,
    max_tokens: Any,
    seed: Any,
    index: int = 0,
) -> Reply:
    """Decide the answer to ``conversation`` (``(role, text)`` pairs, oldest first)."""
    prompt_tokens = sum(count_tokens(text) + 4 for _, text in conversation) + 3
    prompt_tokens += 12 * len(tools)
    last_role, last_text = conversation[-1] if conversation else ("user", "")
    user_text = next((text for role, text in reversed(conversation) if role == "user"), "")
    if last_role == "tool":
        text = f"The tool returned: {last_text}"
    else:
        tool = choose_tool(tools, tool_choice, user_text)
        if tool is not None:
            arguments = orjson.dumps(tool_arguments(tool[1])).decode()
            return Reply(
                text=None,
                finish_reason="tool_calls",
                prompt_tokens=prompt_tokens,
                completion_tokens=count_tokens(arguments) + 2,
                tool_name=tool[0],
                tool_arguments=arguments,
            )
        prompt = "\n".join(text for _, text in conversation)
        text = user_text if echo else generate(prompt, seed=seed, index=index)
    text, cut = truncate(text, max_tokens)
    return Reply(
        text=text,
        finish_reason="length" if cut else "stop",
        prompt_tokens=prompt_tokens,
        completion_tokens=count_tokens(text),
    )
