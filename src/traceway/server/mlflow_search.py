"""MLflow's trace search filters and orderings in Traceway's filter language.

The two languages share their grammar (``field op value AND ...``, quoted strings,
``LIKE``, ``IN``, back-quoted keys), so translating is renaming fields: each field
word is replaced where it stands and everything else is kept as written.

>>> translate_filter("attributes.status = 'OK' AND tags.env = 'prod'")
"status = 'OK' AND tags.env = 'prod'"
>>> translate_order_by(["timestamp_ms DESC"])
'start_time DESC'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from traceway.store.errors import FilterError
from traceway.store.filter_syntax import WORD, tokenize

__all__ = ["translate_filter", "translate_order_by"]

# MLflow's trace fields (bare, or after "attributes." / "trace.") -> Traceway's.
_FIELDS: Final = {
    "status": "status",
    "state": "status",
    "name": "name",
    "timestamp": "start_time",
    "timestamp_ms": "start_time",
    "request_time": "start_time",
    "execution_time": "duration_ms",
    "execution_time_ms": "duration_ms",
    "execution_duration": "duration_ms",
    "request_preview": "request_preview",
    "response_preview": "response_preview",
}
_ATTRIBUTE_PREFIXES: Final = frozenset({"attributes", "attribute", "attr", "trace"})
_KEYED: Final = {
    "tags": "tags",
    "tag": "tags",
    "metadata": "metadata",
    "request_metadata": "metadata",
}
_SPAN_FIELDS: Final = {"name": "span.name", "type": "span_type", "span_type": "span_type"}
_ORDER_FIELDS: Final = {**_FIELDS, "start_time": "start_time", "duration_ms": "duration_ms"}
_DIRECTIONS: Final = frozenset({"ASC", "DESC"})


def translate_filter(text: str | None) -> str | None:
    """The Traceway filter of an MLflow ``filter_string``; :class:`FilterError` if unknown."""
    if text is None or not text.strip():
        return None
    pieces: list[str] = []
    done = 0
    for token in tokenize(text):
        if token.kind != WORD or token.keyword is not None:
            continue
        field = _field(str(token.value), token.key, token.text)
        if field is None:
            raise FilterError(
                f"unsupported field {token.text!r} at position {token.position}", token.position
            )
        pieces += [text[done : token.position], field]
        done = token.position + len(token.text)
    pieces.append(text[done:])
    return "".join(pieces)


def translate_order_by(order_by: Sequence[str] | None) -> str | None:
    """Traceway's ``order_by`` for MLflow's list (Traceway sorts by one field: the first)."""
    if not order_by:
        return None
    words = order_by[0].split()
    if not words or len(words) > 2:
        raise FilterError(f"invalid order_by {order_by[0]!r}", 0)
    name = words[0]
    prefix, dot, rest = name.partition(".")
    if dot and prefix in _ATTRIBUTE_PREFIXES:
        name = rest
    field = _ORDER_FIELDS.get(name)
    direction = words[1].upper() if len(words) == 2 else "ASC"
    if field is None or direction not in _DIRECTIONS:
        raise FilterError(f"unsupported order_by {order_by[0]!r}", 0)
    return f"{field} {direction}"


def _field(word: str, key: str | None, written: str) -> str | None:
    """Traceway's spelling of one field word (``written`` is it as typed, key included)."""
    if key is None:
        return _FIELDS.get(word)
    if word in _ATTRIBUTE_PREFIXES:
        return _FIELDS.get(key)
    if word in _KEYED:
        # Keep the key exactly as written (it may be back-quoted).
        return _KEYED[word] + written[len(word) :]
    if word == "span":
        return _SPAN_FIELDS.get(key)
    return None
