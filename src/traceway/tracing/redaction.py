"""Built-in redaction: secrets never leave the process.

:func:`redact_secrets` is a span hook that every processor applies first by
default.  Values whose key looks like a credential (``api_key``, ``apiKey``,
``Authorization``, ``password``, ``secret``, ``access_token``...) are replaced by
``"[REDACTED]"`` in attributes, event attributes and, at any depth, in the JSON
inputs and outputs.  It runs on the export thread, never on the caller's.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final

import orjson

from traceway.tracing.span import FinishedSpan, SpanEvent

__all__ = ["REDACTED", "is_secret_key", "redact_secrets"]

REDACTED: Final = "[REDACTED]"

_SECRET_WORDS: Final = (
    r"api[_\-.]?key|authorization|passw(?:or)?d|secret|access[_\-.]?token"
    r"|refresh[_\-.]?token|auth[_\-.]?token|private[_\-.]?key|cookie"
)
_SECRET_KEY: Final = re.compile(_SECRET_WORDS, re.IGNORECASE)
# A "key": value pair with a secret-looking key, in JSON-like text that does not parse.
_SECRET_PAIR: Final = re.compile(
    rf'("[^"]*(?:{_SECRET_WORDS})[^"]*"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}}\]]+)',
    re.IGNORECASE,
)


# Substrings every secret word contains: a cheap test that rules out most text.
_HINTS: Final = ("api", "auth", "passw", "secret", "access", "refresh", "private", "cookie")


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether a key names a credential whose value must not be recorded."""
    return _SECRET_KEY.search(key) is not None


# Attribute keys seen not to be secret: a whole span's keys are checked with one set test.
_plain_keys: set[str] = set()
_MAX_PLAIN_KEYS: Final = 4096


def _may_hold_secrets(text: str) -> bool:
    # map() keeps the hint scan in C; the regex runs only on the rare text with a hint.
    return any(map(text.lower().__contains__, _HINTS)) and _SECRET_KEY.search(text) is not None


def redact_secrets(span: FinishedSpan) -> FinishedSpan:
    """Replace credential values in ``span`` (in place) and return it."""
    attributes = span.attributes
    if not _plain_keys.issuperset(attributes):
        for key in attributes:
            if is_secret_key(key):
                attributes[key] = REDACTED
            elif isinstance(key, str):
                if len(_plain_keys) >= _MAX_PLAIN_KEYS:
                    _plain_keys.clear()
                _plain_keys.add(key)
    if span.events:
        span.events = [_redact_event(event) for event in span.events]
    if span.inputs is not None:
        span.inputs = redact_json(span.inputs)
    if span.outputs is not None:
        span.outputs = redact_json(span.outputs)
    return span


def redact_json(text: str) -> str:
    """JSON text with credential values replaced; unchanged when none are present."""
    if not _may_hold_secrets(text):
        return text
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _SECRET_PAIR.sub(rf'\1"{REDACTED}"', text)
    if isinstance(value, str):
        # Truncated inputs are kept as a string of cut JSON: redact it textually.
        return orjson.dumps(_SECRET_PAIR.sub(rf'\1"{REDACTED}"', value)).decode()
    return orjson.dumps(_redact_value(value)).decode()


def _redact_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if is_secret_key(k) else _redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    return value


def _redact_event(event: SpanEvent) -> SpanEvent:
    if not any(is_secret_key(k) for k in event.attributes):
        return event
    attributes = {k: REDACTED if is_secret_key(k) else v for k, v in event.attributes.items()}
    return SpanEvent(event.name, event.timestamp_ns, attributes)
