"""The lab's host profiles as sshd configs: what each one changes, and that sshd itself accepts them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab.sshd import NAMESPACE_PROFILE, PROFILES, SshdPaths, rc_script, sshd_config


def config_of(name: str, tmp_path: Path, environment: dict | None = None) -> str:
    paths = SshdPaths(tmp_path, f"{name}-", tmp_path / "authorized_keys")
    return sshd_config(PROFILES[name], paths, "127.0.0.1", 22000, tmp_path / "key", environment or {})


def test_only_the_hardened_profile_forbids_tcp_forwarding(tmp_path):
    forbidding = {name for name in PROFILES if "AllowTcpForwarding no" in config_of(name, tmp_path)}
    assert forbidding == {"hardened"}
    assert not NAMESPACE_PROFILE.tcp_forwarding


def test_environment_reaches_commands_and_a_noisy_profile_gets_a_home_of_its_own(tmp_path):
    config = config_of("noisy-rc", tmp_path, {"DOCKER_CONFIG": "/lab/docker-config"})
    assert f"SetEnv DOCKER_CONFIG=/lab/docker-config HOME={tmp_path}/noisy-rc-home" in config.splitlines()
    assert "SetEnv" not in config_of("standard", tmp_path)


def test_the_noisy_rc_prints_its_text_in_bash(tmp_path):
    rc = tmp_path / ".bashrc"
    rc.write_text(rc_script(PROFILES["noisy-rc"]))
    shown = subprocess.run(["bash", "-c", f". {rc}"], capture_output=True, text=True)
    assert shown.stdout == PROFILES["noisy-rc"].rc_text


@pytest.mark.lab
@pytest.mark.parametrize("name", sorted(PROFILES))
def test_sshd_accepts_each_profile(lab, name, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True)
    (tmp_path / "config").write_text(config_of(name, tmp_path, {"DOCKER_HOST": "unix:///run/x.sock"}))
    checked = subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(tmp_path / "config")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
