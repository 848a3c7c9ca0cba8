"""Reading guardrails out of a route config, in both of Portkey's shapes.

The inline form, one object per guardrail, its checks as keys::

    {"input_guardrails": [{"default.contains": {"operator": "none", "words": ["x"]},
                           "deny": true}],
     "output_guardrails": [{"default.pii": {"redact": true}}]}

and the hooks form::

    {"before_request_hooks": [{"type": "guardrail", "id": "no-secrets", "deny": true,
                               "checks": [{"id": "default.regexMatch",
                                           "parameters": {"rule": "sk-[A-Za-z0-9]+",
                                                          "not": true}}]}]}

``input_guardrails`` / ``before_request_hooks`` run before the request,
``output_guardrails`` / ``after_request_hooks`` after the answer; hooks come
before guardrails, as in Portkey.  Inline check names without a dot get
``default.`` in front.  Control keys: ``deny``, ``async``, ``sequential``,
``on_fail``, ``on_success``, ``id``; a check with ``"is_enabled": false`` is
dropped; a check's ``"fail_on_error": true`` makes its errors fail the hook.

Only the top level of a config declares guardrails: a nested target that
declares some is refused rather than silently left unguarded.

Config mistakes (an unknown check, a saved guardrail id, a non-object) raise
:class:`GatewayError` (400) naming the place; problems with a check's own
parameters are reported at run time as that check's ``error``, as in Portkey.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from traceway.gateway.errors import GatewayError
from traceway.gateway.guardrails import injection, json_checks, pii, request_checks, text, webhook
from traceway.gateway.guardrails.context import AFTER, BEFORE, CheckFn

__all__ = ["CHECKS", "CheckSpec", "Hook", "parse_hooks"]

#: Every check this gateway runs, by Portkey's id.
CHECKS: dict[str, CheckFn] = {
    "default.regexMatch": text.regex_match,
    "default.contains": text.contains,
    "default.wordCount": text.word_count,
    "default.sentenceCount": text.sentence_count,
    "default.characterCount": text.character_count,
    "default.validUrls": text.valid_urls,
    "default.jsonSchema": json_checks.json_schema,
    "default.jsonKeys": json_checks.json_keys,
    "default.modelWhitelist": request_checks.model_whitelist,
    "default.requiredMetadataKeys": request_checks.required_metadata_keys,
    "default.pii": pii.pii,
    "portkey.pii": pii.pii,
    "default.promptInjection": injection.prompt_injection,
    "default.webhook": webhook.webhook,
}

_CONTROL_KEYS = frozenset(
    {"deny", "on_fail", "on_success", "async", "id", "type", "guardrail_version_id", "sequential"}
)


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One configured check."""

    id: str
    fn: CheckFn
    parameters: Mapping[str, Any]
    fail_on_error: bool = False


@dataclass(frozen=True, slots=True)
class Hook:
    """One guardrail: checks that run together and share a verdict."""

    id: str
    event: str  # BEFORE | AFTER
    checks: tuple[CheckSpec, ...]
    deny: bool = False
    is_async: bool = False
    sequential: bool = False
    on_fail: Mapping[str, Any] = field(default_factory=dict)
    on_success: Mapping[str, Any] = field(default_factory=dict)


def _invalid(where: str, message: str) -> GatewayError:
    return GatewayError(400, f"invalid config: {where}: {message}", param="config")


def _check(where: str, check_id: Any, parameters: Any) -> CheckSpec | None:
    if not isinstance(check_id, str) or not check_id:
        raise _invalid(where, "a check needs an 'id'")
    full_id = check_id if "." in check_id else f"default.{check_id}"
    fn = CHECKS.get(full_id)
    if fn is None:
        known = ", ".join(sorted(CHECKS))
        raise _invalid(where, f"unknown guardrail check {full_id!r} (known: {known})")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, Mapping):
        raise _invalid(where, f"the parameters of {full_id!r} must be an object")
    if parameters.get("is_enabled") is False:
        return None
    fail = parameters.get("fail_on_error", parameters.get("failOnError", False))
    return CheckSpec(id=full_id, fn=fn, parameters=dict(parameters), fail_on_error=fail is True)


def _flag(where: str, hook: Mapping[str, Any], key: str) -> bool:
    value = hook.get(key, False)
    if not isinstance(value, bool):
        raise _invalid(where, f"'{key}' must be true or false")
    return value


def _feedback(where: str, hook: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = hook.get(key) or {}
    if not isinstance(value, Mapping):
        raise _invalid(where, f"'{key}' must be an object")
    return value


def _hook(
    where: str, raw: Mapping[str, Any], event: str, default_id: str, checks: list[Any]
) -> Hook:
    hook_id = raw.get("id", default_id)
    if not isinstance(hook_id, str) or not hook_id:
        raise _invalid(where, "'id' must be a non-empty string")
    specs = tuple(c for c in checks if c is not None)
    return Hook(
        id=hook_id,
        event=event,
        checks=specs,
        deny=_flag(where, raw, "deny"),
        is_async=_flag(where, raw, "async"),
        sequential=_flag(where, raw, "sequential"),
        on_fail=_feedback(where, raw, "on_fail"),
        on_success=_feedback(where, raw, "on_success"),
    )


def _hooks_form(key: str, raw: Any, event: str) -> list[Hook]:
    if not isinstance(raw, list):
        raise _invalid(key, "must be a list of hooks")
    hooks = []
    for index, item in enumerate(raw):
        where = f"{key}[{index}]"
        if not isinstance(item, Mapping):
            raise _invalid(where, "a hook is an object")
        kind = item.get("type", "guardrail")
        if kind != "guardrail":
            raise _invalid(where, f"hooks of type {kind!r} are not supported (only 'guardrail')")
        checks = item.get("checks") or []
        if not isinstance(checks, list):
            raise _invalid(where, "'checks' must be a list")
        specs = []
        for position, check in enumerate(checks):
            there = f"{where}.checks[{position}]"
            if not isinstance(check, Mapping):
                raise _invalid(there, "a check is an object with 'id' and 'parameters'")
            parameters = check.get("parameters")
            if check.get("is_enabled") is False:
                continue
            specs.append(_check(there, check.get("id"), parameters))
        hooks.append(_hook(where, item, event, f"{key.removesuffix('s')}_{index}", specs))
    return hooks


def _inline_form(key: str, raw: Any, event: str) -> list[Hook]:
    if not isinstance(raw, list):
        raise _invalid(key, "must be a list of guardrails")
    hooks = []
    prefix = "input" if event == BEFORE else "output"
    for index, item in enumerate(raw):
        where = f"{key}[{index}]"
        if isinstance(item, str):
            raise _invalid(where, f"saved guardrail {item!r}: write the checks inline instead")
        if not isinstance(item, Mapping):
            raise _invalid(where, "a guardrail is an object of checks")
        specs = []
        for name, parameters in item.items():
            if name in _CONTROL_KEYS:
                continue
            check_id = parameters.get("id", name) if isinstance(parameters, Mapping) else name
            specs.append(_check(f"{where}.{name}", check_id, parameters))
        hooks.append(_hook(where, item, event, f"{prefix}_guardrail_{index}", specs))
    return hooks


_HOOK_KEYS = (
    "before_request_hooks",
    "input_guardrails",
    "after_request_hooks",
    "output_guardrails",
)


def _refuse_nested(targets: Any, where: str) -> None:
    if not isinstance(targets, list):
        return
    for index, target in enumerate(targets):
        if not isinstance(target, Mapping):
            continue
        here = f"{where}.targets[{index}]"
        for key in _HOOK_KEYS:
            if target.get(key):
                raise _invalid(
                    f"{here}.{key}", "guardrails go at the top level of a config, not on targets"
                )
        _refuse_nested(target.get("targets"), here)


def parse_hooks(config: Mapping[str, Any]) -> tuple[list[Hook], list[Hook]]:
    """The (before, after) hooks a config declares; raises :class:`GatewayError` (400)."""
    _refuse_nested(config.get("targets"), "config")
    before: list[Hook] = []
    after: list[Hook] = []
    for key, event, parse in (
        ("before_request_hooks", BEFORE, _hooks_form),
        ("input_guardrails", BEFORE, _inline_form),
        ("after_request_hooks", AFTER, _hooks_form),
        ("output_guardrails", AFTER, _inline_form),
    ):
        raw = config.get(key)
        if raw is None:
            continue
        (before if event == BEFORE else after).extend(parse(key, raw, event))
    return before, after
