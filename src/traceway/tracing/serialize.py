"""Safe JSON text for span inputs and outputs.

Any Python value becomes JSON: pydantic models (duck-typed ``model_dump``),
dataclasses, bytes (UTF-8 text when it decodes, else base64), sets and tuples
(lists), datetimes (ISO 8601), numpy-like objects (``tolist``), mappings and
sequences; anything else becomes its ``repr``.  Text longer than the limit is
cut and turned into a JSON string ending with a visible marker.  These
functions never raise: telemetry must not break the call it observes.

>>> to_json({"when": b"hi", "tags": {"a"}})
'{"when":"hi","tags":["a"]}'
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence, Set
from typing import Any, Final

import orjson

__all__ = ["DEFAULT_MAX_CHARS", "TRUNCATION_MARKER", "dumps", "to_json"]

#: Inputs or outputs longer than this many characters are truncated.
DEFAULT_MAX_CHARS: Final = 100_000
#: Appended to truncated text, followed by the original length.
TRUNCATION_MARKER: Final = "...[truncated by traceway, total chars: "

_OPTIONS: Final = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
# Deeper structures are cut rather than walked (they are almost always cycles).
_MAX_DEPTH: Final = 64
# Lone surrogates cannot be encoded as UTF-8; they become U+FFFD.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def to_json(value: Any, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """JSON text for ``value``, at most about ``max_chars`` characters; never raises."""
    return dumps(value, max_chars).decode()


def dumps(value: Any, max_chars: int = DEFAULT_MAX_CHARS) -> bytes:
    """UTF-8 JSON for ``value`` (the hot-path form of :func:`to_json`); never raises."""
    try:
        data = orjson.dumps(value, default=_default, option=_OPTIONS)
    except Exception:
        # Cycles, integers beyond 64 bits, lone surrogates, too deep: take the slow path.
        data = _slow_dumps(value)
    if len(data) > max_chars:
        return _truncate(data, max_chars)
    return data


def _default(obj: Any) -> Any:
    """Convert what orjson does not know natively; called by orjson per object."""
    try:
        return _convert(obj)
    except Exception:
        return _safe_repr(obj)


def _convert(obj: Any) -> Any:
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump) and not isinstance(obj, type):
        return model_dump()
    if isinstance(obj, bytes | bytearray | memoryview):
        raw = bytes(obj)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode()
    if isinstance(obj, set | frozenset):
        try:
            return sorted(obj)
        except TypeError:
            return list(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    tolist = getattr(obj, "tolist", None)
    if callable(tolist) and not isinstance(obj, type):
        return tolist()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, Sequence | Set) and not isinstance(obj, str | range):
        return list(obj)
    return _safe_repr(obj)


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception:
        return f"<unrepresentable {type(obj).__qualname__}>"


def _slow_dumps(value: Any) -> bytes:
    try:
        plain = _to_plain(value, 0, set())
        return json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode()
    except Exception:
        return orjson.dumps(_clean_str(_safe_repr(value)))


def _to_plain(value: Any, depth: int, path: set[int]) -> Any:
    """Walk ``value`` into JSON-compatible primitives, cutting cycles and depth."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _clean_str(value)
    if depth >= _MAX_DEPTH:
        return "<max depth>"
    if id(value) in path:
        return "<cycle>"
    path.add(id(value))
    try:
        if isinstance(value, dict):
            return {_key(k): _to_plain(v, depth + 1, path) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [_to_plain(v, depth + 1, path) for v in value]
        try:
            # Types orjson serialises natively (datetime, UUID, enum...).
            return orjson.loads(orjson.dumps(value, option=_OPTIONS))
        except Exception:
            converted = _default(value)
        if isinstance(converted, str):
            return _clean_str(converted)
        return _to_plain(converted, depth + 1, path)
    finally:
        path.discard(id(value))


def _key(key: Any) -> str:
    if isinstance(key, str):
        return _clean_str(key)
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    if isinstance(key, int | float):
        return str(key)
    return _clean_str(_safe_repr(key))


def _clean_str(text: str) -> str:
    try:
        text.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def _truncate(data: bytes, max_chars: int) -> bytes:
    text = data.decode(errors="replace")
    if len(text) <= max_chars:
        return data
    return orjson.dumps(f"{text[:max_chars]}{TRUNCATION_MARKER}{len(text)}]")
