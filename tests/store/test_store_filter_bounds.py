"""Numbers beyond a 32-bit column's range filter as its extreme and never overflow."""

from __future__ import annotations

import pytest
from store_helpers import span

from traceway.store import Store


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        ("span_count > 3000000000", 0),
        ("span_count < 3000000000", 1),
        ("span_count >= -3000000000", 1),
        ("duration_ms < 9223372036854775807", 1),
    ],
)
def test_huge_numbers_filter_without_overflow(
    store: Store, filter_text: str, expected: int
) -> None:
    experiment = store.get_or_create_experiment("bounds")
    store.write_spans(experiment.experiment_id, [span(1, 1)])
    traces, _ = store.search_traces(experiment_ids=[experiment.experiment_id], filter=filter_text)
    assert len(traces) == expected
