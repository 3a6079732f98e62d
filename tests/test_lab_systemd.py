"""The systemd runtime on the lab's systemd host (systemd as PID 1, its own sshd at lab1's address,
no package index, two Ollama stand-ins on its loopback): one admin's week with a host that has no
Docker for the gateway. The tests build on each other, in order: first deploy, no-op, config and
unit changes, a failed start rolled back, a failed install, rollback to the previous venv, and the
ops, compose and lock tasks. What the host holds is checked on the host itself, not through the tool.
"""

from __future__ import annotations

import http.client
import json
import secrets
import subprocess
import time

import pytest
import yaml
from conftest import REPO, LabHost, copy_templates, encrypt_for_lab, fails_with, lab_secrets

from lab import locks, systemd_host
from lab.load import Load, summary
from litedeploy.inventory import LOCAL_PATHS

pytestmark = pytest.mark.lab
UNIT = "/etc/systemd/system/litellm.service"
# The LiteLLM of the lab's wheel folder, which hosts.yaml's labsd pins.
LITELLM = locks.LITELLM.version("litellm")
PROBES = {"LITEDEPLOY_PROBE_DOUBLE": "it's #1 é ", "LITEDEPLOY_PROBE_SINGLE": '$HOME "q" \\x %i'}


class SystemdHost(LabHost):
    def sh(self, command: str, check: bool = True) -> str:
        """A command on the host, beside the tool (docker exec into the lab's systemd host)."""
        done = subprocess.run([*self.docker, "exec", systemd_host.CONTAINER, "sh", "-c", command],
                              capture_output=True, text=True)
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def journal(self, message: str) -> None:
        """A line in the unit's journal (from stdin, so no argument holds it), as if the unit logged it."""
        subprocess.run([*self.docker, "exec", "-i", systemd_host.CONTAINER, "logger", "--journald"], check=True,
                       input=f"MESSAGE={message}\nOBJECT_SYSTEMD_UNIT=litellm.service\n", text=True)

    def show(self) -> dict:
        out = self.sh("systemctl show -p MainPID,NRestarts,ActiveState,ExecMainStartTimestamp litellm")
        return dict(line.split("=", 1) for line in out.splitlines())

    def ok(self, *argv: str) -> str:
        run = self.run(*argv)
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout


@pytest.fixture(scope="module")
def host(lab, tmp_path_factory) -> SystemdHost:
    """The lab's systemd host as hosts.yaml's `labsd` describes it, wiped first so the first deploy
    is a first one, and wiped again afterwards."""
    data = yaml.safe_load((REPO / "hosts.yaml").read_text())
    entry = dict(data["hosts"]["labsd"])
    # Values each quoting of the env file carries (double quotes, single quotes), read by systemd.
    entry["vars"] = {**entry["vars"], "env": {**entry["vars"].get("env", {}), **PROBES}}
    for key in LOCAL_PATHS:
        if key in entry:
            entry[key] = str(REPO / entry[key])
    root = tmp_path_factory.mktemp("systemd")
    target = SystemdHost("labsd", root, root / "hosts.yaml", entry, docker=lab.namespace_host(1).docker)
    target.write_inventory()
    wipe = ("systemctl stop 'litellm@*' 2>/dev/null; systemctl disable --now litellm litellm-proxy 2>/dev/null; "
            "rm -rf /etc/systemd/system/litellm.service "
            "/etc/systemd/system/litellm@.service /etc/systemd/system/litellm-proxy.service "
            "/etc/systemd/system/multi-user.target.wants/litellm@*.service /etc/litellm "
            "/opt/litellm /run/lock/litedeploy*; userdel litellm 2>/dev/null; systemctl daemon-reload; true")
    target.sh(wipe)
    yield target
    target.sh(wipe)


def test_first_deploy_installs_user_venv_and_unit_from_the_wheel_folder(host):
    out = host.ok("deploy", "--host", host.name)
    assert "changed litellm.service, litellm.env, config.yaml, venv; recreated litellm" in out
    venv = host.sh(f"sed -n 's|^ExecStart=\\(.*\\)/bin/litellm .*|\\1|p' {UNIT}").strip()
    assert venv.startswith(f"/opt/litellm/litellm-{LITELLM}-")
    assert host.sh(f"ls -A {venv}/.litedeploy-complete && ls -d /tmp/.litedeploy-* 2>/dev/null; true").strip() \
        == f"{venv}/.litedeploy-complete", "the staged wheels are removed after the install"
    assert host.sh("stat -c '%U:%G %a' /etc/litellm/config.yaml /etc/litellm/litellm.env").split("\n")[:2] == \
        ["root:litellm 640", "root:litellm 640"]
    assert host.sh("systemctl is-enabled litellm").strip() == "enabled"
    pid = host.show()["MainPID"]
    assert host.sh(f"ps -o user= -p {pid}").strip() == "litellm"
    key = lab_secrets()["LITELLM_MASTER_KEY"]
    assert key not in host.sh(f"cat {UNIT}; ps -eo args")
    smoke = host.ok("ops.smoke", "--host", host.name)
    assert "ollama stand-in" in smoke and "FAIL" not in smoke
    # The host's sshd forbids tunnels: every request went through the task's shell instead.
    assert "refused local port forward" in host.sh("journalctl -u ssh --no-pager")


def test_a_second_deploy_changes_nothing_and_keeps_the_process(host):
    before = host.show()
    out = host.ok("deploy", "--host", host.name)
    assert "nothing changed" in out and "restarted=no" in out
    assert host.show() == before


def test_a_config_change_restarts_without_reloading_the_unit_or_reinstalling(host):
    before, venvs = host.show(), host.sh("ls --full-time /opt/litellm")
    host.write_inventory(router_settings={"num_retries": 1})
    out = host.ok("deploy", "--host", host.name)
    assert "changed config.yaml; restarted litellm" in out
    assert host.show()["MainPID"] != before["MainPID"]
    assert host.sh("ls --full-time /opt/litellm") == venvs
    assert "num_retries: 1" in host.sh("cat /etc/litellm/config.yaml")


def test_a_unit_change_reloads_systemd_and_restarts(host):
    host.write_inventory(router_settings={"num_retries": 1}, workers=2)
    out = host.ok("deploy", "--host", host.name)
    # The env file gains TIMEOUT_WORKER_HEALTHCHECK with the second worker.
    assert "changed litellm.service, litellm.env; recreated litellm" in out
    assert "TIMEOUT_WORKER_HEALTHCHECK=60" in host.sh("cat /etc/litellm/litellm.env")
    pid = host.show()["MainPID"]
    assert "--num_workers 2" in host.sh(f"ps -o args= -p {pid}")
    assert host.sh("systemctl show -p NeedDaemonReload --value litellm").strip() == "no"
    # Back to one worker: the tests after this one restart LiteLLM often, and one starts faster.
    host.write_inventory(router_settings={"num_retries": 1})
    assert "changed litellm.service, litellm.env; recreated litellm" in host.ok("deploy", "--host", host.name)
    assert "--num_workers" not in host.sh(f"ps -o args= -p {host.show()['MainPID']}")


def test_a_failed_start_is_rolled_back_to_the_files_and_process_before(host):
    """The unit crash-loops on the new files; they are restored."""
    files_before = host.sh("cat /etc/litellm/config.yaml /etc/litellm/litellm.env")
    host.write_inventory(router_settings={"num_retries": 1}, **host.crash_at_start())
    failed = host.run("deploy", "--host", host.name)
    host.write_inventory(router_settings={"num_retries": 1})
    assert failed.returncode == 1
    error = failed.stderr.strip().splitlines()[-1]
    assert "crash-looping" in error and "rolled back: previous files and service restored, answering again" in error
    assert host.sh("cat /etc/litellm/config.yaml /etc/litellm/litellm.env") == files_before
    assert host.show()["NRestarts"] == "0" and host.show()["ActiveState"] == "active"
    host.ok("ops.smoke", "--host", host.name)
    audit = [json.loads(line.split(" ", 1)[1]) for line in host.ok("ops.audit", "--host", host.name).splitlines()]
    assert audit[-1]["result"] == "failed" and audit[-1]["rolled_back"] is True


def test_a_failed_install_changes_nothing(host):
    """A package the wheel folder lacks: pip fails, the half-made venv goes, the service runs on."""
    before, files = host.show(), host.sh(f"cat {UNIT} /etc/litellm/config.yaml /etc/litellm/litellm.env")
    host.write_inventory({"packages": [*host.entry["packages"], "no-such-package==1.0"]},
                         router_settings={"num_retries": 1})
    failed = host.run("deploy", "--host", host.name)
    host.write_inventory(router_settings={"num_retries": 1})
    assert failed.returncode == 1
    assert "installing" in failed.stderr and "failed, nothing else changed" in failed.stderr
    assert host.show() == before
    assert host.sh(f"cat {UNIT} /etc/litellm/config.yaml /etc/litellm/litellm.env") == files
    assert len(host.sh("ls /opt/litellm").split()) == 1


def test_a_database_without_a_generated_prisma_client_is_refused_before_anything_changes(host, tmp_path):
    """The wheel folder's prisma was never generated: with vars.database LiteLLM would exit at start
    and the unit crash-loop, so the deploy names the reason before any file changes."""
    before, files = host.show(), host.sh(f"cat {UNIT} /etc/litellm/config.yaml /etc/litellm/litellm.env")
    secrets = encrypt_for_lab(lab_secrets(DATABASE_URL="postgresql://litellm:pw@127.0.0.1:1/litellm"),
                              tmp_path / "secrets.enc.yaml")
    host.write_inventory({"secrets_file": str(secrets)}, router_settings={"num_retries": 1},
                         database=True, redis={"host": "127.0.0.1"})
    failed = host.run("deploy", "--host", host.name)
    host.write_inventory(router_settings={"num_retries": 1})
    fails_with(failed, f"{host.name}: /opt/litellm/litellm-{LITELLM}-",
               "has no generated Prisma client, which LiteLLM needs with vars.database", "; nothing else changed")
    assert host.show() == before
    assert host.sh(f"cat {UNIT} /etc/litellm/config.yaml /etc/litellm/litellm.env") == files


def test_a_unit_systemd_would_half_ignore_is_refused_and_changes_nothing(host, tmp_path):
    """A mistyped setting in the unit template: systemd would start the service without it, so
    `systemd-analyze verify` on the host refuses it, and the config changed alongside goes back."""
    before, files = host.show(), host.sh(f"cat {UNIT} /etc/litellm/config.yaml /etc/litellm/litellm.env")
    templates = copy_templates(tmp_path)
    unit = templates / "litellm.service.j2"
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=on-failur"))
    host.write_inventory(router_settings={"num_retries": 3})
    failed = host.run("deploy", "--host", host.name, env={"INVOKE_LITELLM_TEMPLATES": str(templates)})
    host.write_inventory(router_settings={"num_retries": 1})
    fails_with(failed, f"{host.name}:{UNIT}: the new unit was rejected: {UNIT}:",
               "Failed to parse service restart specifier")
    assert host.sh(f"cat {UNIT} /etc/litellm/config.yaml /etc/litellm/litellm.env") == files
    assert host.show() == before


def test_rollback_returns_to_the_previous_venv(host):
    """Another set of packages is another venv; a rollback's unit runs the previous one again,
    which the kept release kept from being pruned."""
    old_venv = host.sh("ls -d /opt/litellm/*").strip()
    # One more pin, of what the wheel folder holds: the lock names its version.
    pyyaml = f"PyYAML=={locks.LITELLM.version('pyyaml')}"
    host.write_inventory({"packages": [*host.entry["packages"], pyyaml]},
                         router_settings={"num_retries": 1})
    out = host.ok("deploy", "--host", host.name)
    assert "changed litellm.service, venv; recreated litellm" in out
    assert len(host.sh("ls /opt/litellm").split()) == 2
    back = host.ok("rollback", "--host", host.name)
    host.write_inventory(router_settings={"num_retries": 1})
    assert f"{host.name}: back to release" in back
    assert f"ExecStart={old_venv}/bin/litellm" in host.sh(f"cat {UNIT}")
    assert old_venv in host.sh(f"cat /proc/{host.show()['MainPID']}/cmdline | tr '\\0' ' '")
    host.ok("ops.smoke", "--host", host.name)
    assert "nothing changed" in host.ok("deploy", "--host", host.name), "hosts.yaml pins what now runs"


def test_status_reads_the_unit_and_reports_drift(host):
    out = host.ok("ops.status", "--host", host.name)
    assert "running, answering" in out and "restarts 0" in out and "no drift" in out
    assert f"venv    /opt/litellm/litellm-{LITELLM}-" in out
    host.write_inventory(router_settings={"num_retries": 2})
    drifted = host.run("ops.status", "--host", host.name, "--json")
    host.write_inventory(router_settings={"num_retries": 1})
    assert drifted.returncode == 1 and json.loads(drifted.stdout)["drift"] == ["config.yaml"]


def test_logs_come_from_the_journal_with_since_and_follow(host):
    key = lab_secrets()["LITELLM_MASTER_KEY"]
    host.journal(f"a careless line with the key {key} in it")
    logs = host.ok("ops.logs", "--host", host.name, "--tail", "50")
    assert "/health/liveliness" in logs and "a careless line with the key ******** in it" in logs and key not in logs
    assert host.ok("ops.logs", "--host", host.name, "--since", "2099-01-01T00:00:00").strip() == ""
    assert "Uvicorn running" in host.ok("ops.logs", "--host", host.name, "--since", "30m", "--tail", "1000",
                                        "--grep", "Uvicorn")
    # The smoke test's request, as uvicorn's access log line, while the journal is followed.
    line = host.followed_line("HTTP/1.1", lambda: host.ok("ops.smoke", "--host", host.name))
    assert "HTTP/1.1" in line


def test_env_exec_and_masking(host):
    env = host.ok("ops.env", "--host", host.name)
    assert "LITELLM_MASTER_KEY" in env and "DIFFERS" not in env and "MISSING" not in env
    out = host.ok("ops.exec", "--host", host.name, "--command",
                  "python -c 'import os, litellm; print(os.getuid(), os.environ[\"LITELLM_MASTER_KEY\"])'")
    uid = host.sh("id -u litellm").strip()
    assert out.split() == [uid, "********"]
    environment = host.ok("ops.exec", "--host", host.name, "--command", "env").split("\n")
    assert [f"{name}={value}" in environment for name, value in PROBES.items()] == [True, True]
    failed = host.run("ops.exec", "--host", host.name, "--command", "sh -c 'exit 7'")
    assert failed.returncode == 7 and "sh exited with 7 in the service litellm" in failed.stderr


def test_compose_tasks_drive_the_unit(host):
    assert "Active: active (running)" in host.ok("compose.ps", "--host", host.name)
    host.ok("compose.stop", "--host", host.name)
    assert host.show()["ActiveState"] == "inactive"
    assert "started litellm; answering after" in host.ok("compose.start", "--host", host.name)
    pid = host.show()["MainPID"]
    assert "restarted litellm; answering after" in host.ok("compose.restart", "--host", host.name)
    assert host.show()["MainPID"] != pid
    for verb in ("compose.pull", "upgrade"):
        refused = host.run(verb, "--host", host.name)
        assert refused.returncode == 1 and "runtime: systemd" in refused.stderr.strip().splitlines()[-1]


def test_an_empty_wheel_folder_is_named_before_connecting(host, tmp_path):
    host.write_inventory({"wheels": str(tmp_path)}, router_settings={"num_retries": 1})
    failed = host.run("deploy", "--host", host.name)
    host.write_inventory(router_settings={"num_retries": 1})
    assert failed.returncode == 1
    assert f"wheels {tmp_path} holds no .whl files" in failed.stderr.strip().splitlines()[-1]


def test_a_held_lock_stops_a_deploy_with_its_message(host):
    host.ok("lock.acquire", "--host", host.name, "--message", "moving the venvs")
    try:
        blocked = host.run("deploy", "--host", host.name, "--lock-timeout", "0")
        assert blocked.returncode == 1 and "moving the venvs" in blocked.stderr
    finally:
        host.ok("lock.release", "--host", host.name)
    assert "nothing changed" in host.ok("deploy", "--host", host.name)


def test_a_sudo_user_deploys_and_reads_the_journal(host):
    """As many hosts are reached: a non-root user with a password and sudo; every command of the
    task runs through it (the password only on sudo's stdin)."""
    password = "pw-" + secrets.token_urlsafe(12)
    subprocess.run([*host.docker, "exec", "-i", systemd_host.CONTAINER, "sh", "-c",
                    "useradd -m -s /bin/bash admin && chpasswd && echo 'admin ALL=(ALL) ALL' > /etc/sudoers.d/admin"
                    " && install -d -m 0700 -o admin -g admin ~admin/.ssh"
                    " && install -m 0600 -o admin -g admin /root/.ssh/authorized_keys ~admin/.ssh/authorized_keys"],
                   input=f"admin:{password}\n", text=True, check=True)
    try:
        host.write_inventory({"ssh_user": "admin", "sudo": True}, router_settings={"num_retries": 1})
        sudo = {"LITEDEPLOY_SUDO_PASSWORD": password}
        deployed = host.run("deploy", "--host", host.name, env=sudo)
        assert deployed.returncode == 0 and "nothing changed" in deployed.stdout, deployed.stderr
        smoke = host.run("ops.smoke", "--host", host.name, env=sudo)
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        # The requests the smoke test just made, in the journal's last lines.
        logs = host.run("ops.logs", "--host", host.name, "--tail", "5", env=sudo)
        assert logs.returncode == 0 and "HTTP/1.1" in logs.stdout and password not in logs.stdout + logs.stderr
        assert password not in host.sh("journalctl --no-pager -n 200; ps -eo args")
    finally:
        host.write_inventory(router_settings={"num_retries": 1})
        host.sh("userdel -r admin 2>/dev/null; rm -f /etc/sudoers.d/admin")


def test_remove_stops_the_unit_keeps_its_file_and_a_deploy_brings_it_back(host):
    out = host.ok("compose.remove", "--host", host.name)
    assert "stopped and disabled litellm.service" in out
    assert host.sh(f"ls {UNIT} 2>/dev/null; systemctl is-enabled litellm 2>/dev/null; true").strip() in ("", "disabled")
    assert host.sh("ls /etc/litellm/backups | grep -c '^litellm.service'").strip() != "0"
    assert "changed litellm.service; recreated litellm" in host.ok("deploy", "--host", host.name)
    host.ok("ops.smoke", "--host", host.name)


def answering_instance(host) -> str | None:
    """Which instance the proxy names on a fresh connection to the host's port (None: no proxy)."""
    connection = http.client.HTTPConnection(host.entry["address"], 4000, timeout=10)
    try:
        connection.request("GET", "/health/liveliness")
        reply = connection.getresponse()
        reply.read()
        assert reply.status == 200
        return reply.getheader("x-litedeploy-instance")
    finally:
        connection.close()


def active_units(host) -> set[str]:
    listed = host.sh("systemctl list-units --state=active --no-legend --plain 'litellm*' | cut -d' ' -f1")
    return set(listed.split())


def under_load(host, *argv: str):
    load = Load(host.entry["address"], 4000, lab_secrets()["LITELLM_MASTER_KEY"], "phi3-3.8b").start()
    time.sleep(1)
    result = host.run(*argv)
    time.sleep(1)
    return result, load.stop()


def test_zero_downtime_puts_haproxy_in_front_of_a_template_unit(host):
    """Turned on as on a fresh host (no service user) with a new venv (one more pin): the switch
    makes the user, installs the venv and checks Debian's haproxy before any instance starts."""
    host.sh("systemctl stop litellm && userdel litellm")
    host.entry["vars"] = {**host.entry["vars"], "zero_downtime": True}
    host.entry["packages"] = [*host.entry["packages"], f"idna=={locks.LITELLM.version('idna')}"]
    host.write_inventory()
    venvs = set(host.sh("ls /opt/litellm").split())
    host.ok("deploy", "--host", host.name)
    assert host.sh("id -u litellm").strip().isdigit()
    venv = host.sh("sed -n 's|^ExecStart=\\(.*\\)/bin/litellm .*|\\1|p' /etc/systemd/system/litellm@.service").strip()
    assert venv.rsplit("/", 1)[-1] not in venvs and host.sh(f"test -x {venv}/bin/litellm && echo yes").strip() == "yes"
    live = answering_instance(host)
    port = {"blue": 4001, "green": 4002}[live]
    assert active_units(host) == {"litellm-proxy.service", f"litellm@{port}.service"}
    # The proxy and the live instance start at boot; the single unit went among the backups.
    assert host.sh(f"systemctl is-enabled litellm-proxy 'litellm@{port}'").split() == ["enabled", "enabled"]
    assert host.sh(f"ls {UNIT} 2>/dev/null; true").strip() == ""
    status = host.ok("ops.status", "--host", host.name)
    assert f"forwards to service litellm@{port} on 127.0.0.1:{port}" in status


def test_zero_downtime_on_systemd_a_change_under_load_fails_no_request(host):
    before = answering_instance(host)
    host.write_inventory(env={"LITEDEPLOY_ZERO_DOWNTIME": "1"})
    result, load = under_load(host, "deploy", "--host", host.name)
    assert result.returncode == 0, result.stderr
    sent, failed, _ = summary(load.outcomes)
    assert sent > 20 and failed == 0, [o.error for o in load.outcomes if o.error][:5]
    after = answering_instance(host)
    assert after != before
    assert active_units(host) == {"litellm-proxy.service", f"litellm@{4001 if after == 'blue' else 4002}.service"}


def test_zero_downtime_on_systemd_a_failed_new_instance_never_takes_traffic(host):
    before = answering_instance(host)
    unit = host.sh("cat /etc/systemd/system/litellm@.service")
    host.write_inventory(**host.crash_at_start())
    result, load = under_load(host, "deploy", "--host", host.name)
    fails_with(result, "never took traffic", "still serves")
    assert [o for o in load.outcomes if o.error] == []
    assert answering_instance(host) == before
    assert host.sh("cat /etc/systemd/system/litellm@.service") == unit
    # systemd holds the unit of the files that went back, not the rejected one: a live instance that
    # dies later comes back as it ran.
    port = {"blue": 4001, "green": 4002}[before]
    assert host.sh(f"systemctl show -p NeedDaemonReload --value litellm@{port}").strip() == "no"


def test_a_port_held_at_start_does_not_stop_the_proxy_for_good(host):
    """The proxy's port is held for longer than five quick restarts take (a late service at boot):
    once it is free, the proxy takes it, without anyone coming."""
    before = answering_instance(host)
    holder = "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); " \
             "s.bind(('0.0.0.0', 4000)); s.listen(); time.sleep(12)"
    host.sh("systemctl stop litellm-proxy")
    subprocess.run([*host.docker, "exec", "-d", systemd_host.CONTAINER, "python3", "-c", holder], check=True)
    time.sleep(1)
    host.sh("systemctl start --no-block litellm-proxy")
    time.sleep(12)
    assert host.sh("systemctl show -p ActiveState --value litellm-proxy").strip() != "failed"
    deadline = time.monotonic() + 20
    while True:
        try:
            assert answering_instance(host) == before
            break
        except (OSError, http.client.HTTPException):
            assert time.monotonic() < deadline, "the proxy did not take its port back within 20 s of it being free"
            time.sleep(1)


def test_zero_downtime_survives_a_reboot(host):
    """The proxy and the live instance are enabled units, the proxy's configuration names the live
    one: after a reboot the same instance answers behind the proxy."""
    before = answering_instance(host)
    subprocess.run([*host.docker, "restart", systemd_host.CONTAINER], check=True, capture_output=True, timeout=120)
    deadline = time.monotonic() + 120
    while True:
        try:
            after = answering_instance(host)
            break
        except (OSError, http.client.HTTPException, AssertionError):
            assert time.monotonic() < deadline, "the gateway did not answer within 120 s of the reboot"
            time.sleep(1)
    assert after == before
    # (The inventory still holds the failed deploy's settings: status reports that drift, and the proxy.)
    assert "forwards to service litellm@" in host.run("ops.status", "--host", host.name).stdout


def test_zero_downtime_turned_off_brings_back_the_single_unit(host):
    host.entry["vars"] = {name: value for name, value in host.entry["vars"].items() if name != "zero_downtime"}
    host.write_inventory()
    host.ok("deploy", "--host", host.name)
    assert answering_instance(host) is None
    assert active_units(host) == {"litellm.service"}
    assert host.sh("ls /etc/systemd/system/litellm@.service /etc/systemd/system/litellm-proxy.service "
                   "/etc/litellm/proxy/haproxy.cfg 2>/dev/null; true").strip() == ""
