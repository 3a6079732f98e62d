"""Deploys onto hosts shaped like production ones rather than the friendliest target: an sshd that
refuses TCP forwarding, a root shell rc that prints text, and a separate host (network namespace,
own sshd and Docker engine) with bridge networking and a published port."""

from __future__ import annotations

import subprocess
import urllib.request

import pytest
from conftest import TEAM_COMPOSE, deployed_once, make_lab_host, make_namespace_host

from lab.sshd import PROFILES

pytestmark = pytest.mark.lab
RC_TEXT = PROFILES["noisy-rc"].rc_text.splitlines()[0]


def refused_forwards(lab) -> int:
    return lab.sshd_paths("hardened").log.read_text().count("refused local port forward")


def crash_looping(host) -> None:
    """The next deploy's container crash-loops."""
    host.write_inventory(**host.crash_at_start())


def rolled_back(host) -> str:
    """Deploys a crash-looping gateway and returns the error line; the host must answer as before
    (the container is recreated on the old files: the env file changed)."""
    crash_looping(host)
    failed = host.run("deploy", "--host", host.name)
    host.write_inventory()
    assert failed.returncode == 1
    assert host.run("ops.smoke", "--host", host.name).returncode == 0
    assert host.inspect()["RestartCount"] == 0
    return failed.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def hardened(lab, tmp_path_factory):
    host = make_lab_host(lab, tmp_path_factory.mktemp("hardened"), "hardened", profile="hardened")
    yield host
    host.remove_container()


def test_hardened_sshd_deploys_by_relaying_over_exec_after_one_refused_tunnel(lab, hardened):
    before = refused_forwards(lab)
    deployed_once(hardened, TEAM_COMPOSE)
    assert refused_forwards(lab) - before == 1, "the refusal is noticed once, never waited on"
    smoke = hardened.run("ops.smoke", "--host", hardened.name)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "lab mock: hello from LiteLLM" in smoke.stdout


def test_hardened_sshd_rolls_a_crash_loop_back_without_a_false_rollback_failure(hardened):
    error = rolled_back(hardened)
    assert "crash-looping" in error and "ROLLBACK FAILED" not in error
    assert "rolled back: previous files and container restored, answering again" in error


@pytest.fixture(scope="module")
def noisy(lab, tmp_path_factory):
    host = make_lab_host(lab, tmp_path_factory.mktemp("noisy"), "noisy", profile="noisy-rc")
    yield deployed_once(host, TEAM_COMPOSE)
    host.remove_container()


@pytest.mark.parametrize("task", [("deploy",), ("ops.status",), ("ops.logs", "--tail", "5"), ("ops.env",),
                                  ("compose.ps",), ("config.diff",), ("ops.smoke",)])
def test_a_root_rc_that_prints_text_never_reaches_the_output(noisy, task):
    run = noisy.run(*task, "--host", noisy.name)
    assert run.returncode == 0, run.stdout + run.stderr
    assert RC_TEXT not in run.stdout + run.stderr


@pytest.fixture(scope="module")
def bridged(lab, tmp_path_factory):
    host = make_namespace_host(lab, tmp_path_factory.mktemp("bridged"), "bridged", 1)
    yield host
    host.remove_container()


def test_a_separate_host_with_bridge_networking_publishes_the_gateway_port(lab, bridged):
    deployed_once(bridged, TEAM_COMPOSE)
    container = bridged.inspect()
    assert container["HostConfig"]["NetworkMode"] not in ("host", "none")
    port = bridged.port
    assert container["HostConfig"]["PortBindings"] == {f"{port}/tcp": [{"HostIp": "", "HostPort": str(port)}]}
    # From this machine, across the veth link, to the port Docker published on the host.
    address = lab.namespace_host(1).address
    with urllib.request.urlopen(f"http://{address}:{port}/health/liveliness", timeout=10) as reply:
        assert reply.status == 200
    status = bridged.run("ops.status", "--host", bridged.name)
    assert status.returncode == 0, status.stderr
    assert f"0.0.0.0:{port}->{port}/tcp" in status.stdout


def test_a_separate_host_restarts_for_a_config_change_and_rolls_back_a_crash_loop(bridged):
    before = bridged.inspect()
    bridged.write_inventory(router_settings={"num_retries": 1})
    changed = bridged.run("deploy", "--host", bridged.name)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "changed config.yaml; restarted litellm" in changed.stdout
    assert bridged.inspect()["Id"] == before["Id"]
    error = rolled_back(bridged)
    assert "rolled back: previous files and container restored, answering again" in error


def test_behind_the_front_door_the_teams_services_still_reach_the_gateway_by_its_name(bridged):
    """A service of the team on the compose network called the gateway by its service name
    (http://litellm:PORT); once zero_downtime puts HAProxy in front, the same name answers, through
    the proxy."""
    network = next(iter(bridged.inspect()["NetworkSettings"]["Networks"]))
    code = (f"import urllib.request as u; r = u.urlopen('http://litellm:{bridged.port}/health/liveliness', "
            "timeout=10); print(r.status, r.headers.get('x-litedeploy-instance'))")

    def sibling() -> str:
        called = subprocess.run([*bridged.docker, "run", "--rm", "--network", network, "--entrypoint", "python3",
                                 bridged.entry["image"], "-c", code], capture_output=True, text=True, timeout=120)
        assert called.returncode == 0, called.stderr[-500:]
        return called.stdout.strip()

    assert sibling() == "200 None"  # the single gateway, by its service name
    bridged.write_inventory(router_settings={"num_retries": 1}, zero_downtime=True)
    try:
        on = bridged.run("deploy", "--host", bridged.name)
        assert on.returncode == 0, on.stdout + on.stderr
        assert sibling() in ("200 blue", "200 green")
    finally:
        bridged.run("compose.remove", "--host", bridged.name)
