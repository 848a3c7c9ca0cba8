"""The web UI in real headless Chromium, over demo traces sent through OTLP.

Every page gets a screenshot in ``test-artifacts/``.  One browser serves the whole
module; each test opens its own page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.e2e.demo import DemoTraces, send_demo_traces, send_simple_traces
from tests.support.servers import serve_in_thread
from traceway.server.app import create_app
from traceway.server.ui import create_ui
from traceway.store import open_store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Site:
    url: str
    demo: DemoTraces
    browser: Browser
    shots: Path
    experiments: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path) -> Iterator[Site]:
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'traceway.db'}")
    server = create_app(store, ui=create_ui(store))
    try:
        with serve_in_thread(server.app) as url, sync_playwright() as playwright:
            demo = send_demo_traces(url)
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            experiments = {e.name: e.experiment_id for e in store.list_experiments()}
            try:
                yield Site(url, demo, browser, artifacts_dir, experiments)
            finally:
                browser.close()
    finally:
        store.close()


@dataclass
class Tab:
    page: Page
    site: Site
    problems: list[str]

    def open(self, path: str) -> Page:
        self.page.goto(self.site.url + path)
        return self.page

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.site.shots / f"ui-{name}.png"), full_page=True)


@pytest.fixture
def tab(site: Site) -> Iterator[Tab]:
    context = site.browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # A 400 page (an unreadable filter) is logged by Chromium as a failed load.
        if message.type == "error" and "status of 400" not in message.text:
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    # Every request a page makes stays on this server: no CDN, font or analytics.
    page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith(site.url) or request.url.startswith("data:")
            else problems.append(f"external request: {request.url}")
        ),
    )
    try:
        yield Tab(page, site, problems)
        assert problems == []
    finally:
        context.close()


def test_experiments_and_search_with_filter(tab: Tab) -> None:
    page = tab.open("/")
    expect(page.locator("table.experiments tbody tr")).to_have_count(3)
    tab.shot("experiments")
    page.get_by_role("link", name="support-bot").click()
    expect(page.locator("tbody[data-rows] tr")).to_have_count(4)
    tab.shot("traces")

    page.keyboard.press("/")
    expect(page.locator("#filter")).to_be_focused()
    page.keyboard.type("status = 'ERROR' AND span_type = 'PARSER'")
    page.keyboard.press("Enter")
    expect(page.locator("tbody[data-rows] tr")).to_have_count(1)
    expect(page.locator("tbody[data-rows] td.name a")).to_have_text("summarize")
    tab.shot("traces-filtered")

    page.locator("#filter").fill("duration_ms > 'slow' AND")
    page.locator("#filter").press("Enter")
    alert = page.locator("#filter-error")
    expect(alert).to_contain_text("This filter cannot be read")
    expect(alert.locator("mark")).to_have_count(1)
    tab.shot("traces-filter-error")

    page.get_by_role("link", name="Clear").click()
    page.locator("select[name=status]").select_option("ERROR")
    expect(page.locator("tbody[data-rows] tr")).to_have_count(1)


def test_open_trace_tree_and_chat(tab: Tab) -> None:
    demo = tab.site.demo
    page = tab.open(f"/experiments/{tab.site.experiments['support-bot']}?sort=name&dir=asc")
    # Keyboard: j moves to the first row, Enter opens it.
    page.keyboard.press("j")
    expect(page.locator("tbody[data-rows] tr").first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/traces/[0-9a-f]{32}$"))

    page = tab.open(f"/traces/{demo.chat_trace}")
    nodes = page.locator(".tree .node")
    expect(nodes).to_have_count(5)
    root = nodes.first
    root.locator(".tw").click()
    expect(root).to_have_attribute("aria-expanded", "false")
    expect(page.locator(".tree .node:visible")).to_have_count(1)
    tab.shot("trace-collapsed")
    root.focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator(".tree .node:visible")).to_have_count(5)

    # Selecting the first chat span loads its details from the fragment endpoint.
    page.locator(f'.node[data-id="{demo.chat_span}"]').click()
    detail = page.locator("#detail")
    expect(detail.locator(".span-title h2")).to_have_text("chat gpt-4o-mini")
    messages = detail.locator(".chat .msg")
    expect(messages).to_have_count(3)
    expect(messages.nth(0)).to_contain_text("You are a concise travel assistant")
    expect(messages.nth(1)).to_contain_text("should I pack an umbrella?")
    expect(messages.nth(2).locator(".tool-call")).to_contain_text("get_weather")
    expect(page).to_have_url(re.compile(rf"\?span={demo.chat_span}$"))
    tab.shot("trace-chat")

    # Arrow keys walk the tree; the panel follows the selection.
    page.keyboard.press("ArrowDown")
    expect(detail.locator(".span-title h2")).to_have_text("get_weather")
    page.keyboard.press("ArrowDown")
    expect(detail.locator(".chat .msg.role-tool")).to_contain_text('"temp_c": 14')
    expect(detail.locator(".chat .msg.output")).to_contain_text("pack an umbrella")
    tab.shot("trace-chat-tool-result")


def test_error_span_shows_stack_trace(tab: Tab) -> None:
    demo = tab.site.demo
    page = tab.open(f"/traces/{demo.error_trace}")
    expect(page.locator(".tree .node.err")).to_have_count(2)
    page.locator(".tree .node.err", has_text="parse_summary").click()
    exception = page.locator("#detail .exception")
    expect(exception.locator(".exc-type")).to_have_text("json.decoder.JSONDecodeError")
    expect(exception.locator("pre.stack")).to_contain_text(
        'File "/app/bot/parsing.py", line 41, in parse_summary'
    )
    tab.shot("trace-error")


def test_deep_link_to_gateway_span(tab: Tab) -> None:
    demo = tab.site.demo
    page = tab.open(f"/traces/tr-{demo.gateway_trace}?span={demo.gateway_span}")
    selected = page.locator('.tree .node[aria-selected="true"]')
    expect(selected).to_have_attribute("data-id", demo.gateway_span)
    expect(selected).to_be_focused()
    attempts = page.locator("#detail table.attempts tbody tr")
    expect(attempts).to_have_count(3)
    expect(attempts.nth(0)).to_contain_text("429")
    expect(attempts.nth(2)).to_contain_text("openai failed: 503 after 2 attempts")
    tab.shot("trace-gateway")
    # An attempt in the panel selects that span in the tree.
    attempts.nth(2).get_by_role("link").click()
    expect(page.locator('.tree .node[aria-selected="true"]')).to_have_attribute(
        "data-id", demo.fallback_attempt_span
    )
    expect(page.locator("#detail .span-title h2")).to_have_text("attempt anthropic")
    # Enter in the tag box adds a tag and comes back to the same span.
    page.locator("#add-tag").fill("checked=yes")
    page.locator("#add-tag").press("Enter")
    expect(page.locator(".tag-edit .chip b")).to_have_text("checked")
    expect(page).to_have_url(re.compile(rf"\?span={demo.fallback_attempt_span}$"))
    # The header's id box opens a trace by id too.
    page.locator("#jump").fill(f"tr-{demo.error_trace}")
    page.locator("#jump").press("Enter")
    expect(page.locator("h1")).to_contain_text("summarize")


def test_sessions_and_dashboard(tab: Tab) -> None:
    page = tab.open("/sessions")
    rows = page.locator("table.sessions tbody tr")
    expect(rows).to_have_count(2)
    tab.shot("sessions")
    rows.filter(has_text="sess-alpha").get_by_role("link").click()
    turns = page.locator(".conversation .turn")
    expect(turns).to_have_count(2)
    expect(turns.nth(0).locator(".msg.role-user")).to_contain_text("weather in Paris")
    expect(turns.nth(1).locator(".msg.role-assistant")).to_contain_text("umbrella can stay home")
    tab.shot("session")

    page = tab.open("/gateway")
    expect(page.locator(".kpi").first).to_contain_text("24")
    expect(page.locator("svg.chart")).to_have_count(4)
    expect(page.locator(".hbars").first).to_contain_text("hit")
    tab.shot("gateway")
    page.emulate_media(color_scheme="dark")
    tab.shot("gateway-dark")


def test_bulk_tags_delete_and_live_refresh(tab: Tab) -> None:
    site = tab.site
    ids = send_simple_traces(site.url, "bulk-ui", 3)
    page = tab.open("/")
    page.get_by_role("link", name="bulk-ui").click()
    rows = page.locator("tbody[data-rows] tr")
    expect(rows).to_have_count(3)
    bar = page.locator("[data-bulk]")
    expect(bar).to_be_hidden()
    rows.nth(0).locator("input[type=checkbox]").check()
    rows.nth(1).locator("input[type=checkbox]").check()
    expect(bar).to_contain_text("2 selected")
    page.locator("#set_tags").fill("reviewed=yes")
    page.get_by_role("button", name="Apply tags").click()
    expect(page.locator(".alert.notice")).to_have_text("Updated the tags of 2 traces.")
    expect(page.locator("tbody[data-rows] .chip", has_text="reviewed")).to_have_count(2)

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("[data-select-all]").check()
    expect(bar).to_contain_text("3 selected")
    page.get_by_role("button", name="Delete").click()
    expect(page.locator(".alert.notice")).to_have_text("Deleted 3 traces.")
    expect(page.locator("tbody[data-rows] tr")).to_have_count(0)
    assert len(ids) == 3

    # New traces appear without a reload while "Live" is on.
    page = tab.open(f"/experiments/{site.experiments['rag-eval']}")
    expect(page.locator("tbody[data-rows] tr")).to_have_count(3)
    send_simple_traces(site.url, "rag-eval", 1)
    expect(page.locator("tbody[data-rows] tr")).to_have_count(4, timeout=15_000)
    expect(page.locator("tbody[data-rows] tr.fresh")).to_have_count(1)
    tab.shot("traces-live")
