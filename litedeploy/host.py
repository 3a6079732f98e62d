"""One deploy target as typed records (a leaf: it imports nothing of ours but the predicates of `shapes`):
the settings every host has, and the runtime's own settings record, which declares its rules and
what two hosts of that runtime on one machine cannot share, as data the inventory applies.

A third runtime adds its record here (and its line in `runtimes.REGISTRY`); the inventory reads the
rules from `RUNTIME_SETTINGS` and imports no runtime.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from .shapes import Rule, absolute_path, matching, one_of, text

# A pinned requirement: name[extras]==version.
_PINNED = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9,._-]+\])?==([A-Za-z0-9.+!-]+)")
NETWORK_MODES = ("bridge", "host")


def pinned(requirement: str) -> tuple[str, str] | None:
    """(name, version) of a pinned requirement such as `litellm[proxy]==1.106.2`; None otherwise."""
    match = _PINNED.fullmatch(requirement)
    return (match[1], match[3]) if match else None


def _pinned_requirements(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(p, str) and pinned(p) for p in value) \
        and any((pinned(p) or ("",))[0] == "litellm" for p in value)


# A claim: (setting, the setting whose value scopes it or None for the whole machine). Two hosts of one
# runtime at one address clash where the claimed setting's value and its scope's value are both equal.
Claim = tuple[str, "str | None"]


@dataclass(frozen=True)
class DockerSettings:
    """The `docker` runtime's settings: a service of the host's compose file, in a container."""

    compose_file: str
    compose_project: str | None
    image: str
    network_mode: str
    container_name: str
    marker: str

    RULES: ClassVar[Mapping[str, Rule]] = {
        "compose_file": (absolute_path(r"/[^\x00-\x1f]*"), "an absolute path on the host, without . or .. parts"),
        "compose_project": (matching(r"[a-z0-9][a-z0-9_-]*"), "a compose project name (a-z, 0-9, _ and -)"),
        "image": (matching(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*"), "an image reference (registry/name:tag or @digest)"),
        "network_mode": (one_of(NETWORK_MODES), f"one of {', '.join(NETWORK_MODES)}"),
        "container_name": (matching(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+"),
                           "a container name Docker accepts ([a-zA-Z0-9][a-zA-Z0-9_.-]+, two characters at least)"),
        # Found again by its exact text: a trailing blank, which editors strip, would lose the block.
        "marker": (matching(r"#[^\n\r]*\{mark\}[^\n\r]*(?<![ \t])"),
                   "one comment line (# ...) containing {mark}, without trailing blanks"),
    }
    # Settings this runtime needs that have no default, and what the error says of them.
    REQUIRED: ClassVar[Mapping[str, str]] = {"image": "a LiteLLM release such as ghcr.io/berriai/litellm:v1.84.0"}
    # Stricter rules for common settings on this runtime: none.
    RESTRICTS: ClassVar[Mapping[str, Rule]] = {}
    CLAIMS: ClassVar[tuple[Claim, ...]] = (("container_name", None), ("service_name", "compose_file"),
                                           ("marker", "compose_file"))


@dataclass(frozen=True)
class SystemdSettings:
    """The `systemd` runtime's settings: pinned requirements installed into a venv under venv_root
    (one per set), run as service_user; from the host's package index, or from `wheels`, a local
    folder uploaded."""

    packages: tuple[str, ...]
    venv_root: str
    service_user: str
    python: str
    wheels: str | None

    RULES: ClassVar[Mapping[str, Rule]] = {
        "packages": (_pinned_requirements,
                     "a list of pinned requirements (name==version) including litellm, e.g. litellm[proxy]==1.106.2"),
        "venv_root": (absolute_path(r"/[^\x00-\x1f\s%$\"'\\]*[^/\x00-\x1f\s%$\"'\\]"),
                      "an absolute path on the host (not /) without blanks, quotes, backslashes, % or $ (the unit's "
                      "ExecStart names it), nor . or .. parts"),
        "service_user": (matching(r"[a-z_][a-z0-9_-]*"), "a system user name (a-z, 0-9, _ and -)"),
        "python": (matching(r"[A-Za-z0-9_./+-]+"), "a Python interpreter's name or path (python3)"),
        "wheels": (text, "a path"),
    }
    REQUIRED: ClassVar[Mapping[str, str]] = {}
    # The unit's ExecStart names config_dir: no blank, quote or backslash there.
    RESTRICTS: ClassVar[Mapping[str, Rule]] = {
        "config_dir": (lambda value: re.search(r"[\s\"'\\]", value) is None,
                       "a path without spaces, quotes or backslashes on a systemd host (the unit's ExecStart names it)"),
    }
    CLAIMS: ClassVar[tuple[Claim, ...]] = (("service_name", None),)

    @property
    def litellm_version(self) -> str:
        return next(pin[1] for pin in map(pinned, self.packages) if pin and pin[0] == "litellm")

    @property
    def venv_dir(self) -> str:
        """One venv per set of packages, named for the litellm it holds: a unit that names it runs
        exactly that, and a rollback's unit finds its venv still there."""
        digest = hashlib.sha256("\n".join(sorted(self.packages)).encode()).hexdigest()[:8]
        return posixpath.join(self.venv_root, f"litellm-{self.litellm_version}-{digest}")


# The front door's two instances, which take turns behind it (`frontdoor`).
COLORS = ("blue", "green")


@dataclass(frozen=True)
class FrontDoor:
    """The proxy in front of a host's gateway, as hosts.yaml asks for it (`frontdoor.front_door`):
    IMAGE (where the runtime runs it as one), the loopback PORTS of blue and green, CONFIG_PATH,
    the configuration that names the live instance, and with HTTPS (vars.tls) CERTIFICATE_PATH, the
    certificate and key it serves; with a certificate from an ACME CA (vars.tls.acme) ACME_PORT,
    the port it answers the CA's HTTP-01 requests on (and redirects plain HTTP to HTTPS), from
    CHALLENGES_PATH."""

    image: str
    ports: tuple[int, int]
    config_path: str
    certificate_path: str | None = None
    acme_port: int | None = None
    challenges_path: str | None = None

    def port(self, color: str) -> int:
        return self.ports[COLORS.index(color)]


RuntimeSettings = DockerSettings | SystemdSettings
# hosts.yaml's `runtime` -> the record of that runtime's settings.
RUNTIME_SETTINGS: Mapping[str, type[DockerSettings] | type[SystemdSettings]] = {
    "docker": DockerSettings, "systemd": SystemdSettings}


@dataclass(frozen=True)
class Host:
    """One deploy target, with every default applied and local paths made absolute: the settings
    every runtime has, and RUNTIME_SETTINGS, the record of its runtime's own (`docker`, `systemd`)."""

    name: str
    address: str
    runtime: str
    ssh_user: str
    ssh_port: int
    ssh_key: str | None
    known_hosts: str | None
    host_key: str
    sudo: bool
    config_dir: str
    port: int
    bind: str
    service_name: str
    secrets_file: str
    age_key_file: str | None
    health_timeout: float
    runtime_settings: RuntimeSettings
    # A named set of vars from the inventory's `profiles`, applied over the host's own vars.
    profile: str | None = None
    # Built-in vars (settings.PRESETS) the host's own vars are applied over.
    preset: str | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)

    @property
    def docker(self) -> DockerSettings:
        """The docker runtime's settings (TypeError on a host of another runtime: a caller's bug)."""
        if not isinstance(self.runtime_settings, DockerSettings):
            raise TypeError(f"host {self.name} runs {self.runtime}, not docker")
        return self.runtime_settings

    @property
    def systemd(self) -> SystemdSettings:
        """The systemd runtime's settings (TypeError on a host of another runtime: a caller's bug)."""
        if not isinstance(self.runtime_settings, SystemdSettings):
            raise TypeError(f"host {self.name} runs {self.runtime}, not systemd")
        return self.runtime_settings

    def with_settings(self, **changes: Any) -> Host:
        """The host with CHANGES, by their hosts.yaml names, common or its runtime's own."""
        own = {key: changes.pop(key) for key in list(changes) if key in _field_names(type(self.runtime_settings))}
        return replace(self, runtime_settings=replace(self.runtime_settings, **own), **changes)

    @property
    def config_path(self) -> str:
        return posixpath.join(self.config_dir, "config.yaml")

    @property
    def env_path(self) -> str:
        return posixpath.join(self.config_dir, "litellm.env")

    @property
    def backup_dir(self) -> str:
        return posixpath.join(self.config_dir, "backups")

    @property
    def local_address(self) -> str:
        """Where the gateway answers on the host itself (a wildcard bind answers on loopback)."""
        return "127.0.0.1" if self.bind in ("0.0.0.0", "::", "") else self.bind


def _field_names(record: type) -> set[str]:
    return {item.name for item in fields(record)}
