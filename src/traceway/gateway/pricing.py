"""What a call cost: a price table per provider and model, and usage -> US dollars.

Prices live in ``prices.json`` beside this module (USD per million tokens:
``input``, ``output``, ``cached_input`` for prompt-cache reads and, where the
provider prices them apart, ``cache_write``), with the date they were checked.
Operators override or extend them in the gateway settings under ``pricing``, in
the same shape; ``"*"`` prices every model of a provider::

    pricing:
      openai: {gpt-4o: {input: 2.0}}          # merged field by field
      vllm: {"*": {input: 0, output: 0}}

Model ids resolve to their family when not listed themselves: dated and
versioned ids (``gpt-4o-2024-08-06``, ``claude-3-5-sonnet-20241022``,
``gemini-1.5-pro-002``, ``gemini-2.5-flash-preview-05-20``) and ``-latest``
aliases cost what their family costs.

How to wire it
--------------
When an attempt's answer (or an aggregated stream) is in hand, in the span code
of :mod:`traceway.gateway.tracing` (``_LiveAttempt.end`` / ``end_stream``, next to
``response_attributes``)::

    cost = prices.cost_usd(provider, request_model or response_model, result["usage"])
    if cost is not None:
        span.set_attribute(semconv.COST_USD, cost)

and the request span the sum over its attempts.  ``prices`` is
``PriceTable.default().merged(settings.pricing)``, built once at startup (a
``pricing: dict`` field in ``GatewaySettings``); :func:`cost_usd` uses the
shipped table alone.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

__all__ = ["ModelPrice", "PriceTable", "cost_usd"]

_PER_TOKEN = 1e-6  # prices are per million tokens
_FIELDS = ("input", "output", "cached_input", "cache_write")
# Tried in turn, each stripped once per pass, until an id is found or none applies.
_SUFFIXES = re.compile(
    r"(?:-\d{4}-\d{2}-\d{2}"  # OpenAI: gpt-4o-2024-08-06
    r"|[-@]\d{8}"  # Anthropic: claude-3-5-sonnet-20241022 (Vertex: @20241022)
    r"|-latest"
    r"|-preview(?:-[\d-]+)?"  # gemini-2.5-flash-preview-05-20, gpt-4-turbo-preview
    r"|-exp(?:-[\d-]+)?"
    r"|-\d{3,4}"  # gemini-1.5-pro-002, gpt-3.5-turbo-0125
    r"|-0"  # Anthropic's claude-sonnet-4-0 alias
    r")$"
)
_MEMO_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens; ``None`` rates fall back to ``input``."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None


def _price(data: Mapping[str, Any], where: str) -> ModelPrice:
    if not isinstance(data, Mapping):
        raise ValueError(f"pricing.{where}: expected an object of per-million-token prices")
    unknown = set(data) - set(_FIELDS)
    if unknown:
        raise ValueError(f"pricing.{where}: unknown field {sorted(unknown)[0]!r}")
    values: dict[str, float] = {}
    for name in _FIELDS:
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"pricing.{where}.{name}: expected a number >= 0, not {value!r}")
        values[name] = float(value)
    if "input" not in values or "output" not in values:
        raise ValueError(f"pricing.{where}: 'input' and 'output' are required")
    return ModelPrice(**values)


def _usage_int(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


class PriceTable:
    """Prices by provider and model.

    >>> table = PriceTable.default()
    >>> table.price("openai", "gpt-4o-2024-08-06") == table.price("openai", "gpt-4o")
    True
    """

    def __init__(
        self,
        prices: Mapping[str, Mapping[str, ModelPrice]],
        *,
        aliases: Mapping[str, str] | None = None,
        updated: str | None = None,
    ) -> None:
        self._prices = {p: dict(models) for p, models in prices.items()}
        self._aliases = dict(aliases or {})
        #: When the shipped prices were last checked.
        self.updated = updated
        self._memo: dict[tuple[str | None, str], ModelPrice | None] = {}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> PriceTable:
        """A table from ``prices.json``'s shape (``_``-prefixed keys are metadata)."""
        prices: dict[str, dict[str, ModelPrice]] = {}
        for provider, models in data.items():
            if provider.startswith("_"):
                continue
            if not isinstance(models, Mapping):
                raise ValueError(f"pricing.{provider}: expected an object of models")
            prices[provider] = {
                model: _price(price, f"{provider}.{model}") for model, price in models.items()
            }
        aliases = data.get("_aliases")
        return cls(
            prices,
            aliases=aliases if isinstance(aliases, Mapping) else None,
            updated=data.get("_updated"),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> PriceTable:
        """Load a table from a JSON file in ``prices.json``'s shape."""
        return cls.from_data(orjson.loads(Path(path).read_bytes()))

    @staticmethod
    @functools.cache
    def default() -> PriceTable:
        """The table shipped with Traceway (loaded once)."""
        raw = resources.files("traceway.gateway").joinpath("prices.json").read_bytes()
        return PriceTable.from_data(orjson.loads(raw))

    def merged(self, overrides: Mapping[str, Any] | None) -> PriceTable:
        """A copy with ``overrides`` (settings' ``pricing``) merged over it, field by field.

        Raises :class:`ValueError` naming a malformed price.
        """
        if not overrides:
            return self
        prices = {p: dict(models) for p, models in self._prices.items()}
        for provider, models in overrides.items():
            if not isinstance(models, Mapping):
                raise ValueError(f"pricing.{provider}: expected an object of models")
            target = prices.setdefault(provider, {})
            for model, fields in models.items():
                base = target.get(model)
                if base is not None and isinstance(fields, Mapping):
                    current = {n: getattr(base, n) for n in _FIELDS if getattr(base, n) is not None}
                    fields = {**current, **fields}
                target[model] = _price(fields, f"{provider}.{model}")
        return PriceTable(prices, aliases=self._aliases, updated=self.updated)

    def price(self, provider: str | None, model: str | None) -> ModelPrice | None:
        """The price of ``model`` at ``provider`` (or at any provider when ``None``)."""
        if not model:
            return None
        memo_key = (provider, model)
        memo = self._memo
        if memo_key in memo:
            return memo[memo_key]
        found = self._resolve(provider, model)
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()  # model ids come from clients: keep the memo bounded
        memo[memo_key] = found
        return found

    def _resolve(self, provider: str | None, model: str) -> ModelPrice | None:
        if provider is None:
            tables = list(self._prices.values())
        else:
            table = self._prices.get(provider)
            if table is None:
                table = self._prices.get(self._aliases.get(provider, ""))
            tables = [table] if table is not None else []
        name = model.strip().lower()
        if name.startswith("models/"):
            name = name[len("models/") :]
        if provider and name.startswith(provider + "/"):
            name = name[len(provider) + 1 :]
        while True:
            for table in tables:
                if name in table:
                    return table[name]
            shorter = _SUFFIXES.sub("", name, count=1)
            if shorter == name or not shorter:
                break
            name = shorter
        for table in tables:
            if "*" in table:
                return table["*"]
        return None

    def cost_usd(
        self, provider: str | None, model: str | None, usage: Mapping[str, Any] | None
    ) -> float | None:
        """The cost in USD of OpenAI-format ``usage``; ``None`` if the model has no price.

        Cached prompt tokens (``prompt_tokens_details.cached_tokens``) are priced at
        the cached rate instead of the input rate, cache writes
        (``cache_write_tokens``) at the write rate; Responses-API usage
        (``input_tokens``, ``output_tokens``) is read too.
        """
        # ``type(...) is dict`` first: usage parsed by orjson is a dict, and the ABC
        # check costs more than the rest of this function on the hot path.
        if type(usage) is not dict and not isinstance(usage, Mapping):
            return None
        price = self.price(provider, model)
        if price is None:
            return None
        prompt = _usage_int(usage.get("prompt_tokens", usage.get("input_tokens")))
        completion = _usage_int(usage.get("completion_tokens", usage.get("output_tokens")))
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
        cached = written = 0
        if type(details) is dict or isinstance(details, Mapping):
            cached = min(_usage_int(details.get("cached_tokens")), prompt)
            written = min(_usage_int(details.get("cache_write_tokens")), prompt - cached)
        fresh = prompt - cached - written
        cached_rate = price.input if price.cached_input is None else price.cached_input
        write_rate = price.input if price.cache_write is None else price.cache_write
        total = (
            fresh * price.input
            + cached * cached_rate
            + written * write_rate
            + completion * price.output
        )
        return total * _PER_TOKEN


def cost_usd(
    provider: str | None, model: str | None, usage: Mapping[str, Any] | None
) -> float | None:
    """The cost in USD of a call, by the shipped price table.

    >>> usage = {"prompt_tokens": 1000, "completion_tokens": 500}
    >>> round(cost_usd("openai", "gpt-4o-mini", usage), 6)
    0.00045
    """
    return PriceTable.default().cost_usd(provider, model, usage)
