"""What the gateway answers once guardrails have run: Portkey's statuses and bodies.

=======  ===================================================================
status   when
=======  ===================================================================
446      a hook with ``"deny": true`` failed.  Body: OpenAI error JSON with
         ``type: "hooks_failed"`` plus ``hook_results``; before the request
         the upstream is never called.
246      the upstream answered 200 but some hook failed without denying.
         Body: the normal answer plus ``hook_results``.
as is    every hook passed: the answer plus ``hook_results`` (untouched when
         the config has no guardrails).
=======  ===================================================================

``hook_results`` is ``{"before_request_hooks": [...], "after_request_hooks": [...]}``.
Unlike Portkey, a skipped hook (``{"id", "skipped": true}``) does not count as
failed, so a skipped hook never turns a 200 into a 246.

Streams: the status goes out before the answer exists, so it can only reflect
the before-request hooks (:func:`stream_status`).  The after-request hooks run on
the assembled answer when the upstream sends ``data: [DONE]``: the relay holds
that event back (:func:`split_done`), runs them, and sends
:func:`stream_denial_event` instead of ``[DONE]`` when they deny.  Text already
streamed cannot be redacted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from traceway.gateway.guardrails.runner import GuardrailOutcome

__all__ = [
    "DENIED_STATUS",
    "FAILED_STATUS",
    "HOOKS_FAILED_MESSAGE",
    "denied_body",
    "final_response",
    "hook_results_json",
    "split_done",
    "stream_denial_event",
    "stream_status",
]

DENIED_STATUS: Final = 446
FAILED_STATUS: Final = 246
HOOKS_FAILED_MESSAGE: Final = (
    "The guardrail checks defined in the config failed. "
    "You can find more information in the `hook_results` object."
)
_DONE: Final = b"data: [DONE]"


def _results(outcome: GuardrailOutcome | None) -> list[dict[str, Any]]:
    return outcome.results if outcome is not None else []


def hook_results_json(
    before: GuardrailOutcome | None = None, after: GuardrailOutcome | None = None
) -> dict[str, Any]:
    """``{"hook_results": {"before_request_hooks": [...], "after_request_hooks": [...]}}``."""
    return {
        "hook_results": {
            "before_request_hooks": _results(before),
            "after_request_hooks": _results(after),
        }
    }


def denied_body(before: GuardrailOutcome | None, after: GuardrailOutcome | None = None) -> bytes:
    """The 446 body: an OpenAI error (``type: "hooks_failed"``) plus ``hook_results``."""
    error = {"message": HOOKS_FAILED_MESSAGE, "type": "hooks_failed", "param": None, "code": None}
    return orjson.dumps({"error": error, **hook_results_json(before, after)})


def final_response(
    status: int,
    body: bytes,
    before: GuardrailOutcome | None,
    after: GuardrailOutcome | None,
    *,
    parsed: Any = None,
) -> tuple[int, bytes]:
    """The status and body to send for a complete (non-streamed) answer.

    ``body`` is the upstream's JSON (``parsed`` if already decoded).  An answer an
    output hook rewrote (redaction) is replaced by ``after.transformed_body``.
    """
    if (before is not None and before.deny) or (after is not None and after.deny):
        return DENIED_STATUS, denied_body(before, after)
    if not _results(before) and not _results(after):
        return status, body
    answer = after.transformed_body if after is not None else None
    if answer is None:
        answer = parsed if parsed is not None else _loads(body)
    if not isinstance(answer, Mapping):
        return status, body
    failed = (before is not None and before.failed) or (after is not None and after.failed)
    out_status = FAILED_STATUS if failed and status == 200 else status
    return out_status, orjson.dumps({**answer, **hook_results_json(before, after)})


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def stream_status(status: int, before: GuardrailOutcome | None) -> int:
    """The status a stream starts with: 246 when a before-request hook failed."""
    return FAILED_STATUS if before is not None and before.failed and status == 200 else status


def stream_denial_event(
    before: GuardrailOutcome | None, after: GuardrailOutcome | None
) -> bytes | None:
    """The SSE event to send instead of ``[DONE]`` when output hooks deny, else ``None``."""
    if after is None or not after.deny:
        return None
    return b"data: " + denied_body(before, after) + b"\n\n"


def split_done(piece: bytes) -> tuple[bytes, bool]:
    """Split the ``data: [DONE]`` event off a relayed piece: ``(rest, had_done)``.

    >>> split_done(b'data: {"x": 1}\\n\\ndata: [DONE]\\n\\n')
    (b'data: {"x": 1}\\n\\n', True)
    """
    at = piece.rfind(_DONE)
    if at == -1 or (at > 0 and piece[at - 1 : at] != b"\n"):
        return piece, False
    tail = piece[at + len(_DONE) :]
    if tail.strip(b"\r\n"):
        return piece, False
    return piece[:at], True
