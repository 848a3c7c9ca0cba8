"""The ``traceway`` command line: ``server`` (the whole product) and ``gateway``.

Every failure a person can cause (a bad store URL, a busy port, a bad config
file) is one readable line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from traceway.gateway.settings import GatewaySettings

__all__ = ["main"]


class CliError(click.ClickException):
    """A one-line error for the terminal."""

    def show(self, file: object = None) -> None:
        click.echo(f"traceway: error: {self.format_message()}", err=True)


def _bind(host: str, port: int) -> socket.socket:
    """Bind before anything else starts, so a busy port is a clear message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            message = f"port {port} on {host} is already in use (choose another with --port)"
            raise CliError(message) from exc
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def _serve(app: object, sock: socket.socket, log_level: str, workers: int = 1) -> None:
    """Serve ``app`` (an ASGI app, or with several workers an app factory's import path)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
        factory=workers > 1,
        workers=workers,
    )
    if workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])


LOG_LEVEL = click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="Log verbosity.",
)
REDIS_URL = click.option(
    "--redis-url",
    envvar="TRACEWAY_REDIS_URL",
    help="Redis for the gateway's shared cache and limit counters (redis://HOST:6379/0), "
    "unless the gateway config names one.",
)


def _policy_defaults(*, redis_url: str | None, require_keys: bool = False) -> None:
    """Hand the command line's policy options to the gateway settings (and to workers).

    They become the settings' defaults through the environment, which worker
    processes inherit; a value in the gateway config file wins.
    """
    from traceway.gateway.settings import REDIS_URL_ENV, REQUIRE_KEYS_ENV

    if redis_url:
        os.environ[REDIS_URL_ENV] = redis_url
    if require_keys:
        os.environ[REQUIRE_KEYS_ENV] = "1"


def _gateway_settings(path: str | None) -> GatewaySettings:
    from pydantic import ValidationError

    from traceway.gateway.settings import GatewaySettings

    if path is None:
        return GatewaySettings()
    try:
        return GatewaySettings.from_file(path)
    except OSError as exc:
        raise CliError(f"cannot read gateway config {path}: {exc.strerror or exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "top level"
        raise CliError(f"gateway config {path}: {where}: {first['msg']}") from exc
    except ValueError as exc:
        raise CliError(f"gateway config {path}: {exc}") from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="traceway")
def main() -> None:
    """Traceway: an OpenAI-compatible AI gateway with LLM tracing built in."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--store",
    "store_url",
    default="sqlite:///./traceway.db",
    show_default=True,
    envvar="TRACEWAY_STORE",
    help="Where traces are kept: sqlite:///PATH (embedded, WAL) or postgresql://USER@HOST/DB.",
)
@click.option(
    "--max-ingest-mb",
    default=64,
    show_default=True,
    type=click.IntRange(1, 4096),
    help="Largest OTLP request body accepted, in MiB (bigger ones get 413).",
)
@click.option(
    "--gateway-config",
    type=click.Path(dir_okay=False),
    envvar="TRACEWAY_GATEWAY_CONFIG",
    help="YAML or JSON gateway settings: named configs and the default route.",
)
@click.option("--no-gateway", is_flag=True, help="Serve no gateway (only ingest, API and UI).")
@click.option(
    "--require-keys",
    is_flag=True,
    envvar="TRACEWAY_REQUIRE_GATEWAY_KEYS",
    help="Refuse gateway requests without a gateway API key (Authorization: Bearer tw-...), "
    "unless the gateway config says require_gateway_keys: false.",
)
@REDIS_URL
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes sharing the port (ingest is CPU-bound: one per core).",
)
@click.option(
    "--demo",
    is_flag=True,
    help="On first start (no 'demo' experiment yet), send demo traffic through the mock "
    "provider so the UI has traces to show.",
)
@LOG_LEVEL
def server(
    host: str,
    port: int,
    store_url: str,
    max_ingest_mb: int,
    gateway_config: str | None,
    no_gateway: bool,
    require_keys: bool,
    redis_url: str | None,
    workers: int,
    demo: bool,
    log_level: str,
) -> None:
    """Run the Traceway server: OTLP ingest at /v1/traces, the OpenAI-compatible
    gateway at /v1, the REST API at /api and the web UI at /.

    Schema migrations are applied on start. With no gateway config, requests that
    name no provider go to the built-in mock provider.
    """
    from traceway.server.app import ServerSettings, create_app
    from traceway.store import StoreError, open_store

    _policy_defaults(redis_url=redis_url, require_keys=require_keys)
    gateway = None if no_gateway else _gateway_settings(gateway_config)
    sock = _bind(host, port)
    try:
        store = open_store(store_url)
    except StoreError as exc:
        sock.close()
        raise CliError(str(exc)) from exc
    settings = ServerSettings(
        store_url=store_url, max_ingest_bytes=max_ingest_mb * 1024 * 1024, gateway=gateway
    )
    server = create_app(store, settings)
    if demo and not no_gateway and store.get_experiment_by_name("demo") is None:
        _seed_demo_when_up(f"http://{_local(host)}:{port}")
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    click.echo(f"Traceway server on http://{host}:{port} (store: {store.url})", err=True)
    if workers > 1:
        from traceway.server.workers import WorkerSettings

        store.close()  # migrated and checked here; each worker opens its own
        WorkerSettings(
            store_url=store_url,
            max_ingest_bytes=settings.max_ingest_bytes,
            gateway_config=gateway_config,
            gateway=not no_gateway,
        ).export()
        _serve("traceway.server.workers:create_worker_app", sock, log_level, workers)
        return
    try:
        _serve(server.app, sock, log_level)
    finally:
        store.close()


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _seed_demo_when_up(url: str) -> None:
    """Run the demo against this server once it answers, off the main thread."""
    import threading
    import time

    from traceway.demo import demo_is_reachable, run_demo

    def seed() -> None:
        deadline = time.monotonic() + 60
        while not demo_is_reachable(url):
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)
        try:
            run_demo(url)
            logging.getLogger("traceway").info("demo traces are in the 'demo' experiment")
        except Exception as exc:  # a failed demo must not take the server down
            logging.getLogger("traceway").warning("demo traffic failed: %s", exc)

    threading.Thread(target=seed, name="traceway-demo", daemon=True).start()


@main.command()
@click.option(
    "--url", default="http://localhost:5000", show_default=True, help="The Traceway server."
)
def demo(url: str) -> None:
    """Send demo traffic (traced app + gateway mock provider) to a running server."""
    from traceway.demo import DEMO_EXPERIMENT, demo_is_reachable, run_demo

    if not demo_is_reachable(url):
        raise CliError(f"no Traceway server answers at {url} (start one with: traceway server)")
    trace_ids = run_demo(url)
    click.echo(f"sent {len(trace_ids)} traces to experiment '{DEMO_EXPERIMENT}': open {url}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8787, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="TRACEWAY_GATEWAY_CONFIG",
    help="YAML or JSON gateway settings: named configs and the default route.",
)
@click.option(
    "--export-to",
    envvar="TRACEWAY_EXPORT_TO",
    help="Traceway server URL to send the gateway's traces to (OTLP), e.g. http://localhost:5000.",
)
@REDIS_URL
@LOG_LEVEL
def gateway(
    host: str,
    port: int,
    config_path: str | None,
    export_to: str | None,
    redis_url: str | None,
    log_level: str,
) -> None:
    """Run the gateway alone: stateless, no database, OpenAI-compatible at /v1.

    Replicas given the same Redis (--redis-url, or redis_url in the config) share
    the response cache and the rate-limit and budget counters.
    """
    from traceway.gateway.standalone import create_standalone_app

    _policy_defaults(redis_url=redis_url)
    settings = _gateway_settings(config_path)
    try:
        app = create_standalone_app(settings, export_to=export_to)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    sock = _bind(host, port)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    target = f", traces to {export_to}" if export_to else ", tracing off"
    click.echo(f"Traceway gateway on http://{host}:{port}/v1{target}", err=True)
    _serve(app, sock, log_level)


def _register_key_commands() -> None:
    from traceway.cli_keys import keys, virtual_keys

    main.add_command(keys)
    main.add_command(virtual_keys)


_register_key_commands()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
