"""The safety promise on the lab: interrupts, the lock on every exit path, a hosts.yaml schema,
secrets that must reach the container as written, and installs as users do them. Each failing case
exits 1 with a last `error:` line naming the culprit and leaves the host byte for byte as it was,
or rolls back and proves it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO, encrypt_for_lab, fails_with, lab_secrets

pytestmark = pytest.mark.lab
# Nothing here depends on the compose CLI; the compose cases run under both in test_lab_compose_files.
COMPOSE_FLAVOURS = ("v2",)


def lock_dir(host) -> str:
    return f"/run/lock/litedeploy{str(host.root / 'litellm').replace('/', '_')}"


def audit_lines(host) -> list[dict]:
    return [json.loads(line) for line in (host.root / "litellm/deploys.log").read_text().splitlines()]


def untouched(host, *argv: str, expected: tuple[str, ...], env: dict | None = None) -> str:
    before = host.snapshot()
    last = fails_with(host.run(*argv, env=env), *expected)
    assert host.snapshot() == before, "the host changed"
    assert not os.path.exists(lock_dir(host)), "the lock was left behind"
    return last


def start_deploy(host) -> subprocess.Popen:
    env = {**os.environ, "INVOKE_LITELLM_INVENTORY": str(host.inventory)}
    return subprocess.Popen([sys.executable, "-u", "-m", "invoke", "deploy", "--host", host.name], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)


def wait_for_line(process: subprocess.Popen, text: str) -> None:
    for line in process.stdout:
        if text in line:
            return
    raise AssertionError(f"the deploy ended before printing {text!r}")


def test_sigterm_during_the_restart_rolls_back_audits_and_releases_the_lock(host):
    config_before = (host.root / "litellm/config.yaml").read_bytes()
    host.write_inventory(mock_response="interrupted answer")
    deploy = start_deploy(host)
    wait_for_line(deploy, "waiting for litellm to answer")
    deploy.send_signal(signal.SIGTERM)
    output, _ = deploy.communicate(timeout=300)
    assert deploy.returncode == 1
    assert output.strip().splitlines()[-1].startswith(f"error: {host.name}: interrupted; rolled back: previous "
                                                      "files and container restored, answering again")
    assert (host.root / "litellm/config.yaml").read_bytes() == config_before
    assert not os.path.exists(lock_dir(host))
    last = audit_lines(host)[-1]
    assert (last["result"], last["rolled_back"]) == ("failed", True) and "interrupted" in last["error"]
    host.write_inventory()
    assert host.run("ops.smoke", "--host", host.name).returncode == 0


def test_break_lock_never_breaks_the_lock_of_a_deploy_still_running(host):
    host.write_inventory(mock_response="a slow change")
    running = start_deploy(host)
    try:
        wait_for_line(running, "waiting for litellm to answer")
        refused = host.run("deploy", "--host", host.name, "--break-lock", "--lock-timeout", "0")
        fails_with(refused, "--break-lock refused", "is still connected (sshd pid")
    finally:
        output, _ = running.communicate(timeout=300)
    assert running.returncode == 0, output
    assert not os.path.exists(lock_dir(host))


def test_break_lock_clears_the_lock_of_a_deploy_that_died(host):
    os.mkdir(lock_dir(host))
    with open(f"{lock_dir(host)}/owner", "w") as owner:
        json.dump({"user": "ana", "from": "laptop", "pid": 1, "since": "2026-11-20T10:00:00+00:00"}, owner)
    with open(f"{lock_dir(host)}/connection", "w") as connection:
        connection.write("999999\n")  # that sshd is long gone
    run = host.run("deploy", "--host", host.name, "--break-lock")
    assert run.returncode == 0, run.stderr
    assert not os.path.exists(lock_dir(host))


def test_a_compose_file_error_after_the_lock_was_taken_releases_it_and_is_audited(host):
    before = len(audit_lines(host))
    compose = host.root / "compose.yml"
    original = compose.read_bytes()
    compose.write_bytes(original + b"  web:\n    image: twice\n")
    try:
        untouched(host, "deploy", "--host", host.name, expected=("duplicate key 'web'",))
    finally:
        compose.write_bytes(original)
    lines = audit_lines(host)
    assert len(lines) == before + 1 and lines[-1]["result"] == "failed"


@pytest.mark.parametrize("settings, expected", [
    ({"port": True}, "'port' must be a port number (1-65535), not True"),
    ({"port": 70000}, "'port' must be a port number"),
    ({"bind": "localhost"}, "'bind' must be an IP address"),
    ({"container_name": "my gateway"}, "'container_name' must be a container name Docker accepts"),
    ({"image": "img:1\n    privileged: true"}, "'image' must be an image reference"),
    ({"compose_project": "Team Stack"}, "'compose_project' must be a compose project name"),
    ({"marker": "BEGIN {mark}"}, "'marker' must be one comment line"),
    ({"health_timeout": 0}, "'health_timeout' must be a positive number of seconds"),
    ({"sudo": "yes"}, "'sudo' must be true or false"),
])
def test_a_bad_setting_in_hosts_yaml_is_named_before_anything_is_sent(host, settings, expected):
    host.write_inventory(settings)
    untouched(host, "deploy", "--host", host.name, expected=(str(host.inventory), f"host {host.name!r}", expected))


def test_an_unknown_var_is_a_typo_not_a_silent_default(host):
    host.write_inventory(promt_caching=True)
    untouched(host, "deploy", "--host", host.name, expected=("vars.promt_caching is used by no template",))


def test_a_key_given_twice_in_hosts_yaml_is_named_with_its_line(host):
    text = host.inventory.read_text()
    host.inventory.write_text(text.replace("    port:", "    health_timeout: 60\n    port:", 1))  # the host's entry
    untouched(host, "deploy", "--host", host.name, expected=(str(host.inventory), "duplicate key 'health_timeout'"))


@pytest.mark.parametrize("argv, expected", [
    (("ops.logs", "--tail", "abc"), "--tail must be a whole number, not 'abc'"),
    (("ops.logs", "--since", "yesterday"), "--since 'yesterday' is neither a duration"),
    (("ops.logs", "--since", "2026-13-45T10:00"), "--since '2026-13-45T10:00' is neither a duration"),
    (("ops.logs", "--grep", "("), "--grep '(' is not a regular expression"),
    (("deploy", "--parallel", "0"), "--parallel must be at least 1, not 0"),
    (("deploy", "--lock-timeout", "soon"), "--lock-timeout must be a number of seconds, not 'soon'"),
])
def test_a_bad_option_value_is_one_line_not_a_traceback(host, argv, expected):
    untouched(host, argv[0], "--host", host.name, *argv[1:], expected=(expected,))


@pytest.mark.parametrize("secrets, expected", [
    # A number no temporary path holds (pytest numbers its folders: pytest-123).
    ({"LITELLM_SALT_KEY": 987654321}, "LITELLM_SALT_KEY is not text (YAML read it as int)"),
    ({"LITELLM_MASTER_KEY": "sk-it's-$quoted"}, "LITELLM_MASTER_KEY holds a single quote together with $"),
    ({"LITELLM_MASTER_KEY": "sk-cut\u2028short"}, "LITELLM_MASTER_KEY holds a line break"),
    # LiteLLM's docs' example key: newer releases refuse to start on it, older ones run open.
    ({"LITELLM_MASTER_KEY": "sk-1234"}, "LITELLM_MASTER_KEY is an example key from LiteLLM's docs"),
    ({"LITELLM_MASTER_KEY": "sk-ключ-0123456789"}, "LITELLM_MASTER_KEY holds characters outside printable ASCII"),
    ({"LITELLM_MASTER_KEY": "sk-${HOME}-1"}, "LITELLM_MASTER_KEY holds '${' (compose v1 expands it even in quotes)"),
])
def test_a_secret_that_cannot_reach_the_container_as_written_is_refused_by_name(host, tmp_path, secrets, expected):
    path = encrypt_for_lab(lab_secrets(**secrets), tmp_path / "s.enc.yaml")
    host.write_inventory({"secrets_file": str(path)})
    last = untouched(host, "deploy", "--host", host.name, expected=(str(path), expected))
    for value in secrets.values():
        assert str(value) not in last


def test_sops_is_found_beside_the_interpreter_when_it_is_not_on_path(host):
    host.write_inventory(mock_response="found sops without PATH")
    run = host.run("deploy", "--host", host.name, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "found sops without PATH" in (host.root / "litellm/config.yaml").read_text()
