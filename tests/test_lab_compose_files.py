"""Compose files as admins write them, and a port someone else holds: each deploys correctly, or
fails in one line naming the culprit with the host byte for byte as it was (or rolled back and
verified). Under compose v2 and v1, whose validation differs."""

from __future__ import annotations

import os
import stat

import pytest
import yaml
from conftest import TEAM_COMPOSE, deployed_once, encrypt_for_lab, fails_with, lab_secrets

from litedeploy.commands.files import backup_stem
from litedeploy.plan import FileChange

pytestmark = pytest.mark.lab


def deploys(host) -> None:
    run = host.run("deploy", "--host", host.name)
    assert run.returncode == 0, run.stdout + run.stderr
    assert host.run("ops.smoke", "--host", host.name).returncode == 0


def refused_untouched(host, *expected: str) -> str:
    before = host.snapshot()
    last = fails_with(host.run("deploy", "--host", host.name), *expected)
    assert host.snapshot() == before, "the host changed"
    return last


def test_a_symlinked_compose_file_is_edited_at_its_target_and_keeps_owner_mode_and_link(fresh_lab_host):
    host = fresh_lab_host()
    real = host.root / "stack files" / "docker-compose.yml"
    real.parent.mkdir()
    real.write_text(TEAM_COMPOSE)
    os.chmod(real, 0o640)
    os.chown(real, 1234, 1234)
    (host.root / "compose.yml").symlink_to(real)
    deploys(host)
    assert (host.root / "compose.yml").is_symlink()
    assert set(yaml.safe_load(real.read_text())["services"]) == {"web", "litellm"}
    info = real.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o640, 1234, 1234)


def test_a_four_space_compose_file_gets_a_four_space_block(fresh_lab_host):
    host = fresh_lab_host()
    four = "services:\n    web:\n        image: nginx:alpine\n"
    (host.root / "compose.yml").write_text(four)
    deploys(host)
    text = (host.root / "compose.yml").read_text()
    assert text.startswith(four) and "\n    litellm:\n        container_name:" in text


def test_an_empty_flow_services_mapping_takes_the_block(fresh_lab_host):
    host = fresh_lab_host()
    (host.root / "compose.yml").write_text("services: {}\n")
    deploys(host)


@pytest.mark.parametrize("compose, expected", [
    ("services: {web: {image: nginx:alpine}}\n", "'services:' is written in flow style"),
    ("services:\n  litellm:\n    image: theirs:1\n", "a service 'litellm' is already defined outside"),
    ("services:\n  web:\n    image: a\n  web:\n    image: b\n", "line 4: duplicate key 'web'"),
])
def test_a_compose_file_we_must_not_edit_is_named_and_left_alone(fresh_lab_host, compose, expected):
    host = fresh_lab_host()
    (host.root / "compose.yml").write_text(compose)
    refused_untouched(host, f"{host.name}:{host.root / 'compose.yml'}", expected)


def test_a_compose_file_that_is_not_utf8_is_named_and_left_alone(fresh_lab_host):
    host = fresh_lab_host()
    (host.root / "compose.yml").write_bytes(b"# \xe9quipe\nservices:\n  web:\n    image: nginx:alpine\n")
    refused_untouched(host, "is not UTF-8 text")


def test_a_compose_path_that_is_a_directory_is_named_and_left_alone(fresh_lab_host):
    host = fresh_lab_host()
    (host.root / "compose.yml").mkdir()
    refused_untouched(host, f"{host.root / 'compose.yml'}: is not a regular file")


def test_a_config_folder_with_spaces_and_quotes_deploys_and_keeps_five_backups(fresh_lab_host):
    host = fresh_lab_host()
    host.entry["config_dir"] = str(host.root / "it's a gateway")
    host.write_inventory()
    (host.root / "compose.yml").write_text(TEAM_COMPOSE)
    deploys(host)
    # Six older backups of config.yaml (as earlier deploys left them): one more deploy keeps the
    # newest five, its own among them. (Pruning each count is tested in test_commands, without a restart.)
    backups = host.root / "it's a gateway" / "backups"
    stem = backup_stem(FileChange(str(host.root / "it's a gateway" / "config.yaml"), None, "", "0640"))
    for n in range(6):
        older = backups / f"{stem}.2026010{n}T000000Z-000000"
        older.write_text(f"model_list: [] # {n}\n")
        os.utime(older, (1_767_000_000 + n, 1_767_000_000 + n))
    host.write_inventory(mock_response="answer 1")
    assert host.run("deploy", "--host", host.name).returncode == 0
    kept = sorted(name for name in os.listdir(backups) if name.startswith(stem))
    assert len(kept) == 5 and f"{stem}.20260105T000000Z-000000" in kept
    assert not any(name.endswith(("20260100T000000Z-000000", "20260101T000000Z-000000")) for name in kept)


def test_a_first_deploy_onto_a_port_another_container_holds_names_it(fresh_lab_host):
    squatter = fresh_lab_host("-squatter")
    deployed_once(squatter, TEAM_COMPOSE)
    host = fresh_lab_host()
    host.entry["port"] = squatter.port
    host.write_inventory()
    (host.root / "compose.yml").write_text(TEAM_COMPOSE)
    refused_untouched(host, f"port {squatter.port} is already in use by container {squatter.container}")


def test_moving_to_a_port_another_gateway_holds_is_rolled_back_and_verified(fresh_lab_host):
    squatter = deployed_once(fresh_lab_host("-squatter"), TEAM_COMPOSE)
    host = deployed_once(fresh_lab_host(), TEAM_COMPOSE)
    old_port = host.port
    host.entry["port"] = squatter.port
    host.write_inventory()
    last = fails_with(host.run("deploy", "--host", host.name),
                      f"port {squatter.port} answers, but from container {squatter.container}",
                      "rolled back: previous files and container restored, answering again")
    assert "ROLLBACK FAILED" not in last
    host.entry["port"] = old_port
    host.write_inventory()
    assert host.run("ops.smoke", "--host", host.name).returncode == 0


def test_taking_over_the_roles_block_with_a_plaintext_key_warns_and_keeps_its_backup_private(fresh_lab_host):
    host = fresh_lab_host()
    old_key = "sk-role-era-plaintext-4242"
    (host.root / "compose.yml").write_text(
        TEAM_COMPOSE + "# BEGIN ANSIBLE MANAGED BLOCK litellm\n  litellm:\n    image: old:1\n    environment:\n"
        f"      - LITELLM_MASTER_KEY={old_key}\n# END ANSIBLE MANAGED BLOCK litellm\n")
    os.chmod(host.root / "compose.yml", 0o644)
    run = host.run("deploy", "--host", host.name)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{host.name}: warning: {host.root / 'compose.yml'} held LITELLM_MASTER_KEY in plain text" in run.stderr
    assert old_key not in run.stdout + run.stderr + (host.root / "compose.yml").read_text()
    backups = host.root / "litellm/backups"
    (backup,) = [path for path in backups.iterdir() if path.name.startswith("compose.yml.")]
    assert old_key in backup.read_text() and stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE((host.root / "compose.yml").stat().st_mode) == 0o644


def test_secrets_with_dollars_hashes_spaces_quotes_and_backslashes_reach_the_container_as_written(fresh_lab_host):
    host = fresh_lab_host()
    odd = {"LITELLM_MASTER_KEY": 'sk-p$ss#w rd"x\\y!%', "LITELLM_SALT_KEY": "salt $HOME #not-a-comment"}
    host.entry["secrets_file"] = str(encrypt_for_lab(lab_secrets(**odd), host.root / "odd.enc.yaml"))
    host.write_inventory()
    (host.root / "compose.yml").write_text(TEAM_COMPOSE)
    deploys(host)  # the smoke authenticates with the odd master key
    env = dict(item.split("=", 1) for item in host.inspect()["Config"]["Env"])
    assert {name: env[name] for name in odd} == odd
    listed = host.run("ops.env", "--host", host.name)
    assert listed.returncode == 0 and listed.stdout.count("matches the repo") >= 2, listed.stdout


def test_removing_the_only_service_leaves_no_file_compose_refuses_and_a_deploy_brings_it_back(fresh_lab_host):
    host = fresh_lab_host()
    (host.root / "compose.yml").write_text("")
    deploys(host)
    removed = host.run("compose.remove", "--host", host.name)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    # No file without services: compose v1 reads `services: {}` alone as a service named services.
    assert not (host.root / "compose.yml").exists() and "which held only the litellm service" in removed.stdout
    assert host.snapshot()["container"] is None
    deploys(host)
    (host.root / "compose.yml").write_text((host.root / "compose.yml").read_text() + "volumes:\n  data: {}\n")
    assert host.run("compose.remove", "--host", host.name).returncode == 0
    assert (host.root / "compose.yml").read_text() == "services: {}\nvolumes:\n  data: {}\n"


@pytest.mark.parametrize("team", [
    # Saved on Windows, then edited by the old role: its block's lines end in LF, the rest in CRLF.
    "services:\r\n  web:\r\n    image: nginx:alpine\r\n",
    # With a byte-order mark, and the role's block appended at the end of the file, where an x- key
    # was open: compose never ran it; ours goes under services.
    "\ufeffservices:\r\n  web:\r\n    image: nginx:alpine\r\nx-logging:\r\n  driver: json-file\r\n",
], ids=["crlf", "bom-and-x-key"])
def test_the_roles_block_in_a_crlf_file_is_taken_over_in_place_every_other_byte_kept(fresh_lab_host, team):
    host = fresh_lab_host()
    old_key = "sk-role-era-plaintext-4242"
    role = ("# BEGIN ANSIBLE MANAGED BLOCK litellm\n  litellm:\n    image: old:1\n    environment:\n"
            f"      - LITELLM_MASTER_KEY={old_key}\n# END ANSIBLE MANAGED BLOCK litellm\n")
    (host.root / "compose.yml").write_bytes((team + role).encode())
    deploys(host)
    edited = (host.root / "compose.yml").read_bytes().decode()
    assert old_key not in edited and edited.count("# BEGIN ANSIBLE MANAGED BLOCK litellm") == 1
    ours = edited[edited.index("# BEGIN"):edited.index("# END ANSIBLE MANAGED BLOCK litellm\r\n") + 37]
    assert edited.replace(ours, "") == team, "every byte outside the block is the admin's"
    assert "\n" not in ours.replace("\r\n", ""), "our lines end as the admin's do"
    assert host.inspect()["Config"]["Labels"]["com.docker.compose.service"] == "litellm"
