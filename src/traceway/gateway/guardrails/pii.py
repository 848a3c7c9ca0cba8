"""PII detection and redaction, all local: ``default.pii`` (alias ``portkey.pii``).

Detected categories, each with a check beyond the pattern where one exists:

==============  ==================================================================
``EMAIL``       ``local@domain.tld``
``PHONE``       international (``+CC`` then 8-15 digits in groups), North-American
                (``(415) 555-0100``, ``415-555-0100``, ``+1 415 555 0100``), and
                national numbers with a leading 0 and a separator (``020 7946 0958``)
``CREDIT_CARD`` 13-19 digits (groups split by spaces or dashes), starting 2-6,
                passing the Luhn checksum
``IBAN``        country code, check digits and 11-30 letters/digits, passing the
                ISO 13616 mod-97 check
``IP_ADDRESS``  IPv4 dotted quads and IPv6 addresses (validated by ``ipaddress``;
                ``::1``-style addresses with one group are left alone)
``US_SSN``      ``123-45-6789`` (never 000/666/9xx, 00, 0000 blocks)
==============  ==================================================================

Where matches overlap, the category listed first wins.  Redaction replaces each
value with a typed, numbered placeholder: ``[EMAIL_1]``, ``[PHONE_2]``; the same
value keeps its number across the whole request, so a model can still tell two
people apart.

Parameters: ``redact`` (rewrite instead of failing), ``categories`` (a subset of
the above; all by default).  Without ``redact`` the check fails when the text
holds PII; with it the request (or answer) is rewritten and the check passes.
The ``data`` counts what was found per category and never repeats the values.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from traceway.gateway.guardrails.context import CheckContext, CheckError, CheckOutcome

__all__ = [
    "CATEGORIES",
    "Finding",
    "Redactor",
    "find_pii",
    "iban_valid",
    "luhn_valid",
    "pii",
]

EMAIL: Final = "EMAIL"
IBAN: Final = "IBAN"
CREDIT_CARD: Final = "CREDIT_CARD"
US_SSN: Final = "US_SSN"
IP_ADDRESS: Final = "IP_ADDRESS"
PHONE: Final = "PHONE"
#: In priority order: where two matches overlap, the earlier category wins.
CATEGORIES: Final = (EMAIL, IBAN, CREDIT_CARD, US_SSN, IP_ADDRESS, PHONE)
_PRIORITY = {category: rank for rank, category in enumerate(CATEGORIES)}

# Detectors of digit-made PII (cards, SSNs, IPv4, phones) only look inside digit
# clusters, found by one cheap scan: patterns that begin with an assertion are
# tried at every position, and most text has few digits.
_CLUSTER = re.compile(r"[+(]?\d[\d .()-]*", re.ASCII)
_EMAIL_DOMAIN = re.compile(r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,}(?![\w-])")
_EMAIL_LOCAL = frozenset("_.%+-")
_MAX_LOCAL = 64
_DIGIT_RUN = re.compile(r"(?<![\w])\d+(?:[ -]\d+)*(?!\w)")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?!\.?\d)")
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f:][0-9A-Fa-f:.]{2,44}(?![\w:])")
_PHONES = (
    # International: + country code, then groups.
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,7}(?!\d)"),
    # North American: (415) 555-0100, 1-415-555-0100, 415.555.0100.
    re.compile(r"(?<![\w+])(?:1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\d)"),
    # National numbers with a trunk 0: 020 7946 0958.
    re.compile(r"(?<![\w+])0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}(?!\d)"),
)
_GROUP = re.compile(r"\d+")
_MAX_CARD_GROUPS = 24


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of PII: its category and where it sits in the text."""

    category: str
    start: int
    end: int
    value: str


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum (payment card numbers).

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return bool(digits) and total % 10 == 0


def iban_valid(iban: str) -> bool:
    """The ISO 13616 mod-97 check, spaces ignored.

    >>> iban_valid("GB82 WEST 1234 5698 7654 32"), iban_valid("GB82 WEST 1234 5698 7654 33")
    (True, False)
    """
    compact = iban.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact.isalnum() or not compact.isascii():
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


@dataclass(frozen=True, slots=True)
class _Window:
    """A run of digits and separators, and what it could hold."""

    pos: int
    endpos: int  # one character past the run, for the patterns' closing lookaheads
    digits: int
    dots: int
    dashes: int


def _windows(text: str) -> list[_Window]:
    windows = []
    for match in _CLUSTER.finditer(text):
        run = match[0]
        digits = sum(c.isdigit() for c in run)
        # The shortest digit-made PII is an IPv4 address: four digits.
        if digits < 4:
            continue
        end = match.start() + len(run.rstrip(" .(-"))
        windows.append(
            _Window(match.start(), min(len(text), end + 1), digits, run.count("."), run.count("-"))
        )
    return windows


def _in(pattern: re.Pattern[str], text: str, windows: Iterable[_Window]) -> Iterator[re.Match[str]]:
    for window in windows:
        # Lookbehinds still see the text before ``pos``.
        yield from pattern.finditer(text, window.pos, window.endpos)


def _emails(text: str) -> Iterator[Finding]:
    at = text.find("@")
    while at != -1:
        start = at
        while at - start < _MAX_LOCAL and start > 0:
            char = text[start - 1]
            if not (char.isalnum() or char in _EMAIL_LOCAL):
                break
            start -= 1
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        if start < at and domain is not None:
            yield Finding(EMAIL, start, domain.end(), text[start : domain.end()])
            at = text.find("@", domain.end())
        else:
            at = text.find("@", at + 1)


def _cards(text: str, windows: list[_Window]) -> Iterator[Finding]:
    for run in _in(_DIGIT_RUN, text, (w for w in windows if w.digits >= 13)):
        groups = [(m.start() + run.start(), m.end() + run.start()) for m in _GROUP.finditer(run[0])]
        groups = groups[:_MAX_CARD_GROUPS]
        index = 0
        while index < len(groups):
            best = None
            digits = ""
            for last in range(index, len(groups)):
                digits += text[groups[last][0] : groups[last][1]]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and digits[0] in "23456" and luhn_valid(digits):
                    best = last
            if best is None:
                index += 1
                continue
            start, end = groups[index][0], groups[best][1]
            yield Finding(CREDIT_CARD, start, end, text[start:end])
            index = best + 1


def _ibans(text: str) -> Iterator[Finding]:
    for match in _IBAN.finditer(text):
        chunks = match[0].split(" ")
        # The pattern may run on into a following word: keep the longest valid prefix.
        for keep in range(len(chunks), 0, -1):
            candidate = " ".join(chunks[:keep])
            if iban_valid(candidate):
                start = match.start()
                yield Finding(IBAN, start, start + len(candidate), candidate)
                break


def _ipv4(text: str, windows: list[_Window]) -> Iterator[Finding]:
    for match in _in(_IPV4, text, (w for w in windows if w.dots >= 3)):
        # No leading zeros, each octet at most 255.
        if all(octet == str(int(octet)) and int(octet) <= 255 for octet in match[0].split(".")):
            yield Finding(IP_ADDRESS, match.start(), match.end(), match[0])


def _ipv6(text: str) -> Iterator[Finding]:
    for match in _IPV6.finditer(text):
        candidate = match[0].rstrip(".")
        if candidate.count(":") < 2:
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        if sum(1 for group in candidate.split(":") if group) >= 2:
            start = match.start()
            yield Finding(IP_ADDRESS, start, start + len(candidate), candidate)


def _phones(text: str, windows: list[_Window]) -> Iterator[Finding]:
    likely = [w for w in windows if w.digits >= 7]
    for pattern in _PHONES:
        for match in _in(pattern, text, likely):
            digits = sum(c.isdigit() for c in match[0])
            if 7 <= digits <= 15:
                yield Finding(PHONE, match.start(), match.end(), match[0])


def _ssns(text: str, windows: list[_Window]) -> Iterator[Finding]:
    for match in _in(_SSN, text, (w for w in windows if w.digits >= 9 and w.dashes >= 2)):
        yield Finding(US_SSN, match.start(), match.end(), match[0])


def _candidates(text: str, categories: frozenset[str]) -> Iterator[Finding]:
    if EMAIL in categories and "@" in text:
        yield from _emails(text)
    if IP_ADDRESS in categories and text.count(":") >= 2:
        yield from _ipv6(text)
    windows = _windows(text)
    if not windows:
        return
    if IBAN in categories:
        yield from _ibans(text)
    if CREDIT_CARD in categories:
        yield from _cards(text, windows)
    if US_SSN in categories:
        yield from _ssns(text, windows)
    if IP_ADDRESS in categories:
        yield from _ipv4(text, windows)
    if PHONE in categories:
        yield from _phones(text, windows)


def find_pii(text: str, categories: Iterable[str] = CATEGORIES) -> list[Finding]:
    """Non-overlapping PII findings in ``text``, in order of position.

    >>> [f.category for f in find_pii("mail a@b.io or call +44 20 7946 0958")]
    ['EMAIL', 'PHONE']
    """
    wanted = frozenset(categories)
    ranked = sorted(
        _candidates(text, wanted),
        key=lambda f: (_PRIORITY[f.category], f.start, -(f.end - f.start)),
    )
    taken: list[Finding] = []
    for finding in ranked:
        if all(finding.end <= t.start or finding.start >= t.end for t in taken):
            taken.append(finding)
    return sorted(taken, key=lambda f: f.start)


def _normalise(finding: Finding) -> str:
    if finding.category in (CREDIT_CARD, PHONE, US_SSN):
        return "".join(c for c in finding.value if c.isdigit())
    return finding.value.replace(" ", "").lower()


class Redactor:
    """Replaces PII with ``[CATEGORY_n]``; one per request, so a value keeps its number.

    >>> redact = Redactor()
    >>> redact("a@b.io wrote to c@d.io, then a@b.io again")
    '[EMAIL_1] wrote to [EMAIL_2], then [EMAIL_1] again'
    """

    def __init__(self, categories: Iterable[str] = CATEGORIES) -> None:
        self.categories = tuple(categories)
        self._placeholders: dict[tuple[str, str], str] = {}
        self._numbers: Counter[str] = Counter()
        #: How many values were replaced, per category.
        self.replaced: Counter[str] = Counter()

    def placeholder(self, finding: Finding) -> str:
        """The placeholder for a finding (the same value always gets the same one)."""
        key = (finding.category, _normalise(finding))
        placeholder = self._placeholders.get(key)
        if placeholder is None:
            self._numbers[finding.category] += 1
            placeholder = f"[{finding.category}_{self._numbers[finding.category]}]"
            self._placeholders[key] = placeholder
        return placeholder

    def __call__(self, text: str) -> str:
        findings = find_pii(text, self.categories)
        if not findings:
            return text
        pieces: list[str] = []
        at = 0
        for finding in findings:
            pieces.append(text[at : finding.start])
            pieces.append(self.placeholder(finding))
            self.replaced[finding.category] += 1
            at = finding.end
        pieces.append(text[at:])
        return "".join(pieces)


def _categories(params: Mapping[str, Any]) -> tuple[str, ...]:
    wanted = params.get("categories")
    if wanted is None:
        return CATEGORIES
    if not isinstance(wanted, list) or not all(isinstance(c, str) for c in wanted):
        raise CheckError("categories must be a list of PII categories")
    unknown = [c for c in wanted if c.upper() not in _PRIORITY]
    if unknown:
        raise CheckError(
            f"unknown PII categories {unknown}; known: {', '.join(CATEGORIES)}",
            {"categories": wanted},
        )
    return tuple(c.upper() for c in wanted)


async def pii(ctx: CheckContext, params: Mapping[str, Any]) -> CheckOutcome:
    """``default.pii``: fail on PII in the text, or (``redact``) rewrite it away."""
    categories = _categories(params)
    redact = bool(params.get("redact", False))
    findings = find_pii(ctx.text, categories)
    detected = dict(Counter(f.category for f in findings))
    if not findings:
        explanation = "No PII found in the text."
    elif redact:
        explanation = f"PII found and redacted: {', '.join(sorted(detected))}."
    else:
        explanation = f"PII found: {', '.join(sorted(detected))}."
    data = {
        "explanation": explanation,
        "detected": detected,
        "categories": list(categories),
        "redacted": redact and bool(findings),
    }
    return CheckOutcome(
        verdict=redact or not findings,
        data=data,
        rewrite=Redactor(categories) if redact else None,
    )
