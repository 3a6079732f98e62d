"""Shared fixtures: the repo's project files, and for lab tests the real local target.

Lab tests deploy to hosts of their own (own compose file, config dir, container and loopback port)
through the real sshd and dockerd of the lab, so they never touch the user's `lab` deployment.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from litedeploy import lab as local_lab
from litedeploy.inventory import LOCAL_PATHS, load_inventory

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo() -> Path:
    return REPO


# Namespace hosts the suite brings up: the fleet tests need three separate hosts.
NAMESPACE_HOSTS = 3
# The lab's sshd profile that offers each compose flavour: v2 as on current hosts, v1 alone as on
# older ones.
FLAVOUR_PROFILES = {"v2": "standard", "v1": "compose-v1"}


def pytest_generate_tests(metafunc):
    """Every test on a lab host runs under compose v2 and v1, unless its module lists fewer in
    COMPOSE_FLAVOURS (where compose plays no part)."""
    if "compose_flavour" in metafunc.fixturenames:
        flavours = getattr(metafunc.module, "COMPOSE_FLAVOURS", tuple(FLAVOUR_PROFILES))
        metafunc.parametrize("compose_flavour", flavours, scope="module")


@pytest.fixture(scope="session")
def lab() -> local_lab.Lab:
    """The lab target, brought up once; what this run started is stopped at the end."""
    target = local_lab.Lab(REPO / ".lab", load_inventory(REPO / "hosts.yaml").host("lab"))
    started = local_lab.up(target, print, hosts=NAMESPACE_HOSTS)
    yield target
    local_lab.stop_daemons(target, print, started)


@contextmanager
def command_lines_seen():
    """Every process command line on this machine (the lab's host too) while the block runs."""
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines())
            time.sleep(0.02)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def fails_with(run: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit 1, no traceback, and a last line `error: ...` holding every expected text."""
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for text in expected:
        assert text in last, last
    return last


def deployed_once(host: "LabHost", compose: str) -> "LabHost":
    """The host with the admin's compose file in place and a first deploy done."""
    host.root.joinpath("compose.yml").write_text(compose)
    first = host.run("deploy", "--host", host.name)
    assert first.returncode == 0, first.stderr
    return host


def copy_templates(folder: Path) -> Path:
    """A copy of the repo's templates that a test may change."""
    for template in (REPO / "templates").iterdir():
        (folder / template.name).write_text(template.read_text())
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LabHost:
    """A deploy target on the lab's sshd with its own inventory file and paths."""

    name: str
    root: Path
    inventory: Path
    entry: dict
    # The docker CLI of the host's engine: the machine's own, or a namespace host's.
    docker: tuple[str, ...] = ("docker",)

    @property
    def container(self) -> str:
        return self.entry["container_name"]

    @property
    def port(self) -> int:
        return self.entry["port"]

    def write_inventory(self, settings: dict | None = None, **vars_overrides) -> None:
        """This host's inventory: the repo's defaults, its own entry, optional overrides."""
        data = yaml.safe_load((REPO / "hosts.yaml").read_text())
        entry = {**self.entry, **(settings or {}), "vars": {**self.entry.get("vars", {}), **vars_overrides}}
        self.inventory.write_text(yaml.safe_dump({"defaults": data["defaults"], "hosts": {self.name: entry}}))

    def snapshot(self) -> dict:
        """Every file we manage (bytes) and the container's identity: equal snapshots, unchanged host."""
        files = [self.root / "compose.yml", self.root / "litellm/config.yaml", self.root / "litellm/litellm.env"]
        state = {str(path): path.read_bytes() if path.is_file() else "a directory" if path.is_dir() else None
                 for path in files}
        found = subprocess.run([*self.docker, "inspect", self.container], capture_output=True, text=True)
        container = json.loads(found.stdout)[0] if found.returncode == 0 else None
        state["container"] = (container["Id"], container["State"]["StartedAt"]) if container else None
        return state

    def run(self, *argv: str, program: str = "invoke", env: dict | None = None) -> subprocess.CompletedProcess:
        """`inv ARGV` (or `fab`) from the repo, pointed at this host's inventory through Invoke's config."""
        prefix = "INVOKE" if program == "invoke" else "FABRIC"
        env = {**os.environ, f"{prefix}_LITELLM_INVENTORY": str(self.inventory), **(env or {})}
        return subprocess.run([sys.executable, "-m", program, *argv], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)

    def inspect(self) -> dict:
        out = subprocess.run([*self.docker, "inspect", self.container], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)[0]

    def remove_container(self) -> None:
        subprocess.run([*self.docker, "rm", "-f", self.container], capture_output=True)


def make_lab_host(lab: local_lab.Lab, root: Path, name: str, profile: str = "standard") -> LabHost:
    """A host on the machine's own Docker engine, reached through the sshd of a host profile."""
    data = yaml.safe_load((REPO / "hosts.yaml").read_text())
    entry = dict(data["hosts"]["lab"])
    for key in LOCAL_PATHS:
        if key in entry:
            entry[key] = str(REPO / entry[key])
    entry.update(compose_file=str(root / "compose.yml"), config_dir=str(root / "litellm"),
                 container_name=f"litedeploy-test-{name}", port=free_port(), ssh_port=lab.port(profile))
    host = LabHost(name, root, root / "hosts.yaml", entry)
    host.write_inventory()
    return host


def make_namespace_host(lab: local_lab.Lab, root: Path, name: str, index: int) -> LabHost:
    """A host on namespace host N of the lab (its own address, hardened sshd and Docker engine),
    shaped like fox: bridge networking with the gateway's port published on every address."""
    host = make_lab_host(lab, root, name)
    where = lab.namespace_host(index)
    host.entry.update(address=where.address, ssh_port=22, network_mode="bridge", bind="0.0.0.0")
    host.docker = where.docker
    host.write_inventory()
    return host


def encrypt_for_lab(values: dict, path: Path) -> Path:
    """A secrets file the lab key decrypts, made with the real sops binary."""
    recipient = next(line.split(": ")[1].strip() for line in (REPO / "lab/age-key.lab.txt").read_text().splitlines()
                     if line.startswith("# public key:"))
    path.write_text(yaml.safe_dump(values))
    # From the file's own folder: the repo's .sops.yaml has no rule for a path outside it.
    subprocess.run(["sops", "--encrypt", "--in-place", "--age", recipient, path.name], check=True,
                   capture_output=True, cwd=path.parent)
    return path


def lab_secrets(**changes) -> dict:
    from litedeploy.secrets import decrypt_secrets
    return {**decrypt_secrets(str(REPO / "lab/secrets.lab.enc.yaml"), str(REPO / "lab/age-key.lab.txt")), **changes}


def _name_of(text: str) -> str:
    """A name Docker accepts for a container, from a test's or module's name."""
    return "".join(c if c.isalnum() else "-" for c in text.replace("test_", "")).strip("-")[:48]


@pytest.fixture
def fresh_lab_host(lab, tmp_path_factory, request, compose_flavour):
    """A host of its own for one test; its container is removed afterwards."""
    made = []

    def make(suffix: str = "") -> LabHost:
        name = _name_of(request.node.name)[:40] + suffix
        host = make_lab_host(lab, tmp_path_factory.mktemp(name), name, FLAVOUR_PROFILES[compose_flavour])
        made.append(host)
        return host
    yield make
    for host in made:
        host.remove_container()


@pytest.fixture(scope="module")
def lab_host(lab, tmp_path_factory, request, compose_flavour) -> LabHost:
    name = _name_of(f"{request.module.__name__.rsplit('.', 1)[-1]}-{compose_flavour}")
    host = make_lab_host(lab, tmp_path_factory.mktemp(name), name, FLAVOUR_PROFILES[compose_flavour])
    yield host
    host.remove_container()


TEAM_COMPOSE = "services:\n  web:\n    image: nginx:alpine\n"


@pytest.fixture(scope="module")
def deployed(lab_host) -> LabHost:
    """The module's host with a team's compose file and a first deploy done."""
    return deployed_once(lab_host, TEAM_COMPOSE)


@pytest.fixture
def host(deployed) -> LabHost:
    """The deployed host, its inventory put back after each test."""
    yield deployed
    deployed.write_inventory()
