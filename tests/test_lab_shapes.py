"""Every LiteLLM setup of the source documents, expressed in hosts.yaml only, loaded by the real
LiteLLM in the lab and proven by the smoke test."""

from __future__ import annotations

import json
import urllib.request

import pytest
import yaml
from conftest import TEAM_COMPOSE, deployed_once, encrypt_for_lab, lab_secrets

from lab.ollama_standin import OllamaStandIn

pytestmark = pytest.mark.lab
# What this proves does not depend on the compose CLI.
COMPOSE_FLAVOURS = ("v2",)

PROFILES = {
    # The workshop's default_config.yml: newer models, per-model limits, retries, fallbacks.
    "bedrock-newer": {
        "aws_region": "eu-central-1",
        "models": [{"name": "claude-sonnet-4-5", "max_tokens": 8192, "rpm": 60, "tpm": 200000, "timeout": 300},
                   {"name": "claude-haiku-4-5", "max_tokens": 4096},
                   {"name": "claude-3-7-sonnet"}],
        "router_settings": {"num_retries": 2, "timeout": 600, "allowed_fails": 3, "cooldown_time": 30},
        "fallbacks": {"claude-sonnet-4-5": ["claude-3-7-sonnet"]},
        "allow_mock_testing": True,
    },
    # iam_role_config.yml: the instance role gives the credentials, so no AWS keys anywhere.
    "iam-role": {"aws_auth": "iam-role"},
    # prompt_caching.yml: cache points injected, a fallback that caches too.
    "prompt-caching": {
        "models": [{"name": "claude-3-7-sonnet"}, {"name": "claude-sonnet-4"}],
        "prompt_caching": True,
        "fallbacks": {"claude-3-7-sonnet": ["claude-sonnet-4"]},
    },
    # The admin UI with its login, prompts kept in spend logs.
    "admin-ui": {"admin_ui": True, "store_prompts_in_spend_logs": True},
}


@pytest.fixture(scope="module")
def host(lab_host, tmp_path_factory):
    secrets = lab_secrets(UI_USERNAME="admin", UI_PASSWORD="lab-ui-password-123")
    lab_host.entry["secrets_file"] = str(encrypt_for_lab(secrets, tmp_path_factory.mktemp("s") / "s.enc.yaml"))
    write_profiles(lab_host, PROFILES)
    return deployed_once(lab_host, TEAM_COMPOSE)


def write_profiles(host, profiles: dict) -> None:
    host.write_inventory()
    data = yaml.safe_load(host.inventory.read_text())
    data["profiles"] = profiles
    host.inventory.write_text(yaml.safe_dump(data))


def deploy_profile(host, profile: str) -> None:
    run = host.run("deploy", "--host", host.name, "--profile", profile)
    assert run.returncode == 0, run.stdout + run.stderr


def smoke(host, *extra: str) -> dict:
    run = host.run("ops.smoke", "--host", host.name, "--all-models", "--json", *extra)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)


def host_config(host) -> dict:
    return yaml.safe_load((host.root / "litellm/config.yaml").read_text())


def test_newer_bedrock_models_with_limits_router_settings_and_fallbacks(host):
    deploy_profile(host, "bedrock-newer")
    models = {m["model_name"]: m["litellm_params"] for m in host_config(host)["model_list"]}
    assert models["claude-sonnet-4-5"]["model"] == "bedrock/eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert (models["claude-sonnet-4-5"]["rpm"], models["claude-sonnet-4-5"]["max_tokens"]) == (60, 8192)
    report = smoke(host, "--profile", "bedrock-newer")
    names = [check["name"] for check in report["checks"]]
    assert "fallback from claude-sonnet-4-5" in names and all(c["ok"] and not c["skipped"] for c in report["checks"])


def test_status_shows_the_deployed_profile(host):
    deploy_profile(host, "bedrock-newer")
    run = host.run("ops.status", "--host", host.name)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "profile bedrock-newer" in run.stdout and "no drift" in run.stdout


def test_iam_role_host_runs_without_aws_keys(host):
    deploy_profile(host, "iam-role")
    env = (host.root / "litellm/litellm.env").read_text()
    assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    smoke(host, "--profile", "iam-role")
    listed = host.run("ops.env", "--host", host.name)
    assert "AWS_ACCESS_KEY_ID" not in listed.stdout and "LITELLM_MASTER_KEY" in listed.stdout


def test_prompt_caching_profile_is_accepted_by_litellm(host):
    deploy_profile(host, "prompt-caching")
    params = host_config(host)["model_list"][0]["litellm_params"]
    assert params["cache_control_injection_points"] == [{"location": "message", "role": "system"}]
    smoke(host, "--profile", "prompt-caching")


def test_admin_ui_login_page_answers(host):
    deploy_profile(host, "admin-ui")
    assert host_config(host)["general_settings"]["store_prompts_in_spend_logs"] is True
    with urllib.request.urlopen(f"http://127.0.0.1:{host.port}/ui/", timeout=10) as page:
        assert page.status == 200 and b"<html" in page.read(2000).lower()
    smoke(host, "--profile", "admin-ui")


def test_ollama_backends_answer_through_litellm(host):
    with OllamaStandIn("one") as first, OllamaStandIn("two") as second:
        write_profiles(host, {**PROFILES, "ollama": {
            "ollama_backends": [first.url, second.url],
            "models": [{"name": "phi3-3.8b", "provider": "ollama", "model": "phi3:mini"}]}})
        # The lab's mock_response would answer for the backend: this shape must reach it.
        data = yaml.safe_load(host.inventory.read_text())
        data["hosts"][host.name]["vars"].pop("mock_response")
        host.inventory.write_text(yaml.safe_dump(data))
        deploy_profile(host, "ollama")
        report = smoke(host, "--profile", "ollama")
        chat = next(c for c in report["checks"] if c["name"] == "chat phi3-3.8b")
        assert "ollama stand-in" in chat["detail"]
        assert first.chats() + second.chats() >= 1
