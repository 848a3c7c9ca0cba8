"""Protobuf wire helpers and OTLP ``KeyValue`` / ``AnyValue`` encodings, with their caches.

Attribute key/value pairs repeat from span to span (span types, model names,
providers, routes, status codes), so the encoded ``Span.attributes`` field of a
short string, an integer or a one-string list is cached per key and value, and
that of a double or boolean is built from a cached per-key prefix.  Every cache
is bounded: a cache full of keys is emptied, and at most
:data:`MAX_VALUES_PER_KEY` values are kept per key, so ids or token counts
cannot grow them.  :mod:`traceway.tracing._otlp_wire` reads the caches inline
in its hot loop and calls :func:`span_attribute` on a miss.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

from traceway.tracing.serialize import to_json

__all__ = [
    "DOUBLE",
    "SMALL_VARINTS",
    "bool_prefixes",
    "delimited",
    "double_prefixes",
    "int_fields",
    "key_value",
    "one_str_lists",
    "optional",
    "span_attribute",
    "str_fields",
    "text_attribute",
    "text_attribute_writer",
    "utf8",
    "varint",
]

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
UINT64_MASK: Final = 2**64 - 1

# Tags: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited).
SPAN_ATTRIBUTES: Final = b"\x4a"  # Span.attributes[9]
_KEY: Final = b"\x0a"  # KeyValue.key[1]
_VALUE: Final = b"\x12"  # KeyValue.value[2]
_STRING: Final = b"\x0a"  # AnyValue.string_value[1]
_BOOL: Final = b"\x10"  # AnyValue.bool_value[2]
_INT: Final = b"\x18"  # AnyValue.int_value[3]
_DOUBLE_TAG: Final = b"\x21"  # AnyValue.double_value[4]
_ARRAY: Final = b"\x2a"  # AnyValue.array_value[5]
_BYTES: Final = b"\x3a"  # AnyValue.bytes_value[7]
_ARRAY_VALUES: Final = b"\x0a"  # ArrayValue.values[1]

DOUBLE: Final = struct.Struct("<d").pack
#: One-byte varints, indexed by value.
SMALL_VARINTS: Final = tuple(bytes((i,)) for i in range(128))
_SMALL: Final = SMALL_VARINTS

_MAX_KEYS: Final = 1024
MAX_VALUES_PER_KEY: Final = 64
_MAX_CACHED_CHARS: Final = 96
# key -> value -> the encoded ``Span.attributes`` field.
str_fields: dict[str, dict[str, bytes]] = {}
int_fields: dict[str, dict[int, bytes]] = {}
# key -> the only item of a one-string list -> the encoded field.
one_str_lists: dict[str, dict[str, bytes]] = {}
# key -> the ``Span.attributes`` field of a double (a boolean) but its 8 value bytes (1 byte).
double_prefixes: dict[str, bytes] = {}
bool_prefixes: dict[str, bytes] = {}
# key -> its ``KeyValue.key`` field.
_key_fields: dict[str, bytes] = {}


def varint(value: int) -> bytes:
    """``value`` (0 <= value < 2**64) as a protobuf varint."""
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        # Lone surrogates cannot travel as protobuf strings; keep the rest of the text.
        return text.encode(errors="replace")


def delimited(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    size = len(payload)
    return tag + (_SMALL[size] if size < 0x80 else varint(size)) + payload


def optional(tag: bytes, payload: bytes) -> bytes:
    """A proto3 bytes or string field: left out when empty."""
    return delimited(tag, payload) if payload else b""


def _bounded(cache: dict[str, Any]) -> dict[str, Any]:
    if len(cache) >= _MAX_KEYS:
        cache.clear()
    return cache


def key_field(key: str) -> bytes:
    """The ``KeyValue.key`` field of ``key``."""
    field = _key_fields.get(key)
    if field is None:
        field = _bounded(_key_fields)[key] = optional(_KEY, utf8(key))
    return field


def _any_value(value: Any) -> bytes | None:
    """The encoded ``AnyValue`` for ``value``; ``None`` for an empty array (left unset)."""
    if isinstance(value, str):
        return delimited(_STRING, utf8(value))
    if isinstance(value, bool):
        return _BOOL + _SMALL[value]
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return _INT + varint(value & UINT64_MASK)
        return delimited(_STRING, str(value).encode())
    if isinstance(value, float):
        return _DOUBLE_TAG + DOUBLE(value)
    if isinstance(value, bytes):
        return delimited(_BYTES, value)
    if isinstance(value, list | tuple) and all(
        isinstance(v, str | bool | int | float) for v in value
    ):
        if not value:
            return None
        items = [delimited(_ARRAY_VALUES, _any_value(v) or b"") for v in value]
        return delimited(_ARRAY, b"".join(items))
    # Maps and mixed values travel as JSON text, which every backend can show.
    return delimited(_STRING, utf8(to_json(value)))


def key_value(tag: bytes, key: str, value: Any) -> bytes:
    """One ``KeyValue`` as the length-delimited field ``tag`` of its parent (not cached)."""
    any_value = _any_value(value)
    payload = key_field(key)
    if any_value is not None:
        payload += delimited(_VALUE, any_value)
    return delimited(tag, payload)


def text_attribute(key: bytes, data: bytes) -> bytes:
    """A string ``Span.attributes`` field: ``key`` from :func:`key_field`, ``data`` UTF-8."""
    return delimited(SPAN_ATTRIBUTES, key + delimited(_VALUE, delimited(_STRING, data)))


def text_attribute_writer(key: str) -> Callable[[bytes], bytes]:
    """:func:`text_attribute` for one key, fast for text of 128 bytes to about 16 KB.

    Inputs and outputs are usually that long: then all three lengths (of the field,
    of the value, of the text) are two-byte varints, and the whole header is one
    ``struct`` call.  A two-byte varint of ``n`` read as a little-endian 16-bit
    integer is ``n + (n & 0x3F80) + 0x80``.
    """
    key_bytes = key_field(key)
    header = struct.Struct(f"<BH{len(key_bytes)}sBHBH").pack
    limit = 0x4000 - len(key_bytes) - 6  # the field's length must stay below 0x4000

    def write(data: bytes) -> bytes:
        size = len(data)
        if 0x80 <= size < limit:
            value_size = size + 3
            field_size = value_size + len(key_bytes) + 3
            return (
                header(
                    0x4A,
                    field_size + (field_size & 0x3F80) + 0x80,
                    key_bytes,
                    0x12,
                    value_size + (value_size & 0x3F80) + 0x80,
                    0x0A,
                    size + (size & 0x3F80) + 0x80,
                )
                + data
            )
        return text_attribute(key_bytes, data)

    return write


def span_attribute(key: str, value: Any) -> bytes:
    """The ``Span.attributes`` field for ``value``, filling the caches where they apply."""
    cls = type(value)
    if cls is str:
        if len(value) > _MAX_CACHED_CHARS:
            return text_attribute(key_field(key), utf8(value))
        str_values = str_fields.get(key)
        if str_values is None:
            str_values = _bounded(str_fields)[key] = {}
        field = key_value(SPAN_ATTRIBUTES, key, value)
        if len(str_values) < MAX_VALUES_PER_KEY:
            str_values[value] = field
        return field
    if cls is int:
        int_values = int_fields.get(key)
        if int_values is None:
            int_values = _bounded(int_fields)[key] = {}
        field = key_value(SPAN_ATTRIBUTES, key, value)
        if len(int_values) < MAX_VALUES_PER_KEY:
            int_values[value] = field
        return field
    if cls is float:
        prefix = double_prefixes.get(key)
        if prefix is None:
            prefix = _bounded(double_prefixes)[key] = key_value(SPAN_ATTRIBUTES, key, 0.0)[:-8]
        return prefix + DOUBLE(value)
    if cls is bool:
        prefix = bool_prefixes.get(key)
        if prefix is None:
            prefix = _bounded(bool_prefixes)[key] = key_value(SPAN_ATTRIBUTES, key, False)[:-1]
        return prefix + _SMALL[value]
    if cls is list and len(value) == 1 and type(value[0]) is str:
        # Such as finish reasons, ["stop"].
        lists = one_str_lists.get(key)
        if lists is None:
            lists = _bounded(one_str_lists)[key] = {}
        field = key_value(SPAN_ATTRIBUTES, key, value)
        if len(lists) < MAX_VALUES_PER_KEY:
            lists[value[0]] = field
        return field
    return key_value(SPAN_ATTRIBUTES, key, value)
