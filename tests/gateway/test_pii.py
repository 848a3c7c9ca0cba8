"""PII detection and redaction: the detectors, the default.pii check, and properties."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traceway.gateway.guardrails import GuardrailSet, Redactor, find_pii
from traceway.gateway.guardrails.pii import iban_valid, luhn_valid


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("mail john.doe+x@example.co.uk now", [("EMAIL", "john.doe+x@example.co.uk")]),
        ("unicode jöhn@exämple.de", [("EMAIL", "jöhn@exämple.de")]),
        ("call (415) 555-0100 today", [("PHONE", "(415) 555-0100")]),
        ("call 415.555.0100", [("PHONE", "415.555.0100")]),
        ("call +1 415 555 0100", [("PHONE", "+1 415 555 0100")]),
        ("London +44 20 7946 0958", [("PHONE", "+44 20 7946 0958")]),
        ("London 020 7946 0958", [("PHONE", "020 7946 0958")]),
        ("card 4111 1111 1111 1111", [("CREDIT_CARD", "4111 1111 1111 1111")]),
        ("card 5500-0000-0000-0004.", [("CREDIT_CARD", "5500-0000-0000-0004")]),
        ("amex 378282246310005", [("CREDIT_CARD", "378282246310005")]),
        ("ref 12 4111111111111111", [("CREDIT_CARD", "4111111111111111")]),
        ("iban GB82 WEST 1234 5698 7654 32 ok", [("IBAN", "GB82 WEST 1234 5698 7654 32")]),
        ("iban DE89370400440532013000 ABC", [("IBAN", "DE89370400440532013000")]),
        ("ssn 123-45-6789", [("US_SSN", "123-45-6789")]),
        ("host 192.168.1.100.", [("IP_ADDRESS", "192.168.1.100")]),
        ("v6 fe80::1ff:fe23:4567:890a.", [("IP_ADDRESS", "fe80::1ff:fe23:4567:890a")]),
        ("mapped ::ffff:192.0.2.1", [("IP_ADDRESS", "::ffff:192.0.2.1")]),
        # Near misses: checksums, shapes and look-alikes that are not PII.
        ("card 4111 1111 1111 1112", []),
        ("order 1234567890123456", []),
        ("iban GB82 WEST 1234 5698 7654 33", []),
        ("ssn 000-12-3456 or 666-12-3456", []),
        ("at 12:30:45 on 2024-01-15, mac 00:1A:2B:3C:4D:5E", []),
        ("std::vector and ::1 and 1.2.3.256", []),
        ("version 2 of 3, item 42", []),
        ("handle @someone and a@b", []),
    ],
)
def test_detection(text: str, found: list[tuple[str, str]]) -> None:
    assert [(f.category, f.value) for f in find_pii(text)] == found


def test_overlaps_go_to_the_stronger_category() -> None:
    text = "write to pay.4111111111111111@bank.example"
    assert [(f.category, f.value) for f in find_pii(text)] == [
        ("EMAIL", "pay.4111111111111111@bank.example")
    ]


def test_redaction_numbers_each_value_once_per_request() -> None:
    redact = Redactor()
    first = redact("a@b.io asked c@d.io; card 4111 1111 1111 1111")
    second = redact("again a@b.io with 4111-1111-1111-1111, call (415) 555-0100")
    assert (first, second) == (
        "[EMAIL_1] asked [EMAIL_2]; card [CREDIT_CARD_1]",
        "again [EMAIL_1] with [CREDIT_CARD_1], call [PHONE_1]",
    )
    assert dict(redact.replaced) == {"EMAIL": 3, "CREDIT_CARD": 2, "PHONE": 1}


def test_redaction_limited_to_categories() -> None:
    assert Redactor(["EMAIL"])("a@b.io or 415-555-0100") == "[EMAIL_1] or 415-555-0100"


def test_checksums() -> None:
    assert [luhn_valid(n) for n in ("4111111111111111", "79927398713", "79927398710", "")] == [
        True,
        True,
        False,
        False,
    ]
    assert [
        iban_valid(i) for i in ("FR1420041010050500013M02606", "FR1420041010050500013M02607")
    ] == [
        True,
        False,
    ]


def rails(check: dict[str, Any], *, output: bool = False) -> GuardrailSet:
    key = "output_guardrails" if output else "input_guardrails"
    made = GuardrailSet.from_config({key: [{**check, "deny": True}]})
    assert made is not None
    return made


def test_pii_check_fails_without_redact_and_never_repeats_the_values() -> None:
    body = {"messages": [{"role": "user", "content": "I am a@b.io, card 4111 1111 1111 1111"}]}
    outcome = asyncio.run(rails({"default.pii": {}}).run_input(body, {}, None))
    assert (outcome.verdict, outcome.deny, outcome.transformed_body) == (False, True, None)
    check = outcome.results[0]["checks"][0]
    assert check["data"] == {
        "explanation": "PII found: CREDIT_CARD, EMAIL.",
        "detected": {"EMAIL": 1, "CREDIT_CARD": 1},
        "categories": ["EMAIL", "IBAN", "CREDIT_CARD", "US_SSN", "IP_ADDRESS", "PHONE"],
        "redacted": False,
    }


def test_pii_redact_rewrites_every_message_before_it_leaves() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Support bot for ops@corp.example"},
            {"role": "user", "content": "My SSN is 123-45-6789"},
            {"role": "assistant", "content": "Thanks."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "email me at jane@home.example"},
                    {"type": "image_url", "image_url": {"url": "https://x.example/a.png"}},
                ],
            },
        ],
    }
    outcome = asyncio.run(rails({"portkey.pii": {"redact": True}}).run_input(body, {}, None))
    assert (outcome.verdict, outcome.deny) == (True, False)
    assert outcome.transformed_body == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Support bot for [EMAIL_1]"},
            {"role": "user", "content": "My SSN is [US_SSN_1]"},
            {"role": "assistant", "content": "Thanks."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "email me at [EMAIL_2]"},
                    {"type": "image_url", "image_url": {"url": "https://x.example/a.png"}},
                ],
            },
        ],
    }
    check = outcome.results[0]["checks"][0]
    assert (check["id"], check["transformed"], check["data"]["detected"]) == (
        "portkey.pii",
        True,
        {"EMAIL": 1},
    )
    assert body["messages"][1]["content"] == "My SSN is 123-45-6789"  # the caller's copy is kept


def test_pii_redact_on_output_rewrites_the_answer() -> None:
    answer = {
        "id": "c1",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Reach Bob at 415-555-0100"}}
        ],
    }
    guard = rails({"default.pii": {"redact": True, "categories": ["PHONE"]}}, output=True)
    outcome = asyncio.run(guard.run_output({"messages": []}, answer, {}, None))
    assert outcome.transformed_body == {
        "id": "c1",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Reach Bob at [PHONE_1]"}}
        ],
    }


def test_unknown_pii_category_is_a_check_error() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    outcome = asyncio.run(rails({"default.pii": {"categories": ["DNA"]}}).run_input(body, {}, None))
    check = outcome.results[0]["checks"][0]
    assert (check["verdict"], check["error"]) == (
        False,
        {
            "name": "Error",
            "message": "unknown PII categories ['DNA']; known: EMAIL, IBAN, CREDIT_CARD, "
            "US_SSN, IP_ADDRESS, PHONE",
        },
    )
    assert (outcome.verdict, outcome.deny) == (True, False)  # an errored check does not block


# -- properties -----------------------------------------------------------------

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = draw(st.from_regex(r"[a-z0-9]([a-z0-9._+-]{0,10}[a-z0-9])?", fullmatch=True))
    labels = draw(
        st.lists(
            st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True),
            min_size=1,
            max_size=3,
        )
    )
    tld = draw(st.text(alphabet=_LOWER, min_size=2, max_size=6))
    return f"{local}@{'.'.join(labels)}.{tld}"


def _luhn_complete(partial: str) -> str:
    for digit in _DIGITS:
        if luhn_valid(partial + digit):
            return partial + digit
    raise AssertionError("unreachable")


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix, length = draw(
        st.sampled_from(
            [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16)]
        )
    )
    body = draw(
        st.text(
            alphabet=_DIGITS, min_size=length - len(prefix) - 1, max_size=length - len(prefix) - 1
        )
    )
    number = _luhn_complete(prefix + body)
    separator = draw(st.sampled_from(["", " ", "-"]))
    if not separator:
        return number
    return separator.join(number[i : i + 4] for i in range(0, len(number), 4))


@st.composite
def phones(draw: st.DrawFn) -> str:
    area = draw(st.from_regex(r"[2-9][0-9]{2}", fullmatch=True))
    exchange = draw(st.from_regex(r"[2-9][0-9]{2}", fullmatch=True))
    line = draw(st.from_regex(r"[0-9]{4}", fullmatch=True))
    national = draw(
        st.sampled_from(
            [
                f"({area}) {exchange}-{line}",
                f"{area}-{exchange}-{line}",
                f"{area}.{exchange}.{line}",
                f"{area} {exchange} {line}",
                f"+1 {area} {exchange} {line}",
                f"+1-{area}-{exchange}-{line}",
            ]
        )
    )
    country = draw(st.from_regex(r"[1-9][0-9]{0,2}", fullmatch=True))
    groups = draw(st.lists(st.from_regex(r"[0-9]{2,4}", fullmatch=True), min_size=3, max_size=4))
    international = f"+{country} " + " ".join(groups)
    digits = sum(c.isdigit() for c in international)
    if not 8 <= digits <= 15:
        return national
    return draw(st.sampled_from([national, international]))


# Letters, spaces and punctuation other than the characters PII is built from.
_FILLER_ALPHABET = st.characters(
    categories=["L", "Zs", "Po", "Pd", "Ps", "Pe"], exclude_characters="@:+%"
)
filler = st.text(alphabet=_FILLER_ALPHABET, max_size=40)


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.lists(st.tuples(filler, st.one_of(emails(), cards(), phones())), min_size=1, max_size=6),
    filler,
)
def test_no_planted_pii_survives_redaction(pieces: list[tuple[str, str]], tail: str) -> None:
    text = " ".join(f"{before} {planted}" for before, planted in pieces) + f" {tail}"
    redacted = Redactor()(text)
    redacted_digits = re.sub(r"\D", "", redacted)
    for _, planted in pieces:
        assert planted not in redacted
        digits = re.sub(r"\D", "", planted)
        if len(digits) >= 7:
            assert digits not in redacted_digits


@st.composite
def harmless_text(draw: st.DrawFn) -> str:
    """Words, short numbers (never two in a row) and punctuation: nothing PII is made of."""
    tokens = []
    number_last = False
    for _ in range(draw(st.integers(min_value=0, max_value=30))):
        if not number_last and draw(st.booleans()):
            token = draw(st.text(alphabet=_DIGITS, min_size=1, max_size=3))
            number_last = True
        else:
            token = draw(st.text(alphabet=st.characters(categories=["L"]), min_size=1, max_size=8))
            number_last = False
        tokens.append(token + draw(st.sampled_from(["", ",", ".", "!", "?", ";", "-", ")"])))
    return " ".join(tokens)


@settings(max_examples=300, deadline=None, database=None)
@given(harmless_text())
def test_text_without_pii_is_not_altered(text: str) -> None:
    assert Redactor()(text) == text
