"""Conditional routing queries, in Portkey's (MongoDB-like) shape.

A query maps dotted paths to either a literal (equality) or an operator object::

    {"metadata.plan": {"$eq": "paid"}, "params.model": {"$in": ["gpt-4o", "gpt-4.1"]}}
    {"$or": [{"metadata.tier": "gold"}, {"params.max_tokens": {"$gt": 1000}}]}

Paths start with ``metadata.`` (the ``x-traceway-metadata`` header) or
``params.`` (the request body).  Queries are compiled once, when the config is
validated, into plain closures; regular expressions are compiled then too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Predicate", "QueryError", "compile_query"]

#: A compiled query: ``predicate({"metadata": {...}, "params": {...}}) -> bool``.
Predicate = Callable[[Mapping[str, Any]], bool]

_ROOTS = ("metadata", "params")
_MISSING = object()


class QueryError(ValueError):
    """A query that cannot be compiled (unknown operator, bad path, bad regex)."""


def _lookup(context: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = context
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _coerce(value: Any, operand: Any) -> Any:
    """Metadata arrives as strings: compare ``"5"`` with ``5`` as numbers."""
    if (
        isinstance(value, str)
        and isinstance(operand, int | float)
        and not isinstance(operand, bool)
    ):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _ordered(op: Callable[[Any, Any], bool], operand: Any) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        if value is _MISSING or value is None:
            return False
        try:
            return op(_coerce(value, operand), operand)
        except TypeError:
            return False

    return test


def _equals(operand: Any) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        if value is _MISSING:
            return False
        return bool(_coerce(value, operand) == operand)

    return test


def _member(operand: Any) -> Callable[[Any], bool]:
    if not isinstance(operand, list):
        raise QueryError("$in and $nin take a list")
    items = list(operand)

    def test(value: Any) -> bool:
        if value is _MISSING:
            return False
        return any(_coerce(value, item) == item for item in items)

    return test


def _regex(operand: Any) -> Callable[[Any], bool]:
    if not isinstance(operand, str):
        raise QueryError("$regex takes a string")
    try:
        pattern = re.compile(operand)
    except re.error as exc:
        raise QueryError(f"invalid $regex {operand!r}: {exc}") from exc
    return lambda value: isinstance(value, str) and pattern.search(value) is not None


def _field_test(op: str, operand: Any) -> Callable[[Any], bool]:
    if op == "$eq":
        return _equals(operand)
    if op == "$ne":
        eq = _equals(operand)
        return lambda value: not eq(value)
    if op == "$gt":
        return _ordered(lambda a, b: a > b, operand)
    if op == "$gte":
        return _ordered(lambda a, b: a >= b, operand)
    if op == "$lt":
        return _ordered(lambda a, b: a < b, operand)
    if op == "$lte":
        return _ordered(lambda a, b: a <= b, operand)
    if op == "$in":
        return _member(operand)
    if op == "$nin":
        member = _member(operand)
        return lambda value: not member(value)
    if op == "$regex":
        return _regex(operand)
    raise QueryError(f"unknown operator {op!r}")


def _compile_field(path: str, spec: Any) -> Predicate:
    parts = tuple(path.split("."))
    if len(parts) < 2 or parts[0] not in _ROOTS or not all(parts):
        raise QueryError(f"query paths start with 'metadata.' or 'params.': {path!r}")
    if isinstance(spec, Mapping) and spec and all(str(k).startswith("$") for k in spec):
        tests = [_field_test(op, operand) for op, operand in spec.items()]
    else:
        tests = [_equals(spec)]

    def predicate(context: Mapping[str, Any]) -> bool:
        value = _lookup(context, parts)
        return all(test(value) for test in tests)

    return predicate


def _compile_list(op: str, operand: Any) -> list[Predicate]:
    if not isinstance(operand, list) or not operand:
        raise QueryError(f"{op} takes a non-empty list of queries")
    return [compile_query(item) for item in operand]


def _all_of(parts: list[Predicate]) -> Predicate:
    return lambda context: all(p(context) for p in parts)


def _any_of(parts: list[Predicate]) -> Predicate:
    return lambda context: any(p(context) for p in parts)


def compile_query(query: Any) -> Predicate:
    """Compile a query object into a predicate over ``{"metadata": ..., "params": ...}``.

    >>> match = compile_query({"metadata.plan": {"$in": ["pro", "team"]}})
    >>> match({"metadata": {"plan": "pro"}, "params": {}})
    True
    """
    if not isinstance(query, Mapping):
        raise QueryError("a query is a JSON object")
    predicates: list[Predicate] = []
    for key, spec in query.items():
        if key == "$and":
            predicates.append(_all_of(_compile_list(key, spec)))
        elif key == "$or":
            predicates.append(_any_of(_compile_list(key, spec)))
        elif key.startswith("$"):
            raise QueryError(f"unknown operator {key!r} at the top of a query")
        else:
            predicates.append(_compile_field(key, spec))
    return predicates[0] if len(predicates) == 1 else _all_of(predicates)
