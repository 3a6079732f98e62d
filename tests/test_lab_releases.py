"""Pinned releases, upgrades, rollbacks and every setting, through the lab's real registry, sshd,
dockerd and LiteLLM. The registry serves the lab image as releases 1.106.2 and 1.106.3 and a
1.107.0 that fails at start; each `docker pull` here is real. They come from the registry's
repository for these tests, which no other test's host runs, so the tags this module takes off the
engine and the images its deploys prune are its own while other modules deploy beside it.

The tests of the first part run in order against one host, as an admin's week would go.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request

import pytest
from conftest import TEAM_COMPOSE, encrypt_for_lab, lab_secrets

from lab import registry
from lab.image import LAB_IMAGE

pytestmark = pytest.mark.lab

FIRST_ANSWER = "lab mock: hello from LiteLLM"


def release(tag: str) -> str:
    return registry.release(tag, registry.RELEASE_TESTS)


def pinned(tag: str) -> str:
    return registry.pinned(tag, registry.RELEASE_TESTS)


def forget_locally(tag: str) -> None:
    """Takes the tag off this engine (an image a container runs stays, untagged): the next use pulls."""
    subprocess.run(["docker", "rmi", "-f", release(tag)], capture_output=True)


def audit(host) -> list[dict]:
    return [json.loads(line) for line in (host.root / "litellm/deploys.log").read_text().splitlines()]


def compose_text(host) -> str:
    return (host.root / "compose.yml").read_text()


def chat(host, model: str) -> str:
    secrets = lab_secrets()
    request = urllib.request.Request(
        f"http://127.0.0.1:{host.port}/v1/chat/completions", method="POST",
        data=json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"Authorization": f"Bearer {secrets['LITELLM_MASTER_KEY']}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.load(reply)["choices"][0]["message"]["content"]


@pytest.fixture(scope="module")
def first(lab_host):
    """A first deploy of release 1.106.2, which this engine must pull."""
    forget_locally("1.106.2")
    lab_host.root.joinpath("compose.yml").write_text(TEAM_COMPOSE)
    lab_host.write_inventory({"image": release("1.106.2")})
    run = lab_host.run("deploy", "--host", lab_host.name)
    return run, (lab_host.root / "litellm/config.yaml").read_text()


def test_a_deploy_pins_the_release_to_the_digest_the_registry_serves(lab_host, first):
    run, _ = first
    assert run.returncode == 0, run.stderr
    assert f"pulling {release('1.106.2')}" in run.stderr
    expected = pinned("1.106.2")
    assert f'image: "{expected}"' in compose_text(lab_host)
    assert lab_host.inspect()["Config"]["Image"] == expected
    assert audit(lab_host)[-1]["image"] == expected
    status = lab_host.run("ops.status", "--host", lab_host.name)
    assert status.returncode == 0 and expected in status.stdout, status.stdout + status.stderr


def test_a_no_op_deploy_keeps_the_digest_and_pulls_nothing(lab_host, first):
    forget_locally("1.106.2")  # were the tag looked up again, this deploy would have to pull
    started = lab_host.inspect()["State"]["StartedAt"]
    run = lab_host.run("deploy", "--host", lab_host.name)
    assert run.returncode == 0, run.stderr
    assert "nothing changed" in run.stdout and "pulling" not in run.stderr
    assert lab_host.inspect()["State"]["StartedAt"] == started


def test_upgrade_pulls_the_release_while_the_old_one_serves_then_swaps(lab_host, first):
    forget_locally("1.106.3")
    run = lab_host.run("upgrade", "--host", lab_host.name, "--to", "1.106.3")
    assert run.returncode == 0, run.stderr
    # The pull is done before the container is touched: the wait for the new one comes after it.
    assert run.stderr.index("pulled ") < run.stderr.index("waiting for litellm")
    running = lab_host.inspect()
    assert running["Config"]["Image"] == pinned("1.106.3")
    local = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", release("1.106.3")],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert running["Image"] == local
    assert "hosts.yaml still names" in run.stderr  # --to overrides for this run only
    assert [entry["action"] for entry in audit(lab_host)][-1] == "upgrade"


def test_a_broken_release_is_rolled_back_to_the_previous_digest(lab_host, first):
    before = compose_text(lab_host)
    run = lab_host.run("upgrade", "--host", lab_host.name, "--to", registry.BROKEN_RELEASE)
    assert run.returncode == 1
    assert "crash-looping" in run.stderr and "rolled back" in run.stderr, run.stderr
    assert "broken on purpose" in run.stderr  # the failed container's log, shown
    assert lab_host.inspect()["Config"]["Image"] == pinned("1.106.3")
    assert compose_text(lab_host) == before
    assert chat(lab_host, "claude-sonnet-4") == FIRST_ANSWER
    last = audit(lab_host)[-1]
    assert (last["action"], last["result"], last["rolled_back"]) == ("upgrade", "failed", True)


def test_a_release_the_registry_lacks_fails_before_anything_changes(lab_host, first):
    before = lab_host.snapshot()
    run = lab_host.run("upgrade", "--host", lab_host.name, "--to", "9.9.9")
    assert run.returncode == 1
    assert f"{lab_host.name}: cannot pull {release('9.9.9')}" in run.stderr
    assert lab_host.snapshot() == before


def test_an_image_for_another_architecture_is_refused_after_the_pull_before_anything_stops(lab_host, first):
    """The lab's 1.106.3-arm64 says arm64 in its config and runs an aarch64 program: pulled while the
    old container serves, then refused naming both architectures; the container was never touched."""
    before, started = lab_host.snapshot(), lab_host.inspect()["State"]["StartedAt"]
    run = lab_host.run("upgrade", "--host", lab_host.name, "--to", registry.FOREIGN_RELEASE)
    assert run.returncode == 1, run.stderr
    assert "pulled " in run.stderr and "is built for arm64 and the Docker engine runs on amd64" in run.stderr
    assert "Traceback" not in run.stderr
    assert lab_host.snapshot() == before and lab_host.inspect()["State"]["StartedAt"] == started
    assert chat(lab_host, "claude-sonnet-4") == FIRST_ANSWER


def test_an_image_change_on_a_host_with_a_database_needs_yes(lab_host, first):
    secrets = encrypt_for_lab(lab_secrets(DATABASE_URL="postgresql://litellm:pw@127.0.0.1:1/litellm"),
                              lab_host.root / "secrets.database.enc.yaml")
    lab_host.write_inventory({"image": release("1.106.2"), "secrets_file": str(secrets)}, database=True)
    before = lab_host.snapshot()
    try:
        run = lab_host.run("deploy", "--host", lab_host.name)
    finally:
        lab_host.write_inventory({"image": release("1.106.3")})
    assert run.returncode == 1
    assert "a rollback does not undo a migration" in run.stderr and "--yes" in run.stderr
    assert lab_host.snapshot() == before


def test_rollback_to_an_earlier_release_brings_back_its_image_and_config(lab_host, first):
    _, first_config = first
    lab_host.write_inventory({"image": release("1.106.3")}, mock_response="lab mock: the second config")
    changed = lab_host.run("deploy", "--host", lab_host.name)
    assert changed.returncode == 0 and "restarted litellm" in changed.stdout, changed.stderr
    assert chat(lab_host, "claude-sonnet-4") == "lab mock: the second config"
    first_id = next(entry["id"] for entry in audit(lab_host) if entry["action"] == "deploy")
    run = lab_host.run("rollback", "--host", lab_host.name, "--to", first_id)
    assert run.returncode == 0, run.stderr
    assert f"back to release {first_id}" in run.stdout
    assert (lab_host.root / "litellm/config.yaml").read_text() == first_config
    assert lab_host.inspect()["Config"]["Image"] == pinned("1.106.2")
    assert chat(lab_host, "claude-sonnet-4") == FIRST_ANSWER
    assert "web:" in compose_text(lab_host)  # the team's own service is still there
    # The image changed, so the broken release, which no kept release runs, was pruned.
    assert subprocess.run(["docker", "image", "inspect", release(registry.BROKEN_RELEASE)],
                          capture_output=True).returncode != 0
    history = lab_host.run("ops.history", "--host", lab_host.name)
    assert history.returncode == 0
    lines = history.stdout.splitlines()
    assert f"back to {first_id}" in lines[-1] and " rollback " in lines[-1] and " kept " in lines[-1]
    assert any(first_id in line and " kept " in line for line in lines)


@pytest.mark.compose_flavours("v2")  # what LiteLLM reads, not compose
def test_pass_through_and_the_production_preset_are_what_litellm_runs(fresh_lab_host):
    host = fresh_lab_host()
    secrets = encrypt_for_lab(lab_secrets(EXTRA_TOKEN="extra-token-value-1"), host.root / "secrets.enc.yaml")
    host.write_inventory({"preset": "production", "secrets_file": str(secrets)}, workers=2,
                         max_requests_before_restart=10000,
                         router_settings={"model_group_alias": {"gpt-4o": "claude-sonnet-4"}},
                         env={"LITEDEPLOY_LAB_MARK": "on"}, secret_env=["EXTRA_TOKEN"])
    run = host.run("deploy", "--host", host.name)
    assert run.returncode == 0, run.stderr
    assert chat(host, "gpt-4o") == FIRST_ANSWER  # the real router resolved the alias
    # The preset's zero-downtime changes: the first instance serves behind the proxy.
    serving = f"{host.container}-blue"
    inspected = json.loads(subprocess.run(["docker", "inspect", serving], capture_output=True, text=True,
                                          check=True).stdout)[0]
    config = inspected["HostConfig"]
    assert config["Memory"] == 4 * 1024 ** 3
    assert config["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "5", "max-size": "50m"}}
    assert inspected["Config"]["StopTimeout"] == 630
    env = subprocess.run(["docker", "exec", serving, "env"], capture_output=True, text=True).stdout
    assert {"LITELLM_MODE=PRODUCTION", "LITELLM_LOG=ERROR", "LITEDEPLOY_LAB_MARK=on", "GRACEFUL_SHUTDOWN_TIMEOUT=600",
            "EXTRA_TOKEN=extra-token-value-1", "TIMEOUT_WORKER_HEALTHCHECK=60"} <= set(env.splitlines())
    assert inspected["Config"]["Cmd"][-4:] == ["--num_workers", "2", "--max_requests_before_restart", "10000"]
    processes = subprocess.run(["docker", "top", serving, "-o", "pid,args"], capture_output=True,
                               text=True, check=True).stdout
    # uvicorn's two worker processes (a line each; ps may print the whole command, naming it twice)
    assert sum("spawn_main" in line for line in processes.splitlines()) == 2, processes


def test_a_local_build_runs_by_its_tag(fresh_lab_host):
    host = fresh_lab_host()
    host.write_inventory({"image": LAB_IMAGE})
    run = host.run("deploy", "--host", host.name)
    assert run.returncode == 0, run.stderr
    assert "pulling" not in run.stderr
    assert f'image: "{LAB_IMAGE}"' in compose_text(host)  # no registry knows a digest for it


@pytest.mark.compose_flavours("v2")  # advisories and tags are decided before compose is asked
def test_a_release_with_a_critical_advisory_is_refused_until_accepted_through_both_tag_schemes(fresh_lab_host):
    """v1.83.14-stable (the old scheme) is affected by GHSA-4xpc-pv4p-pm3w (litellm.yaml): refused
    before anything changes, deployed when accepted and shown by ops.status; `upgrade --to 1.106.3`
    takes the new scheme (v1.106.3, no -stable); a rollback to the affected release is refused too."""
    host, advisory = fresh_lab_host(), "GHSA-4xpc-pv4p-pm3w"
    host.write_inventory({"image": release("v1.83.14-stable")})
    before = host.snapshot()
    refused = host.run("deploy", "--host", host.name)
    assert refused.returncode == 1 and f"--accept-risk {advisory}" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and host.snapshot() == before
    accepted = host.run("deploy", "--host", host.name, "--accept-risk", advisory)
    assert accepted.returncode == 0, accepted.stderr
    assert "warning:" in accepted.stderr and "CVE-2026-49468" in accepted.stderr
    assert host.inspect()["Config"]["Image"] == pinned("v1.83.14-stable")
    status = host.run("ops.status", "--host", host.name)
    assert f"exposed {advisory} critical, fixed in 1.84.0" in status.stdout, status.stdout + status.stderr

    upgraded = host.run("upgrade", "--host", host.name, "--to", "1.106.3")
    assert upgraded.returncode == 0, upgraded.stderr
    assert host.inspect()["Config"]["Image"] == pinned("v1.106.3")
    assert "exposed" not in host.run("ops.status", "--host", host.name).stdout

    back = host.run("rollback", "--host", host.name)
    assert back.returncode == 1 and advisory in back.stderr, back.stderr
    assert host.inspect()["Config"]["Image"] == pinned("v1.106.3")
    back = host.run("rollback", "--host", host.name, "--accept-risk", "CVE-2026-49468")
    assert back.returncode == 0, back.stderr
    assert host.inspect()["Config"]["Image"] == pinned("v1.83.14-stable")
