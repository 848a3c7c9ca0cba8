"""``traceway keys`` and ``traceway virtual-keys``: manage keys straight in the store.

::

    traceway keys create --name ci --models gpt-4o-mini,gpt-4o   # prints the key once
    traceway keys list
    traceway keys revoke 3
    traceway virtual-keys create --slug openai-prod --provider openai   # prompts for the key
    traceway virtual-keys list
    traceway virtual-keys delete openai-prod

Each command opens the store named by ``--store`` / ``TRACEWAY_STORE`` (the one
the server uses), so it works with or without a running server; a running
server's gateway sees changes within its key cache TTL.  Register the groups with
``main.add_command(keys)`` and ``main.add_command(virtual_keys)``; ``python -m
traceway.cli_keys`` runs them on their own.
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
import orjson

if TYPE_CHECKING:
    from traceway.store.keys import KeyStore

__all__ = ["cli", "keys", "virtual_keys"]

DEFAULT_STORE = "sqlite:///./traceway.db"

STORE = click.option(
    "--store",
    "store_url",
    default=DEFAULT_STORE,
    show_default=True,
    envvar="TRACEWAY_STORE",
    help="The server's store: sqlite:///PATH or postgresql://USER@HOST/DB.",
)
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


class KeysCliError(click.ClickException):
    """A one-line error for the terminal, in the ``traceway`` command's format."""

    def show(self, file: Any = None) -> None:
        click.echo(f"traceway: error: {self.format_message()}", err=True)


@contextmanager
def _key_store(store_url: str, **options: Any) -> Iterator[KeyStore]:
    """The store's keys; every store or key error becomes one line."""
    from traceway.gateway.keys import KeysError
    from traceway.store import StoreError, open_store
    from traceway.store.keys import KeyStore

    try:
        store = open_store(store_url)
    except StoreError as exc:
        raise KeysCliError(str(exc)) from exc
    try:
        yield KeyStore.for_store(store, **options)
    except (StoreError, KeysError) as exc:
        raise KeysCliError(str(exc)) from exc
    finally:
        store.close()


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in (headers, *rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _scope_text(names: list[str] | None) -> str:
    return "any" if names is None else ",".join(names)


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _read_secret(prompt: str) -> str:
    """A secret from the terminal (not echoed) or, when piped, the first line of stdin."""
    if sys.stdin.isatty():
        return str(click.prompt(prompt, hide_input=True, err=True))
    return sys.stdin.readline().strip()


def _echo_json(payload: Any) -> None:
    click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def keys() -> None:
    """Gateway API keys: what clients send as 'Authorization: Bearer tw-...'."""


@keys.command("create")
@click.option("--name", required=True, help="What the key is for, e.g. the app using it.")
@click.option("--models", help="Comma-separated models it may use (a trailing * matches a prefix).")
@click.option("--configs", help="Comma-separated saved configs it may use.")
@STORE
def create_key(name: str, models: str | None, configs: str | None, store_url: str) -> None:
    """Create a key; it is printed once, on stdout, and cannot be shown again."""
    with _key_store(store_url) as store:
        created = store.create_gateway_key(name, models=_names(models), configs=_names(configs))
    key = created.key
    click.echo(
        f"created gateway key {key.key_id} {key.name!r} ({key.prefix}..., models: "
        f"{_scope_text(key.models)}, configs: {_scope_text(key.configs)}); "
        "copy it now, it is not shown again:",
        err=True,
    )
    click.echo(created.token)


@keys.command("list")
@STORE
@AS_JSON
def list_keys(store_url: str, as_json: bool) -> None:
    """List gateway keys (never the keys themselves)."""
    from traceway.server.keys_api import gateway_key_json

    with _key_store(store_url) as store:
        found = store.list_gateway_keys()
    if as_json:
        _echo_json([gateway_key_json(k) for k in found])
        return
    if not found:
        click.echo("no gateway keys (create one with: traceway keys create --name NAME)", err=True)
        return
    rows = [
        [
            str(k.key_id),
            k.name,
            f"{k.prefix}...",
            _scope_text(k.models),
            _scope_text(k.configs),
            _time(k.created_at_ms),
            _time(k.last_used_at_ms),
            "revoked" if k.revoked else "active",
        ]
        for k in found
    ]
    _table(("ID", "NAME", "PREFIX", "MODELS", "CONFIGS", "CREATED", "LAST USED", "STATUS"), rows)


@keys.command("revoke")
@click.argument("key_id", type=click.IntRange(min=1))
@STORE
def revoke_key(key_id: int, store_url: str) -> None:
    """Revoke the key with this ID: requests using it get 401."""
    with _key_store(store_url) as store:
        revoked = store.revoke_gateway_key(key_id)
    if revoked is None:
        raise KeysCliError(f"no gateway key with id {key_id} (see: traceway keys list)")
    click.echo(f"revoked gateway key {revoked.key_id} {revoked.name!r} ({revoked.prefix}...)")


@click.group("virtual-keys", context_settings={"help_option_names": ["-h", "--help"]})
def virtual_keys() -> None:
    """Virtual keys: provider credentials kept encrypted in the store, used by slug."""


def _options(_ctx: click.Context, _param: click.Parameter, values: Sequence[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE")
        options[name.strip()] = value
    return options


@virtual_keys.command("create")
@click.option("--slug", required=True, help="How requests name it (x-traceway-virtual-key).")
@click.option("--provider", required=True, help="Provider name, e.g. openai, anthropic.")
@click.option("--name", help="A display name (defaults to the slug).")
@click.option("--custom-host", help="Base URL of the provider's API, e.g. http://vllm:8000/v1.")
@click.option(
    "--option",
    "options",
    multiple=True,
    callback=_options,
    help="Provider setting NAME=VALUE, e.g. api_version=2024-10-21 (repeatable).",
)
@click.option(
    "--api-key",
    help="The provider's key; prompted for (or read from stdin) when not given, which "
    "keeps it out of shell history.",
)
@STORE
def create_virtual_key(
    slug: str,
    provider: str,
    name: str | None,
    custom_host: str | None,
    options: dict[str, str],
    api_key: str | None,
    store_url: str,
) -> None:
    """Store a provider's credentials, encrypted with TRACEWAY_SECRET_KEY."""
    from traceway.gateway.keys import SecretBox, SecretKeyError

    try:
        box = SecretBox.from_env()  # before opening the store: fail fast, change nothing
    except SecretKeyError as exc:
        raise KeysCliError(str(exc)) from exc
    if api_key is None:
        api_key = _read_secret("Provider API key")
    with _key_store(store_url, secret_box=box) as store:
        created = store.create_virtual_key(
            slug,
            provider=provider,
            api_key=api_key,
            name=name,
            custom_host=custom_host,
            options=options,
        )
    host = f" at {created.custom_host}" if created.custom_host else ""
    click.echo(f"created virtual key {created.slug!r} for {created.provider}{host}")


@virtual_keys.command("list")
@STORE
@AS_JSON
def list_virtual_keys(store_url: str, as_json: bool) -> None:
    """List virtual keys (never their secrets)."""
    from traceway.server.keys_api import virtual_key_json

    with _key_store(store_url) as store:
        found = store.list_virtual_keys()
    if as_json:
        _echo_json([virtual_key_json(k) for k in found])
        return
    if not found:
        click.echo("no virtual keys (create one with: traceway virtual-keys create)", err=True)
        return
    rows = [
        [k.slug, k.name, k.provider, k.custom_host or "-", _time(k.created_at_ms)] for k in found
    ]
    _table(("SLUG", "NAME", "PROVIDER", "CUSTOM HOST", "CREATED"), rows)


@virtual_keys.command("delete")
@click.argument("slug")
@STORE
def delete_virtual_key(slug: str, store_url: str) -> None:
    """Delete a virtual key and its stored secret."""
    with _key_store(store_url) as store:
        deleted = store.delete_virtual_key(slug)
    if not deleted:
        raise KeysCliError(f"no virtual key with slug {slug!r} (see: traceway virtual-keys list)")
    click.echo(f"deleted virtual key {slug!r}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Traceway keys: gateway API keys and virtual keys."""


cli.add_command(keys)
cli.add_command(virtual_keys)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli())
