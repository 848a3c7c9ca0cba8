"""Configs in Portkey's shape: validation messages and the compiled plan."""

from __future__ import annotations

from typing import Any

import pytest

from traceway.gateway.cache import CachePolicy
from traceway.gateway.config import (
    DEFAULT_RETRY_STATUS_CODES,
    Group,
    Leaf,
    Retry,
    compile_config,
)
from traceway.gateway.errors import GatewayError


def invalid(config: Any) -> str:
    with pytest.raises(GatewayError) as raised:
        compile_config(config, source="inline")
    assert raised.value.status == 400
    return raised.value.message


def test_single_target_compiles_to_a_leaf() -> None:
    route = compile_config(
        {
            "provider": "azure-openai",
            "api_key": "k",
            "custom_host": "https://corp.example/",
            "deployment_id": "gpt4",
            "override_params": {"model": "gpt-4o"},
            "request_timeout": 3000,
        },
        source="inline",
    )
    assert route.strategy == "single"
    assert route.provides_model
    assert route.root == Leaf(
        path="config",
        provider="azure-openai",
        api_key="k",
        custom_host="https://corp.example",
        override_params={"model": "gpt-4o"},
        timeout_ms=3000,
        provider_options={"deployment_id": "gpt4"},
    )


def test_nested_targets_inherit_retry_timeout_and_override_params() -> None:
    route = compile_config(
        {
            "strategy": {"mode": "fallback", "on_status_codes": [429, 503]},
            "retry": {"attempts": 2, "on_status_codes": [429]},
            "request_timeout": 1000,
            "override_params": {"temperature": 0},
            "targets": [
                {"provider": "openai", "override_params": {"model": "gpt-4o"}},
                {
                    "strategy": {"mode": "loadbalance"},
                    "retry": {"attempts": 1},
                    "targets": [
                        {"provider": "mock", "weight": 0.25, "request_timeout": 50},
                        {"provider": "mock"},
                    ],
                },
            ],
        },
        source="inline",
    )
    inherited = Retry(attempts=2, on_status_codes=frozenset({429}))
    own = Retry(attempts=1, on_status_codes=DEFAULT_RETRY_STATUS_CODES)
    assert route.strategy == "fallback"
    assert not route.provides_model
    root = route.root
    assert isinstance(root, Group)
    assert root.on_status_codes == frozenset({429, 503})
    first, nested = root.targets
    assert first == Leaf(
        path="config.targets[0]",
        provider="openai",
        override_params={"temperature": 0, "model": "gpt-4o"},
        retry=inherited,
        timeout_ms=1000,
    )
    assert isinstance(nested, Group)
    assert (nested.path, nested.mode, nested.weights) == (
        "config.targets[1]",
        "loadbalance",
        (0.25, 1.0),
    )
    assert nested.targets == (
        Leaf(
            path="config.targets[1].targets[0]",
            provider="mock",
            override_params={"temperature": 0},
            retry=own,
            timeout_ms=50,
        ),
        Leaf(
            path="config.targets[1].targets[1]",
            provider="mock",
            override_params={"temperature": 0},
            retry=own,
            timeout_ms=1000,
        ),
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([], "invalid config: a config is a JSON object"),
        (
            {"strategy": {"mode": "roundrobin"}, "targets": [{"provider": "a"}]},
            "invalid config: strategy.mode: Input should be 'single', 'fallback', "
            "'loadbalance' or 'conditional'",
        ),
        (
            {"targets": [{"provider": "a"}]},
            "invalid config: 'targets' needs a 'strategy' with a 'mode'",
        ),
        (
            {"strategy": {"mode": "fallback"}, "targets": []},
            "invalid config: a 'strategy' needs a non-empty 'targets' list",
        ),
        (
            {"provider": "a", "retry": {"attempts": 99}},
            "invalid config: retry.attempts: Input should be less than or equal to 10",
        ),
        (
            {"provider": "a", "retry": {"attempts": 1, "on_status_codes": [700]}},
            "invalid config: 700 is not an HTTP status code",
        ),
        (
            {"provider": "a", "request_timeout": -5},
            "invalid config: request_timeout: Input should be greater than 0",
        ),
        (
            {"provider": "a", "retries": {"attempts": 1}},
            "invalid config: unknown field 'retries' (provider settings are scalars)",
        ),
        (
            {
                "strategy": {"mode": "loadbalance"},
                "targets": [{"provider": "a", "weight": 0}],
            },
            "invalid config: loadbalance needs at least one target with a weight above 0",
        ),
        (
            {
                "strategy": {
                    "mode": "conditional",
                    "conditions": [{"query": {"metadata.x": "1"}, "then": "missing"}],
                },
                "targets": [{"name": "t", "provider": "a"}],
            },
            "invalid config: conditional target 'missing' is not the name of a target",
        ),
        (
            {
                "strategy": {
                    "mode": "conditional",
                    "conditions": [{"query": {"user.x": "1"}, "then": "t"}],
                },
                "targets": [{"name": "t", "provider": "a"}],
            },
            "invalid config: query paths start with 'metadata.' or 'params.': 'user.x'",
        ),
    ],
)
def test_invalid_configs_name_the_problem(config: Any, message: str) -> None:
    assert invalid(config) == message


def test_extra_portkey_fields_are_accepted() -> None:
    route = compile_config(
        {
            "provider": "openai",
            "cache": {"mode": "simple"},
            "input_guardrails": [{"default.pii": {"redact": True}}],
            "virtual_key": "vk-1",
        },
        source="inline",
    )
    assert isinstance(route.root, Leaf)
    assert route.root.virtual_key == "vk-1"
    assert route.root.provider_options == {}
    # The cache and guardrails are compiled with the route.
    assert route.cache == CachePolicy(mode="simple")
    assert route.guardrails is not None
    assert [hook.id for hook in route.guardrails.before] == ["input_guardrail_0"]


def test_cache_and_guardrail_mistakes_are_config_errors() -> None:
    with pytest.raises(GatewayError, match="invalid config: cache: mode must be"):
        compile_config({"provider": "mock", "cache": {"mode": "fuzzy"}}, source="inline")
    with pytest.raises(GatewayError, match="saved guardrail 'pii'"):
        compile_config({"provider": "mock", "input_guardrails": ["pii"]}, source="inline")
