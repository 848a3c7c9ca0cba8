"""Portkey's JSON checks on the text: ``default.jsonSchema`` and ``default.jsonKeys``.

JSON is found as Portkey finds it: the contents of fenced code blocks
(```` ```json ... ``` ````) first, and JSON objects written in the prose.  Objects
in prose are read with a real JSON decoder from every ``{``, so nested objects
are found whole (Portkey's non-greedy ``{...}`` pattern stops at the first ``}``).

* ``jsonSchema`` (``schema``, ``not``): passes when one of the JSON values found
  validates against the schema (JSON Schema 2020-12, formats checked, via the
  ``jsonschema`` package); prose is searched only when there are no code blocks.
* ``jsonKeys`` (``keys``, ``operator`` any|all|none): passes when one of the
  objects found has any / all / none of the keys at its top level.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

import jsonschema
import orjson

from traceway.gateway.guardrails.context import (
    CheckContext,
    CheckError,
    CheckOutcome,
    excerpt,
    matches_operator,
)

__all__ = ["extract_json", "json_keys", "json_schema"]

_CODE_BLOCK = re.compile(r"```+(?:json)?\s*([\s\S]*?)```+")
_DECODER = json.JSONDecoder()
#: Bounds the work on adversarial text full of braces.
_MAX_CANDIDATES = 64


def _objects_in_prose(text: str) -> list[Any]:
    found: list[Any] = []
    at = text.find("{")
    while at != -1 and len(found) < _MAX_CANDIDATES:
        try:
            value, end = _DECODER.raw_decode(text, at)
        except ValueError:
            at = text.find("{", at + 1)
            continue
        found.append(value)
        at = text.find("{", end)
    return found


def extract_json(text: str, *, prose_too: bool) -> list[Any]:
    """JSON values in ``text``: code blocks, then (if none, or ``prose_too``) objects in prose."""
    found: list[Any] = []
    blocks = [m.group(1).strip() for m in _CODE_BLOCK.finditer(text)]
    for block in blocks[:_MAX_CANDIDATES]:
        try:
            found.append(orjson.loads(block))
        except orjson.JSONDecodeError:
            continue
    if not blocks or prose_too:
        found.extend(_objects_in_prose(text))
    return found


@functools.lru_cache(maxsize=128)
def _validator(schema_json: bytes) -> jsonschema.protocols.Validator:
    schema = orjson.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _error_path(error: jsonschema.ValidationError) -> str:
    return "/" + "/".join(str(p) for p in error.absolute_path)


async def json_schema(ctx: CheckContext, params: Mapping[str, Any]) -> CheckOutcome:
    """``default.jsonSchema``: does JSON in the text validate against ``schema``?"""
    schema = params.get("schema")
    negate = bool(params.get("not", False))
    try:
        if not isinstance(schema, Mapping):
            raise ValueError("Missing or invalid JSON schema")
        validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    except (ValueError, TypeError, jsonschema.SchemaError) as exc:
        message = exc.message if isinstance(exc, jsonschema.SchemaError) else str(exc)
        raise CheckError(
            message,
            {
                "explanation": "An error occurred while processing the JSON.",
                "error": message,
                "not": negate,
            },
        ) from exc
    candidates = extract_json(ctx.text, prose_too=False)
    if not candidates:
        data = {"explanation": "No valid JSON found in the response.", "not": negate}
        return CheckOutcome(verdict=False, data=data)
    best: tuple[Any, list[jsonschema.ValidationError]] | None = None
    for candidate in candidates:
        errors = sorted(validator.iter_errors(candidate), key=lambda e: list(e.absolute_path))
        if best is None or not errors:
            best = (candidate, errors)
        if not errors:
            break
    assert best is not None
    matched, errors = best
    valid = not errors
    verdict = valid != negate
    if verdict:
        explanation = (
            "Successfully validated JSON does not match the schema as expected."
            if negate
            else "Successfully validated JSON against the provided schema."
        )
    else:
        explanation = (
            "JSON matches the schema when it should not."
            if negate
            else "Failed to validate JSON against the provided schema."
        )
    data = {
        "matchedJson": matched,
        "not": negate,
        "explanation": explanation,
        "validationErrors": [{"path": _error_path(e), "message": e.message} for e in errors],
    }
    return CheckOutcome(verdict=verdict, data=data)


def _keys_explanation(operator: str, present: list[str], missing: list[str], verdict: bool) -> str:
    found = f"Found keys: [{', '.join(present)}]" if present else "No matching keys found"
    absent = f"Missing keys: [{', '.join(missing)}]" if missing else "No missing keys"
    if operator == "any":
        return (
            f"Successfully found at least one required key. {found}."
            if verdict
            else f"Failed to find any required keys. {absent}."
        )
    if operator == "all":
        return (
            f"Successfully found all required keys. {found}."
            if verdict
            else f"Failed to find all required keys. {absent}."
        )
    return (
        f"Successfully verified no required keys are present. {absent}."
        if verdict
        else f"Found some keys that should not be present. {found}."
    )


async def json_keys(ctx: CheckContext, params: Mapping[str, Any]) -> CheckOutcome:
    """``default.jsonKeys``: does a JSON object in the text have any / all / none of ``keys``?"""
    keys = params.get("keys")
    operator = params.get("operator")
    text = ctx.text
    problem = None
    if not text:
        problem = "Missing text to analyze"
    elif not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        problem = "Missing or invalid keys array"
    elif operator not in ("any", "all", "none"):
        problem = 'Invalid or missing operator (must be "any", "all", or "none")'
    if problem is not None:
        raise CheckError(
            problem,
            {
                "explanation": f"An error occurred while processing JSON: {problem}",
                "operator": operator,
                "requiredKeys": keys,
                "textExcerpt": excerpt(text),
            },
        )
    assert isinstance(keys, list) and isinstance(operator, str)
    objects = [v for v in extract_json(text, prose_too=True) if isinstance(v, dict)]
    if not objects:
        data: dict[str, Any] = {
            "explanation": "No valid JSON found in the text.",
            "requiredKeys": keys,
            "operator": operator,
            "textExcerpt": excerpt(text),
        }
        return CheckOutcome(verdict=False, data=data)
    best: tuple[Any, list[str], list[str], bool] = (None, [], list(keys), False)
    for obj in objects:
        present = [k for k in keys if k in obj]
        missing = [k for k in keys if k not in obj]
        verdict = matches_operator(operator, present, missing)
        if verdict or len(present) > len(best[1]):
            best = (obj, present, missing, verdict)
        if verdict:
            break
    matched, present, missing, verdict = best
    data = {
        "matchedJson": matched,
        "verdict": verdict,
        "explanation": _keys_explanation(operator, present, missing, verdict),
        "presentKeys": present,
        "missingKeys": missing,
        "operator": operator,
        "textExcerpt": excerpt(text),
    }
    return CheckOutcome(verdict=verdict, data=data)
