"""``traceway keys`` and ``traceway virtual-keys`` as a person runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from traceway.cli_keys import cli
from traceway.store import open_store
from traceway.store.keys import KeyStore

SECRET = "a-test-secret-of-more-than-32-characters"
PROVIDER_KEY = "sk-very-secret-provider-key-0123456789"


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'traceway.db'}"
    monkeypatch.setenv("TRACEWAY_STORE", url)
    monkeypatch.setenv("TRACEWAY_SECRET_KEY", SECRET)
    return url


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_create_prints_the_key_alone_on_stdout(store_url: str) -> None:
    result = run("keys", "create", "--name", "ci", "--models", "gpt-4o, gpt-4o-mini")
    assert result.exit_code == 0
    token = result.stdout.strip()
    assert result.stdout == f"{token}\n"
    assert result.stderr == (
        f"created gateway key 1 'ci' ({token[:9]}..., models: gpt-4o,gpt-4o-mini, "
        "configs: any); copy it now, it is not shown again:\n"
    )
    store = open_store(store_url)
    try:
        verified = KeyStore.for_store(store).verify_gateway_key(token)
    finally:
        store.close()
    assert verified is not None and verified.models == ["gpt-4o", "gpt-4o-mini"]


def test_list_and_revoke(store_url: str) -> None:
    assert run("keys", "list").stderr == (
        "no gateway keys (create one with: traceway keys create --name NAME)\n"
    )
    token = run("keys", "create", "--name", "ci", "--configs", "prod").stdout.strip()
    run("keys", "create", "--name", "batch")

    listed = run("keys", "list", "--json")
    rows = orjson.loads(listed.stdout)
    created = [row.pop("created_at_ms") for row in rows]
    assert all(isinstance(ms, int) for ms in created)
    assert rows == [
        {
            "key_id": 1,
            "name": "ci",
            "prefix": token[:9],
            "scopes": {"models": None, "configs": ["prod"]},
            "last_used_at_ms": None,
            "revoked": False,
            "revoked_at_ms": None,
        },
        {
            "key_id": 2,
            "name": "batch",
            "prefix": rows[1]["prefix"],
            "scopes": {"models": None, "configs": None},
            "last_used_at_ms": None,
            "revoked": False,
            "revoked_at_ms": None,
        },
    ]
    assert token not in listed.stdout

    revoked = run("keys", "revoke", "1")
    assert (revoked.exit_code, revoked.stdout) == (
        0,
        f"revoked gateway key 1 'ci' ({token[:9]}...)\n",
    )
    table = run("keys", "list").stdout.splitlines()
    assert table[0].split() == [
        "ID", "NAME", "PREFIX", "MODELS", "CONFIGS", "CREATED", "LAST", "USED", "STATUS"
    ]  # fmt: skip
    assert [(line.split()[0], line.split()[-1]) for line in table[1:]] == [
        ("1", "revoked"),
        ("2", "active"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "revoke", "9"), "no gateway key with id 9 (see: traceway keys list)"),
        (
            ("keys", "create", "--name", "ci", "--models", ","),
            "models must name at least one (leave it out to allow all)",
        ),
        (
            ("virtual-keys", "delete", "nope"),
            "no virtual key with slug 'nope' (see: traceway virtual-keys list)",
        ),
        (
            ("keys", "list", "--store", "mysql://nope"),
            "unsupported store URL scheme 'mysql'; use sqlite:///PATH or postgresql://USER@HOST/DB",
        ),
    ],
)
def test_failures_are_one_line(store_url: str, args: tuple[str, ...], message: str) -> None:
    result = run(*args)
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        f"traceway: error: {message}\n",
    )


def test_virtual_keys_create_list_delete(store_url: str) -> None:
    created = run(
        "virtual-keys",
        "create",
        "--slug",
        "vllm-local",
        "--provider",
        "vllm",
        "--custom-host",
        "http://vllm.internal:8000/v1",
        "--option",
        "api_version=2024-10-21",
        input=f"{PROVIDER_KEY}\n",
    )
    assert (created.exit_code, created.stdout) == (
        0,
        "created virtual key 'vllm-local' for vllm at http://vllm.internal:8000/v1\n",
    )
    listed = run("virtual-keys", "list", "--json")
    rows = orjson.loads(listed.stdout)
    assert [row.pop("created_at_ms") > 0 for row in rows] == [True]
    assert rows == [
        {
            "slug": "vllm-local",
            "name": "vllm-local",
            "provider": "vllm",
            "custom_host": "http://vllm.internal:8000/v1",
            "options": {"api_version": "2024-10-21"},
        }
    ]
    table = run("virtual-keys", "list")
    assert table.stdout.splitlines()[1].split()[:4] == [
        "vllm-local",
        "vllm-local",
        "vllm",
        "http://vllm.internal:8000/v1",
    ]
    store = open_store(store_url)
    try:
        credentials = KeyStore.for_store(store).virtual_key_credentials("vllm-local")
    finally:
        store.close()
    assert credentials is not None and credentials.api_key == PROVIDER_KEY

    deleted = run("virtual-keys", "delete", "vllm-local")
    assert (deleted.exit_code, deleted.stdout) == (0, "deleted virtual key 'vllm-local'\n")
    for result in (created, listed, table, deleted):
        assert PROVIDER_KEY not in result.output


def test_virtual_keys_need_the_secret_key(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACEWAY_SECRET_KEY")
    result = run(
        "virtual-keys", "create", "--slug", "s", "--provider", "openai", "--api-key", "sk-1"
    )
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "traceway: error: TRACEWAY_SECRET_KEY is not set; virtual keys are encrypted with it "
        "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')\n"
    )


def test_bad_option_is_a_usage_error(store_url: str) -> None:
    result = run("virtual-keys", "create", "--slug", "s", "--provider", "p", "--option", "novalue")
    assert result.exit_code == 2
    assert "'novalue' is not NAME=VALUE" in result.stderr


def test_the_module_runs_as_a_command(store_url: str) -> None:
    env = {**os.environ, "TRACEWAY_STORE": store_url}
    command = [sys.executable, "-m", "traceway.cli_keys"]
    created = subprocess.run(
        [*command, "keys", "create", "--name", "ci"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("tw-") and len(token) == 46
    virtual = subprocess.run(
        [*command, "virtual-keys", "create", "--slug", "s", "--provider", "openai"],
        input=f"{PROVIDER_KEY}\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert (virtual.returncode, virtual.stdout, virtual.stderr) == (
        0,
        "created virtual key 's' for openai\n",
        "",
    )
