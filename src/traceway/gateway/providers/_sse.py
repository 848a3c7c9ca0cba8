"""Server-sent events: an incremental decoder for upstream streams, and the encoder
for the OpenAI-format events the gateway sends back.

The decoder follows the ``text/event-stream`` rules that matter for LLM APIs: lines
end in ``\\n``, ``\\r\\n`` or ``\\r``; ``event:`` names an event, ``data:`` lines
accumulate; a blank line dispatches; ``:`` starts a comment.  Bytes arrive in
arbitrary pieces, so a line (or a ``\\r\\n`` pair) may straddle two of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["DONE", "SSEDecoder", "SSEError", "SSEEvent", "encode_data"]

#: The event that ends every OpenAI stream.
DONE = b"data: [DONE]\n\n"

#: A line longer than this is a broken upstream, not a big tool call.
MAX_LINE_BYTES = 32 * 1024 * 1024


def encode_data(payload: Any) -> bytes:
    """One OpenAI SSE event carrying ``payload`` as JSON.

    >>> encode_data({"a": 1})
    b'data: {"a":1}\\n\\n'
    """
    return b"data: " + orjson.dumps(payload) + b"\n\n"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str | None  # the ``event:`` name, if the upstream sent one
    data: str  # ``data:`` lines joined with ``\n``


class SSEError(ValueError):
    """The upstream's event stream cannot be decoded."""


class SSEDecoder:
    """Turns byte pieces of an event stream into :class:`SSEEvent` objects.

    >>> decoder = SSEDecoder()
    >>> decoder.feed(b"event: ping\\ndata: {}\\n")
    []
    >>> decoder.feed(b"\\n")
    [SSEEvent(event='ping', data='{}')]
    """

    def __init__(self, *, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._pending = b""
        self._event: str | None = None
        self._data: list[str] = []
        self._max_line_bytes = max_line_bytes

    def feed(self, piece: bytes) -> list[SSEEvent]:
        """Decode ``piece``; returns the events it completed."""
        buffer = self._pending + piece
        # A trailing "\r" may be the first half of "\r\n": keep it for the next piece.
        held = b""
        if buffer.endswith(b"\r"):
            buffer, held = buffer[:-1], b"\r"
        lines = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        self._pending = lines.pop() + held
        if len(self._pending) > self._max_line_bytes:
            raise SSEError(f"event stream line longer than {self._max_line_bytes} bytes")
        events: list[SSEEvent] = []
        for line in lines:
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[SSEEvent]:
        """Flush an event the upstream did not terminate with a blank line."""
        return self.feed(b"\n\n")

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data:
                self._event = None
                return None
            event = SSEEvent(self._event, "\n".join(self._data))
            self._event, self._data = None, []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None
