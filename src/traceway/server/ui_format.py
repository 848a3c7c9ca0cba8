"""How numbers, times and JSON look in the web UI: the Jinja filters.

Every function is pure and total: a ``None`` or odd value renders as an em dash
or as its text, never as an exception in the middle of a page.
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from typing import Any

import orjson
from markupsafe import Markup

__all__ = [
    "DASH",
    "FILTERS",
    "clip",
    "cost",
    "count",
    "duration_ms",
    "duration_ns",
    "json_html",
    "json_value",
    "percent",
    "pretty_json",
    "preview",
    "relative_time",
    "timestamp",
]

DASH = "\u2014"
#: Bigger payloads are shown cut, with a link to the whole span in the REST API.
MAX_JSON_CHARS = 200_000


def duration_ms(value: float | None) -> str:
    """``1234`` → ``"1.23 s"``; picks µs, ms, s, min or h so the figure stays short."""
    if value is None or not math.isfinite(value):
        return DASH
    if value < 0:
        value = 0
    if value < 1:
        return f"{value * 1000:.0f} µs" if value > 0 else "0 ms"
    if value < 10:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def duration_ns(value: int | None) -> str:
    return DASH if value is None else duration_ms(value / 1_000_000)


def count(value: int | float | None) -> str:
    """Thousands separated by thin spaces: ``12 345``."""
    if value is None:
        return DASH
    return f"{value:,.0f}".replace(",", "\u2009")


def cost(value: float | None) -> str:
    """US dollars with enough digits that tiny per-call costs do not read as zero."""
    if value is None:
        return DASH
    if value == 0:
        return "$0"
    if value < 0.01:
        return f"${value:.5f}".rstrip("0")
    if value < 100:
        return f"${value:.4f}".rstrip("0").rstrip(".")
    return f"${value:,.2f}"


def percent(value: float | None, digits: int = 1) -> str:
    """A ratio (0 to 1) as a percentage."""
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value * 100:.{digits}f} %"


def timestamp(ms: int | None) -> str:
    """Milliseconds since the epoch as an unambiguous UTC time."""
    if ms is None:
        return DASH
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + f".{ms % 1000:03d} UTC"


def relative_time(ms: int | None, now_ms: int) -> str:
    """``"3 min ago"``; the page shows :func:`timestamp` beside it on hover."""
    if ms is None:
        return DASH
    seconds = (now_ms - ms) / 1000
    if seconds < 0:
        return "just now"
    for limit, size, unit in (
        (60, 1, "s"),
        (3600, 60, "min"),
        (86400, 3600, "h"),
        (86400 * 60, 86400, "d"),
    ):
        if seconds < limit:
            return "just now" if seconds < 5 else f"{int(seconds // size)} {unit} ago"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def clip(text: str | None, limit: int = 120, one_line: bool = True) -> str:
    """At most ``limit`` characters (on one line unless told), for previews."""
    if not text:
        return ""
    line = " ".join(text.split()) if one_line else text.strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def preview(text: str | None, limit: int = 120, one_line: bool = True) -> str:
    """A trace's request or response preview as a person would say it.

    Previews are often JSON (``{"question": "..."}``, a chat request); the text a
    reader wants is usually one string inside, so show that when it is clear
    which one it is, and the clipped JSON otherwise.
    """
    if not text:
        return ""
    value = _decoded(text.strip())
    if isinstance(value, str) and text.strip().startswith('"'):
        value = _loads_or(text, value)
    spoken = _spoken(value)
    return clip(spoken if spoken is not None else text, limit, one_line)


def _loads_or(text: str, default: Any) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return default


_SPOKEN_KEYS = ("question", "query", "prompt", "input", "answer", "output", "response", "text")


def _spoken(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        users = [m for m in value if isinstance(m, dict) and m.get("role") == "user"]
        return _spoken(users[-1]) if users else None
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("messages"), list):
        return _spoken(value["messages"])
    choices = value.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return _spoken(choices[0].get("message") or choices[0].get("text"))
    content = value.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        joined = " ".join(t for t in texts if isinstance(t, str))
        return joined or None
    if len(value) == 1:
        (only,) = value.values()
        return only if isinstance(only, str) else None
    for key in _SPOKEN_KEYS:
        if isinstance(value.get(key), str):
            return str(value[key])
    return None


def json_value(text: Any) -> Any:
    """The object or array in ``text`` when it is JSON text of one, else ``None``."""
    if not isinstance(text, str) or text.lstrip()[:1] not in ("{", "["):
        return None
    value = _loads_or(text, None)
    return value if isinstance(value, dict | list) else None


def pretty_json(value: Any) -> str:
    """Indented JSON text; strings that hold JSON are shown decoded."""
    value = _decoded(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return str(value)


def json_html(value: Any, limit: int = MAX_JSON_CHARS) -> Markup:
    """Indented JSON as escaped HTML with spans for keys, strings, numbers and literals."""
    out: list[str] = []
    budget = [limit]
    _emit(_decoded(value), 0, out, budget)
    html = "".join(out)
    if budget[0] < 0:
        html += '\n<span class="j-cut">… cut here: the whole value is in the REST API</span>'
    return Markup(html)


def _decoded(value: Any) -> Any:
    if isinstance(value, str | bytes) and value[:1] in ("{", "[", b"{", b"["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _emit(value: Any, depth: int, out: list[str], budget: list[int]) -> None:
    if budget[0] < 0:
        return
    pad = "  " * (depth + 1)
    end_pad = "  " * depth
    if isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        out.append("{\n")
        for index, (key, item) in enumerate(value.items()):
            out.append(f'{pad}<span class="j-key">{_text(_dumps(str(key)))}</span>: ')
            _emit(item, depth + 1, out, budget)
            out.append(",\n" if index < len(value) - 1 else "\n")
            if budget[0] < 0:
                return
        out.append(end_pad + "}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        out.append("[\n")
        for index, item in enumerate(value):
            out.append(pad)
            _emit(item, depth + 1, out, budget)
            out.append(",\n" if index < len(value) - 1 else "\n")
            if budget[0] < 0:
                return
        out.append(end_pad + "]")
    else:
        text = _dumps(value)
        budget[0] -= len(text)
        if isinstance(value, str):
            kind = "j-str"
        elif isinstance(value, bool) or value is None:
            kind = "j-lit"
        else:
            kind = "j-num"
        out.append(f'<span class="{kind}">{_text(text)}</span>')


def _text(text: str) -> str:
    """Escaped for an HTML text node (quotes stay readable: no attribute is written)."""
    return html.escape(text, quote=False)


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return orjson.dumps(repr(value)).decode()


FILTERS = {
    "duration_ms": duration_ms,
    "duration_ns": duration_ns,
    "count": count,
    "cost": cost,
    "percent": percent,
    "timestamp": timestamp,
    "clip": clip,
    "preview": preview,
    "pretty_json": pretty_json,
    "json_html": json_html,
    "json_value": json_value,
}
