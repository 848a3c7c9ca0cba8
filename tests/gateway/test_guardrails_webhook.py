"""default.webhook against a real local aiohttp server: verdicts, rewrites, timeouts, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from traceway.gateway.errors import GatewayError
from traceway.gateway.guardrails import GuardrailOutcome, GuardrailSet

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}}]}


@dataclass
class Hooks:
    """The webhook server's side: what it received, and what the slow route waits on."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrivals: int = 0
    both_here: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def webhook_server() -> AsyncIterator[tuple[Hooks, aiohttp.ClientSession]]:
    state = Hooks(url="")

    async def remember(request: web.Request) -> dict[str, Any]:
        payload = await request.json()
        state.received.append(payload)
        state.headers.append(dict(request.headers))
        return payload

    async def verdict(request: web.Request) -> web.Response:
        payload = await remember(request)
        value = request.match_info["value"] == "true"
        return web.json_response({"verdict": value, "data": {"seen": payload["eventType"]}})

    async def transform(request: web.Request) -> web.Response:
        payload = await remember(request)
        side = "request" if payload["eventType"] == "beforeRequestHook" else "response"
        rewritten = {**payload[side]["json"], "rewritten": True}
        return web.json_response({"verdict": True, "transformedData": {side: {"json": rewritten}}})

    async def slow(request: web.Request) -> web.Response:
        await remember(request)
        await state.release.wait()
        return web.json_response({"verdict": True})

    async def broken(request: web.Request) -> web.Response:
        await remember(request)
        return web.json_response({"error": "boom"}, status=500)

    async def no_verdict(request: web.Request) -> web.Response:
        await remember(request)
        return web.json_response({"ok": True})

    async def together(request: web.Request) -> web.Response:
        await remember(request)
        state.arrivals += 1
        if state.arrivals == 2:
            state.both_here.set()
        try:
            async with asyncio.timeout(5):
                await state.both_here.wait()
        except TimeoutError:
            return web.json_response({"verdict": False})
        return web.json_response({"verdict": True})

    app = web.Application()
    app.router.add_post("/verdict/{value}", verdict)
    app.router.add_post("/transform", transform)
    app.router.add_post("/slow", slow)
    app.router.add_post("/broken", broken)
    app.router.add_post("/no-verdict", no_verdict)
    app.router.add_post("/together", together)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.url = f"http://{host}:{port}"
    http = aiohttp.ClientSession()
    try:
        yield state, http
    finally:
        state.release.set()
        await http.close()
        await runner.cleanup()


def webhook_rails(
    *checks: dict[str, Any],
    output: bool = False,
    guard: Callable[[str], Awaitable[None]] | None = None,
) -> GuardrailSet:
    key = "after_request_hooks" if output else "before_request_hooks"
    config = {
        key: [
            {
                "id": "hook",
                "deny": True,
                "checks": [{"id": "default.webhook", "parameters": c} for c in checks],
            }
        ]
    }
    rails = GuardrailSet.from_config(config, url_guard=guard)
    assert rails is not None
    return rails


def only_check(outcome: GuardrailOutcome) -> dict[str, Any]:
    check = outcome.results[0]["checks"][0]
    return {k: v for k, v in check.items() if k not in ("execution_time", "created_at")}


def test_verdict_true_passes_and_the_webhook_gets_portkeys_context() -> None:
    async def go() -> None:
        async with webhook_server() as (hooks, http):
            url = f"{hooks.url}/verdict/true"
            rails = webhook_rails({"webhookURL": url, "headers": '{"Authorization": "Bearer t"}'})
            outcome = await rails.run_input(BODY, {"user": "u1"}, http)
            assert (outcome.verdict, outcome.deny) == (True, False)
            assert only_check(outcome) == {
                "id": "default.webhook",
                "verdict": True,
                "data": {
                    "verdict": True,
                    "explanation": "Webhook request succeeded",
                    "webhookUrl": url,
                    "responseData": {"seen": "beforeRequestHook"},
                    "requestContext": {"headers": ["Authorization"], "timeout": 3000},
                },
                "error": None,
                "transformed": False,
            }
            assert hooks.received == [
                {
                    "request": {"json": BODY, "text": "hi", "isStreamingRequest": False},
                    "response": {"json": None, "text": "", "statusCode": None},
                    "requestType": "chatComplete",
                    "metadata": {"user": "u1"},
                    "eventType": "beforeRequestHook",
                }
            ]
            assert hooks.headers[0]["Authorization"] == "Bearer t"

    asyncio.run(go())


def test_verdict_false_denies_after_the_answer() -> None:
    async def go() -> None:
        async with webhook_server() as (hooks, http):
            rails = webhook_rails({"webhookURL": f"{hooks.url}/verdict/false"}, output=True)
            outcome = await rails.run_output(BODY, ANSWER, {}, http)
            assert (outcome.verdict, outcome.deny) == (False, True)
            assert only_check(outcome)["data"]["explanation"] == "Webhook request failed"
            assert hooks.received[0]["eventType"] == "afterRequestHook"
            assert hooks.received[0]["response"] == {
                "json": ANSWER,
                "text": "hello",
                "statusCode": 200,
            }

    asyncio.run(go())


def test_transformed_data_replaces_the_request_or_the_answer() -> None:
    async def go() -> None:
        async with webhook_server() as (hooks, http):
            url = f"{hooks.url}/transform"
            before = await webhook_rails({"webhookURL": url}).run_input(BODY, {}, http)
            after = await webhook_rails({"webhookURL": url}, output=True).run_output(
                BODY, ANSWER, {}, http
            )
            assert before.transformed_body == {**BODY, "rewritten": True}
            assert after.transformed_body == {**ANSWER, "rewritten": True}
            assert only_check(before)["transformed"] is True

    asyncio.run(go())


def test_timeout_fails_open_by_default_and_closed_when_asked() -> None:
    async def go() -> None:
        async with webhook_server() as (hooks, http):
            url = f"{hooks.url}/slow"
            open_ = await webhook_rails({"webhookURL": url, "timeout": 50}).run_input(
                BODY, {}, http
            )
            closed = await webhook_rails(
                {"webhookURL": url, "timeout": 50, "fail_on_error": True}
            ).run_input(BODY, {}, http)
            error = {"name": "Error", "message": "Request timed out after 50ms"}
            data = {
                "explanation": "Webhook error: Request timed out after 50ms",
                "webhookUrl": url,
                "requestContext": {"headers": [], "timeout": 50},
            }
            for outcome in (open_, closed):
                assert only_check(outcome) == {
                    "id": "default.webhook",
                    "verdict": False,
                    "data": data,
                    "error": error,
                    "transformed": False,
                }
            assert (open_.verdict, open_.deny) == (True, False)
            assert (closed.verdict, closed.deny) == (False, True)

    asyncio.run(go())


def test_bad_answers_and_refused_urls_are_errors() -> None:
    async def refuse(url: str) -> None:
        raise GatewayError(400, "it resolves to the non-public address 127.0.0.1")

    async def go() -> None:
        async with webhook_server() as (hooks, http):
            cases = [
                (webhook_rails({"webhookURL": f"{hooks.url}/broken"}), "HTTP error! status: 500"),
                (
                    webhook_rails({"webhookURL": f"{hooks.url}/no-verdict"}),
                    'the webhook\'s answer has no boolean "verdict"',
                ),
                (webhook_rails({"webhookURL": "not a url"}), "Invalid webhook URL format"),
                (webhook_rails({}), "Missing webhook URL"),
                (
                    webhook_rails({"webhookURL": f"{hooks.url}/verdict/true"}, guard=refuse),
                    "Webhook URL refused: it resolves to the non-public address 127.0.0.1",
                ),
            ]
            for rails, message in cases:
                outcome = await rails.run_input(BODY, {}, http)
                assert only_check(outcome)["error"] == {"name": "Error", "message": message}
                assert (outcome.verdict, outcome.deny) == (True, False)
            assert len(hooks.received) == 2  # neither the bad URL nor the refused one was called

    asyncio.run(go())


def test_checks_of_a_hook_run_concurrently() -> None:
    async def go() -> None:
        async with webhook_server() as (hooks, http):
            url = f"{hooks.url}/together"
            # Each call answers only once both have arrived: run one after the
            # other, the first would wait out its timeout.
            rails = webhook_rails({"webhookURL": url, "timeout": 4000}, {"webhookURL": url})
            outcome = await rails.run_input(BODY, {}, http)
            assert [c["verdict"] for c in outcome.results[0]["checks"]] == [True, True]

    asyncio.run(go())
