"""Several hosts at once: parallel by default, rolling with --serial, one recap line per host, and
one host's failure never hiding the others'. The hosts are the lab's namespace hosts: separate
addresses, sshds and Docker engines across a (veth) network."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from conftest import NAMESPACE_HOSTS, make_namespace_host

from lab import registry

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def fleet(lab, tmp_path_factory):
    hosts = [make_namespace_host(lab, tmp_path_factory.mktemp(f"fleet{i}"), f"fleet{i}", i)
             for i in range(1, NAMESPACE_HOSTS + 1)]
    for host in hosts:
        (host.root / "compose.yml").write_text("services:\n  web:\n    image: nginx:alpine\n")
    first = hosts[0]
    data = yaml.safe_load(first.inventory.read_text())
    data["hosts"] = {host.name: host.entry for host in hosts}
    data["groups"] = {"fleet": [host.name for host in hosts]}
    first.inventory.write_text(yaml.safe_dump(data))
    yield first, hosts, data
    for host in hosts:
        host.remove_container()


def accepted_connections(lab, index: int) -> int:
    return (lab.namespace_host(index).folder / "sshd.log").read_text().count("Accepted publickey")


def recap(run) -> dict[str, str]:
    rows = [line.split() for line in run.stdout.splitlines() if line.startswith("RECAP ")][1:]
    return {row[1]: " ".join(row[2:4]) if row[2] == "rolled" else row[2] for row in rows}


def test_a_group_deploys_in_parallel_with_one_connection_per_host(lab, fleet):
    first, hosts, _ = fleet
    indexes = range(1, len(hosts) + 1)
    before = [accepted_connections(lab, index) for index in indexes]
    run = first.run("deploy", "--host", "fleet")
    assert run.returncode == 0, run.stdout + run.stderr
    assert recap(run) == {host.name: "ok" for host in hosts}
    assert [accepted_connections(lab, index) for index in indexes] == [count + 1 for count in before]
    for host in hosts:
        assert host.inspect()["State"]["Running"]


def sessions(lab, index: int) -> int:
    return (lab.namespace_host(index).folder / "sshd.log").read_text().count("Starting session")


def test_a_no_op_deploy_is_one_ssh_session_per_host(lab, fleet):
    """Lock, facts, verification (relayed: these sshds forbid tunnels) and the audit line all go
    through one shell on each host."""
    first, hosts, _ = fleet
    indexes = range(1, len(hosts) + 1)
    before = [sessions(lab, index) for index in indexes]
    run = first.run("deploy", "--host", "fleet")
    assert run.returncode == 0, run.stdout + run.stderr
    assert all(f"{host.name}: ok, nothing changed" in run.stdout for host in hosts)
    assert [sessions(lab, index) for index in indexes] == [count + 1 for count in before]


def test_check_diff_on_a_group_shows_each_hosts_diff_and_changes_nothing(fleet):
    first, hosts, data = fleet
    changed = {**data, "hosts": {name: {**entry, "vars": {**(entry.get("vars") or {}), "mock_response": "a new answer"}}
                                 for name, entry in data["hosts"].items()}}
    configs = [(host.root / "litellm/config.yaml").read_text() for host in hosts]
    first.inventory.write_text(yaml.safe_dump(changed))
    try:
        run = first.run("deploy", "--host", "fleet", "--check", "--diff")
    finally:
        first.inventory.write_text(yaml.safe_dump(data))
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    for host in hosts:
        start = lines.index(f"{host.name}: would change {host.root}/litellm/config.yaml")
        block = lines[start:lines.index(f"{host.name}: check: would restart litellm", start)]
        assert any(line.startswith("+") and "a new answer" in line for line in block), block
    assert [(host.root / "litellm/config.yaml").read_text() for host in hosts] == configs


def test_ops_tasks_on_a_group_report_each_host_in_order_with_a_recap(fleet):
    first, hosts, _ = fleet
    run = first.run("ops.status", "--host", "fleet")
    assert run.returncode == 0, run.stdout + run.stderr
    firsts = [line.split(":")[0] for line in run.stdout.splitlines() if line.startswith("fleet") and ": running" in line]
    assert firsts == [host.name for host in hosts]
    assert recap(run) == {host.name: "ok" for host in hosts}


def with_broken_release(data: dict, name: str) -> dict:
    """The inventory with one host on the lab registry's release that exits at start."""
    broken = registry.release(registry.BROKEN_RELEASE)
    return {**data, "hosts": {**data["hosts"], name: {**data["hosts"][name], "image": broken}}}


def test_one_broken_host_fails_alone_and_the_others_still_report(fleet):
    first, hosts, data = fleet
    first.inventory.write_text(yaml.safe_dump(with_broken_release(data, hosts[1].name)))
    try:
        run = first.run("deploy", "--host", ",".join(host.name for host in hosts))
    finally:
        first.inventory.write_text(yaml.safe_dump(data))
    assert run.returncode == 1
    assert recap(run) == {hosts[0].name: "ok", hosts[1].name: "rolled back", hosts[2].name: "ok"}
    assert run.stderr.strip().splitlines()[-1] == f"error: deploy did not succeed on 1 of 3 hosts: {hosts[1].name}"


def test_rolling_deploy_stops_after_the_first_failed_batch(fleet):
    first, hosts, data = fleet
    first.inventory.write_text(yaml.safe_dump(with_broken_release(data, hosts[0].name)))
    try:
        run = first.run("deploy", "--host", "fleet", "--serial", "1")
    finally:
        first.inventory.write_text(yaml.safe_dump(data))
    assert run.returncode == 1
    assert recap(run) == {hosts[0].name: "rolled back", hosts[1].name: "skipped", hosts[2].name: "skipped"}


def test_deploy_json_prints_one_object_per_host_and_nothing_else(fleet):
    first, hosts, data = fleet
    first.inventory.write_text(yaml.safe_dump(with_broken_release(data, hosts[2].name)))
    try:
        run = first.run("deploy", "--host", "fleet*", "--json")
    finally:
        first.inventory.write_text(yaml.safe_dump(data))
    assert run.returncode == 1
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(r["host"], r["result"]) for r in records] == [(hosts[0].name, "ok"), (hosts[1].name, "ok"),
                                                           (hosts[2].name, "rolled back")]
    assert records[0]["changed"] == [] and records[0]["restart"] is None and "@sha256:" in records[0]["image"]
    assert records[2]["rolled_back"] and "crash-looping" in records[2]["error"]


def registry_release(tag: str) -> str:
    """A release of the registry's repository for release tests, which no lab host runs."""
    return registry.release(tag, registry.RELEASE_TESTS)


def test_a_separate_hardened_bridged_host_upgrades_and_goes_back_to_the_old_digest(lab, tmp_path):
    """A namespace host (own engine, hardened sshd, bridge networking) pulls from the registry on
    its own loopback, which serves the same blobs."""
    host = make_namespace_host(lab, tmp_path, "ns-upgrade", 3)
    subprocess.run([*host.docker, "rmi", "-f", registry_release("1.106.3")], capture_output=True)
    host.write_inventory({"image": registry_release("1.106.2")})
    try:
        assert host.run("deploy", "--host", host.name).returncode == 0
        upgraded = host.run("upgrade", "--host", host.name, "--to", "1.106.3")
        assert upgraded.returncode == 0, upgraded.stderr
        assert "pulled " in upgraded.stderr
        assert host.inspect()["Config"]["Image"] == registry.pinned("1.106.3", registry.RELEASE_TESTS)
        broken = host.run("upgrade", "--host", host.name, "--to", registry.BROKEN_RELEASE)
        assert broken.returncode == 1 and "rolled back" in broken.stderr, broken.stderr
        assert host.inspect()["Config"]["Image"] == registry.pinned("1.106.3", registry.RELEASE_TESTS)
        assert host.run("ops.smoke", "--host", host.name).returncode == 0
    finally:
        host.remove_container()
