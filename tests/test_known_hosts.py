"""known_hosts as OpenSSH writes it, read before connecting (no SSH here: the lab test connects)."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import paramiko
import pytest

from litedeploy.errors import RemoteError
from litedeploy.inventory import load_inventory
from litedeploy.remote import load_known_hosts

REPO = Path(__file__).resolve().parent.parent


def public_key(tmp_path: Path, name: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(tmp_path / name)], check=True)
    return (tmp_path / f"{name}.pub").read_text().strip()


@pytest.fixture
def fox():
    return replace(load_inventory(REPO / "hosts.yaml").host("fox"), address="fox.example.com")


def loaded(tmp_path: Path, text: str, host) -> paramiko.HostKeys:
    (tmp_path / "known_hosts").write_text(text)
    keys = paramiko.HostKeys()
    load_known_hosts(keys, str(tmp_path / "known_hosts"), host)
    return keys


def test_marker_lines_are_set_aside_and_plain_keys_load(tmp_path, fox):
    ca, other = public_key(tmp_path, "ca"), public_key(tmp_path, "other")
    keys = loaded(tmp_path, f"# team\n@cert-authority *.corp.example {ca}\nother.example {other}\n", fox)
    assert keys.lookup("other.example") and not keys.lookup("fox.example.com")


def test_a_host_the_authority_vouches_for_is_refused_until_its_own_key_is_there(tmp_path, fox):
    ca, own = public_key(tmp_path, "ca"), public_key(tmp_path, "fox")
    with pytest.raises(RemoteError, match=r"trusts an SSH certificate authority \(@cert-authority\) for "
                                          r"fox.example.com.*ssh-keyscan fox.example.com"):
        loaded(tmp_path, f"@cert-authority *.example.com {ca}\n", fox)
    assert loaded(tmp_path, f"@cert-authority *.example.com {ca}\nfox.example.com {own}\n", fox).lookup(
        "fox.example.com")


def test_on_another_port_the_pattern_names_address_and_port_as_openssh_writes_them(tmp_path, fox):
    on_2222, ca = replace(fox, ssh_port=2222), public_key(tmp_path, "ca")
    with pytest.raises(RemoteError, match=r"ssh-keyscan -p 2222 fox.example.com"):
        loaded(tmp_path, f"@cert-authority [*.example.com]:2222 {ca}\n", on_2222)
    loaded(tmp_path, f"@cert-authority *.example.com,!fox.example.com {ca}\n", fox)  # excluded by name
    loaded(tmp_path, f"@cert-authority *.example.com {ca}\n", on_2222)  # port 22's pattern only


def test_a_revoked_key_is_left_out(tmp_path, fox):
    own = public_key(tmp_path, "fox")
    assert not loaded(tmp_path, f"@revoked * {own}\nfox.example.com {own}\n", fox).lookup("fox.example.com")


def test_a_line_paramiko_cannot_read_is_named(tmp_path, fox):
    with pytest.raises(RemoteError, match=r"known_hosts:2 is not a known_hosts line paramiko can read"):
        loaded(tmp_path, f"a.example {public_key(tmp_path, 'a')}\nb.example ssh-ed25519 not-base64!\n", fox)
