"""SSRF protection for custom hosts, with an injected resolver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from tests.gateway.conftest import RunningGateway, settings
from traceway.gateway.errors import GatewayError
from traceway.gateway.ssrf import HostGuard, is_forbidden_address


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("127.0.0.1", True),
        ("::1", True),
        ("169.254.169.254", True),
        ("169.254.10.1", True),
        ("fe80::1%eth0", True),
        ("fd00:ec2::254", True),
        ("fc00::1", True),
        ("224.0.0.1", True),
        ("ff02::1", True),
        ("0.0.0.0", True),
        ("::", True),
        ("::ffff:127.0.0.1", True),
        ("not an ip", True),
    ],
)
def test_forbidden_addresses(address: str, forbidden: bool) -> None:
    assert is_forbidden_address(address) is forbidden


def check(guard: HostGuard, url: str) -> str | None:
    try:
        asyncio.run(guard.check(url))
    except GatewayError as exc:
        assert exc.status == 400
        return exc.message
    return None


def resolver(table: dict[str, list[str]]) -> Callable[[str], object]:
    async def resolve(host: str) -> list[str]:
        if host not in table:
            raise OSError("no such host")
        return table[host]

    return resolve


def test_public_hosts_pass_and_private_ones_are_refused() -> None:
    guard = HostGuard(
        resolver=resolver(  # type: ignore[arg-type]
            {
                "api.example.com": ["93.184.216.34"],
                "intranet.corp": ["10.0.0.8"],
                "sneaky.example": ["93.184.216.34", "127.0.0.1"],
            }
        )
    )
    assert check(guard, "https://api.example.com/v1") is None
    assert check(guard, "http://intranet.corp:8000") == (
        "custom host 'intranet.corp' is refused: it resolves to the non-public address "
        "10.0.0.8. To allow it, add it to TRACEWAY_ALLOWED_CUSTOM_HOSTS."
    )
    assert "127.0.0.1" in (check(guard, "http://sneaky.example") or "")
    assert "does not resolve" in (check(guard, "http://nowhere.example") or "")
    assert "cloud metadata endpoint" in (check(guard, "http://metadata.google.internal") or "")
    assert "169.254.169.254" in (check(guard, "http://169.254.169.254/latest") or "")
    assert "must be an http(s) URL" in (check(guard, "file:///etc/passwd") or "")
    assert "must be an http(s) URL" in (check(guard, "not a url") or "")


def test_the_allow_list_admits_hostnames_and_addresses() -> None:
    guard = HostGuard(
        ["vllm.internal", "127.0.0.1"],
        resolver=resolver({"llm.internal": ["127.0.0.1"]}),  # type: ignore[arg-type]
    )
    assert check(guard, "http://vllm.internal:8000/v1") is None
    assert check(guard, "http://127.0.0.1:8000") is None
    assert check(guard, "http://llm.internal") is None  # resolves to an allowed address
    assert check(guard, "http://[::1]:8000") is not None


def test_verdicts_are_cached() -> None:
    calls: list[str] = []

    async def resolve(host: str) -> list[str]:
        calls.append(host)
        return ["93.184.216.34"]

    guard = HostGuard(resolver=resolve)

    async def twice() -> None:
        await guard.check("https://api.example.com")
        await guard.check("https://api.example.com/other")

    asyncio.run(twice())
    assert calls == ["api.example.com"]


def test_the_gateway_refuses_a_loopback_custom_host_unless_allowed(
    start_gateway: Callable[..., RunningGateway],
) -> None:
    strict = start_gateway(settings(allowed_custom_hosts=[]))
    with httpx.Client(base_url=strict.base_url) as http:
        response = http.post(
            "/chat/completions",
            headers={
                "x-portkey-provider": "openai",
                "x-portkey-custom-host": "http://127.0.0.1:9/v1",
            },
            json={"model": "gpt-4o", "messages": []},
        )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "custom host '127.0.0.1' is refused: it resolves to the non-public "
            "address 127.0.0.1. To allow it, add it to TRACEWAY_ALLOWED_CUSTOM_HOSTS.",
            "type": "invalid_request_error",
            "param": "custom_host",
            "code": "custom_host_forbidden",
        }
    }


def test_operator_configs_are_trusted(start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway(
        settings(
            allowed_custom_hosts=[],
            configs={"local": {"provider": "openai", "custom_host": "http://127.0.0.1:9/v1"}},
        )
    )
    with httpx.Client(base_url=gw.base_url) as http:
        response = http.post(
            "/chat/completions",
            headers={"x-traceway-config": "local"},
            json={"model": "gpt-4o", "messages": []},
        )
    # Not refused: the request went out (and found nothing listening).
    assert response.status_code == 502
