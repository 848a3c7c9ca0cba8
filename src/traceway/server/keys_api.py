"""REST endpoints for gateway API keys and virtual keys (an APIRouter for the REST API).

- ``POST /api/keys`` creates a gateway key and answers with its plaintext ``key``,
  the only time it is ever shown; ``GET /api/keys`` lists keys (never the key);
  ``DELETE /api/keys/{key_id}`` revokes one (kept in listings, marked revoked).
- ``POST /api/virtual-keys`` stores provider credentials under a slug;
  ``GET /api/virtual-keys`` lists them; ``DELETE /api/virtual-keys/{slug}``
  deletes one.  No answer ever contains a virtual key's ``api_key``.

Include it into the REST API app, whose error handlers turn :class:`ApiError`
into ``{"error": {"code", "message"}}``::

    api = create_api(store)
    api.include_router(create_keys_router(KeyStore.for_store(store)))

Revocations reach the gateway within its resolver's cache TTL.  These endpoints
are exactly as protected as the rest of ``/api``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field, SecretStr
from starlette.responses import Response

from traceway.gateway.keys import SecretKeyError
from traceway.server.api_errors import ApiError, json_response
from traceway.server.schemas import ErrorBody
from traceway.store.keys import (
    GatewayKey,
    KeyStore,
    KeyValidationError,
    VirtualKey,
    VirtualKeyExists,
)

__all__ = [
    "CreateGatewayKey",
    "CreateVirtualKey",
    "create_keys_router",
    "gateway_key_json",
    "virtual_key_json",
]

_ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody}, 404: {"model": ErrorBody}}
Scalar = str | int | float | bool | None


class CreateGatewayKey(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    models: list[str] | None = Field(
        default=None, description="Models the key may use (a trailing * matches a prefix)."
    )
    configs: list[str] | None = Field(default=None, description="Saved configs the key may use.")


class KeyScopes(BaseModel):
    models: list[str] | None
    configs: list[str] | None


class GatewayKeyOut(BaseModel):
    key_id: int
    name: str
    prefix: str
    scopes: KeyScopes
    created_at_ms: int
    last_used_at_ms: int | None
    revoked: bool
    revoked_at_ms: int | None


class CreatedGatewayKeyOut(GatewayKeyOut):
    key: str = Field(description="The key itself: shown this once, store it now.")


class GatewayKeyList(BaseModel):
    keys: list[GatewayKeyOut]


class CreateVirtualKey(BaseModel):
    slug: str | None = Field(default=None, max_length=100, description="Defaults to the name.")
    name: str | None = Field(default=None, max_length=256)
    provider: str = Field(min_length=1, max_length=64)
    api_key: SecretStr = Field(description="The provider's API key; stored encrypted.")
    custom_host: str | None = None
    options: dict[str, Scalar] | None = Field(
        default=None, description="Provider settings, e.g. Azure's deployment_id."
    )


class VirtualKeyOut(BaseModel):
    slug: str
    name: str
    provider: str
    custom_host: str | None
    options: dict[str, Scalar]
    created_at_ms: int


class VirtualKeyList(BaseModel):
    virtual_keys: list[VirtualKeyOut]


def gateway_key_json(key: GatewayKey) -> dict[str, Any]:
    """A gateway key as the API shows it."""
    return {
        "key_id": key.key_id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": {"models": key.models, "configs": key.configs},
        "created_at_ms": key.created_at_ms,
        "last_used_at_ms": key.last_used_at_ms,
        "revoked": key.revoked,
        "revoked_at_ms": key.revoked_at_ms,
    }


def virtual_key_json(key: VirtualKey) -> dict[str, Any]:
    """A virtual key as the API shows it: there is no field for its secret."""
    return {
        "slug": key.slug,
        "name": key.name,
        "provider": key.provider,
        "custom_host": key.custom_host,
        "options": key.options,
        "created_at_ms": key.created_at_ms,
    }


def _slug_from(body: CreateVirtualKey) -> str:
    if body.slug:
        return body.slug
    if body.name:
        return "-".join(body.name.lower().split())
    raise ApiError(400, "INVALID_REQUEST", "a virtual key needs a slug or a name")


def create_keys_router(keys: KeyStore) -> APIRouter:
    """The ``/api/keys`` and ``/api/virtual-keys`` endpoints over ``keys``."""
    router = APIRouter()

    @router.post(
        "/api/keys",
        response_model=CreatedGatewayKeyOut,
        status_code=201,
        responses=_ERRORS,
        tags=["keys"],
    )
    def create_gateway_key(body: CreateGatewayKey) -> Response:
        try:
            created = keys.create_gateway_key(body.name, models=body.models, configs=body.configs)
        except KeyValidationError as exc:
            raise ApiError(400, "INVALID_REQUEST", str(exc)) from exc
        return json_response({**gateway_key_json(created.key), "key": created.token}, 201)

    @router.get("/api/keys", response_model=GatewayKeyList, tags=["keys"])
    def list_gateway_keys() -> Response:
        return json_response({"keys": [gateway_key_json(k) for k in keys.list_gateway_keys()]})

    @router.delete(
        "/api/keys/{key_id}", response_model=GatewayKeyOut, responses=_ERRORS, tags=["keys"]
    )
    def revoke_gateway_key(key_id: Annotated[int, Path(ge=1)]) -> Response:
        revoked = keys.revoke_gateway_key(key_id)
        if revoked is None:
            raise ApiError(404, "KEY_NOT_FOUND", f"no gateway key with id {key_id}")
        return json_response(gateway_key_json(revoked))

    @router.post(
        "/api/virtual-keys",
        response_model=VirtualKeyOut,
        status_code=201,
        responses={**_ERRORS, 409: {"model": ErrorBody}, 503: {"model": ErrorBody}},
        tags=["keys"],
    )
    def create_virtual_key(body: CreateVirtualKey) -> Response:
        try:
            created = keys.create_virtual_key(
                _slug_from(body),
                provider=body.provider,
                api_key=body.api_key.get_secret_value(),
                name=body.name,
                custom_host=body.custom_host,
                options=body.options,
            )
        except KeyValidationError as exc:
            raise ApiError(400, "INVALID_REQUEST", str(exc)) from exc
        except VirtualKeyExists as exc:
            raise ApiError(409, "VIRTUAL_KEY_EXISTS", str(exc)) from exc
        except SecretKeyError as exc:
            raise ApiError(503, "SECRET_KEY_MISSING", str(exc)) from exc
        return json_response(virtual_key_json(created), 201)

    @router.get("/api/virtual-keys", response_model=VirtualKeyList, tags=["keys"])
    def list_virtual_keys() -> Response:
        return json_response(
            {"virtual_keys": [virtual_key_json(k) for k in keys.list_virtual_keys()]}
        )

    @router.delete("/api/virtual-keys/{slug}", status_code=204, responses=_ERRORS, tags=["keys"])
    def delete_virtual_key(slug: str) -> Response:
        if not keys.delete_virtual_key(slug):
            raise ApiError(404, "VIRTUAL_KEY_NOT_FOUND", f"no virtual key with slug {slug!r}")
        return Response(status_code=204)

    return router
