"""Rotating a host's master key for real: new key deployed and answering, the old one refused."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import TEAM_COMPOSE, deployed_once, encrypt_for_lab, lab_secrets

pytestmark = pytest.mark.lab
# What this proves does not depend on the compose CLI.
COMPOSE_FLAVOURS = ("v2",)


@pytest.fixture(scope="module")
def host(lab_host, tmp_path_factory):
    lab_host.entry["secrets_file"] = str(encrypt_for_lab(lab_secrets(), tmp_path_factory.mktemp("s") / "shared.enc.yaml"))
    lab_host.write_inventory()
    return deployed_once(lab_host, TEAM_COMPOSE)


def models_status(host, key: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{host.port}/v1/models", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


def test_rotate_master_deploys_the_new_key_and_the_old_one_is_refused(host):
    from litedeploy.secrets import decrypt_secrets
    old = lab_secrets()["LITELLM_MASTER_KEY"]
    rotated = host.run("secrets.rotate", "--host", host.name, "--key", "master")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert "the new key answers, the old one is refused" in rotated.stdout
    own = Path(host.entry["secrets_file"]).with_name(f"secrets.{host.name}.enc.yaml")
    new = decrypt_secrets(str(own), host.entry["age_key_file"])["LITELLM_MASTER_KEY"]
    assert new.startswith("sk-") and new != old
    assert models_status(host, new) == 200 and models_status(host, old) != 200
    assert old not in rotated.stdout + rotated.stderr and new not in rotated.stdout + rotated.stderr
    assert json.loads(host.run("ops.smoke", "--host", host.name, "--json").stdout)["ok"]


def test_salt_rotation_is_refused_while_a_database_depends_on_it(host):
    host.write_inventory(database=True)
    refused = host.run("secrets.rotate", "--host", host.name, "--key", "salt")
    host.write_inventory()
    assert refused.returncode == 1
    assert "refusing to rotate LITELLM_SALT_KEY: the database holds credentials" in refused.stderr


def test_a_new_salt_key_on_a_host_with_a_database_is_refused_before_anything_changes(host, tmp_path):
    secrets = lab_secrets(LITELLM_SALT_KEY="lab-salt-a-new-one-0123456789",
                          DATABASE_URL="postgresql://litellm:pw@127.0.0.1:1/litellm")
    host.write_inventory({"secrets_file": str(encrypt_for_lab(secrets, tmp_path / "s.enc.yaml"))}, database=True)
    before = host.snapshot()
    run = host.run("deploy", "--host", host.name)
    host.write_inventory()
    assert run.returncode == 1
    assert "LITELLM_SALT_KEY would change from sha256:" in run.stderr and "run again with --yes" in run.stderr
    assert host.snapshot() == before
    for value in secrets.values():
        assert value not in run.stdout + run.stderr
