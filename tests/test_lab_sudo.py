"""A host reached as a non-root user with sudo and a password, as many production hosts are."""

from __future__ import annotations

import os
import secrets as random
import subprocess
from pathlib import Path

import pytest

from conftest import command_lines_seen, encrypt_for_lab, lab_secrets, make_lab_host

pytestmark = pytest.mark.lab

USER = "litedeploy-sudoer"


@pytest.fixture(scope="module")
def sudo_password(lab):
    password = "pw-" + random.token_urlsafe(12)
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", USER], check=True)
    subprocess.run(["chpasswd"], input=f"{USER}:{password}", text=True, check=True)
    ssh_dir = Path(f"/home/{USER}/.ssh")
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "authorized_keys").write_text(Path(f"{lab.client_key}.pub").read_text())
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(ssh_dir)], check=True)
    rule = Path(f"/etc/sudoers.d/{USER}")
    rule.write_text(f"{USER} ALL=(ALL) ALL\n")
    rule.chmod(0o440)
    yield password
    rule.unlink()
    subprocess.run(["userdel", "-r", USER], capture_output=True)


@pytest.fixture(scope="module")
def sudo_host(lab, sudo_password, tmp_path_factory):
    root = tmp_path_factory.mktemp("sudo")
    host = make_lab_host(lab, root, "sudo")
    host.entry.update(ssh_user=USER, sudo=True,
                      secrets_file=str(encrypt_for_lab(lab_secrets(SUDO_PASSWORD=sudo_password),
                                                       root / "s.enc.yaml")))
    host.write_inventory()
    yield host
    subprocess.run(["docker", "rm", "-f", host.container], capture_output=True)


def test_deploy_as_a_sudo_user_writes_root_owned_files_and_never_shows_the_password(sudo_host, sudo_password):
    with command_lines_seen() as seen:
        run = sudo_host.run("deploy", "--host", sudo_host.name)
    assert run.returncode == 0, run.stdout + run.stderr
    assert any(line.startswith("sudo -S") for line in seen), "commands went through sudo"
    assert not [line for line in seen if sudo_password in line]
    assert sudo_password not in run.stdout + run.stderr
    env = os.stat(sudo_host.root / "litellm/litellm.env")
    assert (env.st_uid, env.st_gid, env.st_mode & 0o777) == (0, 0, 0o600)
    assert sudo_host.run("ops.smoke", "--host", sudo_host.name).returncode == 0


def test_a_wrong_sudo_password_is_a_clear_error(sudo_host, tmp_path):
    wrong = encrypt_for_lab(lab_secrets(SUDO_PASSWORD="not-the-password"), tmp_path / "wrong.enc.yaml")
    sudo_host.write_inventory({"secrets_file": str(wrong)})
    run = sudo_host.run("deploy", "--host", sudo_host.name)
    sudo_host.write_inventory()
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == f"error: {sudo_host.name}: sudo refused the password for {USER}"
    assert "not-the-password" not in run.stderr
