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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ALLOWED_HOSTS_ENV", "BreakerSettings", "GatewaySettings"]

#: Comma-separated hostnames or IPs that custom hosts may point at despite the SSRF rules.
ALLOWED_HOSTS_ENV = "TRACEWAY_ALLOWED_CUSTOM_HOSTS"


def _allowed_hosts_from_env() -> list[str]:
    raw = os.environ.get(ALLOWED_HOSTS_ENV, "")
    return [h.strip() for h in raw.split(",") if h.strip()]


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

    @model_validator(mode="after")
    def _check_default_route(self) -> GatewaySettings:
        if isinstance(self.default_route, str) and self.default_route not in self.configs:
            raise ValueError(f"default_route {self.default_route!r} is not one of 'configs'")
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
