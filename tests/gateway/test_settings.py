"""Gateway settings files, the default route, and the standalone app."""

from __future__ import annotations

from pathlib import Path

import httpx
import pydantic
import pytest

from tests.gateway.conftest import serve
from traceway.gateway import GatewaySettings, create_standalone_app

YAML = """
default_route: fast
allowed_custom_hosts: [vllm.internal]
models: [house-model]
configs:
  fast:
    strategy: {mode: fallback}
    targets:
      - {provider: mock, override_params: {model: error-500}}
      - {provider: mock, override_params: {model: echo}}
breaker: {failure_threshold: 3}
"""


def test_from_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "gateway.yaml"
    yaml_file.write_text(YAML)
    loaded = GatewaySettings.from_file(yaml_file)
    assert loaded.default_route == "fast"
    assert loaded.allowed_custom_hosts == ["vllm.internal"]
    assert loaded.breaker.failure_threshold == 3
    assert loaded.configs["fast"]["targets"][1] == {
        "provider": "mock",
        "override_params": {"model": "echo"},
    }
    json_file = tmp_path / "gateway.json"
    json_file.write_text(loaded.model_dump_json())
    assert GatewaySettings.from_file(json_file) == loaded


def test_bad_settings_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="default_route 'nope'"):
        GatewaySettings(default_route="nope")
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        GatewaySettings.model_validate({"max_body": 1})
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        GatewaySettings.from_file(listed)


def test_allowed_hosts_default_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEWAY_ALLOWED_CUSTOM_HOSTS", "127.0.0.1, vllm.internal ,")
    assert GatewaySettings().allowed_custom_hosts == ["127.0.0.1", "vllm.internal"]


def test_standalone_app_serves_health_models_and_the_default_route(tmp_path: Path) -> None:
    yaml_file = tmp_path / "gateway.yaml"
    yaml_file.write_text(YAML)
    app = create_standalone_app(GatewaySettings.from_file(yaml_file), export_to=None)
    with serve(app) as url, httpx.Client(base_url=url) as http:
        health = http.get("/health")
        models = http.get("/v1/models")
        chat = http.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "via the default route"}]},
        )
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert [(m["id"], m["owned_by"]) for m in models.json()["data"]] == [
        ("mock", "traceway-mock"),
        ("echo", "traceway-mock"),
        ("mock-embedding", "traceway-mock"),
        ("error-429", "traceway-mock"),
        ("error-500", "traceway-mock"),
        ("house-model", "traceway"),
    ]
    assert chat.status_code == 200
    assert chat.json()["choices"][0]["message"]["content"] == "via the default route"
    assert chat.headers["x-traceway-last-used-option-index"] == "config.targets[1]"
