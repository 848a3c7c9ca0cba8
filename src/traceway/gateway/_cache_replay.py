"""Replaying a cached answer as the SSE stream OpenAI would have sent.

A cached chat answer is stored once, as the assembled ``chat.completion``
(whether it was first asked for as a stream or not), and streamed back as
OpenAI's chunks: per choice a role chunk, content chunks, tool-call chunks
(the call's id and name, then its arguments) and a finish chunk; then, when
the request set ``stream_options.include_usage``, a chunk with empty
``choices`` holding the usage (``usage`` is ``null`` on the others, as OpenAI
sends it); then ``data: [DONE]``.  A cached ``text_completion`` replays the
same way with ``text`` pieces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import orjson

__all__ = ["DEFAULT_CHUNK_CHARS", "replay_events", "replay_stream"]

#: Characters of content per replayed chunk: small enough to look like a stream,
#: large enough that a long answer is not thousands of events.
DEFAULT_CHUNK_CHARS = 96
_DONE = b"data: [DONE]\n\n"


def _event(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


class _Chunks:
    """Builds chunks sharing the answer's id, model and creation time."""

    def __init__(self, answer: Mapping[str, Any], obj: str, include_usage: bool) -> None:
        self.head: dict[str, Any] = {
            "id": answer.get("id") or "",
            "object": obj,
            "created": answer.get("created") or 0,
            "model": answer.get("model") or "",
        }
        for optional in ("system_fingerprint", "service_tier"):
            if answer.get(optional) is not None:
                self.head[optional] = answer[optional]
        self.include_usage = include_usage

    def choice(self, choice: dict[str, Any]) -> bytes:
        chunk = {**self.head, "choices": [choice]}
        if self.include_usage:
            chunk["usage"] = None
        return _event(chunk)

    def usage(self, usage: Any) -> bytes:
        return _event({**self.head, "choices": [], "usage": usage})


def _chat_events(answer: Mapping[str, Any], include_usage: bool, size: int) -> Iterator[bytes]:
    chunks = _Chunks(answer, "chat.completion.chunk", include_usage)
    for position, choice in enumerate(answer.get("choices") or ()):
        index = choice.get("index", position)
        message = choice.get("message") or {}

        def delta(body: dict[str, Any], index: int = index) -> bytes:
            return chunks.choice(
                {"index": index, "delta": body, "logprobs": None, "finish_reason": None}
            )

        yield delta({"role": message.get("role") or "assistant", "content": ""})
        if message.get("refusal"):
            yield delta({"refusal": message["refusal"]})
        for piece in _pieces(message.get("content") or "", size):
            yield delta({"content": piece})
        for position_call, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            yield delta(
                {
                    "tool_calls": [
                        {
                            "index": position_call,
                            "id": call.get("id"),
                            "type": call.get("type") or "function",
                            "function": {"name": function.get("name") or "", "arguments": ""},
                        }
                    ]
                }
            )
            for piece in _pieces(function.get("arguments") or "", size):
                yield delta(
                    {"tool_calls": [{"index": position_call, "function": {"arguments": piece}}]}
                )
        yield chunks.choice(
            {
                "index": index,
                "delta": {},
                "logprobs": None,
                "finish_reason": choice.get("finish_reason") or "stop",
            }
        )
    if include_usage:
        yield chunks.usage(answer.get("usage"))


def _completion_events(
    answer: Mapping[str, Any], include_usage: bool, size: int
) -> Iterator[bytes]:
    chunks = _Chunks(answer, "text_completion", include_usage)
    for position, choice in enumerate(answer.get("choices") or ()):
        index = choice.get("index", position)
        for piece in _pieces(choice.get("text") or "", size):
            yield chunks.choice(
                {"index": index, "text": piece, "logprobs": None, "finish_reason": None}
            )
        yield chunks.choice(
            {
                "index": index,
                "text": "",
                "logprobs": None,
                "finish_reason": choice.get("finish_reason") or "stop",
            }
        )
    if include_usage:
        yield chunks.usage(answer.get("usage"))


def replay_events(
    answer: bytes | Mapping[str, Any],
    *,
    include_usage: bool = False,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
) -> list[bytes]:
    """The SSE events (``data: ...\\n\\n`` each, ``[DONE]`` last) replaying ``answer``.

    ``answer`` is a ``chat.completion`` or ``text_completion``, as JSON bytes or parsed.

    >>> message = {"role": "assistant", "content": "Hi"}
    >>> answer = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
    ...           "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    >>> events = replay_events(answer)
    >>> len(events), events[-1]
    (4, b'data: [DONE]\\n\\n')
    """
    parsed = orjson.loads(answer) if isinstance(answer, bytes | bytearray) else answer
    if not isinstance(parsed, Mapping):
        raise ValueError("a cached answer is a JSON object")
    size = max(1, chunk_chars)
    if parsed.get("object") == "text_completion":
        events = list(_completion_events(parsed, include_usage, size))
    else:
        events = list(_chat_events(parsed, include_usage, size))
    events.append(_DONE)
    return events


async def replay_stream(
    answer: bytes | Mapping[str, Any],
    include_usage: bool = False,
    *,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
) -> AsyncIterator[bytes]:
    """:func:`replay_events` as an async stream: usable as ``UpstreamResponse.stream``."""
    for event in replay_events(answer, include_usage=include_usage, chunk_chars=chunk_chars):
        yield event
