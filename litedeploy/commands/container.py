"""Docker commands for the gateway's container and its image: state, digests, pull, logs, exec,
removal, and pruning the images no kept release runs."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence

from ..facts import DockerFacts, Fact, GatewayFacts, GatewayState, Holder, decode, flag
from ..host import Host
from . import Raw, argv, line, script

# Only these parts of `docker inspect`: its full output holds the container's secret environment.
INSPECT_FORMAT = ('{"state": {{json .State}}, "restart_count": {{json .RestartCount}}, '
                  '"labels": {{json .Config.Labels}}, "image": {{json .Config.Image}}, '
                  '"image_id": {{json .Image}}, "ports": {{json .NetworkSettings.Ports}}, '
                  '"network_mode": {{json .HostConfig.NetworkMode}}}')
_DIGESTS = "{{json .RepoDigests}}"


def state(host: Host, digests: bool = False, key: str = "container") -> str:
    """Prints a `container` fact line (KEY: `container_blue`... for vars.zero_downtime's containers),
    or nothing when there is no such container (`docker_unreachable` when the reason is that the
    engine does not answer); with digests also `image_digests`: the registry digests of the image
    it runs (none for a local build)."""
    inspect = line("docker", "inspect", "--type", "container", "--format", "{{.Image}} " + INSPECT_FORMAT,
                   host.docker.container_name)
    lines = [f"c=$({inspect} 2>/dev/null) && printf '{key} %s\\n' \"$(printf '%s' \"${{c#* }}\" | base64 -w0)\""
             " || docker version --format . >/dev/null 2>&1 || echo 'docker_unreachable yes'"]
    if digests:
        lines.append("[ -z \"$c\" ] || printf 'image_digests %s\\n' \"$("
                     + line("docker", "image", "inspect", "--format", _DIGESTS, Raw('"${c%% *}"'))
                     + " | base64 -w0)\"")
    return script(lines)


def parse_state(value: str, paths: Mapping[str, str] = {}) -> dict[str, GatewayState]:
    """The `container` line: INSPECT_FORMAT's JSON, base64."""
    data = json.loads(decode(value))
    state, labels = data["state"], data.get("labels") or {}
    return {"state": GatewayState(
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
    )}


def parse_instance(role: str) -> Fact:
    """The state of one of vars.zero_downtime's containers (ROLE: blue, green, proxy)."""
    return Fact(f"container_{role}", GatewayFacts,
                lambda value, paths: {"instances": {role: parse_state(value)["state"]}})


def _digests(value: str) -> tuple[str, ...]:
    """A base64 JSON list of RepoDigests (`null` for a local build)."""
    return tuple(json.loads(decode(value)) or ()) if value else ()


# Prints `engine VERSION ARCH` (Go's names: amd64, arm64), what the image's architecture is compared with.
ENGINE = "docker version --format 'engine {{.Server.Version}} {{.Server.Arch}}' 2>/dev/null || true"


def wanted_image(image: str, prefix: str = "") -> str:
    """Prints `wanted_image` with the image's registry digests and `wanted_arch` with its
    architecture, or nothing when the host lacks it (PREFIX `proxy_`: vars.zero_downtime's proxy image)."""
    inspect = line("docker", "image", "inspect", "--format", "{{.Architecture}} " + _DIGESTS, image)
    return (f"w=$({inspect} 2>/dev/null) && printf '{prefix}wanted_arch %s\\n{prefix}wanted_image %s\\n' \"${{w%% *}}\" "
            "\"$(printf '%s' \"${w#* }\" | base64 -w0)\"")


def _engine(value: str, paths: Mapping[str, str]) -> dict[str, str | None]:
    version, _, arch = value.partition(" ")
    return {"engine_version": version or None, "engine_arch": arch or None}


FACTS = (
    Fact("container", GatewayFacts, parse_state),
    *(parse_instance(role) for role in ("blue", "green", "proxy")),
    Fact("image_digests", GatewayFacts, lambda value, paths: {"image_digests": _digests(value)}),
    flag("docker_unreachable", DockerFacts, "unreachable"),
    Fact("wanted_image", DockerFacts, lambda value, paths: {"wanted_digests": _digests(value)}),
    Fact("wanted_arch", DockerFacts, lambda value, paths: {"wanted_arch": value or None}),
    Fact("proxy_wanted_image", DockerFacts, lambda value, paths: {"proxy_digests": _digests(value)}),
    Fact("engine", DockerFacts, _engine),
    Fact("port_holder", GatewayFacts,
         lambda value, paths: {"port_holder": Holder(*value.split(" ", 1))} if " " in value else {}),
)


def pull(image: str) -> str:
    """Pulls the image (the running container keeps serving) and prints its `wanted_image` line."""
    return script("set -e", line("docker", "pull", "-q", image, Raw(">/dev/null")), wanted_image(image))


def logs(host: Host, tail: int, follow: bool = False, since: str | None = None) -> list[str]:
    words = ["docker", "logs", "--tail", str(tail)]
    if follow:
        words.append("--follow")
    if since:
        words += ["--since", since]
    return words + [host.docker.container_name]


def execute(host: Host, command: list[str]) -> list[str]:
    """A command in the container, without a terminal."""
    return ["docker", "exec", host.docker.container_name, *command]


def remove_all(names: Sequence[str]) -> list[str]:
    """Removes the containers NAMES at once, running or not."""
    return ["docker", "rm", "-f", *names]


def run_detached(name: str, image: str, volumes: Sequence[str], network: Sequence[str],
                 command: Sequence[str], user: str | None = "0:0") -> list[str]:
    """A one-off container NAME of IMAGE, removed when it stops: USER in it (None: the image's own)
    with no capability but binding a privileged port, VOLUMES as `docker run -v` takes them,
    NETWORK its docker run options."""
    return ["docker", "run", "-d", "--rm", "--name", name, *(["--user", user] if user else []), "--cap-drop", "ALL",
            "--cap-add", "NET_BIND_SERVICE", *network, *(word for volume in volumes for word in ("-v", volume)),
            image, *command]


def stop_and_remove(name: str) -> str:
    """Container NAME stopped as Docker stops it (its stop signal, then its grace), then removed;
    quietly where there is none."""
    return f"{line('docker', 'stop', name)} >/dev/null 2>&1; {line('docker', 'rm', '-f', name)} >/dev/null 2>&1"


def replaced_beside(relief: Sequence[str], name: str, port: int, proxy: str, up: Sequence[str], timeout: float) -> str:
    """A script that stops and removes container PROXY, then runs UP (which makes it anew), while a
    relief (RELIEF, a `run_detached` of container NAME) listens beside it on PORT: HAProxy binds with
    SO_REUSEPORT, so the relief's socket shares the port. The relief counts once one more socket
    listens than before it started (within TIMEOUT seconds; else it is removed and the replace goes
    on without it: a gap, not a failure); it stops softly (SIGUSR1: it finishes what it holds) once
    the new PROXY listens too, or runs no more, or UP failed, or TIMEOUT seconds have passed, or
    the script is interrupted. Exits with UP's status. Removed and made anew rather than recreated
    by compose: docker-compose v1 cannot recreate on newer engines (`compose_v1_refusal`)."""
    port, tries = int(port), int(timeout * 10)
    count = f"$(ss -Hltn 'sport = :{port}' 2>/dev/null | wc -l)"
    removed = line("docker", "rm", "-f", name) + " >/dev/null 2>&1"
    soft_stop = line("docker", "kill", "--signal", "USR1", name) + " >/dev/null 2>&1"
    status = f'"$({line("docker", "inspect", "--format", "{{.State.Status}}", proxy)} 2>/dev/null)"'
    return script(
        removed,  # one an interrupted change left
        f"base={count}",
        "relief=no",
        f"if {argv(relief)} >/dev/null; then",
        f"  tries={tries}",
        f'  while [ "{count}" -le "$base" ] && [ "$tries" -gt 0 ]; do tries=$((tries - 1)); sleep 0.1; done',
        f'  if [ "{count}" -gt "$base" ]; then relief=yes; trap {shlex.quote(soft_stop)} HUP INT TERM;'
        f" else {removed}; fi",
        "fi",
        stop_and_remove(proxy),
        argv(up) + "; status=$?",
        'if [ "$relief" = yes ]; then',
        f'  if [ "$status" -eq 0 ]; then tries={tries}; while [ "{count}" -le "$base" ] && [ {status} = running ]'
        ' && [ "$tries" -gt 0 ]; do tries=$((tries - 1)); sleep 0.1; done; fi',
        f"  {soft_stop}",
        "fi",
        'exit "$status"',
    )


def reload(host: Host) -> list[str]:
    """SIGUSR2 to HAProxy's master process: it starts a worker on the configuration as it is now,
    hands it the listening socket, and lets the old worker finish the connections it holds. A USR2
    that comes while the master still loads the last one is lost (Debian's haproxy 2.6: of two sent
    50 ms apart, one starts a worker): a caller sees one reload's effect before it sends the next."""
    return ["docker", "kill", "--signal", "USR2", host.docker.container_name]


def prune_images(repository: str, releases_dir: str) -> str:
    """Removes the repository's images that no kept release's compose file runs by digest (Docker
    refuses to remove one a container uses); a local build has no registry to get it back from."""
    return script(
        f"keep=\" $(cat {line(releases_dir)}/*/compose.yml 2>/dev/null | grep -o 'sha256:[0-9a-f]\\{{64\\}}' | sort -u"
        " | tr '\\n' ' ') \"",
        line("docker", "images", "--no-trunc", "--format", "{{.ID}}", repository) + " | sort -u | while read -r id; do",
        "  digests=$(docker image inspect --format '{{range .RepoDigests}}{{.}} {{end}}' \"$id\")",
        "  [ -n \"$digests\" ] || continue",
        "  used=no; for d in $digests; do case \"$keep\" in *\" ${d#*@} \"*) used=yes;; esac; done",
        "  [ $used = yes ] || docker rmi $(docker image inspect --format"
        " '{{range .RepoTags}}{{.}} {{end}}{{range .RepoDigests}}{{.}} {{end}}' \"$id\") >/dev/null 2>&1 || true",
        "done",
    )


def port_holder(port: int) -> str:
    """Prints `port_holder container NAME` or `port_holder process COMMAND (pid N)` for whatever
    listens on the gateway's port: a published port through Docker, else the listening process
    (whose cgroup names its container, if it runs in one)."""
    port = int(port)
    return script(
        f"h=$(docker ps --filter publish={port} --format '{{{{.Names}}}}' 2>/dev/null | head -n 1)",
        "if [ -n \"$h\" ]; then echo \"port_holder container $h\";",
        f"elif pid=$(ss -Hltnp 'sport = :{port}' 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)"
        " && [ -n \"$pid\" ]; then",
        "  cid=$(grep -o -E '[0-9a-f]{64}' /proc/$pid/cgroup 2>/dev/null | head -n 1)",
        "  name=$([ -n \"$cid\" ] && docker inspect --format '{{.Name}}' \"$cid\" 2>/dev/null | tr -d /)",
        "  if [ -n \"$name\" ]; then echo \"port_holder container $name\";",
        "  else echo \"port_holder process $(cat /proc/$pid/comm 2>/dev/null) (pid $pid)\"; fi",
        "fi",
        "true",
    )
