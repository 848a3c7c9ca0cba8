"""The span tree and waterfall of the trace page, laid out from light span rows.

Spans arrive in any order and a parent may be missing (not yet ingested, or
dropped by a sampler), so the tree is rebuilt here: children sorted by start
time, orphans shown at the top level.  Geometry is in percent of the trace's
wall-clock extent, so the waterfall is drawn to scale by CSS alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from traceway.store.dashboard import SpanRow

__all__ = ["SPAN_ICONS", "Tick", "TreeRow", "Waterfall", "layout", "nice_ticks"]

#: The icon (a CSS class in app.css) and readable name of each span type.
SPAN_ICONS: dict[str, tuple[str, str]] = {
    "LLM": ("i-llm", "LLM"),
    "CHAT_MODEL": ("i-chat", "Chat model"),
    "CHAIN": ("i-chain", "Chain"),
    "AGENT": ("i-agent", "Agent"),
    "TOOL": ("i-tool", "Tool"),
    "RETRIEVER": ("i-retriever", "Retriever"),
    "EMBEDDING": ("i-embedding", "Embedding"),
    "RERANKER": ("i-reranker", "Reranker"),
    "PARSER": ("i-parser", "Parser"),
    "MEMORY": ("i-memory", "Memory"),
    "GUARDRAIL": ("i-guardrail", "Guardrail"),
    "CACHE": ("i-cache", "Cache"),
    "GATEWAY": ("i-gateway", "Gateway"),
    "UNKNOWN": ("i-unknown", "Span"),
}
# Keeps a zero-length span visible as a sliver on the waterfall.
_MIN_WIDTH = 0.15


@dataclass(slots=True)
class TreeRow:
    span: SpanRow
    depth: int
    has_children: bool
    #: Offset of the bar's left edge and its width, in percent of the trace's extent.
    left: float
    width: float
    offset_ns: int
    #: The parent is named but not among the stored spans.
    orphan: bool = False

    @property
    def duration_ns(self) -> int:
        return max(0, self.span.end_time_ns - self.span.start_time_ns)


@dataclass(slots=True)
class Tick:
    label_ms: float
    left: float


@dataclass(slots=True)
class Waterfall:
    rows: list[TreeRow]
    start_ns: int
    extent_ns: int
    ticks: list[Tick]
    by_id: dict[str, TreeRow]

    def ancestors(self, span_id: str) -> list[str]:
        """Ids of the spans above ``span_id`` in the drawn tree, nearest first."""
        chain = []
        row = self.by_id.get(span_id)
        while row is not None and row.depth > 0 and row.span.parent_span_id is not None:
            chain.append(row.span.parent_span_id)
            row = self.by_id.get(row.span.parent_span_id)
        return chain


def layout(spans: Sequence[SpanRow]) -> Waterfall:
    """Depth-first rows (children in start order) with their waterfall geometry."""
    if not spans:
        return Waterfall(rows=[], start_ns=0, extent_ns=0, ticks=[], by_id={})
    start = min(s.start_time_ns for s in spans)
    end = max(max(s.end_time_ns, s.start_time_ns) for s in spans)
    extent = max(end - start, 1)
    known = {s.span_id for s in spans}
    children: dict[str | None, list[SpanRow]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in known else None
        children.setdefault(parent, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: (s.start_time_ns, s.end_time_ns, s.span_id))
    rows: list[TreeRow] = []
    by_id: dict[str, TreeRow] = {}
    stack = [(span, 0) for span in reversed(children.get(None, []))]
    while stack:
        span, depth = stack.pop()
        if span.span_id in by_id:  # a duplicate id or a cycle: draw each span once
            continue
        kids = children.get(span.span_id, [])
        offset = span.start_time_ns - start
        row = TreeRow(
            span=span,
            depth=depth,
            has_children=bool(kids),
            left=offset / extent * 100,
            width=max(max(0, span.end_time_ns - span.start_time_ns) / extent * 100, _MIN_WIDTH),
            offset_ns=offset,
            orphan=span.parent_span_id is not None and span.parent_span_id not in known,
        )
        row.left = min(row.left, 100 - _MIN_WIDTH)
        rows.append(row)
        by_id[span.span_id] = row
        stack.extend((kid, depth + 1) for kid in reversed(kids))
    # Spans caught in a parent cycle never hang from a root; show them at the top.
    for span in spans:
        if span.span_id not in by_id:
            offset = span.start_time_ns - start
            row = TreeRow(span, 0, False, offset / extent * 100, _MIN_WIDTH, offset, True)
            rows.append(row)
            by_id[span.span_id] = row
    return Waterfall(
        rows=rows, start_ns=start, extent_ns=extent, ticks=nice_ticks(extent), by_id=by_id
    )


def nice_ticks(extent_ns: int, target: int = 6) -> list[Tick]:
    """Round time marks (1-2-5 steps) across ``extent_ns``, starting at zero."""
    extent_ms = extent_ns / 1_000_000
    if extent_ms <= 0:
        return [Tick(0.0, 0.0)]
    raw = extent_ms / target
    magnitude = 10 ** _floor_log10(raw)
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    ticks = []
    value = 0.0
    while value <= extent_ms * 1.0001:
        ticks.append(Tick(label_ms=value, left=value / extent_ms * 100))
        value = round(value + step, 9)
    return ticks


def _floor_log10(value: float) -> int:
    exponent = 0
    while value >= 10:
        value /= 10
        exponent += 1
    while value < 1:
        value *= 10
        exponent -= 1
    return exponent
