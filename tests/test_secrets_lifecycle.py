"""The secrets chores with the real sops binary and age keys made here, in a project of their own."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pyrage
import pytest
import yaml
from conftest import REPO

INVENTORY = {
    "defaults": {"vars": {"aws_region": "us-east-1", "models": [{"name": "claude-sonnet-4"}]}},
    "profiles": {"ui": {"admin_ui": True}},
    "hosts": {"fox": {"address": "fox.example"}, "ui": {"address": "ui.example", "profile": "ui"}},
}


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    shutil.copytree(REPO / "templates", root / "templates")
    shutil.copy(REPO / "models.yaml", root / "models.yaml")
    shutil.copy(REPO / "litellm.yaml", root / "litellm.yaml")
    (root / "hosts.yaml").write_text(yaml.safe_dump(INVENTORY))
    (tmp_path / "aws").write_text("[team]\naws_access_key_id = AKIATEAMEXAMPLE1\n"
                                  "aws_secret_access_key = team/secret+value0123\n")
    return root


def inv(project: Path, *argv: str, key_file: Path | None = None, **more: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SOPS_AGE_KEY_FILE", "AWS_ACCESS_KEY_ID",
                                                           "AWS_SECRET_ACCESS_KEY", "XDG_CONFIG_HOME")}
    env.update(more)
    env.update(HOME=str(project.parent / "home"), INVOKE_LITELLM_PROJECT=str(project),
               AWS_SHARED_CREDENTIALS_FILE=str(project.parent / "aws"))
    if key_file:
        env["SOPS_AGE_KEY_FILE"] = str(key_file)
    return subprocess.run([sys.executable, "-m", "invoke", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)


def decrypt(path: Path, key_file: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sops", "--decrypt", "--output-type", "json", str(path)], capture_output=True,
                          text=True, env={**os.environ, "SOPS_AGE_KEY_FILE": str(key_file)})


def own_key(project: Path) -> Path:
    return project.parent / "home/.config/sops/age/keys.txt"


def test_init_makes_a_key_the_sops_rule_and_fresh_encrypted_secrets(project):
    run = inv(project, "secrets.init", "--aws-profile", "team")
    assert run.returncode == 0, run.stderr
    key = own_key(project)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    recipient = next(line.split(": ")[1] for line in key.read_text().splitlines() if "public key" in line)
    assert recipient in (project / ".sops.yaml").read_text()
    values = json.loads(decrypt(project / "secrets.enc.yaml", key).stdout)
    assert values["LITELLM_MASTER_KEY"].startswith("sk-") and len(values["LITELLM_MASTER_KEY"]) > 40
    assert values["AWS_ACCESS_KEY_ID"] == "AKIATEAMEXAMPLE1"
    generated = [values["LITELLM_MASTER_KEY"], values["LITELLM_SALT_KEY"]]
    for path in project.parent.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            leaked = [v for v in generated + (list(values.values()) if project in path.parents else []) if v in text]
            assert not leaked, f"{path} holds a secret in plaintext"
    again = inv(project, "secrets.init", "--no-aws")
    assert again.returncode == 1 and "exists; run with --force" in again.stderr


def test_with_xdg_config_home_init_writes_the_key_where_sops_looks(project):
    config_home = project.parent / "xdg"
    assert inv(project, "secrets.init", "--no-aws", XDG_CONFIG_HOME=str(config_home)).returncode == 0
    assert (config_home / "sops/age/keys.txt").is_file() and not own_key(project).exists()
    shown = inv(project, "secrets.show", "--host", "fox", XDG_CONFIG_HOME=str(config_home))
    assert shown.returncode == 0 and "LITELLM_MASTER_KEY" in shown.stdout, shown.stderr
    lost = inv(project, "secrets.show", "--host", "fox")
    assert lost.returncode == 1 and f"no age key in {own_key(project)}" in lost.stderr


def test_init_without_aws_keys_refuses_unless_told_it_is_an_iam_role_host(project):
    refused = inv(project, "secrets.init")
    assert refused.returncode == 1 and "--no-aws for IAM-role hosts" in refused.stderr
    assert inv(project, "secrets.init", "--no-aws").returncode == 0
    values = json.loads(decrypt(project / "secrets.enc.yaml", own_key(project)).stdout)
    assert set(values) == {"LITELLM_MASTER_KEY", "LITELLM_SALT_KEY"}


def test_show_names_keys_and_their_use_and_reveals_only_when_asked(project):
    assert inv(project, "secrets.init", "--aws-profile", "team").returncode == 0
    shown = inv(project, "secrets.show", "--host", "ui")
    assert "LITELLM_MASTER_KEY       used  ********" in shown.stdout
    assert "UI_PASSWORD              MISSING" in shown.stdout
    master = json.loads(decrypt(project / "secrets.enc.yaml", own_key(project)).stdout)["LITELLM_MASTER_KEY"]
    assert master not in shown.stdout
    assert master in inv(project, "secrets.show", "--host", "fox", "--reveal").stdout


def test_check_names_the_secret_a_host_lacks(project):
    assert inv(project, "secrets.init", "--aws-profile", "team").returncode == 0
    checked = inv(project, "secrets.check")
    assert "fox: ok" in checked.stdout
    assert "secret 'UI_USERNAME' is missing" in checked.stderr and checked.returncode == 1


def test_a_host_file_overrides_the_shared_one_for_that_host_only(project):
    from conftest import DEFAULT_IMAGE

    from litedeploy.inventory import load_inventory
    from litedeploy.session import host_secrets
    from litedeploy.sopsfile import recipients_of, write_encrypted
    assert inv(project, "secrets.init", "--aws-profile", "team").returncode == 0
    shared = project / "secrets.enc.yaml"
    write_encrypted(project / "secrets.fox.enc.yaml", {"LITELLM_MASTER_KEY": "sk-fox-only-0123456789"},
                    recipients_of(shared))
    os.environ["SOPS_AGE_KEY_FILE"] = str(own_key(project))
    try:
        inventory = load_inventory(project / "hosts.yaml", DEFAULT_IMAGE)
        assert host_secrets(inventory.host("fox"))["LITELLM_MASTER_KEY"] == "sk-fox-only-0123456789"
        assert host_secrets(inventory.host("ui"))["LITELLM_MASTER_KEY"] != "sk-fox-only-0123456789"
    finally:
        del os.environ["SOPS_AGE_KEY_FILE"]


def test_a_second_recipient_decrypts_after_add_and_not_after_remove(project, tmp_path):
    assert inv(project, "secrets.init", "--aws-profile", "team").returncode == 0
    colleague = pyrage.x25519.Identity.generate()
    colleague_key = tmp_path / "colleague.txt"
    colleague_key.write_text(f"{colleague}\n")
    secrets_file = project / "secrets.enc.yaml"
    assert decrypt(secrets_file, colleague_key).returncode == 128
    added = inv(project, "secrets.recipients", "--add", str(colleague.to_public()), key_file=own_key(project))
    assert added.returncode == 0, added.stderr
    assert decrypt(secrets_file, colleague_key).returncode == 0
    removed = inv(project, "secrets.recipients", "--remove", str(colleague.to_public()), key_file=own_key(project))
    assert removed.returncode == 0, removed.stderr
    assert decrypt(secrets_file, colleague_key).returncode == 128
    assert decrypt(secrets_file, own_key(project)).returncode == 0
    assert str(colleague.to_public()) not in (project / ".sops.yaml").read_text()


def test_dotenv_supplies_local_settings_and_the_environment_wins(tmp_path, monkeypatch):
    from litedeploy.tasks import namespace
    (tmp_path / ".env").write_text("LITEDEPLOY_HOST=lab\nLITEDEPLOY_TEST_SETTING=from-dotenv\n")
    monkeypatch.setenv("LITEDEPLOY_HOST", "fox")
    monkeypatch.delenv("LITEDEPLOY_TEST_SETTING", raising=False)
    namespace(tmp_path)
    assert os.environ["LITEDEPLOY_TEST_SETTING"] == "from-dotenv"
    assert os.environ["LITEDEPLOY_HOST"] == "fox"
    monkeypatch.delenv("LITEDEPLOY_TEST_SETTING")


def test_the_default_host_comes_from_litedeploy_host():
    env = {**os.environ, "LITEDEPLOY_HOST": "lab"}
    run = subprocess.run([sys.executable, "-m", "invoke", "config.render"], cwd=REPO, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "# lab: config.yaml" in run.stdout


def test_edit_runs_sops_editor_and_the_file_stays_encrypted(project, tmp_path):
    assert inv(project, "secrets.init", "--aws-profile", "team").returncode == 0
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/^LITELLM_SALT_KEY: .*/LITELLM_SALT_KEY: edited-salt-0123456789/' \"$1\"\n")
    editor.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "SOPS_AGE_KEY_FILE"}
    env.update(HOME=str(project.parent / "home"), INVOKE_LITELLM_PROJECT=str(project), EDITOR=str(editor))
    run = subprocess.run([sys.executable, "-m", "invoke", "secrets.edit"], cwd=REPO, env=env, capture_output=True,
                         text=True, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    assert "edited-salt-0123456789" not in (project / "secrets.enc.yaml").read_text()
    values = json.loads(decrypt(project / "secrets.enc.yaml", own_key(project)).stdout)
    assert values["LITELLM_SALT_KEY"] == "edited-salt-0123456789"


@pytest.mark.parametrize("version, message", [("sops 3.7.3", "sops 3.7 is too old"), (None, "sops is not installed")])
def test_a_missing_or_old_sops_is_a_clear_error(tmp_path, monkeypatch, version, message):
    from litedeploy.errors import SecretsError
    from litedeploy.sopsfile import check_sops
    if version:
        fake = tmp_path / "sops"
        fake.write_text(f"#!/bin/sh\necho '{version}'\n")
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # nor one beside the interpreter
    with pytest.raises(SecretsError, match=message):
        check_sops()
