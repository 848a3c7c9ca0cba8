"""The rows of the span tree and waterfall, as HTML.

Written with plain string formatting rather than a template loop: a trace may
hold 10,000 spans, and at that size Jinja's per-row overhead (filters, lookups,
escaping of every attribute) dominates the page.  Each row is kept to a few
hundred bytes; icons and marks come from CSS classes, not inline SVG.
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup

from traceway.server.ui_format import duration_ns
from traceway.server.ui_spans import SPAN_ICONS, Waterfall

__all__ = ["render_tree"]


def render_tree(waterfall: Waterfall, selected: str | None) -> Markup:
    """Every row of the tree, the ``selected`` one marked and focusable."""
    out = []
    for row in waterfall.rows:
        span = row.span
        span_type = span.span_type if span.span_type in SPAN_ICONS else "UNKNOWN"
        label = SPAN_ICONS[span_type][1]
        classes = "node err" if span.status == "ERROR" else "node"
        state = ' aria-expanded="true"' if row.has_children else ""
        if span.span_id == selected:
            state += ' aria-selected="true" tabindex="0"'
        twisty = '<span class="tw"></span>' if row.has_children else '<span class="tw none"></span>'
        orphan = (
            ' <span class="orphan" title="Its parent span was not received">orphan</span>'
            if row.orphan
            else ""
        )
        name = escape(span.name or "(unnamed)", quote=False)
        span_id = escape(span.span_id)
        out.append(
            f'<div class="{classes}" role="treeitem" data-id="{span_id}" '
            f'aria-level="{row.depth + 1}"{state} style="--d:{row.depth}">'
            f'<span class="label">{twisty}<i class="ti t-{span_type}" title="{label}"></i>'
            f'<a href="?span={span_id}" tabindex="-1">{name}</a>{orphan} '
            f'<span class="dur">{duration_ns(row.duration_ns)}</span></span>'
            f'<span class="lane"><span class="bar t-{span_type}" '
            f'style="left:{row.left:.3f}%;width:{row.width:.3f}%"></span></span></div>'
        )
    return Markup("\n".join(out))
