"""A host reached as a non-root user with sudo and a password, as many production hosts are."""

from __future__ import annotations

import os

import pytest
from conftest import command_lines_seen, encrypt_for_lab, lab_secrets, make_lab_host, make_namespace_host

from lab import target as local_lab

pytestmark = pytest.mark.lab

USER = local_lab.SUDO_USER


@pytest.fixture(scope="module")
def sudo_password(lab):
    """The lab's sudo user, removed again if this module created it."""
    existed = lab.sudo_password_file.exists()
    yield local_lab.ensure_sudo_user(lab, print)
    if not existed:
        local_lab.remove_sudo_user(lab, print)


def as_sudo_user(host, password: str):
    host.entry.update(ssh_user=USER, sudo=True,
                      secrets_file=str(encrypt_for_lab(lab_secrets(SUDO_PASSWORD=password), host.root / "s.enc.yaml")))
    host.write_inventory()
    return host


@pytest.fixture(scope="module")
def sudo_host(lab, sudo_password, tmp_path_factory):
    host = as_sudo_user(make_lab_host(lab, tmp_path_factory.mktemp("sudo"), "sudo"), sudo_password)
    yield host
    host.remove_container()


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


def test_sudo_user_on_a_hardened_namespace_host_with_bridge_networking(lab, sudo_password, tmp_path):
    """The production shape at once: another host, sshd without TCP forwarding, a sudo user whose
    sudo keeps the host's Docker settings, a published port."""
    host = as_sudo_user(make_namespace_host(lab, tmp_path, "sudo-ns", 2), sudo_password)
    try:
        (host.root / "compose.yml").write_text("services:\n  web:\n    image: nginx:alpine\n")
        run = host.run("deploy", "--host", host.name)
        assert run.returncode == 0, run.stdout + run.stderr
        assert host.inspect()["HostConfig"]["NetworkMode"] != "host"
        assert host.run("ops.smoke", "--host", host.name).returncode == 0
        assert sudo_password not in run.stdout + run.stderr
    finally:
        host.remove_container()
