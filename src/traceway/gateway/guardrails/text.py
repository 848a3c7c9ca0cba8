"""Portkey's text checks: regexMatch, contains, wordCount, sentenceCount, characterCount, validUrls.

Parameters, verdicts and the ``data`` each check reports follow Portkey's
``plugins/default`` handlers:

=====================  ========================================  =================================
check                  parameters                                passes when
=====================  ========================================  =================================
``regexMatch``         ``rule``, ``not``, ``redact``,            the pattern matches (``not``:
                       ``redactText`` (``"[REDACTED]"``)         does not); with ``redact`` every
                                                                 match is replaced and it passes
``contains``           ``words``, ``operator`` any|all|none      any / all / none of the words
                                                                 occur (case-sensitive)
``wordCount``          ``minWords``, ``maxWords``, ``not``       the count is within the range
``sentenceCount``      ``minSentences``, ``maxSentences``,       the count of ``. ! ?`` is within
                       ``not``                                   the range
``characterCount``     ``minCharacters``, ``maxCharacters``,     the length (code points) is
                       ``not``                                   within the range
``validUrls``          ``onlyDNS`` (ignored), ``not``            every ``http(s)://`` URL is
                                                                 well formed; no URL at all fails
=====================  ========================================  =================================

``validUrls`` checks syntax only (scheme, host name or IP literal, port): the
gateway makes no DNS lookups or HTTP requests on a request's behalf.  Regular
expressions are Python's; JavaScript's named groups ``(?<name>...)`` are accepted.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from traceway.gateway.guardrails.context import (
    CheckContext,
    CheckError,
    CheckOutcome,
    excerpt,
    matches_operator,
)

__all__ = [
    "character_count",
    "contains",
    "is_well_formed_url",
    "regex_match",
    "sentence_count",
    "valid_urls",
    "word_count",
]

_JS_NAMED_GROUP = re.compile(r"\(\?<(?![=!])")
_URL = re.compile(r"https?://\S*")
_URL_TRAILING = ".,;:!?)]}'\">"
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_OPERATORS = ("any", "all", "none")


@functools.lru_cache(maxsize=256)
def _compile(rule: str) -> re.Pattern[str]:
    return re.compile(_JS_NAMED_GROUP.sub("(?P<", rule))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    # Portkey's JSON drops undefined values: so do we, for parameters left out.
    return {k: v for k, v in data.items() if v is not None}


async def regex_match(ctx: CheckContext, params: Mapping[str, Any]) -> CheckOutcome:
    """``default.regexMatch``: does the text match ``rule``?"""
    rule = params.get("rule")
    negate = bool(params.get("not", False))
    text = ctx.text
    try:
        if not rule or not isinstance(rule, str):
            raise ValueError("Missing regex pattern")
        if not text:
            raise ValueError("Missing text to match")
        pattern = _compile(rule)
    except (ValueError, re.error) as exc:
        raise CheckError(
            str(exc),
            _compact(
                {
                    "explanation": f"An error occurred while processing the regex: {exc}",
                    "regexPattern": rule,
                    "not": negate,
                    "textExcerpt": excerpt(text),
                }
            ),
        ) from exc
    match = pattern.search(text)
    redact = bool(params.get("redact", False)) and match is not None
    verdict = True if redact else (match is not None) != negate
    if redact:
        explanation = f"Pattern '{rule}' matched and was redacted"
    elif verdict:
        explanation = (
            f"The regex pattern '{rule}' did not match the text as expected."
            if negate
            else f"The regex pattern '{rule}' successfully matched the text."
        )
    else:
        explanation = (
            f"The regex pattern '{rule}' matched the text when it should not have."
            if negate
            else f"The regex pattern '{rule}' did not match the text."
        )
    details = None
    if match is not None:
        details = {
            "matchedText": match.group(0),
            "index": match.start(),
            "groups": match.groupdict(),
            "captures": list(match.groups()),
        }
    data = {
        "regexPattern": rule,
        "not": negate,
        "verdict": verdict,
        "explanation": explanation,
        "matchDetails": details,
        "textExcerpt": excerpt(text),
    }
    rewrite = None
    if redact:
        replacement = str(params.get("redactText") or "[REDACTED]")
        rewrite = functools.partial(_redact, pattern, replacement)
    return CheckOutcome(verdict=verdict, data=data, rewrite=rewrite)


def _redact(pattern: re.Pattern[str], replacement: str, text: str) -> str:
    return pattern.sub(lambda _: replacement, text)


_CONTAINS_EXPLANATIONS = {
    ("any", True): "At least one word was found.",
    ("any", False): "No words were found.",
    ("all", True): "All words were found.",
    ("all", False): "Some words were missing.",
    ("none", True): "No words were found.",
    ("none", False): "Some words were found.",
}


async def contains(ctx: CheckContext, params: Mapping[str, Any]) -> CheckOutcome:
    """``default.contains``: any / all / none of ``words`` occur in the text."""
    words = params.get("words")
    operator = params.get("operator")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise CheckError("Missing or invalid words array", {"operator": operator})
    if operator not in _OPERATORS:
        raise CheckError(
            'Invalid or missing operator (must be "any", "all", or "none")', {"words": words}
        )
    text = ctx.text
    found = [w for w in words if w in text]
    missing = [w for w in words if w not in text]
    verdict = matches_operator(operator, found, missing)
    outcome = "passed" if verdict else "failed"
    data = {
        "explanation": f"Check {outcome} for '{operator}' words. "
        + _CONTAINS_EXPLANATIONS[(operator, verdict)],
        "foundWords": found,
        "missingWords": missing,
        "operator": operator,
    }
    return CheckOutcome(verdict=verdict, data=data)


def _range_explanation(
    verdict: bool, negate: bool, count: int, low: Any, high: Any, unit: str
) -> str:
    within = f"The text contains {count} {unit}, which is within the specified range"
    outside = f"The text contains {count} {unit}, which is outside the specified range"
    span = f"of {low}-{high} {unit}"
    if verdict:
        return f"{outside} {span} as expected." if negate else f"{within} {span}."
    return f"{within} {span} when it should not be." if negate else f"{outside} {span}."


async def word_count(ctx: CheckContext, params: Mapping[str, Any]) -> CheckOutcome:
    """``default.wordCount``: is the number of words within ``[minWords, maxWords]``?"""
    return _count(ctx, params, "minWords", "maxWords", "words", "word count", "wordCount")


async def character_count(ctx: CheckContext, params: Mapping[str, Any]) -> CheckOutcome:
    """``default.characterCount``: is the length within ``[minCharacters, maxCharacters]``?"""
    return _count(
        ctx,
        params,
        "minCharacters",
        "maxCharacters",
        "characters",
        "character count",
        "characterCount",
    )


def _count(
    ctx: CheckContext,
    params: Mapping[str, Any],
    low_key: str,
    high_key: str,
    unit: str,
    what: str,
    count_key: str,
) -> CheckOutcome:
    low, high = params.get(low_key), params.get(high_key)
    negate = bool(params.get("not", False))
    raw = ctx.text
    text = raw.strip() if unit == "words" else raw
    problem = None
    if not text:
        problem = "Missing text to analyze"
    elif not _is_int(low) or not _is_int(high):
        problem = f"Invalid or missing {what} range"
    if problem is not None:
        verb = "counting characters" if unit == "characters" else f"processing {what}"
        raise CheckError(
            problem,
            _compact(
                {
                    "explanation": f"An error occurred while {verb}: {problem}",
                    low_key: low,
                    high_key: high,
                    "not": negate,
                    "textExcerpt": excerpt(raw),
                }
            ),
        )
    assert low is not None and high is not None
    count = len(text.split()) if unit == "words" else len(text)
    inside = low <= count <= high
    verdict = inside != negate
    data = {
        count_key: count,
        low_key: low,
        high_key: high,
        "not": negate,
        "verdict": verdict,
        "explanation": _range_explanation(verdict, negate, count, low, high, unit),
        "textExcerpt": excerpt(text),
    }
    return CheckOutcome(verdict=verdict, data=data)


async def sentence_count(ctx: CheckContext, params: Mapping[str, Any]) -> CheckOutcome:
    """``default.sentenceCount``: is the number of ``.``/``!``/``?`` within the range?"""
    low, high = params.get("minSentences"), params.get("maxSentences")
    negate = bool(params.get("not", False))
    text = ctx.text
    if not _is_number(low) or not _is_number(high):
        raise CheckError(
            "Missing sentence count range",
            _compact(
                {
                    "explanation": "An error occurred: Missing sentence count range",
                    "minCount": low,
                    "maxCount": high,
                    "not": negate,
                    "textExcerpt": excerpt(text),
                }
            ),
        )
    assert low is not None and high is not None
    count = sum(text.count(mark) for mark in ".!?")
    inside = low <= count <= high
    verdict = inside != negate
    span = f"the specified range of {low} to {high}"
    if verdict:
        explanation = (
            f"The sentence count ({count}) is outside {span} as expected."
            if negate
            else f"The sentence count ({count}) is within {span}."
        )
    else:
        explanation = (
            f"The sentence count ({count}) is within {span} when it should not be."
            if negate
            else f"The sentence count ({count}) is outside {span}."
        )
    data = {
        "sentenceCount": count,
        "minCount": low,
        "maxCount": high,
        "not": negate,
        "verdict": verdict,
        "explanation": explanation,
        "textExcerpt": text[:100] + "..." if len(text) > 100 else text,
    }
    return CheckOutcome(verdict=verdict, data=data)


def is_well_formed_url(url: str) -> bool:
    """An ``http(s)`` URL with a plausible host: a DNS name with a letter TLD, or an IP."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host or port == 0:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if host == "localhost":
        return True
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return False
    tld = labels[-1]
    return (tld.isalpha() and len(tld) >= 2) or tld.startswith("xn--")


async def valid_urls(ctx: CheckContext, params: Mapping[str, Any]) -> CheckOutcome:
    """``default.validUrls``: are all the URLs in the text well formed (syntax only)?"""
    negate = bool(params.get("not", False))
    method = "syntax check"
    text = ctx.text
    if not text:
        raise CheckError(
            "Missing text to analyze",
            {
                "explanation": "An error occurred while validating URLs: Missing text to analyze",
                "validationMethod": method,
                "not": negate,
                "textExcerpt": excerpt(text),
            },
        )
    urls = [m.group(0).rstrip(_URL_TRAILING) for m in _URL.finditer(text)]
    if not urls:
        data = {
            "explanation": "No URLs found in the text.",
            "urls": [],
            "validationMethod": method,
            "not": negate,
            "textExcerpt": excerpt(text),
        }
        return CheckOutcome(verdict=False, data=data)
    good = [u for u in urls if is_well_formed_url(u)]
    bad = [u for u in urls if not is_well_formed_url(u)]
    all_valid = not bad
    verdict = all_valid != negate
    if verdict:
        explanation = (
            f"All URLs are invalid as expected ({len(bad)} of {len(urls)})."
            if negate
            else f"All URLs are valid ({len(good)} found)."
        )
    else:
        explanation = (
            f"Some URLs are valid when they should all be invalid ({len(good)} of {len(urls)})."
            if negate
            else f"Some URLs are invalid ({len(bad)} of {len(urls)} failed)."
        )
    data = {
        "verdict": verdict,
        "not": negate,
        "explanation": explanation,
        "validUrls": good,
        "invalidUrls": bad,
        "validationMethod": method,
        "textExcerpt": excerpt(text),
    }
    return CheckOutcome(verdict=verdict, data=data)
