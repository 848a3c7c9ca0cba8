"""How the UI writes durations, costs, times, previews and JSON."""

from __future__ import annotations

from traceway.server.ui_format import (
    clip,
    cost,
    count,
    duration_ms,
    json_html,
    json_value,
    percent,
    preview,
    relative_time,
    timestamp,
)


def test_numbers_read_at_a_glance() -> None:
    assert [duration_ms(v) for v in (None, 0, 0.25, 3.14159, 42, 1234, 75_000, 7_260_000)] == [
        "—",
        "0 ms",
        "250 µs",
        "3.14 ms",
        "42 ms",
        "1.23 s",
        "1 min 15 s",
        "2 h 1 min",
    ]
    assert [cost(v) for v in (None, 0, 0.0000417, 0.25, 1234.5)] == [
        "—",
        "$0",
        "$0.00004",
        "$0.25",
        "$1,234.50",
    ]
    assert count(1234567) == "1\u2009234\u2009567"
    assert percent(0.125) == "12.5 %"
    assert percent(None) == "—"


def test_times() -> None:
    assert timestamp(1_700_000_000_123) == "2023-11-14 22:13:20.123 UTC"
    now = 1_700_000_000_000
    assert [relative_time(now - d, now) for d in (1_000, 90_000, 7_200_000, 3 * 86_400_000)] == [
        "just now",
        "1 min ago",
        "2 h ago",
        "3 d ago",
    ]


def test_previews_show_the_words_inside_json() -> None:
    assert preview('{"question": "Weather in Paris?"}') == "Weather in Paris?"
    assert (
        preview(
            '{"messages": [{"role": "system", "content": "x"}, {"role": "user", '
            '"content": "hi there"}]}'
        )
        == "hi there"
    )
    assert preview('{"choices": [{"message": {"content": "hello"}}]}') == "hello"
    assert preview('"plain string"') == "plain string"
    assert preview('{"a": 1, "b": 2}') == '{"a": 1, "b": 2}'
    assert preview("not json at all") == "not json at all"
    assert preview('{"text": "one\\n two"}', one_line=False) == "one\n two"
    assert clip("word " * 40, 20) == "word word word word…"


def test_json_value_only_for_objects_and_arrays() -> None:
    assert json_value('{"a": [1]}') == {"a": [1]}
    assert json_value(" [1, 2]") == [1, 2]
    assert [json_value(v) for v in ("12", '"x"', "{broken", None, {"a": 1})] == [None] * 5


def test_json_html_escapes_and_highlights() -> None:
    html = json_html({"k": "<script>alert(1)</script>", "n": 2, "ok": True, "none": None})
    assert str(html) == (
        "{\n"
        '  <span class="j-key">"k"</span>: '
        '<span class="j-str">"&lt;script&gt;alert(1)&lt;/script&gt;"</span>,\n'
        '  <span class="j-key">"n"</span>: <span class="j-num">2</span>,\n'
        '  <span class="j-key">"ok"</span>: <span class="j-lit">true</span>,\n'
        '  <span class="j-key">"none"</span>: <span class="j-lit">null</span>\n'
        "}"
    )
    assert str(json_html('["a"]')) == '[\n  <span class="j-str">"a"</span>\n]'
    cut = str(json_html(["x" * 50] * 10, limit=100))
    assert cut.count('class="j-str"') == 2
    assert cut.endswith("the whole value is in the REST API</span>")
