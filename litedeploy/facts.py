"""What is on the host now: the records `commands.facts.parse_facts` fills from the one round trip
(no remote Python). Each fact is defined beside the command that prints it, as pyinfra keeps a
fact's command and its parser in one class: a `Fact` names the key its command prints, the part of
`HostFacts` it fills and the parser of the rest of the line.

File contents travel base64-encoded. The env file comes too, so a diff can name the keys that
changed; it stays in memory and is never printed.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, TypeVar

# The front door's configuration names the live instance in its first `server` line, the other as
# its backup (`frontdoor`).
_LIVE_SERVER = re.compile(r"^\s*server (blue|green) ", re.MULTILINE)


def live_color(proxy_text: str | None) -> str | None:
    """The instance a front door's configuration forwards to, or None (no door configured)."""
    found = _LIVE_SERVER.search(proxy_text or "")
    return found.group(1) if found else None


class Holder(NamedTuple):
    """What holds a port, typed: (kind, name) such as ("container", "litellm"), ("service",
    "litellm") or ("process", "haproxy (pid 12)"); shown as "KIND NAME"."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class GatewayState:
    """The gateway's process as its runtime reports it: a container's `docker inspect` (kind
    "container"), or a unit's `systemctl show` (kind "service": status is the unit's sub-state, or
    its active state when it is not active; restart_count NRestarts; no image)."""

    status: str
    running: bool
    started_at: str  # ISO 8601 ("" when it never started)
    restart_count: int
    exit_code: int
    health: str | None
    image: str
    image_id: str
    compose_project: str | None
    network_mode: str = ""
    ports: tuple[str, ...] = ()  # "HOST_IP:HOST_PORT->CONTAINER_PORT/PROTO"
    kind: str = "container"


@dataclass(frozen=True)
class FileFacts:
    """The managed files as the host holds them: each one's text (None: absent, or not UTF-8), and
    the paths that need care when they are rewritten."""

    # The file that says what runs the gateway (the compose file, or the unit), config.yaml, the env file.
    service_text: str | None = None
    config_text: str | None = None
    env_text: str | None = None
    config_mtime: float | None = None
    # vars.zero_downtime: the front door's configuration (which instance is live), and its own service
    # file where it has one (a unit).
    proxy_text: str | None = None
    proxy_service_text: str | None = None
    # vars.tls: the door's certificate and key (0600), compared, never shown.
    certificate_text: str | None = None
    # vars.tls.acme: the HTTP-01 answers the door serves (empty between two requests for a certificate).
    challenges_text: str | None = None
    # vars.tls.acme: a certificate the CA issued that no deploy has installed yet (0600), never shown.
    pending_certificate_text: str | None = None
    # Managed paths that are symlinks -> the file they lead to (which is what gets rewritten).
    real_paths: Mapping[str, str] = field(default_factory=dict)
    # Managed paths that exist but are no regular file (a directory, a device).
    not_files: tuple[str, ...] = ()
    # Managed paths whose bytes are not UTF-8 text.
    not_text: tuple[str, ...] = ()


@dataclass(frozen=True)
class LockFacts:
    """The deploy lock, where the facts were gathered together with an attempt to take it."""

    acquired: bool = False
    holder: dict | None = None  # the owner record of whoever holds it ({} when it cannot be read)
    # --break-lock found the holder still connected (its sshd pid, or `lock.BY_HAND`): the lock stays.
    live: str | None = None


@dataclass(frozen=True)
class GatewayFacts:
    """The gateway's process as its runtime reports it, and what holds its port."""

    state: GatewayState | None = None
    # RepoDigests of the image the gateway's container runs (none for a unit).
    image_digests: tuple[str, ...] = ()
    # What listens on the gateway's port (a container, a process), where asked.
    port_holder: Holder | None = None
    # vars.zero_downtime: the state of the front door's proxy and instances by role (proxy, blue, green).
    instances: Mapping[str, GatewayState] = field(default_factory=dict)

    def held_by_other(self, ours: Holder) -> Holder | None:
        """The port's holder when it is not our gateway (`Driver.holder`)."""
        return None if self.port_holder in (None, ours) else self.port_holder


@dataclass(frozen=True)
class DockerFacts:
    """What only the Docker runtime asks: its engine, compose, and the images hosts.yaml names."""

    compose_flavour: str | None = None  # "v2" (`docker compose`), "v1" (`docker-compose`) or None
    # The engine did not answer the user the deploy runs as (stopped, or its socket denied).
    unreachable: bool = False
    # The engine's version and architecture (Go's names: amd64, arm64).
    engine_version: str | None = None
    engine_arch: str | None = None
    # RepoDigests and Architecture of the image hosts.yaml names, as the host holds it (None: it has no
    # such image).
    wanted_digests: tuple[str, ...] | None = None
    wanted_arch: str | None = None
    # RepoDigests of the front door's proxy image hosts.yaml names (None: the host has no such image).
    proxy_digests: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SystemdFacts:
    """What only the systemd runtime asks: the venvs under venv_root installed completely, and
    whether the service user exists."""

    venvs: tuple[str, ...] = ()
    service_user_exists: bool = False


_Part = TypeVar("_Part", FileFacts, LockFacts, GatewayFacts, DockerFacts, SystemdFacts)
# Where `HostFacts.of` looks for a field's name: no two parts share one.
_PARTS = (FileFacts, LockFacts, GatewayFacts, DockerFacts, SystemdFacts)


@dataclass(frozen=True)
class HostFacts:
    """What is on the host, by part: files, lock, gateway, and each runtime's own. Both runtimes'
    parts are always there; the one the host does not run keeps its defaults (its questions were
    not asked)."""

    files: FileFacts = field(default_factory=FileFacts)
    lock: LockFacts = field(default_factory=LockFacts)
    gateway: GatewayFacts = field(default_factory=GatewayFacts)
    docker: DockerFacts = field(default_factory=DockerFacts)
    systemd: SystemdFacts = field(default_factory=SystemdFacts)

    @property
    def live(self) -> str | None:
        """The instance the front door forwards to (its configuration says), or None."""
        return live_color(self.files.proxy_text)

    @classmethod
    def from_parts(cls, values: Mapping[type, Mapping[str, Any]]) -> HostFacts:
        """From each part's fields (the part's class -> field name -> value); a part or field not
        given keeps its defaults."""
        def part(record: type[_Part]) -> _Part:
            return record(**values.get(record, {}))
        return cls(files=part(FileFacts), lock=part(LockFacts), gateway=part(GatewayFacts), docker=part(DockerFacts),
                   systemd=part(SystemdFacts))

    @classmethod
    def of(cls, **values: Any) -> HostFacts:
        """From the parts' field names, each routed to the one part that has it
        (`HostFacts.of(service_text=..., state=..., venvs=...)`); TypeError for a name no part has."""
        routed: dict[type, dict[str, Any]] = {}
        for name, value in values.items():
            record = next((part for part in _PARTS if name in {each.name for each in fields(part)}), None)
            if record is None:
                raise TypeError(f"no part of HostFacts has a field {name!r}")
            routed.setdefault(record, {})[name] = value
        return cls.from_parts(routed)


# The parser of one fact line's value: (value, the managed files by fact name -> path) -> the fields
# it sets of its fact's part. Fields that several lines feed (real_paths, not_files, not_text, instances) merge.
Parser = Callable[[str, Mapping[str, str]], Mapping[str, Any]]


class Fact(NamedTuple):
    """A line `KEY VALUE` some command prints, the part of HostFacts it fills (FileFacts,
    DockerFacts...), and what VALUE means."""

    key: str
    part: type
    parse: Parser


def decode(value: str) -> str:
    """A base64 value as text (UnicodeDecodeError where its bytes are not UTF-8)."""
    return base64.b64decode(value).decode("utf-8")


def flag(key: str, part: type, field_name: str) -> Fact:
    """A fact whose line alone says yes (`docker_unreachable yes`): PART's FIELD_NAME is True."""
    return Fact(key, part, lambda value, paths: {field_name: True})
