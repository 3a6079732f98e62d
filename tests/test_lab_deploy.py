"""The whole deploy, end to end, through the lab's real sshd, dockerd and LiteLLM.

The tests in this module run in order against one host: first deploy, no-op, config change, restart.
"""

from __future__ import annotations

import json
import os
import stat
import urllib.request

import pytest
import yaml

from litedeploy.secrets import decrypt_secrets

pytestmark = pytest.mark.lab

# The admin's own services: our edit must keep every byte of this, and never start them.
USER_COMPOSE = """\
# team services, hand-written
services:
  web:
    image: nginx:alpine   # not pulled: only litellm is brought up
    network_mode: host

volumes:
  data: {}
"""


@pytest.fixture(scope="module")
def secrets(lab_host):
    return decrypt_secrets(lab_host.entry["secrets_file"], lab_host.entry["age_key_file"])


@pytest.fixture(scope="module")
def first_deploy(lab_host):
    lab_host.root.joinpath("compose.yml").write_text(USER_COMPOSE)
    return lab_host.run("deploy", "--host", lab_host.name)


def listed_models(lab_host, secrets) -> list[str]:
    request = urllib.request.Request(f"http://127.0.0.1:{lab_host.port}/v1/models",
                                     headers={"Authorization": f"Bearer {secrets['LITELLM_MASTER_KEY']}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return [entry["id"] for entry in json.load(reply)["data"]]


def test_first_deploy_creates_the_container_and_it_answers(lab_host, first_deploy, secrets):
    assert first_deploy.returncode == 0, first_deploy.stderr
    assert "changed compose.yml, litellm.env, config.yaml; recreated litellm" in first_deploy.stdout
    state = lab_host.inspect()["State"]
    assert state["Running"] and state["ExitCode"] == 0
    assert listed_models(lab_host, secrets) == ["claude-3-7-sonnet", "claude-sonnet-4", "claude-opus-4"]


def test_the_container_is_made_by_the_compose_the_host_offers(lab_host, first_deploy, compose_flavour):
    made_by = lab_host.inspect()["Config"]["Labels"]["com.docker.compose.version"]
    assert made_by.split(".")[0] == {"v2": "2", "v1": "1"}[compose_flavour]


def test_first_deploy_keeps_the_users_compose_file_and_adds_a_marked_block(lab_host, first_deploy):
    text = lab_host.root.joinpath("compose.yml").read_text()
    before, block_and_after = text.split("# BEGIN ANSIBLE MANAGED BLOCK litellm\n")
    block, after = block_and_after.split("# END ANSIBLE MANAGED BLOCK litellm\n")
    assert before + after == USER_COMPOSE
    assert set(yaml.safe_load(text)["services"]) == {"web", "litellm"}


def test_secrets_live_only_in_the_root_owned_0600_env_file(lab_host, first_deploy, secrets):
    config_dir = lab_host.root / "litellm"
    env = os.stat(config_dir / "litellm.env")
    assert (stat.S_IMODE(env.st_mode), env.st_uid, env.st_gid) == (0o600, 0, 0)
    assert stat.S_IMODE(os.stat(config_dir / "config.yaml").st_mode) == 0o644
    exposed = (lab_host.root / "compose.yml").read_text() + (config_dir / "config.yaml").read_text() \
        + first_deploy.stdout + first_deploy.stderr
    for value in secrets.values():
        assert value not in exposed


def test_smoke_passes_after_the_first_deploy(lab_host, first_deploy):
    smoke = lab_host.run("ops.smoke", "--host", lab_host.name)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    checks = {line.split()[2]: line.split()[1] for line in smoke.stdout.splitlines()}
    assert checks == {"liveliness": "ok", "readiness": "ok", "auth": "ok", "models": "ok", "chat": "ok",
                      "messages": "ok"}
    assert "lab mock: hello from LiteLLM" in smoke.stdout


def test_second_deploy_changes_nothing_and_does_not_restart(lab_host, first_deploy):
    started = lab_host.inspect()["State"]["StartedAt"]
    again = lab_host.run("deploy", "--host", lab_host.name)
    assert again.returncode == 0, again.stderr
    assert "nothing changed" in again.stdout and "restarted=no" in again.stdout
    assert lab_host.inspect()["State"]["StartedAt"] == started


def test_a_model_added_in_the_inventory_restarts_with_config_only(lab_host, first_deploy, secrets):
    before = lab_host.inspect()
    models = yaml.safe_load(lab_host.inventory.read_text())["defaults"]["vars"]["models"]
    lab_host.write_inventory(models=models + [{"name": "claude-extra",
                                               "model": "bedrock/us.anthropic.claude-opus-4-20250514-v1:0"}])
    changed = lab_host.run("deploy", "--host", lab_host.name)
    assert changed.returncode == 0, changed.stderr
    assert "changed config.yaml; restarted litellm" in changed.stdout
    after = lab_host.inspect()
    assert after["Id"] == before["Id"], "a config-only change must restart, not recreate"
    assert after["State"]["StartedAt"] != before["State"]["StartedAt"]
    assert "claude-extra" in listed_models(lab_host, secrets)


def test_fab_restarts_through_fabrics_own_cli(lab_host, first_deploy):
    started = lab_host.inspect()["State"]["StartedAt"]
    restarted = lab_host.run("-H", lab_host.name, "compose.restart", program="fabric")
    assert restarted.returncode == 0, restarted.stderr
    assert f"{lab_host.name}: restarted litellm" in restarted.stdout
    assert lab_host.inspect()["State"]["StartedAt"] != started


def test_fab_finds_the_host_by_address_and_port(lab_host, first_deploy):
    logs = lab_host.run("-H", f"127.0.0.1:{lab_host.entry['ssh_port']}", "ops.logs", "--tail", "20",
                        program="fabric")
    assert logs.returncode == 0, logs.stderr
    assert "GET /health/liveliness" in logs.stdout
    # A port no entry has is an error, not the one entry at that address.
    elsewhere = lab_host.run("-H", "127.0.0.1:2", "ops.logs", "--tail", "1", program="fabric")
    assert elsewhere.returncode == 1 and "no host has address 127.0.0.1:2" in elsewhere.stderr, elsewhere.stderr
