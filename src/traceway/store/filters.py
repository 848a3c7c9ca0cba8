"""The trace filter language: text in, a SQLAlchemy boolean expression out.

::

    status = 'ERROR' AND tags.env = 'prod' AND duration_ms > 500
    span_type IN ('LLM', 'CHAT_MODEL') AND start_time >= '2025-05-01T00:00:00Z'
    metadata.`user id` LIKE 'alice%' AND cost_usd > 0.01

Grammar (keywords are case-insensitive)::

    filter     := condition (AND condition)*
    condition  := field op value | field [NOT] IN '(' value (',' value)* ')'
    op         := = | != | < | <= | > | >= | LIKE | ILIKE
    field      := trace_id | name | status | duration_ms | start_time | end_time
                | span_count | input_tokens | output_tokens | total_tokens | cost_usd
                | request_preview | response_preview | span_type | span.name
                | tags.KEY | metadata.KEY          (KEY may be `back quoted`)
    value      := 'string' | "string" | integer | decimal

Strings take backslash escapes (``\\'``, ``\\"``, ``\\\\``, ``\\n``, ``\\t``, ``\\r``);
any other backslash stays, so ``'100\\%'`` is a LIKE pattern for a literal ``%``.
``start_time`` and ``end_time`` take milliseconds since the epoch or an ISO-8601
string (UTC unless it names an offset).  ``status`` and ``span_type`` values are
matched in upper case.

``span_type`` and ``span.name`` ask about the trace's spans: ``=``, ``LIKE``,
``ILIKE`` and ``IN`` mean "has a span that matches", ``!=`` and ``NOT IN`` mean
"has no span that matches".  ``tags.KEY`` and ``metadata.KEY`` compare the value
of that key; a trace without the key matches no condition on it.

Every value reaches SQL as a bound parameter.  Errors are :class:`FilterError`
with the 0-based position where the text stopped making sense.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, select, true

from traceway.store import schema
from traceway.store.errors import FilterError
from traceway.store.filter_syntax import END, NUMBER, OP, STRING, WORD, Token, tokenize

__all__ = ["Condition", "compile_filter", "parse_filter"]

Value = str | int | float

# Field name -> value kind.  "time" accepts numbers (ms) and ISO-8601 strings.
_TRACE_FIELDS: dict[str, str] = {
    "trace_id": "string",
    "name": "string",
    "status": "string",
    "request_preview": "string",
    "response_preview": "string",
    "duration_ms": "number",
    "span_count": "number",
    "input_tokens": "number",
    "output_tokens": "number",
    "total_tokens": "number",
    "cost_usd": "number",
    "start_time": "time",
    "end_time": "time",
}
_SPAN_FIELDS = ("span_type", "span.name")
_KEYED_FIELDS = ("tags", "metadata")
_UPPERCASE_FIELDS = ("status", "span_type")
KNOWN_FIELDS = (*_TRACE_FIELDS, "tags.<key>", "metadata.<key>", *_SPAN_FIELDS)

_STRING_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
_NUMBER_OPS = ("=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN")
_LIKES = ("LIKE", "ILIKE")
#: Bound parameters one filter may produce; SQLite allows a few thousand per query.
MAX_VALUES = 1000


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``field op value`` of a filter, checked and normalised.

    ``key`` is the tag or metadata key (``None`` for other fields); ``value`` is a
    tuple for ``IN`` / ``NOT IN``; times are already milliseconds.
    """

    field: str
    key: str | None
    op: str
    value: Value | tuple[Value, ...]
    position: int


def parse_filter(text: str | None) -> list[Condition]:
    """Parse a filter into its conditions (an empty or blank filter has none).

    >>> parse_filter("duration_ms > 500")
    [Condition(field='duration_ms', key=None, op='>', value=500, position=0)]
    """
    if text is None:
        return []
    return _Parser(tokenize(text)).parse()


def compile_filter(text: str | None) -> ColumnElement[bool] | None:
    """Compile a filter into a condition on the ``traces`` table (``None`` if empty)."""
    conditions = parse_filter(text)
    if not conditions:
        return None
    return and_(*(_compile(condition) for condition in conditions))


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._index = 0
        self._values = 0

    def _peek(self) -> Token:
        return self._tokens[self._index]

    def _next(self) -> Token:
        token = self._tokens[self._index]
        if token.kind != END:
            self._index += 1
        return token

    def parse(self) -> list[Condition]:
        if self._peek().kind == END:
            return []
        conditions = [self._condition()]
        while self._peek().kind != END:
            token = self._next()
            if not token.is_keyword("AND"):
                raise _error("expected AND or the end of the filter", token)
            conditions.append(self._condition())
        return conditions

    def _condition(self) -> Condition:
        field_token = self._next()
        field, key = self._field(field_token)
        op_token = self._peek()
        op = self._operator()
        kind = _kind(field)
        allowed = _NUMBER_OPS if kind in ("number", "time") else _STRING_OPS
        if op not in allowed:
            raise FilterError(
                f"operator {op} does not apply to {kind} field {_display(field, key)!r} "
                f"at position {op_token.position}; use {', '.join(allowed)}",
                op_token.position,
            )
        if op in ("IN", "NOT IN"):
            value: Value | tuple[Value, ...] = self._list(field, key, op)
        else:
            value = self._value(field, key, op)
        return Condition(field, key, op, value, field_token.position)

    def _field(self, token: Token) -> tuple[str, str | None]:
        if token.kind != WORD or token.keyword is not None:
            raise _error("expected a field name", token)
        name, key = str(token.value), token.key
        if key is None and (name in _TRACE_FIELDS or name == "span_type"):
            return name, None
        if name == "span" and key == "name":
            return "span.name", None
        if name in _KEYED_FIELDS:
            if key is None:
                raise _plain(f"field {name!r} needs a key, as in {name}.env", token)
            if not key:
                raise _plain(f"missing key after '{name}.'", token)
            return name, key
        shown = name if key is None else f"{name}.{key}"
        raise FilterError(
            f"unknown field {shown!r} at position {token.position}; "
            f"known fields: {', '.join(KNOWN_FIELDS)}",
            token.position,
        )

    def _operator(self) -> str:
        token = self._next()
        if token.kind == OP:
            return str(token.value)
        for keyword in ("LIKE", "ILIKE", "IN"):
            if token.is_keyword(keyword):
                return keyword
        if token.is_keyword("NOT"):
            following = self._next()
            if following.is_keyword("IN"):
                return "NOT IN"
            raise _error("expected IN after NOT", following)
        raise _error("expected an operator (= != < <= > >= LIKE ILIKE IN NOT IN)", token)

    def _list(self, field: str, key: str | None, op: str) -> tuple[Value, ...]:
        opening = self._next()
        if opening.kind != "(":
            raise _error(f"expected '(' after {op}", opening)
        values = [self._value(field, key, op)]
        while True:
            token = self._next()
            if token.kind == ")":
                return tuple(values)
            if token.kind != ",":
                raise _error(f"expected ',' or ')' in the {op} list", token)
            values.append(self._value(field, key, op))

    def _value(self, field: str, key: str | None, op: str) -> Value:
        previous = self._tokens[self._index - 1]
        token = self._next()
        if token.kind not in (STRING, NUMBER):
            raise _error(f"expected a value after {previous.text!r}", token)
        self._values += 1
        if self._values > MAX_VALUES:
            raise _plain(f"too many values (at most {MAX_VALUES})", token)
        kind = _kind(field)
        shown = _display(field, key)
        if kind == "string":
            if token.kind != STRING:
                raise _plain(
                    f"field {shown!r} takes a string, not the number {token.text}",
                    token,
                    hint=f"quote it: '{token.text}'",
                )
            value = str(token.value)
            if op in _LIKES:
                trailing = len(value) - len(value.rstrip("\\"))
                if trailing % 2:
                    raise _plain(
                        f"{op} pattern {token} ends with a lone backslash",
                        token,
                        hint="to match one backslash, write \\\\\\\\ between the quotes",
                    )
                return value
            return value.upper() if field in _UPPERCASE_FIELDS else value
        if token.kind == STRING:
            if kind == "time":
                return _iso_to_ms(str(token.value), token)
            raise _plain(f"field {shown!r} takes a number, not the string {token}", token)
        number = token.value
        bounds = _INT32_FIELDS.get(field)
        if bounds is not None and type(number) is int:
            # Bound parameters are cast to the column's INTEGER type: a literal beyond it
            # compares the same as the type's extreme, and must not overflow the cast.
            return min(max(number, bounds[0]), bounds[1])
        return number


#: Fields stored as 32-bit integers (the tokenizer already bounds literals to 64 bits).
_INT32_FIELDS = {"span_count": (-(2**31), 2**31 - 1)}


def _kind(field: str) -> str:
    return _TRACE_FIELDS.get(field, "string")


def _display(field: str, key: str | None) -> str:
    return field if key is None else f"{field}.{key}"


def _error(expected: str, found: Token) -> FilterError:
    """An error for a token that is not what the grammar needs here."""
    if found.kind == END:
        message = f"{expected} at position {found.position}, but the filter ends there"
    else:
        message = f"{expected}, got {found} at position {found.position}"
    return FilterError(message, found.position)


def _plain(message: str, token: Token, *, hint: str = "") -> FilterError:
    suffix = f"; {hint}" if hint else ""
    return FilterError(f"{message} at position {token.position}{suffix}", token.position)


def _iso_to_ms(text: str, token: Token) -> int:
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise _plain(
            f"cannot read {token} as a time",
            token,
            hint="use milliseconds since the epoch or ISO-8601 such as '2025-05-01T12:00:00Z'",
        ) from None


# --- compiling -----------------------------------------------------------------

_TRACE_COLUMNS: dict[str, ColumnElement[Any]] = {
    "start_time": schema.traces.c.start_time_ms,
    "end_time": schema.traces.c.end_time_ms,
    **{name: schema.traces.c[name] for name in _TRACE_FIELDS if name in schema.traces.c},
}

_OPERATORS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": lambda column, value: column == value,
    "!=": lambda column, value: column != value,
    "<": lambda column, value: column < value,
    "<=": lambda column, value: column <= value,
    ">": lambda column, value: column > value,
    ">=": lambda column, value: column >= value,
    "LIKE": lambda column, value: column.like(value, escape="\\"),
    "ILIKE": lambda column, value: column.ilike(value, escape="\\"),
    "IN": lambda column, values: column.in_(values),
    "NOT IN": lambda column, values: column.not_in(values),
}


def _compile(condition: Condition) -> ColumnElement[bool]:
    op, value = condition.op, condition.value
    if condition.field in _TRACE_COLUMNS:
        return _OPERATORS[op](_TRACE_COLUMNS[condition.field], value)
    if condition.field in _KEYED_FIELDS:
        table = schema.trace_tags if condition.field == "tags" else schema.trace_metadata
        return exists(
            select(true())
            .where(
                table.c.trace_pk == schema.traces.c.trace_pk,
                table.c.key == condition.key,
                _OPERATORS[op](table.c.value, value),
            )
            .correlate(schema.traces)
        )
    column = schema.spans.c.span_type if condition.field == "span_type" else schema.spans.c.name
    negated = {"!=": "=", "NOT IN": "IN"}.get(op)
    has_span = exists(
        select(true())
        .where(
            schema.spans.c.trace_pk == schema.traces.c.trace_pk,
            _OPERATORS[negated or op](column, value),
        )
        .correlate(schema.traces)
    )
    return ~has_span if negated else has_span
