"""Running a config's guardrails: every hook, and every check in it, concurrently.

The results have Portkey's shape.  A hook::

    {"id": "input_guardrail_0", "type": "guardrail", "verdict": false, "deny": true,
     "async": false, "execution_time": 3, "created_at": "2025-01-01T00:00:00.000Z",
     "feedback": null, "checks": [...]}

(or ``{"id": ..., "skipped": true}`` when it did not apply), and each check in it::

    {"id": "default.contains", "verdict": false, "data": {...}, "error": null,
     "transformed": false, "execution_time": 1, "created_at": "..."}

A hook passes when each of its checks passed or could not judge (``error``; a
check with ``fail_on_error`` fails instead).  It *denies* when it fails and says
``"deny": true``.  Hooks are skipped, as in Portkey, for endpoints other than
chat and completions, after a non-200 answer, and after a stream with no text.
A hook marked ``async`` runs like the others (the gateway does not detach it)
but never denies; ``sequential`` runs its checks one after another, in order,
each on the same input.

Rewrites (a webhook's ``transformedData``, then redactions, each in config
order) build ``transformed_body``: the request to send instead, or the answer to
return instead.  Whole-body replacements go first so no redaction is undone.

How to wire it (``app.py``; see :mod:`~traceway.gateway.guardrails.responses`
for the statuses and bodies)::

    guardrails = GuardrailSet.from_config(config_dict, url_guard=guard.check)  # once per config
    before = await guardrails.run_input(body, options.metadata, http, endpoint=endpoint)
    if before.deny: answer 446 with denied_body(before)           # upstream never called
    body = before.transformed_body or body                          # redacted request
    ... route the request ...
    after = await guardrails.run_output(body, answer_json, options.metadata, http,
                                        endpoint=endpoint, status=upstream_status)
    status, payload = final_response(upstream_status, response.body, before, after,
                                     parsed=answer_json)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from traceway.gateway.guardrails.config import CheckSpec, Hook, parse_hooks
from traceway.gateway.guardrails.context import (
    AFTER,
    BEFORE,
    CHECKED_REQUEST_TYPES,
    CheckContext,
    CheckError,
    CheckOutcome,
    UrlGuard,
    check_text,
    request_type,
    rewrite_texts,
)
from traceway.gateway.providers.base import CHAT
from traceway.tracing._internal import handle_internal_error

__all__ = ["NO_HOOKS", "GuardrailOutcome", "GuardrailSet"]


@dataclass(frozen=True, slots=True)
class GuardrailOutcome:
    """What one side's hooks decided."""

    verdict: bool  # every hook that ran passed
    deny: bool  # a failing hook said ``deny``: the gateway answers 446
    results: list[dict[str, Any]]  # one per hook, Portkey's shape
    transformed_body: dict[str, Any] | None = None  # the rewritten request / answer

    @property
    def failed(self) -> bool:
        """Some hook that ran did not pass (with or without ``deny``)."""
        return not self.verdict


NO_HOOKS = GuardrailOutcome(verdict=True, deny=False, results=[])


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class GuardrailSet:
    """The guardrails of one config.  Immutable and shared by all requests using it."""

    def __init__(
        self,
        before: Sequence[Hook],
        after: Sequence[Hook],
        *,
        url_guard: UrlGuard | None = None,
        clock: Callable[[], float] = time.perf_counter,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``clock`` (seconds, for ``execution_time``) and ``now`` exist for tests."""
        self.before = tuple(before)
        self.after = tuple(after)
        self._url_guard = url_guard
        self._clock = clock
        self._now = now

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        url_guard: UrlGuard | None = None,
        clock: Callable[[], float] = time.perf_counter,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> GuardrailSet | None:
        """The guardrails a route config declares, or ``None`` if it has none.

        Raises :class:`~traceway.gateway.errors.GatewayError` (400) for a bad one.

        >>> GuardrailSet.from_config({"provider": "mock"}) is None
        True
        >>> rails = GuardrailSet.from_config({"input_guardrails": [{"default.pii": {}}]})
        >>> [hook.id for hook in rails.before]
        ['input_guardrail_0']
        """
        before, after = parse_hooks(config)
        if not before and not after:
            return None
        return cls(before, after, url_guard=url_guard, clock=clock, now=now)

    async def run_input(
        self,
        body: Mapping[str, Any],
        metadata: Mapping[str, Any] | None,
        http: aiohttp.ClientSession | None,
        *,
        endpoint: str = CHAT,
    ) -> GuardrailOutcome:
        """Run the before-request hooks on the request ``body``."""
        if not self.before:
            return NO_HOOKS
        ctx = CheckContext(
            event=BEFORE,
            request_type=request_type(endpoint),
            request=body,
            metadata=metadata or {},
            http=http,
            url_guard=self._url_guard,
        )
        return await self._run(self.before, ctx, body)

    async def run_output(
        self,
        request_body: Mapping[str, Any],
        response_json: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        http: aiohttp.ClientSession | None,
        *,
        endpoint: str = CHAT,
        status: int = 200,
        streamed: bool = False,
    ) -> GuardrailOutcome:
        """Run the after-request hooks on the answer (a stream: the answer it assembled to)."""
        if not self.after:
            return NO_HOOKS
        ctx = CheckContext(
            event=AFTER,
            request_type=request_type(endpoint),
            request=request_body,
            response=response_json or {},
            status_code=status,
            metadata=metadata or {},
            streamed=streamed,
            http=http,
            url_guard=self._url_guard,
        )
        return await self._run(self.after, ctx, response_json or {})

    # -- internals --------------------------------------------------------------

    def _skips(self, ctx: CheckContext) -> bool:
        if ctx.request_type not in CHECKED_REQUEST_TYPES:
            return True
        if ctx.event == AFTER and ctx.status_code != 200:
            return True
        return ctx.event == AFTER and ctx.streamed and not check_text(ctx)

    async def _run(
        self, hooks: Sequence[Hook], ctx: CheckContext, subject: Mapping[str, Any]
    ) -> GuardrailOutcome:
        if self._skips(ctx):
            return GuardrailOutcome(
                verdict=True, deny=False, results=[{"id": h.id, "skipped": True} for h in hooks]
            )
        ran = await asyncio.gather(*(self._hook(hook, ctx) for hook in hooks))
        results = [result for result, _ in ran]
        verdict = all(result["verdict"] for result in results)
        deny = any(result["deny"] for result in results)
        pairs = [pair for _, pairs in ran for pair in pairs]
        transformed = self._transform(subject, ctx, pairs)
        return GuardrailOutcome(
            verdict=verdict, deny=deny, results=results, transformed_body=transformed
        )

    async def _hook(
        self, hook: Hook, ctx: CheckContext
    ) -> tuple[dict[str, Any], list[tuple[dict[str, Any], CheckOutcome]]]:
        created = self._now()
        started = self._clock()
        pairs: list[tuple[dict[str, Any], CheckOutcome]]
        if hook.sequential:
            pairs = [await self._check(spec, ctx) for spec in hook.checks]
        else:
            pairs = list(await asyncio.gather(*(self._check(s, ctx) for s in hook.checks)))
        passed = all(
            result["verdict"] or (result["error"] is not None and not spec.fail_on_error)
            for spec, (result, _) in zip(hook.checks, pairs, strict=True)
        )
        checks = [result for result, _ in pairs]
        result = {
            "id": hook.id,
            "type": "guardrail",
            "verdict": passed,
            # An async hook is informational in Portkey: it never blocks.
            "deny": hook.deny and not passed and not hook.is_async,
            "async": hook.is_async,
            "checks": checks,
            "feedback": _feedback(hook, passed, checks),
            "execution_time": self._elapsed_ms(started),
            "created_at": _iso(created),
        }
        return result, pairs

    async def _check(
        self, spec: CheckSpec, ctx: CheckContext
    ) -> tuple[dict[str, Any], CheckOutcome]:
        created = self._now()
        started = self._clock()
        try:
            outcome = await spec.fn(ctx, spec.parameters)
        except CheckError as exc:
            outcome = CheckOutcome(
                verdict=False, data=exc.data, error={"name": "Error", "message": exc.message}
            )
        except Exception:
            handle_internal_error(f"running the guardrail check {spec.id}")
            outcome = CheckOutcome(
                verdict=False, error={"name": "Check error", "message": "Error executing check"}
            )
        result = {
            "id": spec.id,
            "verdict": outcome.verdict,
            "data": outcome.data,
            "error": outcome.error,
            "transformed": False,
            "execution_time": self._elapsed_ms(started),
            "created_at": _iso(created),
        }
        return result, outcome

    def _elapsed_ms(self, started: float) -> int:
        return round((self._clock() - started) * 1000)

    @staticmethod
    def _transform(
        subject: Mapping[str, Any],
        ctx: CheckContext,
        pairs: Iterable[tuple[dict[str, Any], CheckOutcome]],
    ) -> dict[str, Any] | None:
        pairs = list(pairs)
        current: Mapping[str, Any] = subject
        for result, outcome in pairs:
            if outcome.replacement is not None:
                current = outcome.replacement
                result["transformed"] = True
        for result, outcome in pairs:
            if outcome.rewrite is None:
                continue
            rewritten = rewrite_texts(current, ctx.event, ctx.request_type, outcome.rewrite)
            if rewritten != current:
                result["transformed"] = True
                current = rewritten
        return dict(current) if current is not subject else None


def _feedback(hook: Hook, passed: bool, checks: list[dict[str, Any]]) -> dict[str, Any] | None:
    settings = (hook.on_success if passed else hook.on_fail).get("feedback")
    if not isinstance(settings, Mapping):
        return None
    extra = settings.get("metadata")
    return {
        "value": settings.get("value"),
        "weight": settings.get("weight"),
        "metadata": {
            **(extra if isinstance(extra, Mapping) else {}),
            "successfulChecks": ", ".join(c["id"] for c in checks if c["verdict"]),
            "failedChecks": ", ".join(
                c["id"] for c in checks if not c["verdict"] and c["error"] is None
            ),
            "erroredChecks": ", ".join(
                c["id"] for c in checks if not c["verdict"] and c["error"] is not None
            ),
        },
    }
