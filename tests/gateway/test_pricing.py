"""Prices and the cost of calls."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from traceway.gateway.pricing import ModelPrice, PriceTable, cost_usd

PRICES_FILE = Path(__file__).resolve().parents[2] / "src/traceway/gateway/prices.json"


def test_price_file_is_dated_sourced_and_complete() -> None:
    data = orjson.loads(PRICES_FILE.read_bytes())
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", data["_updated"])
    assert "pricing" in data["_note"]
    table = PriceTable.default()
    assert table.updated == data["_updated"]
    wanted = {
        "openai": ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1",
                   "o3", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano",
                   "text-embedding-3-small", "text-embedding-3-large"],
        "anthropic": ["claude-3-5-haiku", "claude-3-5-sonnet", "claude-3-7-sonnet",
                      "claude-sonnet-4", "claude-opus-4", "claude-3-haiku"],
        "google": ["gemini-1.5-flash", "gemini-1.5-pro", "gemini-2.0-flash", "gemini-2.5-flash",
                   "gemini-2.5-pro"],
        "mock": ["echo", "anything"],
    }  # fmt: skip
    missing = [
        f"{provider}/{model}"
        for provider, models in wanted.items()
        for model in models
        if table.price(provider, model) is None
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("provider", "model", "family"),
    [
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "gpt-4.1-2025-04-14", "gpt-4.1"),
        ("openai", "gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("openai", "gpt-4-turbo-preview", "gpt-4-turbo"),
        ("openai", "gpt-5-chat-latest", "gpt-5-chat"),
        ("azure-openai", "gpt-4o", "gpt-4o"),
        ("anthropic", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("anthropic", "claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("anthropic", "claude-opus-4-0", "claude-opus-4"),
        ("google", "gemini-1.5-pro-002", "gemini-1.5-pro"),
        ("google", "models/gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("google", "gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
    ],
)
def test_dated_and_versioned_ids_resolve_to_their_family(
    provider: str, model: str, family: str
) -> None:
    table = PriceTable.default()
    price = table.price(provider, model)
    assert price is not None and price == table.price(provider.removeprefix("azure-"), family)


def test_a_dated_id_with_its_own_price_keeps_it() -> None:
    table = PriceTable.default()
    assert table.price("openai", "gpt-4o-2024-05-13") == ModelPrice(input=5.0, output=15.0)
    assert table.price("openai", "gpt-4o") != table.price("openai", "gpt-4o-2024-05-13")


def test_unknown_models_and_providers_have_no_price() -> None:
    assert [
        cost_usd("openai", "my-finetune", {"prompt_tokens": 10}),
        cost_usd("vllm", "llama-3-8b", {"prompt_tokens": 10}),
        cost_usd("openai", None, {"prompt_tokens": 10}),
        cost_usd("openai", "gpt-4o", None),
    ] == [None, None, None, None]


def test_cost_of_plain_usage() -> None:
    # gpt-4o: $2.50 in, $10.00 out per million tokens.
    usage = {"prompt_tokens": 1_000, "completion_tokens": 200, "total_tokens": 1_200}
    assert cost_usd("openai", "gpt-4o-2024-08-06", usage) == pytest.approx(0.0025 + 0.002)


def test_cached_tokens_are_priced_at_the_cached_rate_once() -> None:
    # 1,000 prompt tokens of which 800 cached: 200 x $2.50 + 800 x $1.25 + 100 x $10.00.
    usage = {
        "prompt_tokens": 1_000,
        "completion_tokens": 100,
        "prompt_tokens_details": {"cached_tokens": 800},
    }
    assert cost_usd("openai", "gpt-4o", usage) == pytest.approx(
        (200 * 2.5 + 800 * 1.25 + 100 * 10.0) / 1e6
    )


def test_anthropic_cache_reads_and_writes() -> None:
    # claude-3-5-sonnet: $3 in, $0.30 cache read, $3.75 cache write, $15 out.
    usage = {
        "prompt_tokens": 1_500,  # 100 fresh + 1,000 read + 400 written
        "completion_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 1_000, "cache_write_tokens": 400},
    }
    assert cost_usd("anthropic", "claude-3-5-sonnet-20241022", usage) == pytest.approx(
        (100 * 3.0 + 1_000 * 0.3 + 400 * 3.75 + 50 * 15.0) / 1e6
    )


def test_responses_api_usage_and_embeddings() -> None:
    responses_usage = {
        "input_tokens": 2_000,
        "output_tokens": 1_000,
        "input_tokens_details": {"cached_tokens": 1_000},
        "output_tokens_details": {"reasoning_tokens": 600},  # already in output_tokens
    }
    assert {
        "o4-mini": cost_usd("openai", "o4-mini", responses_usage),
        "embedding": cost_usd(
            "openai", "text-embedding-3-small", {"prompt_tokens": 1_000_000, "total_tokens": 1}
        ),
        "mock": cost_usd("mock", "echo", {"prompt_tokens": 5, "completion_tokens": 5}),
    } == {
        "o4-mini": pytest.approx((1_000 * 1.1 + 1_000 * 0.275 + 1_000 * 4.4) / 1e6),
        "embedding": pytest.approx(0.02),
        "mock": 0.0,
    }


def test_cached_tokens_beyond_the_prompt_are_not_trusted() -> None:
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 99},
    }
    assert cost_usd("openai", "gpt-4o", usage) == pytest.approx(10 * 1.25 / 1e6)


def test_settings_override_and_extend_the_table() -> None:
    table = PriceTable.default().merged(
        {
            "openai": {"gpt-4o": {"input": 2.0}, "my-finetune": {"input": 3, "output": 12}},
            "vllm": {"*": {"input": 0, "output": 0}},
        }
    )
    assert {
        "gpt-4o": table.price("openai", "gpt-4o-2024-11-20"),
        "finetune": table.price("openai", "my-finetune"),
        "vllm": table.cost_usd("vllm", "llama-3-8b", {"prompt_tokens": 9, "completion_tokens": 9}),
        "shipped table untouched": PriceTable.default().price("openai", "gpt-4o"),
    } == {
        "gpt-4o": ModelPrice(input=2.0, output=10.0, cached_input=1.25),
        "finetune": ModelPrice(input=3.0, output=12.0),
        "vllm": 0.0,
        "shipped table untouched": ModelPrice(input=2.5, output=10.0, cached_input=1.25),
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"openai": {"x": {"input": -1, "output": 1}}},
            "pricing.openai.x.input: expected a number >= 0",
        ),
        ({"openai": {"x": {"input": 1}}}, "pricing.openai.x: 'input' and 'output' are required"),
        ({"openai": {"x": {"input": 1, "output": 1, "cahced": 1}}}, "unknown field 'cahced'"),
        ({"openai": ["gpt-4o"]}, "pricing.openai: expected an object of models"),
    ],
)
def test_bad_overrides_are_named(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        PriceTable.default().merged(overrides)
