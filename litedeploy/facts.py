"""What is on the host now, gathered by one shell script in one round trip (no remote Python).

The script prints one `key value` line per fact; file contents travel base64-encoded. The env file
comes too, so a diff can name the keys that changed; it stays in memory and is never printed.
"""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass

from .inventory import Host

# Only these parts of `docker inspect`: its full output holds the container's secret environment.
_INSPECT_FORMAT = ('{"state": {{json .State}}, "restart_count": {{json .RestartCount}}, '
                   '"labels": {{json .Config.Labels}}, "image": {{json .Config.Image}}, '
                   '"image_id": {{json .Image}}, "ports": {{json .NetworkSettings.Ports}}, '
                   '"network_mode": {{json .HostConfig.NetworkMode}}}')


@dataclass(frozen=True)
class ContainerState:
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


def facts_script(host: Host) -> str:
    q = shlex.quote
    return "\n".join([
        "f() { if [ -f \"$2\" ]; then printf '%s ' \"$1\"; base64 -w0 < \"$2\"; echo; fi; }",
        f"f compose_file {q(host.compose_file)}",
        f"f config_file {q(host.config_path)}",
        f"f env_file {q(host.env_path)}",
        f"[ -f {q(host.config_path)} ] && echo \"config_mtime $(stat -c %Y {q(host.config_path)})\"",
        # v1 is a Python program that takes half a second to start: finding it is enough.
        "if docker compose version >/dev/null 2>&1; then echo 'flavour v2';"
        " elif command -v docker-compose >/dev/null 2>&1; then echo 'flavour v1'; fi",
        container_script(host),
        image_script(host),
        "true",
    ])


def container_script(host: Host) -> str:
    """Prints a `container` fact line, or nothing when there is no such container."""
    return (f"c=$(docker inspect --type container --format {shlex.quote(_INSPECT_FORMAT)} "
            f"{shlex.quote(host.container_name)} 2>/dev/null)"
            " && printf 'container %s\\n' \"$(printf '%s' \"$c\" | base64 -w0)\"")


def image_script(host: Host) -> str:
    """The registry digests of the image the container runs (none for a locally built image)."""
    return (f"i=$(docker inspect --type container --format '{{{{.Image}}}}' {shlex.quote(host.container_name)} "
            "2>/dev/null) && printf 'image_digests %s\\n' "
            "\"$(docker image inspect --format '{{json .RepoDigests}}' \"$i\" | base64 -w0)\"")


def parse_facts(output: str) -> HostFacts:
    found: dict[str, str] = {}
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        found[key] = value.strip()
    container = None
    if "container" in found:
        container = _container(json.loads(_decode(found["container"])))
    holder = None
    if found.get("lock", "").startswith("held"):
        encoded = found["lock"].partition(" ")[2]
        try:
            holder = json.loads(_decode(encoded)) if encoded else {}
        except ValueError:
            holder = {}
    return HostFacts(
        compose_text=_decode(found["compose_file"]) if "compose_file" in found else None,
        config_text=_decode(found["config_file"]) if "config_file" in found else None,
        env_text=_decode(found["env_file"]) if "env_file" in found else None,
        compose_flavour=found.get("flavour"),
        container=container,
        config_mtime=float(found["config_mtime"]) if "config_mtime" in found else None,
        image_digests=tuple(json.loads(_decode(found["image_digests"])) or ()) if found.get("image_digests") else (),
        lock_acquired=found.get("lock") == "acquired",
        lock_holder=holder,
    )


def _decode(value: str) -> str:
    return base64.b64decode(value).decode("utf-8")


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
