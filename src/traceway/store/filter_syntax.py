"""The tokens of the trace filter language (see :mod:`traceway.store.filters`).

A hand-written scanner: words (field names and keywords, with an optional
``.KEY`` or ``.`back quoted key```), quoted strings, numbers, the comparison
operators and ``( , )``.  Every token keeps its offset so errors can say where the
text broke.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from traceway.store.errors import FilterError

__all__ = ["END", "NUMBER", "OP", "STRING", "WORD", "Token", "tokenize"]

WORD = "word"
STRING = "string"
NUMBER = "number"
OP = "op"
END = "end"
KEYWORDS = frozenset({"AND", "IN", "NOT", "LIKE", "ILIKE"})
MAX_FILTER_CHARS = 20_000

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_KEY = re.compile(r"[A-Za-z0-9_.:/\-]+", re.ASCII)
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_WORD_CHARS = re.compile(r"[A-Za-z0-9_.]", re.ASCII)
_OPERATORS = ("!=", "<=", ">=", "=", "<", ">")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "`": "`", "n": "\n", "t": "\t", "r": "\r"}
_INT64 = 2**63


@dataclass(frozen=True, slots=True)
class Token:
    """One token; ``value`` is the word, the unescaped string, the number or the operator."""

    kind: str  # WORD | STRING | NUMBER | OP | "(" | ")" | "," | END
    value: str | int | float
    position: int
    text: str  # as written, for messages
    key: str | None = None  # the KEY of ``tags.KEY`` (a WORD followed by a dot)

    @property
    def keyword(self) -> str | None:
        """The keyword this word spells (case-insensitive), if any."""
        if self.kind == WORD and self.key is None and str(self.value).upper() in KEYWORDS:
            return str(self.value).upper()
        return None

    def is_keyword(self, keyword: str) -> bool:
        return self.keyword == keyword

    def __str__(self) -> str:
        if self.kind == END:
            return "the end of the filter"
        shown = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        # Strings are shown as written, quotes included; everything else gets quotes.
        return shown if self.kind == STRING else f"'{shown}'"


def tokenize(text: str) -> list[Token]:
    """Split a filter into tokens, ending with an ``END`` token."""
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(
            f"filter is too long ({len(text)} characters, at most {MAX_FILTER_CHARS}) "
            f"at position {MAX_FILTER_CHARS}",
            MAX_FILTER_CHARS,
        )
    return list(_Scanner(text).tokens())


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def tokens(self) -> list[Token]:
        text = self.text
        tokens: list[Token] = []
        while True:
            while self.pos < len(text) and text[self.pos].isspace():
                self.pos += 1
            if self.pos >= len(text):
                tokens.append(Token(END, "", len(text), ""))
                return tokens
            tokens.append(self._token())

    def _token(self) -> Token:
        text, start = self.text, self.pos
        char = text[start]
        if char in "(),":
            self.pos += 1
            return Token(char, char, start, char)
        for op in _OPERATORS:
            if text.startswith(op, start):
                self.pos += len(op)
                return Token(OP, op, start, op)
        if char in "'\"":
            return self._string(char)
        number = _NUMBER.match(text, start)
        if number:
            return self._number(number.group())
        word = _WORD.match(text, start)
        if word:
            return self._word(word.group())
        if char == "!":
            raise _fail("unexpected '!'", start, hint="the not-equal operator is '!='")
        raise _fail(f"unexpected character {char!r}", start)

    def _string(self, quote: str) -> Token:
        start = self.pos
        value = self._quoted(quote, what="string")
        return Token(STRING, value, start, self.text[start : self.pos])

    def _quoted(self, quote: str, *, what: str) -> str:
        """Read from an opening quote to its closing one, applying escapes."""
        text, start = self.text, self.pos
        parts: list[str] = []
        i = start + 1
        while i < len(text):
            char = text[i]
            if char == quote:
                self.pos = i + 1
                return "".join(parts)
            if char == "\\" and i + 1 < len(text):
                following = text[i + 1]
                parts.append(_ESCAPES.get(following, "\\" + following))
                i += 2
                continue
            if char == "\x00" or "\ud800" <= char <= "\udfff":
                raise _fail(f"invalid character {char!r} in {what}", i)
            parts.append(char)
            i += 1
        raise _fail(f"unterminated {what}", start, hint=f"it needs a closing {quote}")

    def _number(self, literal: str) -> Token:
        start = self.pos
        end = start + len(literal)
        if end < len(self.text) and _WORD_CHARS.match(self.text, end):
            raise _fail(f"invalid number {self.text[start : end + 1]!r}", start)
        self.pos = end
        value: int | float
        if any(c in literal for c in ".eE"):
            value = float(literal)
            if not math.isfinite(value):
                raise _fail(f"number {literal} is out of range", start)
        else:
            # Longer digit strings cannot be int64 (and int() refuses very long ones).
            value = int(literal) if len(literal) <= 20 else _INT64
            if not -_INT64 <= value < _INT64:
                raise _fail(f"number {literal} is out of range", start)
        return Token(NUMBER, value, start, literal)

    def _word(self, word: str) -> Token:
        text, start = self.text, self.pos
        self.pos += len(word)
        if self.pos >= len(text) or text[self.pos] != ".":
            return Token(WORD, word, start, word)
        self.pos += 1
        if self.pos < len(text) and text[self.pos] == "`":
            key = self._quoted("`", what="quoted key")
        else:
            match = _KEY.match(text, self.pos)
            key = match.group() if match else ""
            self.pos += len(key)
        return Token(WORD, word, start, text[start : self.pos], key=key)


def _fail(message: str, position: int, *, hint: str = "") -> FilterError:
    suffix = f"; {hint}" if hint else ""
    return FilterError(f"{message} at position {position}{suffix}", position)
