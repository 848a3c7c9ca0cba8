"""The web UI's pages as a browser without script receives them (real server, SQLite)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.demo import (
    DemoTraces,
    send_demo_traces,
    send_in_progress_trace,
    send_simple_traces,
    send_wide_trace,
)
from tests.e2e.scrape import table_rows, texts
from tests.support.servers import serve_in_thread
from traceway.server.app import create_app
from traceway.server.ui import create_ui
from traceway.store import Store, open_store


@dataclass
class Site:
    http: httpx.Client
    store: Store
    demo: DemoTraces
    experiments: dict[str, int]

    def page(self, path: str, expect: int = 200, **params: str) -> str:
        # httpx drops a query already in the URL when given params, even empty ones.
        response = self.http.get(path, params=params) if params else self.http.get(path)
        assert response.status_code == expect, response.text[:500]
        return response.text


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    path: Path = tmp_path_factory.mktemp("ui") / "traceway.db"
    store = open_store(f"sqlite:///{path}")
    server = create_app(store, ui=create_ui(store))
    try:
        with serve_in_thread(server.app) as url, httpx.Client(base_url=url, timeout=30) as http:
            demo = send_demo_traces(url)
            send_simple_traces(url, "paged", 55)
            experiments = {e.name: e.experiment_id for e in store.list_experiments()}
            yield Site(http, store, demo, experiments)
    finally:
        store.close()


def test_experiments_page(site: Site) -> None:
    rows = table_rows(site.page("/"))
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("paged", "55", "0.0 % (0)"),
        ("gateway", "24", "12.5 % (3)"),
        ("support-bot", "4", "25.0 % (1)"),
        ("rag-eval", "3", "0.0 % (0)"),
    ]


def test_traces_table_shows_previews_tags_and_totals(site: Site) -> None:
    html = site.page(f"/experiments/{site.experiments['support-bot']}")
    rows = [row[2:] for row in table_rows(html)]  # without checkbox and relative time
    assert rows == [
        [
            "summarize 51431193e6c3",
            "error",
            "930 ms",
            "950",
            "—",
            "Quarterly report: revenue up 12 %, churn down to 3 %…",
            "",
            "env=prod",
        ],
        [
            f"answer_question {rows[1][0].split()[-1]}",
            "ok",
            "1.84 s",
            "206",
            "$0.00004",
            "Best museum for a rainy afternoon?",
            "The Musée d'Orsay: impressionists, and it's a short walk from the metro.",
            "bot=travel env=prod",
        ],
        [
            f"answer_question {site.demo.second_turn_trace[:12]}",
            "ok",
            "1.84 s",
            "206",
            "$0.00004",
            "And tomorrow morning?",
            "Tomorrow morning looks dry, 12 °C: the umbrella can stay home.",
            "bot=travel env=prod",
        ],
        [
            f"answer_question {site.demo.chat_trace[:12]}",
            "ok",
            "1.84 s",
            "471",
            "$0.00008",
            "What's the weather in Paris right now, and should I pack an umbrella?",
            "It's 14 °C and light rain in Paris: yes, pack an umbrella.",
            "bot=travel env=prod",
        ],
    ]
    assert site.demo.error_trace.startswith("51431193e6c3")


def names(site: Site, experiment: str, **params: str) -> list[str]:
    html = site.page(f"/experiments/{site.experiments[experiment]}", **params)
    return [row[2].split()[0] for row in table_rows(html)]


def test_filter_quick_filters_and_sort(site: Site) -> None:
    assert names(site, "support-bot", filter="status = 'ERROR'") == ["summarize"]
    assert names(site, "support-bot", status="ERROR") == ["summarize"]
    assert names(site, "support-bot", span_type="TOOL") == ["answer_question"]
    assert names(site, "support-bot", span_type="PARSER", range="24h") == ["summarize"]
    assert names(site, "rag-eval", range="24h") == []
    assert names(site, "support-bot", filter="total_tokens > 300", status="OK") == [
        "answer_question"
    ]
    assert names(site, "support-bot", sort="duration_ms", dir="asc")[0] == "summarize"
    assert names(site, "rag-eval", sort="name", dir="asc") == ["rag_query"] * 3


def test_malformed_filter_is_explained_and_marked(site: Site) -> None:
    typed = "status = 'OK' AND duration_ms >"
    html = site.page(f"/experiments/{site.experiments['support-bot']}", expect=400, filter=typed)
    [alert] = texts(html, "alert")
    assert alert.startswith("This filter cannot be read:")
    assert "at position 31" in alert
    assert '<pre class="filter-mark"><code>status = &#39;OK&#39; AND duration_ms &gt;<mark' in html
    unknown = site.page(
        f"/experiments/{site.experiments['support-bot']}", expect=400, filter="colour = 'red'"
    )
    assert '<pre class="filter-mark"><code><mark title="here">c</mark>olour' in unknown


def test_keyset_pages_walk_every_trace_once(site: Site) -> None:
    seen: list[str] = []
    url: str | None = f"/experiments/{site.experiments['paged']}"
    pages = 0
    while url and pages < 5:
        html = site.page(url)
        seen += [" ".join(row[2].split()[:2]) for row in table_rows(html)]
        found = re.search(r'<a class="button" href="([^"]+)" rel="next">', html)
        url = found.group(1).replace("&amp;", "&") if found else None
        pages += 1
    assert pages == 2
    assert seen == [f"job {i:03d}" for i in range(54, -1, -1)]


def test_rows_fragment_for_auto_refresh(site: Site) -> None:
    html = site.page(f"/experiments/{site.experiments['support-bot']}/rows", status="ERROR")
    assert html.lstrip().startswith("<tr")
    assert [row[2] for row in table_rows(html)] == ["summarize 51431193e6c3"]
    bad = site.http.get(
        f"/experiments/{site.experiments['support-bot']}/rows", params={"filter": "nope"}
    )
    assert bad.status_code == 400


def test_bulk_tagging_and_delete(site: Site) -> None:
    ids = send_simple_traces(str(site.http.base_url), "bulk", 3)
    experiment = site.store.get_experiment_by_name("bulk")
    assert experiment is not None
    action = f"/experiments/{experiment.experiment_id}/actions"
    back = f"/experiments/{experiment.experiment_id}?status=OK"
    tagged = site.http.post(
        action,
        data={
            "trace_id": ids[:2],
            "action": "tag",
            "set_tags": "reviewed=yes, team = search",
            "back": back,
        },
    )
    assert tagged.status_code == 303
    assert tagged.headers["location"] == back + "&notice=Updated+the+tags+of+2+traces."
    summaries = [site.store.get_trace_summary(i) for i in ids]
    assert [s.tags if s else None for s in summaries] == [
        {"reviewed": "yes", "team": "search"},
        {"reviewed": "yes", "team": "search"},
        {},
    ]
    site.http.post(action, data={"trace_id": ids[0], "action": "tag", "delete_tags": "team"})
    first = site.store.get_trace_summary(ids[0])
    assert first is not None and first.tags == {"reviewed": "yes"}

    foreign = site.http.post(
        action,
        data={"trace_id": ids, "action": "delete"},
        headers={"origin": "http://evil.example"},
    )
    assert foreign.status_code == 403
    deleted = site.http.post(
        action, data={"trace_id": ids[1:], "action": "delete", "back": "//evil.example/"}
    )
    assert deleted.status_code == 303
    assert deleted.headers["location"] == (
        f"/experiments/{experiment.experiment_id}?notice=Deleted+2+traces."
    )
    assert [site.store.get_trace_summary(i) is not None for i in ids] == [True, False, False]


def test_trace_page_tree_and_selected_span(site: Site) -> None:
    demo = site.demo
    html = site.page(f"/traces/{demo.chat_trace}")
    assert texts(html, "node") == [
        "answer_question 1.84 s",
        "search_docs 96 ms",
        "chat gpt-4o-mini 640 ms",
        "get_weather 210 ms",
        "chat gpt-4o-mini 820 ms",
    ]
    assert 'aria-level="2"' in html
    # The root is selected and its details rendered inline.
    [title] = texts(html, "span-title")
    assert title == "answer_question Chain ok link"

    linked = site.page(f"/traces/tr-{demo.chat_trace.upper()}", span=demo.chat_span)
    assert texts(linked, "span-title") == ["chat gpt-4o-mini Chat model ok link"]
    assert f'data-id="{demo.chat_span}" aria-level="2" aria-selected="true"' in linked


def test_large_trace_page_draws_light_rows_only(site: Site) -> None:
    trace_id = send_wide_trace(str(site.http.base_url), 10_000)
    html = site.page(f"/traces/{trace_id}")
    assert html.count('role="treeitem"') == 10_000
    # Payloads stay out of the page: a span's inputs load when it is selected.
    assert '"i": 4321' not in html and "&#34;i&#34;: 4321" not in html
    nodes = re.findall(r'data-id="([0-9a-f]{16})" aria-level="3"', html)
    assert len(nodes) == 9_989
    fragment = site.page(f"/traces/{trace_id}/spans/{nodes[0]}")
    assert texts(fragment, "io")[0].startswith('Inputs { "i": ')


def test_in_progress_trace(site: Site) -> None:
    trace_id = send_in_progress_trace(str(site.http.base_url), "running")
    html = site.page(f"/traces/{trace_id}")
    assert "Spans are still arriving" in html
    assert texts(html, "node") == ["first step orphan 30 ms"]
    experiment = site.store.get_experiment_by_name("running")
    assert experiment is not None
    rows = table_rows(site.page(f"/experiments/{experiment.experiment_id}/rows"))
    assert [row[2:4] for row in rows] == [[f"first step {trace_id[:12]}", "in progress"]]


def test_trace_page_not_found_and_missing_span(site: Site) -> None:
    assert "Trace not found" in site.page("/traces/" + "0" * 32, expect=404)
    assert "Trace not found" in site.page("/traces/not-an-id", expect=404)
    html = site.page(f"/traces/{site.demo.chat_trace}", span="ffffffffffffffff")
    assert "no span with the id in the link" in html
    assert texts(html, "span-title") == ["answer_question Chain ok link"]


def test_span_fragment_chat_view(site: Site) -> None:
    demo = site.demo
    page = site.page(f"/traces/{demo.chat_trace}")
    t0 = re.search(r'data-t0="(\d+)"', page)
    assert t0 is not None
    html = site.page(f"/traces/{demo.chat_trace}/spans/{demo.chat_span}", t0=t0.group(1))
    assert not html.lstrip().startswith("<!doctype")
    assert texts(html, "msg") == [
        "system You are a concise travel assistant. Use tools for live data.",
        "user What's the weather in Paris right now, and should I pack an umbrella?",
        'assistant output get_weather call_w1 { "city": "Paris" }',
    ]
    assert texts(html, "facts") == [
        "Starts at +120 ms Duration 640 ms Model gpt-4o-mini-2024-07-18 Provider openai "
        f"Tokens 182 in · 24 out · 206 Cost $0.00004 Span id {demo.chat_span}"
    ]


def test_span_fragment_exception_and_gateway_attempts(site: Site) -> None:
    demo = site.demo
    error = site.page(f"/traces/{demo.error_trace}/spans/{demo.error_span}")
    [exception] = texts(error, "exception")
    assert exception.startswith(
        "json.decoder.JSONDecodeError: Expecting ',' delimiter: line 1 column 57 (char 56) "
        "Traceback (most recent call last):"
    )
    assert 'File "/app/bot/parsing.py", line 41, in parse_summary' in exception

    gateway = site.page(f"/traces/{demo.gateway_trace}/spans/{demo.gateway_span}")
    assert table_rows(gateway) == [
        ["1", "attempt openai openai · gpt-4o", "error", "700 ms",
         "status code 429 retry 0 openai answered 429"],
        ["2", "attempt openai openai · gpt-4o", "error", "700 ms",
         "status code 503 retry 1 openai answered 503"],
        ["3", "attempt anthropic anthropic · claude-3-5-haiku", "ok", "1.19 s",
         "status code 200 fallback reason openai failed: 503 after 2 attempts retry 0"],
    ]  # fmt: skip
    facts = texts(gateway, "facts")[1]
    assert facts == "attempts 3 strategy fallback cache lookup miss input guardrail pass"
    assert site.http.get(f"/traces/{demo.gateway_trace}/spans/0000000000000000").status_code == 404


def test_trace_tags_form(site: Site) -> None:
    trace_id = site.demo.second_turn_trace
    added = site.http.post(f"/traces/{trace_id}/tags", data={"set": "flag=bad", "span": ""})
    assert (added.status_code, added.headers["location"]) == (303, f"/traces/{trace_id}")
    removed = site.http.post(f"/traces/{trace_id}/tags", data={"delete": ["flag", "bot"]})
    assert removed.status_code == 303
    summary = site.store.get_trace_summary(trace_id)
    assert summary is not None and summary.tags == {"env": "prod"}


def test_sessions(site: Site) -> None:
    rows = table_rows(site.page("/sessions"))
    assert [r[:5] + r[6:7] for r in rows] == [
        ["sess-beta", "Best museum for a rainy afternoon?", "1", "none", "206", "u-42"],
        ["sess-alpha", "And tomorrow morning?", "2", "none", "677", "u-42"],
    ]
    other = site.page("/sessions", experiment=str(site.experiments["rag-eval"]))
    assert "No sessions yet" in other
    html = site.page("/sessions/sess-alpha")
    assert texts(html, "msg") == [
        "user What's the weather in Paris right now, and should I pack an umbrella?",
        "assistant It's 14 °C and light rain in Paris: yes, pack an umbrella.",
        "user And tomorrow morning?",
        "assistant Tomorrow morning looks dry, 12 °C: the umbrella can stay home.",
    ]
    assert "Session not found" in site.page("/sessions/nobody", expect=404)


def test_gateway_dashboard(site: Site) -> None:
    html = site.page("/gateway", range="7d")
    kpis = texts(html, "kpi")
    assert kpis[0] == "Requests 24"
    assert kpis[1] == "Error rate 12.5 % 3 failed"
    assert kpis[6] == "Cache hit rate 25.0 % 24 lookups"
    assert html.count('<svg class="chart"') == 4
    by_provider, by_model = [t for t in _tables(html)]
    assert [row[:3] for row in by_provider] == [
        ["openai", "15", "13.3 %"],
        ["anthropic", "9", "11.1 %"],
    ]
    assert [row[0] for row in by_model] == ["claude-3-5-haiku", "gpt-4o", "gpt-4o-mini"]
    assert texts(html, "hbars") == ["miss 18 hit 6", "pass 21 fail 3"]


def _tables(html: str) -> list[list[list[str]]]:
    return [table_rows(part.split("</table>")[0]) for part in html.split("<table")[1:]]


def test_pages_are_self_contained(site: Site, tmp_path: Path) -> None:
    response = site.http.get("/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    for asset in ("/static/app.css", "/static/app.js", "/static/favicon.svg"):
        assert site.http.get(asset).status_code == 200
    assert "http://" not in site.http.get("/static/app.css").text.replace("http://www.w3.org", "")
    missing = site.http.get("/no/such/page")
    assert missing.status_code == 404
    assert "Page not found" in missing.text
    empty_store = open_store(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with serve_in_thread(create_app(empty_store, ui=create_ui(empty_store)).app) as url:
            assert "No experiments yet" in httpx.get(url + "/").text
            assert "No gateway traffic" in httpx.get(url + "/gateway").text
            assert "No sessions yet" in httpx.get(url + "/sessions").text
    finally:
        empty_store.close()
