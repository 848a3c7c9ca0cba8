"""Portkey's checks on the request: ``default.modelWhitelist``, ``default.requiredMetadataKeys``.

* ``modelWhitelist`` (``models``, ``metadataRules``, ``not``): the request's
  ``model`` must be in the allowed list.  Each rule ``{"metadataKey", "values",
  "models"}`` whose metadata value matches adds its models; when no rule matches,
  ``models`` applies.  It reads the model the request names, before any
  ``override_params`` of the route.
* ``requiredMetadataKeys`` (``metadataKeys``, ``operator`` all|any|none): the
  request's metadata (``x-traceway-metadata``) has all / any / none of the keys.
  Before the request only; like Portkey, its parameter errors do not fail it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from traceway.gateway.guardrails.context import (
    BEFORE,
    CheckContext,
    CheckError,
    CheckOutcome,
    matches_operator,
)

__all__ = ["model_whitelist", "required_metadata_keys"]


def _allowed_models(
    params: Mapping[str, Any], metadata: Mapping[str, Any]
) -> tuple[list[str], str]:
    rules = params.get("metadataRules")
    allowed: list[str] = []
    mode = "base_models"
    if isinstance(rules, list) and rules:
        mode = "metadata_rules"
        for rule in rules:
            if not isinstance(rule, Mapping) or not isinstance(rule.get("values"), list):
                continue
            value = metadata.get(str(rule.get("metadataKey")))
            if value is None:
                continue
            values = [str(v) for v in value] if isinstance(value, list) else [str(value)]
            wanted = {str(v) for v in rule["values"]}
            if any(v in wanted for v in values):
                for model in rule.get("models") or ():
                    if str(model) not in allowed:
                        allowed.append(str(model))
    models = params.get("models")
    if not allowed and isinstance(models, list):
        allowed = [str(m) for m in models]
    return allowed, mode


async def model_whitelist(ctx: CheckContext, params: Mapping[str, Any]) -> CheckOutcome:
    """``default.modelWhitelist``: is the requested model allowed?"""
    negate = bool(params.get("not", False))
    model = ctx.request.get("model")
    allowed, mode = _allowed_models(params, ctx.metadata)
    problem = None
    if not isinstance(model, str) or not model:
        problem = "Missing model in request"
    elif not allowed:
        problem = "Missing allowed models configuration"
    if problem is not None:
        raise CheckError(
            problem,
            {
                "explanation": f"An error occurred while checking model whitelist: {problem}",
                "requestedModel": model if isinstance(model, str) else "No model specified",
                "not": negate,
                "allowedModels": allowed,
            },
        )
    listed = model in allowed
    verdict = listed != negate
    if verdict:
        explanation = (
            f'Model "{model}" is not in the allowed list as expected.'
            if negate
            else f'Model "{model}" is allowed.'
        )
    else:
        explanation = (
            f'Model "{model}" is in the allowed list when it should not be.'
            if negate
            else f'Model "{model}" is not in the allowed list.'
        )
    data = {
        "verdict": verdict,
        "not": negate,
        "mode": mode,
        "explanation": explanation,
        "requestedModel": model,
        "allowedModels": allowed,
    }
    return CheckOutcome(verdict=verdict, data=data)


_METADATA_EXPLANATIONS = {
    ("any", True): "At least one metadata key was found.",
    ("any", False): "No metadata keys were found.",
    ("all", True): "All metadata keys were found.",
    ("all", False): "Some metadata keys were missing.",
    ("none", True): "No metadata keys were found.",
    ("none", False): "Some metadata keys were found.",
}


def _unjudged(message: str) -> CheckOutcome:
    # Portkey reports these with a passing verdict: a misconfigured check never blocks.
    return CheckOutcome(verdict=True, error={"name": "Error", "message": message})


async def required_metadata_keys(ctx: CheckContext, params: Mapping[str, Any]) -> CheckOutcome:
    """``default.requiredMetadataKeys``: does the metadata carry the keys?"""
    if ctx.event != BEFORE:
        return _unjudged("This plugin only works for before_request_hooks")
    keys = params.get("metadataKeys")
    operator = params.get("operator")
    if not isinstance(keys, list) or not keys:
        return _unjudged("metadataKeys must be an array and not empty")
    if not all(isinstance(k, str) for k in keys):
        return _unjudged("metadataKeys must be an array of strings")
    if operator not in ("all", "any", "none"):
        return _unjudged("operator must be one of: all, any, none")
    found = [k for k in keys if k in ctx.metadata]
    missing = [k for k in keys if k not in ctx.metadata]
    verdict = matches_operator(operator, found, missing)
    outcome = "passed" if verdict else "failed"
    data = {
        "explanation": f"Check {outcome} for '{operator}' metadata keys. "
        + _METADATA_EXPLANATIONS[(operator, verdict)],
        "missing_metadata_keys": missing,
        "found_metadata_keys": found,
        "operator": operator,
    }
    return CheckOutcome(verdict=verdict, data=data)
