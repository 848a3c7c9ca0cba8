"""Route configs in Portkey's JSON shape, validated once and compiled into a plan.

A config is either a single target::

    {"provider": "openai", "api_key": "sk-...", "override_params": {"model": "gpt-4o"}}

or a strategy over nested targets::

    {"strategy": {"mode": "fallback", "on_status_codes": [429, 500]},
     "retry": {"attempts": 2},
     "targets": [{"provider": "openai"},
                 {"provider": "mock", "override_params": {"model": "echo"}}]}

Validation (pydantic) happens only when a config is first seen; the router walks
the compiled, immutable :class:`Leaf` / :class:`Group` tree.  ``retry``,
``request_timeout`` and ``override_params`` are inherited by nested targets, as
in Portkey.  Fields this gateway does not know (provider settings such as
Azure's ``deployment_id``) are kept and handed to the provider.

The top level may also turn on the response cache (``cache``, see
:mod:`traceway.gateway.cache`) and guardrails (``input_guardrails`` /
``output_guardrails`` or ``before_request_hooks`` / ``after_request_hooks``, see
:mod:`traceway.gateway.guardrails`); both are compiled here, once per config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from traceway.gateway.cache import CachePolicy
from traceway.gateway.conditions import Predicate, QueryError, compile_query
from traceway.gateway.errors import GatewayError
from traceway.gateway.guardrails import GuardrailSet
from traceway.gateway.guardrails.context import UrlGuard

__all__ = [
    "DEFAULT_RETRY_STATUS_CODES",
    "Group",
    "Leaf",
    "Node",
    "Retry",
    "Route",
    "RouteConfig",
    "compile_config",
]

#: Portkey's default ``retry.on_status_codes``.
DEFAULT_RETRY_STATUS_CODES = frozenset({429, 500, 502, 503, 504})


class RetryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=0, ge=0, le=10)
    on_status_codes: list[int] | None = None
    use_retry_after_header: bool = False


class ConditionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: dict[str, Any]
    then: str


class StrategyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["single", "fallback", "loadbalance", "conditional"]
    on_status_codes: list[int] | None = None
    conditions: list[ConditionConfig] | None = None
    default: str | None = None


class RouteConfig(BaseModel):
    """One target, or a strategy over ``targets`` (the top level of a config is one too)."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    provider: str | None = None
    api_key: str | None = None
    virtual_key: str | None = None
    custom_host: str | None = None
    override_params: dict[str, Any] | None = None
    weight: float | None = Field(default=None, ge=0)
    retry: RetryConfig | None = None
    request_timeout: int | None = Field(default=None, gt=0)
    strategy: StrategyConfig | None = None
    targets: list[RouteConfig] | None = None
    forward_headers: list[str] | None = None
    # Validated by their own modules when the config is compiled (top level only).
    cache: Any = None
    input_guardrails: Any = None
    output_guardrails: Any = None
    before_request_hooks: Any = None
    after_request_hooks: Any = None

    @model_validator(mode="after")
    def _check_shape(self) -> RouteConfig:
        if self.targets is not None and self.strategy is None:
            raise ValueError("'targets' needs a 'strategy' with a 'mode'")
        if self.strategy is not None and not self.targets:
            raise ValueError("a 'strategy' needs a non-empty 'targets' list")
        for key, value in (self.model_extra or {}).items():
            if not isinstance(value, str | int | float | bool) and value is not None:
                raise ValueError(f"unknown field {key!r} (provider settings are scalars)")
        for codes in (
            self.strategy.on_status_codes if self.strategy else None,
            self.retry.on_status_codes if self.retry else None,
        ):
            for code in codes or ():
                if not 100 <= code <= 599:
                    raise ValueError(f"{code} is not an HTTP status code")
        if self.strategy and self.strategy.mode == "conditional":
            self._check_conditions()
        if self.strategy and self.strategy.mode == "loadbalance":
            weights = [1.0 if t.weight is None else t.weight for t in self.targets or ()]
            if not any(weights):
                raise ValueError("loadbalance needs at least one target with a weight above 0")
        return self

    def _check_conditions(self) -> None:
        assert self.strategy is not None
        names = {t.name for t in self.targets or () if t.name}
        if not self.strategy.conditions:
            raise ValueError("conditional mode needs 'strategy.conditions'")
        wanted = [c.then for c in self.strategy.conditions]
        if self.strategy.default is not None:
            wanted.append(self.strategy.default)
        for name in wanted:
            if name not in names:
                raise ValueError(f"conditional target {name!r} is not the name of a target")


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int = 0
    on_status_codes: frozenset[int] = DEFAULT_RETRY_STATUS_CODES
    use_retry_after_header: bool = False


NO_RETRY = Retry()


@dataclass(frozen=True, slots=True)
class Leaf:
    """A target that sends the request to one provider."""

    path: str  # Portkey's option index, e.g. ``config.targets[1]``
    provider: str | None = None
    api_key: str | None = None
    virtual_key: str | None = None
    custom_host: str | None = None
    override_params: Mapping[str, Any] | None = None
    retry: Retry = NO_RETRY
    timeout_ms: int | None = None
    provider_options: Mapping[str, Any] = field(default_factory=dict)
    forward_headers: tuple[str, ...] = ()
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Group:
    """A strategy over targets."""

    path: str
    mode: str
    targets: tuple[Node, ...]
    on_status_codes: frozenset[int] | None = None
    weights: tuple[float, ...] = ()
    conditions: tuple[tuple[Predicate, int], ...] = ()
    default: int | None = None
    name: str | None = None


Node = Leaf | Group


@dataclass(frozen=True, slots=True)
class Route:
    """A compiled config: the plan plus what the request path asks about it."""

    root: Node
    source: str  # "default", "provider-header", "inline", "config:<id>"
    trusted: bool  # written by the operator: custom hosts skip the SSRF check
    provides_model: bool  # some target sets ``override_params.model``
    cache: CachePolicy | None = None  # the top level's ``cache``; None: no caching
    guardrails: GuardrailSet | None = None  # None: the config declares none

    @property
    def strategy(self) -> str:
        return self.root.mode if isinstance(self.root, Group) else "single"


@dataclass(frozen=True, slots=True)
class _Inherited:
    retry: Retry = NO_RETRY
    timeout_ms: int | None = None
    override_params: Mapping[str, Any] | None = None
    forward_headers: tuple[str, ...] = ()


def _inherit(cfg: RouteConfig, parent: _Inherited) -> _Inherited:
    retry = parent.retry
    if cfg.retry is not None:
        codes = cfg.retry.on_status_codes
        retry = Retry(
            attempts=cfg.retry.attempts,
            on_status_codes=DEFAULT_RETRY_STATUS_CODES if codes is None else frozenset(codes),
            use_retry_after_header=cfg.retry.use_retry_after_header,
        )
    overrides = parent.override_params
    if cfg.override_params:
        overrides = {**(overrides or {}), **cfg.override_params}
    return _Inherited(
        retry=retry,
        timeout_ms=cfg.request_timeout or parent.timeout_ms,
        override_params=overrides,
        forward_headers=tuple(cfg.forward_headers or parent.forward_headers),
    )


def _compile_node(cfg: RouteConfig, path: str, parent: _Inherited) -> Node:
    own = _inherit(cfg, parent)
    if cfg.strategy is None:
        return Leaf(
            path=path,
            provider=cfg.provider,
            api_key=cfg.api_key,
            virtual_key=cfg.virtual_key,
            custom_host=cfg.custom_host.rstrip("/") if cfg.custom_host else None,
            override_params=own.override_params,
            retry=own.retry,
            timeout_ms=own.timeout_ms,
            provider_options=dict(cfg.model_extra or {}),
            forward_headers=own.forward_headers,
            name=cfg.name,
        )
    targets = cfg.targets or []
    children = tuple(_compile_node(t, f"{path}.targets[{i}]", own) for i, t in enumerate(targets))
    strategy = cfg.strategy
    names = {t.name: i for i, t in enumerate(targets) if t.name}
    conditions: list[tuple[Predicate, int]] = []
    for condition in strategy.conditions or ():
        try:
            conditions.append((compile_query(condition.query), names[condition.then]))
        except QueryError as exc:
            raise GatewayError(400, f"invalid config: {exc}", param="strategy.conditions") from exc
    codes = strategy.on_status_codes
    return Group(
        path=path,
        mode=strategy.mode,
        targets=children,
        on_status_codes=None if codes is None else frozenset(codes),
        weights=tuple(1.0 if t.weight is None else t.weight for t in targets),
        conditions=tuple(conditions),
        default=names[strategy.default] if strategy.default is not None else None,
        name=cfg.name,
    )


def _provides_model(node: Node) -> bool:
    if isinstance(node, Leaf):
        return bool(node.override_params and "model" in node.override_params)
    return all(_provides_model(t) for t in node.targets)


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {message}" if loc else message)
    return "; ".join(parts)


def compile_config(
    data: Any, *, source: str, trusted: bool = False, url_guard: UrlGuard | None = None
) -> Route:
    """Validate a config (a dict in Portkey's shape) and compile it.

    Raises :class:`GatewayError` (400) with every validation problem named.
    ``url_guard`` checks the URLs of an untrusted config's guardrail webhooks (SSRF).

    >>> route = compile_config({"provider": "mock"}, source="inline")
    >>> (route.strategy, route.root.provider)
    ('single', 'mock')
    """
    if not isinstance(data, Mapping):
        raise GatewayError(400, "invalid config: a config is a JSON object", param="config")
    try:
        cfg = RouteConfig.model_validate(data)
    except ValidationError as exc:
        raise GatewayError(400, f"invalid config: {_describe(exc)}", param="config") from exc
    root = _compile_node(cfg, "config", _Inherited())
    return Route(
        root=root,
        source=source,
        trusted=trusted,
        provides_model=_provides_model(root),
        cache=CachePolicy.from_config(cfg.cache),
        guardrails=GuardrailSet.from_config(data, url_guard=None if trusted else url_guard),
    )
