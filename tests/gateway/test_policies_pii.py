"""Redaction of mixed text: only planted values are touched, and each of them is.

``test_pii.py`` checks that planted PII never survives and that text without PII
is left alone; this checks both on the same text, as a request holds them.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.gateway.test_pii import cards, emails, filler, phones
from traceway.gateway.guardrails import Redactor, find_pii


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.lists(st.tuples(filler, st.one_of(emails(), cards(), phones())), min_size=1, max_size=6),
    filler,
)
def test_only_planted_values_are_replaced(pieces: list[tuple[str, str]], tail: str) -> None:
    parts: list[str] = []
    planted: list[tuple[int, int]] = []  # where each planted value sits
    at = 0
    for before, value in pieces:
        parts.append(f"{before} ")
        at += len(before) + 1
        parts.append(value)
        planted.append((at, at + len(value)))
        parts.append(" ")
        at += len(value) + 1
    text = "".join(parts) + tail
    findings = find_pii(text)
    # Nothing outside a planted value is replaced ...
    outside = [f for f in findings if not any(s <= f.start and f.end <= e for s, e in planted)]
    assert outside == []
    # ... every planted value is, and the text between them comes through as it was.
    assert all(any(s <= f.start < e for f in findings) for s, e in planted)
    redacted = Redactor()(text)
    kept = [
        text[end:start] for (_, end), (start, _) in zip([(0, 0), *planted], planted, strict=False)
    ]
    assert all(piece in redacted for piece in [*kept, text[planted[-1][1] :]])
