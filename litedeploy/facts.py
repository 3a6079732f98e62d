"""What is on the host now, read from the output of `commands.facts.gather` (one round trip, no
remote Python).

The script prints one `key value` line per fact; file contents travel base64-encoded. The env file
comes too, so a diff can name the keys that changed; it stays in memory and is never printed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .inventory import Host


@dataclass(frozen=True)
class ContainerState:
    """The gateway's process as its runtime reports it: a container's `docker inspect`, or a systemd
    unit's `systemctl show` (kind "service"; status is the unit's sub-state, or its active state
    when it is not active; restart_count NRestarts; no image)."""

    status: str
    running: bool
    started_at: str
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
    compose_text: str | None
    config_text: str | None
    env_text: str | None
    compose_flavour: str | None  # "v2" (`docker compose`), "v1" (`docker-compose`) or None
    container: ContainerState | None
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
    # What listens on the gateway's port ("container NAME", "process CMD (pid N)"), where asked.
    port_holder: str | None = None
    # RepoDigests of the image hosts.yaml names, as the host holds it (None: it has no such image).
    wanted_digests: tuple[str, ...] | None = None
    # The systemd runtime: its unit file, the venvs installed completely, whether its user exists.
    unit_text: str | None = None
    venvs: tuple[str, ...] = ()
    # The Docker engine did not answer the user the deploy runs as (stopped, or its socket denied).
    docker_unreachable: bool = False
    service_user: bool = False
    # The Docker engine's version and architecture (Go's names: amd64, arm64); the wanted image's architecture.
    engine_version: str | None = None
    engine_arch: str | None = None
    wanted_arch: str | None = None

    def service_text(self, host: Host) -> str | None:
        """The file that says what the gateway runs: the unit (systemd) or the compose file."""
        return self.unit_text if host.systemd else self.compose_text

    def held_by_other(self, ours: str) -> str | None:
        """The port's holder when it is not our gateway (`Host.gateway_holder`)."""
        return None if self.port_holder in (None, ours) else self.port_holder


def service_fact(host: Host) -> str:
    """The fact name of the file that says what runs the gateway (`Host.service_file`)."""
    return "unit_file" if host.systemd else "compose_file"


# The files a deploy manages, by the fact name that carries each one's content.
def managed_files(host: Host) -> dict[str, str]:
    return {service_fact(host): host.service_file, "config_file": host.config_path, "env_file": host.env_path}


def parse_facts(output: str, host: Host | None = None) -> HostFacts:
    """With the host, managed paths are reported by their names (symlinks, non-files, non-text)."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        found[key] = value.strip()
    files = managed_files(host) if host else {}
    texts = {name: _text(found[name]) for name in ("compose_file", "unit_file", "config_file", "env_file")
             if name in found}
    container = None
    if "container" in found:
        container = _container(json.loads(_decode(found["container"])))
    elif "service" in found:
        container = _service(dict(pair.split("=", 1) for pair in _decode(found["service"]).splitlines() if "=" in pair))
    holder = None
    if found.get("lock", "").startswith("held"):
        encoded = found["lock"].partition(" ")[2]
        try:
            holder = json.loads(_decode(encoded)) if encoded else {}
        except ValueError:
            holder = {}
    return HostFacts(
        compose_text=texts.get("compose_file"),
        config_text=texts.get("config_file"),
        env_text=texts.get("env_file"),
        compose_flavour=found.get("flavour"),
        container=container,
        config_mtime=float(found["config_mtime"]) if "config_mtime" in found else None,
        image_digests=tuple(json.loads(_decode(found["image_digests"])) or ()) if found.get("image_digests") else (),
        lock_acquired=found.get("lock") == "acquired",
        lock_live=found.get("lock_live"),
        lock_holder=holder,
        real_paths={path: _decode(found[f"real_{name}"]) for name, path in files.items() if f"real_{name}" in found},
        not_files=tuple(path for name, path in files.items() if f"notfile_{name}" in found),
        not_text=tuple(path for name, path in files.items() if name in texts and texts[name] is None),
        port_holder=found.get("port_holder"),
        wanted_digests=tuple(json.loads(_decode(found["wanted_image"])) or ()) if "wanted_image" in found else None,
        unit_text=texts.get("unit_file"),
        docker_unreachable="docker_unreachable" in found,
        venvs=tuple(found["venvs"].split()) if "venvs" in found else (),
        service_user="service_user" in found,
        engine_version=(found.get("engine") or " ").split(" ")[0] or None,
        engine_arch=(found.get("engine", "").split(" ") + [""])[1] or None,
        wanted_arch=found.get("wanted_arch") or None,
    )


def _decode(value: str) -> str:
    return base64.b64decode(value).decode("utf-8")


def _text(value: str) -> str | None:
    """A file's content, or None when its bytes are not UTF-8 text."""
    try:
        return _decode(value)
    except UnicodeDecodeError:
        return None


def _container(data: dict) -> ContainerState:
    state = data["state"]
    labels = data.get("labels") or {}
    return ContainerState(
        status=state.get("Status", "unknown"),
        running=bool(state.get("Running")),
        started_at=state.get("StartedAt", ""),
        restart_count=int(data.get("restart_count") or 0),
        exit_code=int(state.get("ExitCode", 0)),
        health=(state.get("Health") or {}).get("Status"),
        image=data.get("image", ""),
        image_id=data.get("image_id", ""),
        compose_project=labels.get("com.docker.compose.project"),
        network_mode=data.get("network_mode") or "",
        ports=tuple(f"{bind.get('HostIp') or '0.0.0.0'}:{bind.get('HostPort')}->{port}"
                    for port, binds in (data.get("ports") or {}).items() for bind in (binds or [])),
    )


def _service(show: Mapping[str, str]) -> ContainerState | None:
    """`systemctl show` properties of a unit; None when systemd has no such unit file."""
    if show.get("LoadState") == "not-found":
        return None
    active = show.get("ActiveState", "")
    started = show.get("ExecMainStartTimestamp", "")  # "Tue 2026-11-24 02:30:00 UTC" with --timestamp=utc
    return ContainerState(
        status=show.get("SubState", "") if active in ("active", "activating", "reloading") else active,
        running=active == "active" and show.get("SubState") == "running",
        started_at=datetime.strptime(started, "%a %Y-%m-%d %H:%M:%S UTC").replace(tzinfo=timezone.utc).isoformat()
        if started.endswith(" UTC") else "",
        restart_count=int(show.get("NRestarts") or 0),
        exit_code=int(show.get("ExecMainStatus") or 0),
        health=None, image="", image_id="", compose_project=None, kind="service")
