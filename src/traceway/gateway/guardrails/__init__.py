"""Guardrails: Portkey's built-in checks, PII redaction and prompt-injection heuristics.

A route config declares them (``input_guardrails`` / ``output_guardrails``, or
``before_request_hooks`` / ``after_request_hooks``; see
:mod:`~traceway.gateway.guardrails.config`); :class:`GuardrailSet` runs them and
:mod:`~traceway.gateway.guardrails.responses` turns the outcome into Portkey's
446 / 246 answers.  Every check is local except ``default.webhook``.

How to wire it into the request path (``app.py`` ``_proxy``), in order:

1. When a config is compiled (once per config, next to ``compile_config``):
   ``rails = GuardrailSet.from_config(config_dict, url_guard=None if trusted else
   self.guard.check)``; ``None`` means no guardrails and no extra work.  A bad
   guardrail config raises ``GatewayError`` (400) like any config mistake.
2. After the body is parsed and before ``router.run``:
   ``before = await rails.run_input(body, options.metadata, self._client(),
   endpoint=endpoint)``.  If ``before.deny``: answer
   ``send_json(send, 446, denied_body(before))`` and stop (the upstream is never
   called).  Else send ``before.transformed_body or body`` upstream (redacted).
3. Complete answer: ``after = await rails.run_output(sent_body, answer_json,
   options.metadata, self._client(), endpoint=endpoint, status=response.status)``
   then ``status, payload = final_response(response.status, response.body,
   before, after)`` and send that (446 when an output hook denies, 246 when a
   hook failed without denying, else the upstream status, with ``hook_results``).
4. Stream: start it with ``stream_status(response.status, before)``; pass each
   piece through ``split_done`` and, on ``[DONE]``, run ``run_output`` on
   ``aggregate_stream(endpoint, pieces)`` with ``streamed=True``; send
   ``stream_denial_event(before, after)`` if it is not ``None``, else the
   ``data: [DONE]\\n\\n`` event.

>>> rails = GuardrailSet.from_config(
...     {"input_guardrails": [{"default.contains": {"operator": "none", "words": ["x"]},
...                            "deny": True}]})
>>> import asyncio
>>> outcome = asyncio.run(rails.run_input({"messages": [{"role": "user", "content": "x"}]},
...                                        {}, None))
>>> (outcome.verdict, outcome.deny)
(False, True)
"""

from traceway.gateway.guardrails.config import CHECKS, CheckSpec, Hook, parse_hooks
from traceway.gateway.guardrails.context import AFTER, BEFORE, CheckContext, CheckOutcome
from traceway.gateway.guardrails.injection import injection_score
from traceway.gateway.guardrails.pii import Redactor, find_pii
from traceway.gateway.guardrails.responses import (
    DENIED_STATUS,
    FAILED_STATUS,
    denied_body,
    final_response,
    hook_results_json,
    split_done,
    stream_denial_event,
    stream_status,
)
from traceway.gateway.guardrails.runner import NO_HOOKS, GuardrailOutcome, GuardrailSet

__all__ = [
    "AFTER",
    "BEFORE",
    "CHECKS",
    "DENIED_STATUS",
    "FAILED_STATUS",
    "NO_HOOKS",
    "CheckContext",
    "CheckOutcome",
    "CheckSpec",
    "GuardrailOutcome",
    "GuardrailSet",
    "Hook",
    "Redactor",
    "denied_body",
    "final_response",
    "find_pii",
    "hook_results_json",
    "injection_score",
    "parse_hooks",
    "split_done",
    "stream_denial_event",
    "stream_status",
]
