"""The `docker` runtime: LiteLLM in a container, a service of the host's compose file that only our
marked block defines (Ansible's blockinfile), run by `docker compose` (v2) or `docker-compose` (v1).
What runs is an image reference pinned to its registry digest."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from packaging.version import Version

from ..advisories import release_version
from ..commands import Command, argv, container, files, line, script
from ..commands.compose import FLAVOUR, ComposeCommands, compose_commands
from ..composefile import (
    Markers,
    block_text,
    check_compose,
    check_unmanaged_service,
    find_block,
    only_empty_services,
    remove_block,
    replace_block,
    served_image,
    served_port,
    service_definition,
)
from ..errors import ComposeFileError, DeployError, RenderError, parse_yaml
from ..facts import GatewayState, Holder, HostFacts
from ..host import COLORS, FrontDoor, Host
from ..images import ImageRef, resolve_image
from ..plan import DesiredFiles, FileChange, Verb
from ..settings import grace_warnings
from .base import (
    DoorPart,
    Driver,
    ProxyNetwork,
    Puller,
    Removal,
    Rendering,
    Runtime,
    ServiceFile,
    WhatRuns,
    handover,
)

# The first Docker Engine whose image inspect lacks the ContainerConfig key docker-compose v1 reads
# when it recreates a container (docker/compose#11742: `KeyError: 'ContainerConfig'`, the old
# container renamed and left stopped).
V1_LAST_ENGINE = 24
# Where the official HAProxy image reads its configuration; the proxy's folder on the host is mounted there.
PROXY_CONFIG_DIR = "/usr/local/etc/haproxy"
DEFAULT_GRACE = "10s"  # docker stop's default
# How long a proxy started beside another (the relief, the recreated proxy) may take to listen, in seconds.
RELIEF_LISTEN_TIMEOUT = 30.0


class ComposeBlock(ServiceFile):
    """Our marked block in the host's compose file."""

    template = "compose-service.yml.j2"
    release_file = "compose.yml"

    def path(self, host: Host) -> str:
        return host.docker.compose_file

    def check(self, text: str, host: Host, gateways: Sequence[Host]) -> None:
        where = f"templates/{self.template} (host {host.name})"
        block = parse_yaml(text, f"{where}: the rendered service block", RenderError)
        names = [gateway.service_name for gateway in gateways]
        if not isinstance(block, dict) or list(block) != names:
            raise RenderError(f"{where}: must render exactly the services {', '.join(map(repr, names))}")

    def part(self, host: Host, text: str, source: str) -> str | None:
        """Our marked block: the rest of the compose file may have changed since, and stays as it is."""
        return block_text(text, Markers.from_template(host.docker.marker), source)

    def files(self, host: Host, desired: DesiredFiles, facts: HostFacts, service_path: str,
              gateways: Sequence[Host]) -> tuple[list[FileChange], tuple[str, ...]]:
        compose_file = host.docker.compose_file
        source = f"{host.name}:{compose_file}"
        if facts.docker.unreachable:
            raise DeployError(f"{host.name}: the Docker engine does not answer {host.ssh_user} (docker version "
                              "failed): start it (systemctl start docker) or give the user access to its socket")
        for path in facts.files.not_files:
            error = ComposeFileError if path == compose_file else DeployError
            raise error(f"{host.name}:{path}: is not a regular file (a directory?); it must name a file")
        if compose_file in facts.files.not_text:
            raise ComposeFileError(f"{source}: is not UTF-8 text; litedeploy edits compose files as text only")
        markers = Markers.from_template(host.docker.marker)
        names = [gateway.service_name for gateway in gateways]
        if facts.files.service_text and facts.files.service_text.strip():
            check_compose(facts.files.service_text, None, source)
            for name in names:
                check_unmanaged_service(facts.files.service_text, name, markers, source)
        compose_text = replace_block(facts.files.service_text or "", desired.service, markers, source)
        for name in names:
            check_compose(compose_text, name, f"{source} (after the edit)")
        wanted = [FileChange(compose_file, facts.files.service_text, compose_text, "0644", keep_owner=True,
                             validated=True),
                  FileChange(host.env_path, facts.files.env_text, desired.env, self.env_access(host)[1], secret=True),
                  FileChange(host.config_path, facts.files.config_text, desired.config, "0644")]
        warnings = plaintext_secrets_warning(host, facts.files.service_text or "", desired.secret_names) + tuple(
            grace_warnings(gateways[-1].vars, DEFAULT_GRACE))
        if ImageRef.parse(host.docker.image).moving:
            warnings += (f"image {host.docker.image} is a tag that moves every week; name a release in hosts.yaml "
                         "(ghcr.io/berriai/litellm:v1.110.2) so every host runs what was tested",)
        return wanted, warnings

    def in_place_verb(self, host: Host, changed: set[str], facts: HostFacts, desired: DesiredFiles) -> Verb | None:
        """`restart` re-reads config.yaml but keeps the container; compose or env changes need `up`.
        A config-only change to a stopped or crash-looping container also takes `restart`: `up` would
        see an unchanged service and leave it as it is."""
        if facts.gateway.state is None or changed & {host.docker.compose_file, host.env_path}:
            return Verb.UP
        if host.config_path in changed:
            return Verb.RESTART
        return None if facts.gateway.state.running else Verb.UP

    def served(self, host: Host, text: str | None) -> str | None:
        """The image our block runs: its gateway's, or (behind the front door) its instances' one image."""
        return served_image(text or "", host.service_name) or served_image(
            text or "", DOOR.instance(host, COLORS[0], 0).service_name)

    def served_port(self, host: Host, text: str | None) -> int | None:
        return served_port(text or "", host.service_name)

    def env_access(self, host: Host) -> tuple[str, str]:
        return "root", "0600"  # compose reads it as root

    def loopback_is_own(self, host: Host) -> bool:
        return host.docker.network_mode == "bridge"


class Image(WhatRuns):
    """An image reference, pinned to its registry digest."""

    def wanted(self, host: Host) -> str:
        return host.docker.image

    def pinned(self, host: Host, facts: HostFacts, upgrade: bool) -> str | None:
        """The image reference our block should run (the digest pinned), or None until the host pulls
        hosts.yaml's image; `describe` and `config.diff` compare against this, as a deploy would write."""
        deployed = BLOCK.served(host, facts.files.service_text)
        return resolve_image(host.docker.image, deployed, facts.docker.wanted_digests, fresh=upgrade)

    def running(self, host: Host, runs: str) -> Host:
        return host.with_settings(image=runs)

    def version(self, runs: str | None) -> Version | None:
        """From the image's tag (`...:v1.84.0@sha256:...`)."""
        return release_version(ImageRef.parse(runs).tag if runs else None)

    def same_release(self, deployed: str, wanted: str, upgrade: bool) -> bool:
        """The same image, tag and all, unless an upgrade pulls the tag again."""
        return not upgrade and ImageRef.parse(deployed).unpinned == ImageRef.parse(wanted).unpinned

    def refusal(self, runs: str, arch: str | None, facts: HostFacts) -> str | None:
        return arch_refusal(runs, arch, facts.docker.engine_arch)

    def prune(self, host: Host, runs: str, releases_dir: str) -> str:
        return container.prune_images(ImageRef.parse(runs).name, releases_dir)

    def now(self, host: Host, facts: HostFacts) -> str:
        return facts.gateway.state.image if facts.gateway.state else host.docker.image

    def details(self, host: Host, runs: str, image_id: str, digests: Sequence[str], service_file: str) -> tuple[str, ...]:
        return ("image", runs, image_id[:19], ", ".join(digests) or "no registry digest (local image)")


class Containers(Driver):
    """The gateway's container, through compose and the Docker CLI."""

    def questions(self, host: Host, extra: Sequence[str] = ()) -> list[str]:
        """Run side by side, each answer in a file of its own printed in order (on a host the compose
        CLI alone takes tens of milliseconds to answer); one after another where no temporary folder
        can be made (a full /tmp must not stop a deploy from reading the host)."""
        asked = [FLAVOUR, container.state(host, digests=True), container.wanted_image(host.docker.image),
                 container.ENGINE, *extra]
        return [script(
            "if t=$(mktemp -d 2>/dev/null); then",
            [f"  ( {question} ) > \"$t/{index}\" &" for index, question in enumerate(asked)],
            "  wait; cat " + " ".join(f"\"$t/{index}\"" for index in range(len(asked))) + "; rm -rf \"$t\"",
            "else",
            [f"  ( {question} )" for question in asked],
            "fi",
            "true",
        )]

    def state(self, host: Host, role: str | None = None) -> str:
        return container.state(host, key=f"container_{role}" if role else "container")

    def verbs(self, host: Host, facts: HostFacts) -> ComposeCommands:
        return compose_commands(host, facts)

    def logs(self, host: Host, tail: int, follow: bool = False, since: str | None = None) -> list[str]:
        return container.logs(host, tail, follow, since)

    def execute(self, host: Host, command: list[str]) -> list[str]:
        return container.execute(host, command)

    def environment(self, host: Host) -> list[str]:
        return container.execute(host, ["env"])

    def holder(self, host: Host) -> Holder:
        return Holder("container", host.docker.container_name)

    def refusal(self, facts: HostFacts, verb: Verb | None) -> str | None:
        return compose_v1_refusal(facts, verb)

    def ports(self, host: Host, state: GatewayState | None) -> tuple[str, ...]:
        if state and state.network_mode == "host":
            return (f"host network, {host.local_address}:{host.port}",)
        return state.ports if state else ()

    def removal(self, host: Host, facts: HostFacts, deploy_id: str, door: Sequence[Host],
                door_paths: Sequence[str]) -> Removal:
        """Like blockinfile's state=absent: the container stopped (its requests finished) and removed,
        our block taken out of the compose file (backed up, validated), or the file among the backups
        where it held only ours; the front door's containers and configuration where the host has them."""
        planned = plan_remove(host, facts)
        removal = Removal(changed=tuple(planned.changed), removed=planned.container, install=planned.compose)
        if planned.container:
            verbs = compose_commands(host, facts)
            removal = replace(removal, before=(verbs.stop(), verbs.remove()),
                              done=(f"removed container {host.docker.container_name}",))
        if planned.compose:
            removal = replace(removal, done=(*removal.done, f"took the {host.service_name} block out of "
                                                            f"{host.docker.compose_file}"))
        if planned.take_away:
            removal = replace(removal, after=(files.take_away(host, planned.take_away, deploy_id),),
                              done=(*removal.done, f"moved {planned.take_away}, which held only the "
                                                   f"{host.service_name} service, to {host.backup_dir}"))
        if facts.gateway.instances:  # the front door's proxy and instances (and a single gateway, if any is left)
            names = [host.docker.container_name, *(gateway.docker.container_name for gateway in door)]
            removal = replace(removal, removed=True, before=(
                                  line(*container.remove_all(names)) + " >/dev/null 2>&1 || true",),
                              after=(*removal.after, *(files.take_away(host, path, deploy_id) for path in door_paths)),
                              done=(f"removed containers {', '.join(names[1:])}", *removal.done[1 if planned.container
                                                                                               else 0:]))
        return removal


class ComposeDoor(DoorPart):
    """The proxy in a container of our block on the host's network, the instances beside it."""

    def instance(self, host: Host, color: str, port: int) -> Host:
        """Its own container, compose service and loopback port; the rest (image, files, settings) the host's."""
        return host.with_settings(container_name=f"{host.docker.container_name}-{color}",
                                  service_name=f"{host.service_name}-{color}", port=port, bind="127.0.0.1")

    def proxy(self, host: Host) -> Host:
        return host.with_settings(container_name=f"{host.docker.container_name}-proxy",
                                  service_name=f"{host.service_name}-proxy")

    def render(self, host: Host, door: FrontDoor, gateways: Sequence[Host],
               rendered: Rendering) -> tuple[str, str | None]:
        """Our block holds the proxy's service and both instances' (the gateway's template for each)."""
        proxy, *instances = gateways  # their vars hold the grace the door derived (`frontdoor.stop_grace`)
        pieces = [rendered("compose-proxy.yml.j2", proxy=proxy, vars=proxy.vars, proxy_dir=posixpath.dirname(door.config_path),
                           proxy_config_dir=PROXY_CONFIG_DIR, proxy_image=door.image, as_root=proxy_as_root(host),
                           acme_port=door.acme_port)]
        pieces += [rendered(BLOCK.template, host=instance, profile=instance.service_name, vars=instance.vars)
                   for instance in instances]
        return "".join(pieces), None

    def service_file(self, host: Host) -> str:
        return host.docker.compose_file

    def runs_instances(self, host: Host, text: str) -> bool:
        return f"  {self.proxy(host).service_name}:" in text.splitlines()

    def network(self, host: Host) -> ProxyNetwork:
        """On the host's network, as the gateway was: it binds the port itself and reaches the
        instances on loopback. Else on the compose network under the gateway's service name (the
        team's services that call the gateway by name still reach it), its port published by Docker
        as the gateway's was, the instances reached by their names. Its socket is in the official
        image's state folder, its user's; /tmp where the proxy is root without the capability to
        write there (`proxy_as_root`)."""
        state = "/tmp/admin.sock" if proxy_as_root(host) else "/var/lib/haproxy/admin.sock"
        if host.docker.network_mode == "host":
            return ProxyNetwork(host.bind, state, PROXY_CONFIG_DIR)
        return ProxyNetwork("", state, PROXY_CONFIG_DIR, by_name=True)

    def questions(self, host: Host, door: FrontDoor) -> list[str]:
        return [container.wanted_image(door.image, prefix="proxy_")]

    def pinned_image(self, host: Host, image: str, facts: HostFacts, upgrade: bool, pull: Puller | None) -> str:
        """The proxy's image pinned to the registry digest, as the gateway's: the one our block runs,
        or the host's copy of the tag, or (PULL given) the tag pulled; an upgrade pulls it again.
        Without PULL, as hosts.yaml names it where a pull would be needed."""
        deployed = served_image(facts.files.service_text or "", self.proxy(host).service_name)
        pinned = resolve_image(image, deployed, facts.docker.proxy_digests, fresh=upgrade)
        if pinned is None and pull is not None:
            pinned = resolve_image(image, None, pull(image))
        return pinned or image

    def up(self, host: Host, facts: HostFacts, after: str | None = None, stopping: Command | None = None) -> Command:
        """Creates the proxy's container, or makes it anew where our block changed it; else leaves it.
        Made anew on the host's network, it keeps the port answering: a container of the running
        proxy's image, user and files (the relief) listens beside it first, takes the connections
        while the old proxy finishes its own and the new one starts, and stops softly once the new
        one listens (`container.replaced_beside`). HAProxy binds with SO_REUSEPORT, and Linux lets
        sockets of one user that all ask for it share a port: so not where the change moves the
        proxy to another user or network, and not on a bridge network, where Docker forwards a
        published port to one container (its userland proxy binds without SO_REUSEPORT)."""
        proxy = self.proxy(host)
        commands = compose_commands(proxy, facts)
        if stopping is not None:  # made while the gateway still serves: once it is, only its start is left
            return script(argv(commands.create()) + " || exit 1",
                          handover(host, DEFAULT_GRACE, stopping, ["docker", "start", proxy.docker.container_name]))
        running = service_definition(facts.files.service_text or "", proxy.service_name)
        wanted = service_definition(after or "", proxy.service_name)
        if not running or not wanted or running == wanted:
            return commands.up()
        image, volumes, user = running.get("image"), running.get("volumes"), running.get("user")
        if not isinstance(image, str) or not isinstance(volumes, list) or user != wanted.get("user") or \
                not running.get("network_mode") == wanted.get("network_mode") == "host":
            return script(container.stop_and_remove(proxy.docker.container_name), argv(commands.up()))
        name = f"{proxy.docker.container_name}-relief"
        relief = container.run_detached(name, image, [str(volume) for volume in volumes], ["--network", "host"],
                                        ["haproxy", "-db", "-f", f"{PROXY_CONFIG_DIR}/haproxy.cfg"],
                                        user=str(user) if user else None)
        return container.replaced_beside(relief, name, host.port, proxy.docker.container_name, commands.up(),
                                         RELIEF_LISTEN_TIMEOUT)

    def reload(self, host: Host) -> list[str]:
        return container.reload(self.proxy(host))

    def responder(self, host: Host, image: str, folder: str, port: int) -> tuple[list[str], list[str]]:
        """A container of the proxy's image beside the door's, on the network the door's would be
        on: the host's, or its own with PORT published."""
        name = f"{host.docker.container_name}-acme"
        published = f"{'' if host.bind == '0.0.0.0' else host.bind + ':'}{port}:{port}"
        network = ["--network", "host"] if host.docker.network_mode == "host" else ["-p", published]
        return (container.run_detached(name, image, [f"{folder}:{PROXY_CONFIG_DIR}:ro"], network,
                                       ["haproxy", "-db", "-f", f"{PROXY_CONFIG_DIR}/haproxy.cfg"]),
                container.remove_all([name]))


def proxy_as_root(host: Host) -> bool:
    """Whether the proxy runs as root in its container, with no capability but binding a privileged
    port, rather than as the official image's user `haproxy`: to bind a port below 1024 on the host's
    network (in a container's own network namespace Docker lets any user bind one:
    net.ipv4.ip_unprivileged_port_start=0), and to read the certificate and key of vars.tls, which
    are root's alone (0600)."""
    return (host.port < 1024 and host.docker.network_mode == "host") or bool(host.vars.get("tls"))


BLOCK = ComposeBlock()
DOOR = ComposeDoor()
RUNTIME = Runtime(kind="container", what_runs="the image", default_grace=DEFAULT_GRACE, service=BLOCK,
                  release=Image(), driver=Containers(), door=DOOR, rejected=ComposeFileError)


def compose_v1_refusal(facts: HostFacts, verb: Verb | None) -> str | None:
    """Why docker-compose v1 may not recreate the container on this engine, or None."""
    docker = facts.docker
    if docker.compose_flavour != "v1" or verb != Verb.UP or facts.gateway.state is None or not docker.engine_version:
        return None
    major = re.match(r"\d+", docker.engine_version)
    if not major or int(major.group()) <= V1_LAST_ENGINE:
        return None
    return (f"docker-compose v1 cannot recreate containers on Docker Engine {docker.engine_version} (it fails "
            "with KeyError 'ContainerConfig' and leaves the old container renamed and stopped); install the "
            "Compose v2 plugin (docker compose), which litedeploy uses where it finds it; nothing was changed")


def arch_refusal(image: str, image_arch: str | None, engine_arch: str | None) -> str | None:
    """Why IMAGE cannot run on this engine: its architecture is another than the engine's (both as
    Docker names them, amd64 or arm64), or None when they agree or either is unknown."""
    if not image_arch or not engine_arch or image_arch == engine_arch:
        return None
    return (f"the image {image} is built for {image_arch} and the Docker engine runs on {engine_arch}; its "
            f"binaries would not start (exec format error); name a release built for {engine_arch}, or a "
            "multi-platform one")


def plaintext_secrets_warning(host: Host, compose_text: str, secret_names: tuple[str, ...]) -> tuple[str, ...]:
    """A compose file taken over (the old role wrote the master key into `environment:`) may hold
    our secrets in plain text: they now move to the env file, and the old ones should be rotated."""
    found = [name for name in secret_names if re.search(rf"\b{re.escape(name)}\s*[=:]\s*[^\s$]", compose_text)]
    if not found:
        return ()
    return (f"{host.docker.compose_file} held {', '.join(found)} in plain text; its backup in {host.backup_dir} is "
            f"0600 and the secrets now live in {host.env_path}; rotate them (inv secrets.rotate --host {host.name})",)


@dataclass(frozen=True)
class RemovePlan:
    """What `compose.remove` does: remove the container (when there is one) and take our block out
    of the compose file (when it holds one), like blockinfile's state=absent."""

    container: bool
    compose: FileChange | None
    # The compose file, when it held only our service: it goes among the backups instead of staying
    # as a file with no service (which compose v1 refuses).
    take_away: str | None = None

    @property
    def changed(self) -> list[str]:
        return [self.compose.path] if self.compose else [self.take_away] if self.take_away else []


def plan_remove(host: Host, facts: HostFacts) -> RemovePlan:
    compose_file = host.docker.compose_file
    source = f"{host.name}:{compose_file}"
    markers = Markers.from_template(host.docker.marker)
    compose = None
    if facts.files.service_text and find_block(facts.files.service_text, markers, source):
        remaining = remove_block(facts.files.service_text, markers, source)
        if only_empty_services(remaining) and compose_file not in facts.files.real_paths:
            return RemovePlan(facts.gateway.state is not None, None, take_away=compose_file)
        check_compose(remaining, None, source)  # decided before the container goes, not after
        compose = FileChange(compose_file, facts.files.service_text, remaining, "0644", keep_owner=True, validated=True)
    return RemovePlan(facts.gateway.state is not None, compose)

