"""Laying out the span tree and waterfall from light span rows."""

from __future__ import annotations

from traceway.server.ui_spans import Tick, layout, nice_ticks
from traceway.store.dashboard import SpanRow

MS = 1_000_000


def row(span_id: str, parent: str | None, start_ms: int, end_ms: int) -> SpanRow:
    return SpanRow(
        span_id=span_id,
        parent_span_id=parent,
        name=span_id,
        span_type="CHAIN",
        start_time_ns=start_ms * MS,
        end_time_ns=end_ms * MS,
        status="OK",
        status_message="",
        model=None,
        provider=None,
        input_tokens=None,
        output_tokens=None,
        total_tokens=None,
        cost_usd=None,
    )


def test_depth_first_in_start_order_with_geometry() -> None:
    spans = [
        row("c2", "root", 600, 1000),
        row("g1", "c1", 150, 200),
        row("root", None, 0, 1000),
        row("c1", "root", 100, 500),
        row("lost", "never-arrived", 300, 300),
    ]
    waterfall = layout(spans)
    assert [(r.span.span_id, r.depth, r.has_children, r.orphan) for r in waterfall.rows] == [
        ("root", 0, True, False),
        ("c1", 1, True, False),
        ("g1", 2, False, False),
        ("c2", 1, False, False),
        ("lost", 0, False, True),
    ]
    assert [(r.left, r.width, r.offset_ns) for r in waterfall.rows] == [
        (0.0, 100.0, 0),
        (10.0, 40.0, 100 * MS),
        (15.0, 5.0, 150 * MS),
        (60.0, 40.0, 600 * MS),
        (30.0, 0.15, 300 * MS),
    ]
    assert waterfall.start_ns == 0
    assert waterfall.extent_ns == 1000 * MS
    assert waterfall.ancestors("g1") == ["c1", "root"]
    assert waterfall.ancestors("lost") == []


def test_cycles_and_duplicates_do_not_loop() -> None:
    spans = [
        row("a", "b", 0, 10),
        row("b", "a", 0, 10),
        row("r", None, 0, 10),
        row("r", None, 0, 10),
    ]
    waterfall = layout(spans)
    assert sorted(r.span.span_id for r in waterfall.rows) == ["a", "b", "r"]
    assert [(r.span.span_id, r.depth) for r in waterfall.rows] == [("r", 0), ("a", 0), ("b", 0)]
    assert waterfall.ancestors("a") == []


def test_empty_trace() -> None:
    waterfall = layout([])
    assert (waterfall.rows, waterfall.ticks, waterfall.by_id) == ([], [], {})


def test_ticks_fall_on_round_values() -> None:
    assert nice_ticks(1000 * MS) == [
        Tick(label_ms=v, left=v / 10) for v in (0.0, 200.0, 400.0, 600.0, 800.0, 1000.0)
    ]
    assert [t.label_ms for t in nice_ticks(2_640 * MS)] == [
        0.0,
        500.0,
        1000.0,
        1500.0,
        2000.0,
        2500.0,
    ]
    assert [t.label_ms for t in nice_ticks(3_000)] == [
        0.0,
        0.0005,
        0.001,
        0.0015,
        0.002,
        0.0025,
        0.003,
    ]
