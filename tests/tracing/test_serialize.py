"""Inputs and outputs become JSON text, whatever they are, without ever raising."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid
from collections import OrderedDict, deque
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from traceway.tracing.serialize import TRUNCATION_MARKER, to_json


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Message(BaseModel):
    role: str
    content: str
    sent: dt.datetime


class FakeArray:
    """Quacks like a numpy array."""

    def tolist(self) -> list[list[int]]:
        return [[1, 2], [3, 4]]


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class BrokenModel:
    def model_dump(self) -> dict[str, Any]:
        raise ValueError("cannot dump")

    def __repr__(self) -> str:
        return "BrokenModel()"


def test_common_python_values() -> None:
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    value = {
        "model": Message(role="user", content="hi", sent=when),
        "point": Point(1, 2),
        "bytes": b"caf\xc3\xa9",
        "binary": b"\xff\x00",
        "set": {3, 1, 2},
        "tuple": (1, "a"),
        "when": when,
        "day": dt.date(2024, 5, 1),
        "id": uuid.UUID(int=1),
        "color": Color.RED,
        "array": FakeArray(),
        "ordered": OrderedDict(a=1),
        "queue": deque([1, 2]),
        "decimal": Decimal("1.5"),
        "other": Opaque(),
        1: "int key",
    }
    assert orjson.loads(to_json(value)) == {
        "model": {"role": "user", "content": "hi", "sent": "2024-05-01T12:30:00+00:00"},
        "point": {"x": 1, "y": 2},
        "bytes": "café",
        "binary": "/wA=",
        "set": [1, 2, 3],
        "tuple": [1, "a"],
        "when": "2024-05-01T12:30:00+00:00",
        "day": "2024-05-01",
        "id": "00000000-0000-0000-0000-000000000001",
        "color": "red",
        "array": [[1, 2], [3, 4]],
        "ordered": {"a": 1},
        "queue": [1, 2],
        "decimal": "Decimal('1.5')",
        "other": "<Opaque>",
        "1": "int key",
    }


def test_values_orjson_rejects_take_the_slow_path() -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    assert json.loads(to_json(cyclic)) == [1, "<cycle>"]
    assert json.loads(to_json({"big": 2**70, "nan": float("nan")})) == {"big": 2**70, "nan": None}
    assert json.loads(to_json({(1, 2): "tuple key"})) == {"(1, 2)": "tuple key"}
    assert json.loads(to_json("lone \ud800 surrogate")) == "lone \ufffd surrogate"


def test_objects_that_fail_to_convert_still_serialise() -> None:
    assert json.loads(to_json([Hostile(), BrokenModel()])) == [
        "<unrepresentable Hostile>",
        "BrokenModel()",
    ]


def test_deep_nesting_is_cut_not_fatal() -> None:
    deep: Any = "leaf"
    for _ in range(500):
        deep = [deep]
    text = to_json(deep)
    assert json.loads(text)  # valid JSON
    assert "<max depth>" in text


@pytest.mark.parametrize("limit", [1, 10, 1000])
def test_truncation_keeps_json_valid_and_visible(limit: int) -> None:
    text = to_json({"text": "é" * 5000}, max_chars=limit)
    cut = json.loads(text)
    assert isinstance(cut, str)
    assert cut.startswith('{"text":"é'[:limit])
    assert cut.endswith(f"{TRUNCATION_MARKER}5011]")


def test_short_values_are_not_truncated() -> None:
    # 18 characters, 28 bytes: the limit counts characters.
    assert to_json({"a": "é" * 10}, max_chars=18) == '{"a":"éééééééééé"}'


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary()
    | st.datetimes()
    | st.decimals()
    | st.uuids(),
    lambda children: (
        st.lists(children)
        | st.tuples(children, children)
        | st.frozensets(st.integers() | st.text())
        | st.dictionaries(st.text() | st.integers() | st.booleans() | st.none(), children)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values, limit=st.integers(min_value=1, max_value=200))
def test_any_value_gives_valid_json_and_never_raises(value: Any, limit: int) -> None:
    text = to_json(value, max_chars=limit)
    json.loads(text)
