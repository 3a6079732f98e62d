"""Bad input and faults: each ends in one line naming the file, host or key at fault, exit 1, and the
host exactly as it was. The module's host is deployed once, so "as it was" has content to compare."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pyrage
import pytest
from conftest import REPO, copy_templates, encrypt_for_lab, fails_with, lab_secrets

pytestmark = pytest.mark.lab
# Every fault here is found by litedeploy before compose is asked (the compose file's own faults by
# its editor, compose.py), or by sshd and the disk: compose v1's half proved nothing more.
COMPOSE_FLAVOURS = ("v2",)


@pytest.fixture
def host(deployed):
    before = deployed.snapshot()
    yield deployed
    deployed.write_inventory()
    assert deployed.snapshot() == before, "the host changed"


def new_key(tmp_path: Path, name: str) -> Path:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def test_malformed_inventory(host):
    host.inventory.write_text("hosts:\n  x: [\n")
    fails_with(host.run("deploy", "--host", host.name), f"{host.inventory}:", "is not valid YAML")


def test_unknown_host(host):
    fails_with(host.run("deploy", "--host", "nope"), "unknown host 'nope'", f"known: {host.name}")


def test_template_with_an_undefined_variable(host, tmp_path):
    copy_templates(tmp_path)
    (tmp_path / "config.yaml.j2").write_text("model_list: {{ vars.model_catalog }}\n")
    run = host.run("deploy", "--host", host.name, env={"INVOKE_LITELLM_TEMPLATES": str(tmp_path)})
    fails_with(run, "templates/config.yaml.j2", f"host {host.name}", "variable 'model_catalog' is not defined")


def test_rendered_config_litellm_would_reject(host, tmp_path):
    copy_templates(tmp_path)
    template = (tmp_path / "config.yaml.j2").read_text()
    assert "{% for model in models %}" in template
    doubled = template.replace("{% for model in models %}",
                                                                "{% for model in models + models %}")
    (tmp_path / "config.yaml.j2").write_text(doubled)
    run = host.run("deploy", "--host", host.name, env={"INVOKE_LITELLM_TEMPLATES": str(tmp_path)})
    fails_with(run, "model_name 'claude-3-7-sonnet' appears twice")


def test_secrets_no_local_key_can_decrypt(host, tmp_path):
    # Someone else's age key (pyrage: the age CLI is not a dependency).
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    secrets = tmp_path / "theirs.enc.yaml"
    secrets.write_text("LITELLM_MASTER_KEY: sk-theirs-123456\n")
    subprocess.run(["sops", "--encrypt", "--in-place", "--age", recipient, secrets.name], cwd=tmp_path,
                   check=True, capture_output=True)
    host.write_inventory({"secrets_file": str(secrets)})
    fails_with(host.run("deploy", "--host", host.name), f"{secrets}: no age key", "can decrypt it")


def test_secret_the_templates_need_is_missing(host, tmp_path):
    partial = {k: v for k, v in lab_secrets().items() if k != "LITELLM_SALT_KEY"}
    secrets = encrypt_for_lab(partial, tmp_path / "partial.enc.yaml")
    host.write_inventory({"secrets_file": str(secrets)})
    fails_with(host.run("deploy", "--host", host.name),
               "templates/litellm.env.j2", f"secret 'LITELLM_SALT_KEY' is missing from {secrets}")


def test_unreachable_host_refuses_the_connection(host):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    host.write_inventory({"ssh_port": closed})
    fails_with(host.run("deploy", "--host", host.name), f"{host.name} (root@127.0.0.1:{closed})", "unreachable")


def test_a_silent_port_times_out_in_bounded_time(host):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        held = []
        accepting = threading.Thread(target=lambda: held.append(silent.accept()), daemon=True)
        accepting.start()
        host.write_inventory({"ssh_port": silent.getsockname()[1]})
        start = time.monotonic()
        run = host.run("deploy", "--host", host.name)
        elapsed = time.monotonic() - start
    fails_with(run, "no SSH greeting within 10 s")
    assert elapsed < 30


def test_an_ssh_key_file_that_does_not_exist_is_named(host, tmp_path):
    missing = tmp_path / "id_typo"
    host.write_inventory({"ssh_key": str(missing)})
    fails_with(host.run("deploy", "--host", host.name), f"{host.name}: ssh_key {missing} does not exist")


def test_ssh_key_the_host_does_not_accept(host, tmp_path):
    host.write_inventory({"ssh_key": str(new_key(tmp_path, "stranger"))})
    fails_with(host.run("deploy", "--host", host.name), "SSH authentication failed")


def test_changed_host_key_is_refused(host, tmp_path):
    impostor = new_key(tmp_path, "impostor")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{host.entry['ssh_port']} {Path(f'{impostor}.pub').read_text()}")
    host.write_inventory({"known_hosts": str(known)})
    fails_with(host.run("deploy", "--host", host.name), "host key has CHANGED", str(known))


def test_unknown_host_key_is_refused_unless_accept_new_records_it(host, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("# mine\n")
    host.write_inventory({"known_hosts": str(known)})
    fails_with(host.run("deploy", "--host", host.name), "host key is not in", "refusing to connect")
    host.write_inventory({"known_hosts": str(known), "host_key": "accept-new"})
    accepted = host.run("deploy", "--host", host.name)
    assert accepted.returncode == 0, accepted.stderr
    recorded = known.read_text().splitlines()
    assert recorded[0] == "# mine" and recorded[1].startswith(f"[127.0.0.1]:{host.entry['ssh_port']} ssh-ed25519 ")
    host.write_inventory({"known_hosts": str(known)})  # strict again: the recorded key now passes
    assert host.run("deploy", "--host", host.name).returncode == 0


def test_a_host_an_ssh_certificate_authority_vouches_for_is_refused_until_its_key_is_pinned(host, tmp_path):
    """paramiko reads no @cert-authority line (a traceback) and verifies no host certificate: the
    host is refused with how to pin its own key, under accept-new too; other hosts' keys still load."""
    authority, port = new_key(tmp_path, "company-ca"), host.entry["ssh_port"]
    known = tmp_path / "known_hosts"
    # OpenSSH writes a host on another port than 22 as [address]:port, in patterns too.
    authority_line = f"@cert-authority [127.0.0.*]:{port} {Path(f'{authority}.pub').read_text()}"
    known.write_text(authority_line + "@revoked * " + Path(f"{new_key(tmp_path, 'old')}.pub").read_text()
                     + "[other.example]:22 " + Path(f"{new_key(tmp_path, 'other')}.pub").read_text())
    for policy in ("strict", "accept-new"):
        host.write_inventory({"known_hosts": str(known), "host_key": policy})
        fails_with(host.run("deploy", "--host", host.name),
                   f"{known} trusts an SSH certificate authority (@cert-authority) for 127.0.0.1",
                   f"ssh-keyscan -p {port} 127.0.0.1")
    assert known.read_text().count("\n") == 3, "nothing was recorded"
    scanned = subprocess.run(["ssh-keyscan", "-t", "ed25519", "-p", str(port), "127.0.0.1"], capture_output=True,
                             text=True, check=True).stdout
    known.write_text(known.read_text() + scanned)
    host.write_inventory({"known_hosts": str(known)})
    pinned = host.run("deploy", "--host", host.name)
    assert pinned.returncode == 0, pinned.stderr


@pytest.mark.parametrize("compose, expected", [
    ("services:\n  web: [\n", "is not valid YAML"),
    ("volumes:\n  data: {}\n", "has no top-level 'services:' mapping"),
    ("services:\n# BEGIN ANSIBLE MANAGED BLOCK litellm\n  a: {}\n# END ANSIBLE MANAGED BLOCK litellm\n"
     "# BEGIN ANSIBLE MANAGED BLOCK litellm\n  b: {}\n# END ANSIBLE MANAGED BLOCK litellm\n", "appears more than once"),
    ("services:\n# BEGIN ANSIBLE MANAGED BLOCK litellm\n  litellm: {image: x}\n", "do not enclose a block"),
])
def test_compose_file_on_the_host_that_cannot_be_edited_safely(fresh_lab_host, compose, expected):
    host = fresh_lab_host()
    (host.root / "compose.yml").write_text(compose)
    before = host.snapshot()
    fails_with(host.run("deploy", "--host", host.name), f"{host.name}:{host.root}/compose.yml", expected)
    assert host.snapshot() == before
    assert not (host.root / "litellm").exists()


def test_disk_full_while_writing_leaves_the_old_files(fresh_lab_host):
    host = fresh_lab_host()
    (host.root / "compose.yml").write_text("services:\n  web:\n    image: nginx:alpine\n")
    config_dir = host.root / "litellm"
    config_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(config_dir)], check=True)
    try:
        (config_dir / "filler").write_bytes(b"x" * 14 * 1024)
        before = host.snapshot()
        fails_with(host.run("deploy", "--host", host.name), "writing the files failed, the previous ones are in place",
                   "No space left on device")
        assert host.snapshot() == before
        # No temp file is left behind (the audit line is best effort: on a full disk it cannot be written).
        assert {p.name for p in config_dir.iterdir()} <= {"backups", "deploys.log", "filler"}
    finally:
        subprocess.run(["umount", str(config_dir)], check=True)


def test_read_only_target_leaves_the_old_files(fresh_lab_host):
    host = fresh_lab_host()
    (host.root / "compose.yml").write_text("services:\n  web:\n    image: nginx:alpine\n")
    subprocess.run(["mount", "--bind", str(host.root), str(host.root)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(host.root)], check=True)
    try:
        before = host.snapshot()
        fails_with(host.run("deploy", "--host", host.name), "writing the files failed, the previous ones are in place")
        assert host.snapshot() == before
    finally:
        subprocess.run(["umount", str(host.root)], check=True)


def test_connection_dropped_in_the_middle_leaves_the_old_files(host, monkeypatch, tmp_path):
    from litedeploy.commands import files
    from litedeploy.deploy import deploy
    from litedeploy.errors import RemoteError
    from litedeploy.project import load_project

    real = files.install

    def dropping(*args, **kwargs):
        # Kill this session's sshd process once the new files are written beside their targets,
        # before the first one is moved into place: the connection dies mid-install.
        script = real(*args, **kwargs).splitlines()
        first_move = next(i for i, line in enumerate(script) if line.startswith("mv -f"))
        drop = ('p=$$; while [ "$(ps -o comm= -p "$p")" != sshd ]; do p=$(ps -o ppid= -p "$p" | tr -d " "); done; '
                'kill -KILL "$p"; sleep 5')
        return "\n".join(script[:first_move] + [drop] + script[first_move:])
    monkeypatch.setattr(files, "install", dropping)
    host.write_inventory({"port": host.port}, mock_response="a change that never lands")
    project = load_project(REPO, str(host.inventory), "templates")
    with pytest.raises(RemoteError, match="connection lost"):
        deploy(project, project.inventory.host(host.name), out=open("/dev/null", "w"))
    # The executor reconnects for the cleanup: the failure is audited and the lock released.
    assert '"error": "' + f"{host.name}: connection lost" in (host.root / "litellm/deploys.log").read_text()
    host.write_inventory()
    again = host.run("deploy", "--host", host.name, "--lock-timeout", "1")
    assert again.returncode == 0 and "nothing changed" in again.stdout, again.stderr
