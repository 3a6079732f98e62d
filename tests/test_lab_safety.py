"""A deploy never leaves the host worse than it found it: proven through the lab's real sshd, dockerd
and LiteLLM. The module's host is deployed once; each test puts its inventory back when done."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time

import pytest
import yaml
from conftest import command_lines_seen, deployed_once, encrypt_for_lab, fails_with, lab_secrets

pytestmark = pytest.mark.lab

USER_COMPOSE = "services:\n  web:\n    image: nginx:alpine\n    network_mode: host\n"


@pytest.fixture(scope="module")
def deployed(lab_host):
    return deployed_once(lab_host, USER_COMPOSE)


def audit_lines(host) -> list[dict]:
    return [json.loads(line) for line in (host.root / "litellm/deploys.log").read_text().splitlines()]


def smoke_ok(host) -> bool:
    return host.run("ops.smoke", "--host", host.name).returncode == 0


def added_model(host, name: str = "claude-extra") -> list[dict]:
    """The default models plus one; a name of its own per test, since the host keeps what a test deployed."""
    models = yaml.safe_load(host.inventory.read_text())["defaults"]["vars"]["models"]
    return models + [{"name": name, "model": "bedrock/us.anthropic.claude-opus-4-20250514-v1:0"}]


def test_check_with_diff_shows_the_change_and_changes_nothing(host):
    before = host.snapshot()
    host.write_inventory(models=added_model(host))
    check = host.run("deploy", "--host", host.name, "--check", "--diff")
    assert check.returncode == 0, check.stderr
    assert f"would change {host.root}/litellm/config.yaml" in check.stdout
    assert '+  - model_name: "claude-extra"' in check.stdout
    assert "would restart litellm" in check.stdout
    assert host.snapshot() == before


def test_diff_of_the_env_file_names_changed_keys_but_no_value(host, tmp_path):
    secrets = lab_secrets(LITELLM_SALT_KEY="lab-salt-rotated-0123456789")
    host.write_inventory({"secrets_file": str(encrypt_for_lab(secrets, tmp_path / "s.enc.yaml"))})
    check = host.run("deploy", "--host", host.name, "--check", "--diff")
    assert check.returncode == 0, check.stderr
    assert "-LITELLM_SALT_KEY=********  (old value)" in check.stdout
    assert "+LITELLM_SALT_KEY=********  (new value)" in check.stdout
    for value in {**lab_secrets(), **secrets}.values():
        assert value not in check.stdout + check.stderr


def test_a_crash_looping_gateway_is_rolled_back_to_the_previous_files_and_container(host):
    before = host.snapshot()
    host.write_inventory(**host.crash_at_start())
    failed = host.run("deploy", "--host", host.name)
    assert failed.returncode == 1
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {host.name}: ") and "crash-looping" in error
    assert "rolled back: previous files and container restored, answering again" in error
    assert "--- last lines of the gateway's log ---" in failed.stderr
    assert "rolled_back=yes" in failed.stderr
    after = host.snapshot()
    assert {k: v for k, v in after.items() if k != "container"} == \
        {k: v for k, v in before.items() if k != "container"}
    host.write_inventory()
    assert smoke_ok(host)
    last = audit_lines(host)[-1]
    assert (last["result"], last["rolled_back"]) == ("failed", True)
    assert lab_secrets()["LITELLM_MASTER_KEY"] not in json.dumps(last)


@pytest.mark.compose_flavours("v2")  # our wait and our rollback; v1 rolls back above
def test_a_tight_health_timeout_fails_the_deploy_but_not_the_rollback_of_a_working_gateway(host):
    """Half a second is too short for any LiteLLM to start: the deploy fails; the previous config,
    restored, gets the time LiteLLM takes, so no false "ROLLBACK FAILED"."""
    host.write_inventory({"health_timeout": 0.5}, mock_response="lab mock: not given the time to answer")
    failed = host.run("deploy", "--host", host.name)
    host.write_inventory()
    assert failed.returncode == 1
    error = failed.stderr.strip().splitlines()[-1]
    assert "rolled back: previous files and container restored, answering again" in error, error
    assert "ROLLBACK FAILED" not in failed.stderr
    assert smoke_ok(host)


def test_an_image_that_cannot_be_pulled_leaves_the_running_container_alone(host):
    before = host.snapshot()
    # A registry on a closed loopback port: the pull fails at once, no traffic leaves the machine.
    host.write_inventory({"image": "127.0.0.1:1/litedeploy-missing:0"})
    failed = host.run("deploy", "--host", host.name)
    assert failed.returncode == 1
    # Pulled before anything changes: nothing to roll back.
    assert failed.stderr.splitlines()[-1].startswith(f"error: {host.name}: cannot pull 127.0.0.1:1/litedeploy-missing:0")
    assert host.snapshot() == before
    host.write_inventory()
    assert smoke_ok(host)


@pytest.mark.compose_flavours("v2")  # the lock is ours; compose is never asked
def test_a_held_lock_makes_a_deploy_wait_then_fail_and_break_lock_clears_it(host):
    lock = f"/run/lock/litedeploy{str(host.root / 'litellm').replace('/', '_')}"
    os.mkdir(lock)
    with open(f"{lock}/owner", "w") as owner:
        json.dump({"user": "ana", "from": "elsewhere", "pid": 4242, "since": "2026-11-22T10:00:00+00:00"}, owner)
    before = host.snapshot()
    host.write_inventory(models=added_model(host, "claude-locked"))
    blocked = host.run("deploy", "--host", host.name, "--lock-timeout", "3")
    assert blocked.returncode == 1
    assert "waiting for the deploy lock held by ana@elsewhere (pid 4242)" in blocked.stderr
    assert blocked.stderr.splitlines()[-1] == (
        f"error: {host.name}: another deploy holds the lock: ana@elsewhere (pid 4242) since "
        "2026-11-22T10:00:00+00:00; if it is stale, run again with --break-lock")
    assert host.snapshot() == before
    broken = host.run("deploy", "--host", host.name, "--break-lock")
    assert broken.returncode == 0, broken.stderr
    assert not os.path.exists(lock)


@pytest.mark.compose_flavours("v2")  # the lock is ours; the block edit is compose-blind
def test_two_deploys_at_once_take_turns_and_the_compose_file_stays_whole(host):
    host.write_inventory(models=added_model(host, "claude-concurrent"))
    runs = [None, None]

    def deploy(slot: int) -> None:
        runs[slot] = host.run("deploy", "--host", host.name)
    threads = [threading.Thread(target=deploy, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.3)
    for thread in threads:
        thread.join()
    assert [run.returncode for run in runs] == [0, 0], [run.stderr for run in runs]
    outputs = " ".join(run.stdout + run.stderr for run in runs)
    assert "waiting for the deploy lock" in outputs
    assert outputs.count("changed config.yaml; restarted litellm") == 1
    assert outputs.count("nothing changed") == 1
    compose = (host.root / "compose.yml").read_text()
    assert compose.count("# BEGIN ANSIBLE MANAGED BLOCK litellm") == 1
    assert set(yaml.safe_load(compose)["services"]) == {"web", "litellm"}


@pytest.mark.compose_flavours("v2")  # the audit log is ours
def test_each_deploy_appends_one_audit_line_to_a_0640_log(host):
    count = len(audit_lines(host))
    assert host.run("deploy", "--host", host.name).returncode == 0
    lines = audit_lines(host)
    assert len(lines) == count + 1
    last = lines[-1]
    assert last["result"] == "ok" and last["host"] == host.name and last["user"]
    assert set(last) >= {"id", "time", "user", "from", "commit", "changed", "restart", "rolled_back"}
    assert stat.S_IMODE(os.stat(host.root / "litellm/deploys.log").st_mode) == 0o640


def test_no_secret_appears_in_any_process_command_line_during_a_deploy(host, tmp_path):
    secrets = lab_secrets(LITELLM_SALT_KEY="lab-salt-for-the-ps-test-98765")
    host.write_inventory({"secrets_file": str(encrypt_for_lab(secrets, tmp_path / "s.enc.yaml"))})
    with command_lines_seen() as seen:
        run = host.run("deploy", "--host", host.name)
    assert run.returncode == 0, run.stderr
    assert any("sh -c" in line for line in seen), "the watcher saw the deploy's remote commands"
    for value in secrets.values():
        assert not [line for line in seen if value in line]


def test_compose_remove_takes_out_the_block_and_the_container_only(host):
    removed = host.run("compose.remove", "--host", host.name)
    assert removed.returncode == 0, removed.stderr
    assert (host.root / "compose.yml").read_text() == USER_COMPOSE
    assert host.snapshot()["container"] is None
    # the config stays recoverable, and a deploy brings everything back
    assert (host.root / "litellm/config.yaml").exists()
    assert host.run("deploy", "--host", host.name).returncode == 0


def test_a_compose_file_the_compose_cli_rejects_changes_nothing(fresh_lab_host, compose_flavour):
    host = fresh_lab_host()
    invalid = "services:\n  web:\n    image: nginx:alpine\n    ports: \"80:80\"\n"
    (host.root / "compose.yml").write_text(invalid)
    failed = host.run("deploy", "--host", host.name)
    assert failed.returncode == 1
    # Each compose words it its own way.
    reason = {"v2": f"validating {host.root / 'compose.yml'}: services.web.ports must be a array",
              "v1": "services.web.ports contains an invalid type"}
    assert f"the new compose file was rejected: {reason[compose_flavour]}" in failed.stderr.splitlines()[-1]
    state = host.snapshot()
    assert state[str(host.root / "compose.yml")] == invalid.encode()
    assert state[str(host.root / "litellm/config.yaml")] is None and state["container"] is None


def test_a_port_already_in_use_stops_a_first_deploy_naming_the_process_before_any_change(fresh_lab_host):
    host = fresh_lab_host()
    (host.root / "compose.yml").write_text(USER_COMPOSE)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", host.port))
        squatter.listen()
        failed = host.run("deploy", "--host", host.name)
    fails_with(failed, f"port {host.port} is already in use by process python", f"(pid {os.getpid()})")
    state = host.snapshot()
    assert state[str(host.root / "compose.yml")] == USER_COMPOSE.encode()
    assert state[str(host.root / "litellm/config.yaml")] is None
    assert state[str(host.root / "litellm/litellm.env")] is None
    assert state["container"] is None
