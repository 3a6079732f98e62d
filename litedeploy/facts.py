"""What is on the host now: the records `commands.facts.parse_facts` fills from the one round trip
(no remote Python). Each fact is defined beside the command that prints it, as pyinfra keeps a
fact's command and its parser in one class: a `Fact` names the key its command prints and the
parser of the rest of the line.

File contents travel base64-encoded. The env file comes too, so a diff can name the keys that
changed; it stays in memory and is never printed.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# The front door's configuration names the live instance in its one `server` line (`frontdoor`).
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
class HostFacts:
    # The file that says what runs the gateway (the compose file, or the unit), config.yaml, the env file.
    service_text: str | None
    config_text: str | None
    env_text: str | None
    compose_flavour: str | None  # "v2" (`docker compose`), "v1" (`docker-compose`) or None
    state: GatewayState | None
    config_mtime: float | None = None
    image_digests: tuple[str, ...] = ()
    # Set when the facts were gathered together with an attempt to take the deploy lock.
    lock_acquired: bool = False
    lock_holder: dict | None = None
    # --break-lock found the holder still connected (its sshd pid): the lock stays.
    lock_live: str | None = None
    # Managed paths that are symlinks -> the file they lead to (which is what gets rewritten).
    real_paths: Mapping[str, str] = field(default_factory=dict)
    # Managed paths that exist but are no regular file (a directory, a device).
    not_files: tuple[str, ...] = ()
    # Managed paths whose bytes are not UTF-8 text.
    not_text: tuple[str, ...] = ()
    # What listens on the gateway's port (a container, a process), where asked.
    port_holder: Holder | None = None
    # RepoDigests of the image hosts.yaml names, as the host holds it (None: it has no such image).
    wanted_digests: tuple[str, ...] | None = None
    # The systemd runtime: the venvs installed completely, whether its user exists.
    venvs: tuple[str, ...] = ()
    # The Docker engine did not answer the user the deploy runs as (stopped, or its socket denied).
    docker_unreachable: bool = False
    service_user: bool = False
    # The Docker engine's version and architecture (Go's names: amd64, arm64); the wanted image's architecture.
    engine_version: str | None = None
    engine_arch: str | None = None
    wanted_arch: str | None = None
    # vars.zero_downtime: the proxy's configuration (which instance is live) and the state of its
    # containers by role (blue, green, proxy).
    proxy_text: str | None = None
    proxy_service_text: str | None = None  # the proxy's own service file, where it has one (a unit)
    # RepoDigests of the proxy image hosts.yaml names, as the host holds it (None: it has no such image).
    proxy_digests: tuple[str, ...] | None = None
    instances: Mapping[str, GatewayState] = field(default_factory=dict)

    @property
    def live(self) -> str | None:
        """The instance the front door forwards to (its configuration says), or None."""
        return live_color(self.proxy_text)

    def held_by_other(self, ours: Holder) -> Holder | None:
        """The port's holder when it is not our gateway (`Driver.holder`)."""
        return None if self.port_holder in (None, ours) else self.port_holder


# The parser of one fact line's value: (value, the managed files by fact name -> path) -> the
# HostFacts fields it sets. Fields that several lines feed (real_paths, not_files, not_text) merge.
Parser = Callable[[str, Mapping[str, str]], Mapping[str, Any]]


class Fact(NamedTuple):
    """A line `KEY VALUE` some command prints, and what VALUE means."""

    key: str
    parse: Parser


def decode(value: str) -> str:
    """A base64 value as text (UnicodeDecodeError where its bytes are not UTF-8)."""
    return base64.b64decode(value).decode("utf-8")


def flag(field_name: str) -> Fact:
    """A fact whose line alone says yes (`docker_unreachable yes`)."""
    return Fact(field_name, lambda value, paths: {field_name: True})
