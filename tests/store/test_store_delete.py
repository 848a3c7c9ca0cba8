"""Deleting traces and editing their tags."""

from __future__ import annotations

import pytest
from store_helpers import span, tid

from traceway.store import Store, StoreError


@pytest.fixture
def experiments(store: Store) -> tuple[int, int]:
    """Traces 1-4 in "app" (2 and 4 failed), traces 5-6 in "other"; all tagged."""
    app = store.get_or_create_experiment("app").experiment_id
    other = store.get_or_create_experiment("other").experiment_id
    for n in range(1, 7):
        store.write_spans(
            app if n <= 4 else other,
            [
                span(
                    n,
                    1,
                    start_ms=n,
                    status="ERROR" if n in (2, 4) else "OK",
                    trace_tags={"n": str(n)},
                    trace_metadata={"m": str(n)},
                ),
                span(n, 2, 1, start_ms=n),
            ],
        )
    return app, other


def remaining(store: Store) -> list[int]:
    page, _ = store.search_traces(order_by="start_time")
    return [int(t.trace_id, 16) for t in page]


def test_delete_by_trace_ids(store: Store, experiments: tuple[int, int]) -> None:
    assert store.delete_traces(trace_ids=[tid(1), tid(5), tid(99)]) == 2
    assert remaining(store) == [2, 3, 4, 6]
    assert store.get_trace(tid(1)) is None


def test_delete_by_experiment(store: Store, experiments: tuple[int, int]) -> None:
    _, other = experiments
    assert store.delete_traces(experiment_ids=[other]) == 2
    assert remaining(store) == [1, 2, 3, 4]


def test_delete_by_filter_within_an_experiment(store: Store, experiments: tuple[int, int]) -> None:
    app, _ = experiments
    assert store.delete_traces(experiment_ids=[app], filter="status = 'ERROR'") == 2
    assert remaining(store) == [1, 3, 5, 6]


def test_delete_needs_every_criterion_to_match(store: Store, experiments: tuple[int, int]) -> None:
    _, other = experiments
    assert store.delete_traces(experiment_ids=[other], trace_ids=[tid(1), tid(6)]) == 1
    assert remaining(store) == [1, 2, 3, 4, 5]


def test_delete_by_tag_filter(store: Store, experiments: tuple[int, int]) -> None:
    assert store.delete_traces(filter="tags.n IN ('1', '6')") == 2
    assert remaining(store) == [2, 3, 4, 5]


def test_deleted_traces_leave_nothing_behind(store: Store, experiments: tuple[int, int]) -> None:
    app, _ = experiments
    store.delete_traces(trace_ids=[tid(1)])
    assert store.search_traces(filter="tags.n = '1'") == ([], None)
    assert store.search_traces(filter="metadata.m = '1'") == ([], None)
    # The same trace id written again starts from scratch.
    store.write_spans(app, [span(1, 3, start_ms=50)])
    trace = store.get_trace(tid(1))
    assert trace is not None
    assert (trace.info.span_count, trace.info.tags, trace.info.metadata) == (1, {}, {})
    assert [s.span_id for s in trace.spans] == [f"{3:016x}"]


def test_delete_many_traces(store: Store) -> None:
    app = store.get_or_create_experiment("app").experiment_id
    store.write_spans(app, [span(n, 1) for n in range(1, 1_201)])
    assert store.delete_traces(experiment_ids=[app]) == 1_200
    assert store.get_experiment(app) is not None
    assert store.search_traces() == ([], None)


def test_delete_without_criteria_is_refused(store: Store, experiments: tuple[int, int]) -> None:
    with pytest.raises(StoreError, match="needs experiment_ids, trace_ids or a filter"):
        store.delete_traces()
    with pytest.raises(StoreError):
        store.delete_traces(filter="  ")
    assert len(remaining(store)) == 6


def test_experiment_counts_follow_deletes(store: Store, experiments: tuple[int, int]) -> None:
    app, _ = experiments
    store.delete_traces(trace_ids=[tid(2)])
    experiment = store.get_experiment(app)
    assert experiment is not None
    assert (experiment.trace_count, experiment.error_count, experiment.last_trace_ms) == (3, 1, 4)


def test_set_and_delete_tags(store: Store, experiments: tuple[int, int]) -> None:
    summary = store.set_trace_tags(tid(1), set={"reviewed": "yes", "n": "one"}, delete=["gone"])
    assert summary is not None
    assert summary.tags == {"n": "one", "reviewed": "yes"}
    summary = store.set_trace_tags(tid(1), delete=["n"])
    assert summary is not None
    assert summary.tags == {"reviewed": "yes"}
    assert store.search_traces(filter="tags.reviewed = 'yes'")[0] == [summary]


def test_a_tag_both_deleted_and_set_ends_up_set(store: Store, experiments: tuple[int, int]) -> None:
    summary = store.set_trace_tags(tid(1), set={"n": "new"}, delete=["n"])
    assert summary is not None
    assert summary.tags == {"n": "new"}


def test_tags_of_unknown_traces(store: Store, experiments: tuple[int, int]) -> None:
    assert store.set_trace_tags(tid(99), set={"a": "b"}) is None


def test_tag_values_are_cut_to_the_indexed_length(
    store: Store, experiments: tuple[int, int]
) -> None:
    summary = store.set_trace_tags(tid(1), set={"k" * 300: "v" * 600})
    assert summary is not None
    assert summary.tags["k" * 250] == "v" * 500
