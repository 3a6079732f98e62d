"""A lab killed instead of stopped (a CI job or a session that ends mid-run) leaves its namespace
hosts behind: the network namespace, the engine's pid file and, mounted under the engine's
exec-root, the network namespaces of the containers it ran, each with a veth still on the
namespace's docker0. The next lab.up, from any clone, must not build on them: its containers get
the same addresses again, and connections to a published port then reach now the new container,
now a dead duplicate (the systemd host's sshd gave no greeting that way once). Proven here on a
namespace host of the test's own (lab9), with a real dockerd killed by SIGKILL.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from lab import netns
from lab import target as local_lab
from litedeploy.errors import DeployError

pytestmark = pytest.mark.lab
INDEX = 9  # beyond the suite's namespace hosts
IMAGE = "localhost/sleeper:1"


def sleeper_image(host: netns.NamespaceHost) -> None:
    """An image of this machine's own `sleep` and the libraries it loads: a container with a
    process and a network namespace, without a registry or a download."""
    found = subprocess.run(["ldd", "/bin/sleep"], capture_output=True, text=True, check=True).stdout
    files = ["/bin/sleep", *re.findall(r"(/\S+) \(0x", found)]
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name in files:
            tar.add(os.path.realpath(name), arcname=name.lstrip("/"))
    subprocess.run([*host.docker, "import", "-", IMAGE], input=archive.getvalue(), capture_output=True, check=True)


def run_sleeper(host: netns.NamespaceHost, name: str) -> str:
    """The container's address on the namespace's docker0."""
    subprocess.run([*host.docker, "run", "-d", "--name", name, IMAGE, "/bin/sleep", "infinity"],
                   capture_output=True, check=True)
    return subprocess.run([*host.docker, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", name],
                          capture_output=True, text=True, check=True).stdout.strip()


def kill_everything_of(host: netns.NamespaceHost) -> None:
    """SIGKILL to the engine, its containerd and shims and the containers' processes, as when the
    session that started them ends: nothing gets to clean up."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroup = (proc / "cgroup").read_text()
        except OSError:
            continue
        if str(host.exec_root) in cmdline or f"/litedeploy-{host.name}/" in cgroup:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def bridge_ports(host: netns.NamespaceHost) -> list[str]:
    """The interfaces on the namespace's docker0 (one per live container, and any a dead engine left)."""
    shown = subprocess.run(["ip", "-n", host.netns, "-o", "link", "show", "master", "docker0"],
                           capture_output=True, text=True, check=True).stdout
    return [line.split(": ")[1] for line in shown.splitlines()]


@pytest.fixture
def killed_host(lab, tmp_path):
    """lab9 of a first clone's lab, with a running container, killed; then that of a second clone.
    Whatever the test leaves is removed, the dead clone's data-root mounts included."""
    say: list[str] = []
    first = netns.NamespaceHost(INDEX, tmp_path / "first")
    first.state.mkdir()
    local_lab._start_namespace_engine(first, say.append)
    sleeper_image(first)
    address = run_sleeper(first, "old")
    kill_everything_of(first)
    time.sleep(0.5)
    second = netns.NamespaceHost(INDEX, tmp_path / "second")
    second.state.mkdir()
    yield first, second, address
    netns.destroy(second, say.append)
    for folder in (first.state, second.state, first.exec_root):
        netns.unmount_below(folder)
    subprocess.run(["rm", "-rf", str(first.exec_root)])
    subprocess.run(["ip", "netns", "delete", first.netns], capture_output=True)


def test_a_killed_labs_namespace_host_is_cleared_before_a_new_engine_starts(killed_host):
    first, second, old_address = killed_host
    # What the killed engine left: its container's network namespace, still on docker0.
    assert netns.mounts_below(first.exec_root) and len(bridge_ports(first)) == 1
    said: list[str] = []
    assert local_lab._start_namespace_engine(second, said.append) is True
    assert f"lab: clearing what a stopped lab left of lab{INDEX}" in said
    sleeper_image(second)
    # The new container gets the dead one's address again, and is now the only one that has it.
    assert run_sleeper(second, "new") == old_address
    assert len(bridge_ports(second)) == 1
    assert len([point for point in netns.mounts_below(second.exec_root) if "/netns/" in point]) == 1


def test_an_engine_this_lab_runs_is_kept_and_another_labs_engine_is_refused(killed_host):
    _, second, _ = killed_host
    local_lab._start_namespace_engine(second, lambda line: None)
    said: list[str] = []
    assert local_lab._start_namespace_engine(second, said.append) is False
    assert said == []
    third = netns.NamespaceHost(INDEX, second.state.parent / "third")
    third.state.mkdir()
    with pytest.raises(DeployError, match=rf"lab{INDEX}'s engine .* belongs to another lab than {third.state}"):
        local_lab._start_namespace_engine(third, said.append)
    assert subprocess.run([*second.docker, "info"], capture_output=True).returncode == 0
