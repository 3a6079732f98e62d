"""The `docker` runtime: LiteLLM in a container, a service of the host's compose file that only our
marked block defines (Ansible's blockinfile), run by `docker compose` (v2) or `docker-compose` (v1).
What runs is an image reference pinned to its registry digest."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from packaging.version import Version

from .. import instances
from ..advisories import release_version
from ..commands import container, files, line, script
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
)
from ..errors import ComposeFileError, DeployError, RenderError, parse_yaml
from ..facts import GatewayState, HostFacts
from ..host import Host
from ..images import ImageRef, resolve_image
from ..plan import FileChange, Plan, changed_files, switch_verb
from ..render import DesiredFiles
from ..settings import grace_warnings
from .base import Puller, Removal, Rendering, Runtime

# The first Docker Engine whose image inspect lacks the ContainerConfig key docker-compose v1 reads
# when it recreates a container (docker/compose#11742: `KeyError: 'ContainerConfig'`, the old
# container renamed and left stopped).
V1_LAST_ENGINE = 24


class DockerCompose(Runtime):
    kind = "container"
    what_runs = "the image"
    release_file = "compose.yml"
    service_template = "compose-service.yml.j2"
    default_grace = "10s"  # docker stop's default
    rejected = ComposeFileError
    proxy_template = "compose-proxy.yml.j2"

    def proxy_admin_socket(self, host: Host) -> str:
        return "/var/lib/haproxy/admin.sock"  # the official image's state folder, the haproxy user's

    def render_instances(self, host: Host, rendered: Rendering) -> tuple[str, str | None]:
        """Our block holds the proxy's service and both instances' (the gateway's template for each)."""
        proxy = instances.proxy(host)
        pieces = [rendered(self.proxy_template, proxy=proxy,
                           proxy_dir=posixpath.dirname(instances.proxy_config_path(host)),
                           proxy_config_dir=instances.PROXY_CONFIG_DIR, proxy_image=instances.proxy_image(host))]
        pieces += [rendered(self.service_template, host=self.instance(host, color)) for color in instances.COLORS]
        return "".join(pieces), None

    def runs_instances(self, host: Host, text: str) -> bool:
        return f"  {instances.proxy(host).service_name}:" in text.splitlines()

    def with_proxy(self, host: Host, facts: HostFacts, upgrade: bool, pull: Puller | None) -> Host:
        """HOST with its proxy image pinned to the registry digest, as the gateway's: the one our
        block runs, or the host's copy of the tag, or (PULL given) the tag pulled; an upgrade
        pulls it again. Without PULL, as hosts.yaml names it where a pull would be needed."""
        if not instances.enabled(host):
            return host
        wanted = instances.proxy_image(host)
        deployed = served_image(facts.service_text or "", instances.proxy(host).service_name)
        pinned = resolve_image(wanted, deployed, facts.proxy_digests, fresh=upgrade)
        if pinned is None and pull is not None:
            pinned = resolve_image(wanted, None, pull(wanted))
        return replace(host, vars={**host.vars, "proxy_image": pinned or wanted})

    def proxy_up(self, host: Host, facts: HostFacts) -> list[str]:
        """Creates the proxy's container, or recreates it where our block changed it; else leaves it."""
        return compose_commands(instances.proxy(host), facts).up()

    def proxy_reload(self, host: Host) -> list[str]:
        return container.reload(instances.proxy(host))

    def leftovers(self, host: Host, zero_downtime: bool) -> list[str]:
        return [] if zero_downtime else [instances.proxy_config_path(host)]

    def start(self, host: Host) -> list[str]:
        return container.start(host)

    def settings_error(self, settings: Mapping[str, Any]) -> str | None:
        if settings["image"] is None:
            return "'image' is required (a LiteLLM release such as ghcr.io/berriai/litellm:v1.84.0)"
        return None

    def claims(self, host: Host) -> Sequence[tuple[str, Any, Any]]:
        return (("container_name", host.docker.container_name, None), ("service_name", host.service_name, host.docker.compose_file),
                ("marker", host.docker.marker, host.docker.compose_file))

    def service_file(self, host: Host) -> str:
        return host.docker.compose_file

    def holder(self, host: Host) -> str:
        return f"container {host.docker.container_name}"

    def env_access(self, host: Host) -> tuple[str, str]:
        return "root", "0600"  # compose reads it as root

    def check_service(self, text: str, host: Host) -> None:
        where = f"templates/{self.service_template} (host {host.name})"
        block = parse_yaml(text, f"{where}: the rendered service block", RenderError)
        names = service_names(host)
        if not isinstance(block, dict) or list(block) != names:
            raise RenderError(f"{where}: must render exactly the services {', '.join(map(repr, names))}")

    def service_part(self, host: Host, text: str, source: str) -> str | None:
        """Our marked block: the rest of the compose file may have changed since, and stays as it is."""
        return block_text(text, Markers.from_template(host.docker.marker), source)

    def loopback_is_own(self, host: Host) -> bool:
        return host.docker.network_mode == "bridge"

    def questions(self, host: Host) -> list[str]:
        """Run side by side, each answer in a file of its own printed in order (on a host the compose
        CLI alone takes tens of milliseconds to answer); one after another where no temporary folder
        can be made (a full /tmp must not stop a deploy from reading the host)."""
        asked = [FLAVOUR, container.state(host, digests=True), container.wanted_image(host.docker.image), container.ENGINE,
                 self._instance_states(host)]
        if instances.enabled(host):
            asked.append(container.wanted_image(instances.proxy_image(host), prefix="proxy_"))
        return [script(
            "if t=$(mktemp -d 2>/dev/null); then",
            [f"  ( {question} ) > \"$t/{index}\" &" for index, question in enumerate(asked)],
            "  wait; cat " + " ".join(f"\"$t/{index}\"" for index in range(len(asked))) + "; rm -rf \"$t\"",
            "else",
            [f"  ( {question} )" for question in asked],
            "fi",
            "true",
        )]

    def _instance_states(self, host: Host) -> str:
        """vars.zero_downtime's containers; on a host without it, only where its proxy configuration
        is left (the setting was just turned off), so other hosts ask nothing more."""
        asked = script(*[container.state(self.instance(host, color), key=f"container_{color}")
                         for color in instances.COLORS],
                       container.state(instances.proxy(host), key="container_proxy"))
        if instances.enabled(host):
            return asked
        return f"if [ -f {line(instances.proxy_config_path(host))} ]; then\n{asked}\nfi"

    def state(self, host: Host) -> str:
        return container.state(host)

    def plan(self, host: Host, desired: DesiredFiles, facts: HostFacts) -> Plan:
        source = f"{host.name}:{host.docker.compose_file}"
        if facts.docker_unreachable:
            raise DeployError(f"{host.name}: the Docker engine does not answer {host.ssh_user} (docker version "
                              "failed): start it (systemctl start docker) or give the user access to its socket")
        for path in facts.not_files:
            error = ComposeFileError if path == host.docker.compose_file else DeployError
            raise error(f"{host.name}:{path}: is not a regular file (a directory?); it must name a file")
        if host.docker.compose_file in facts.not_text:
            raise ComposeFileError(f"{source}: is not UTF-8 text; litedeploy edits compose files as text only")
        markers = Markers.from_template(host.docker.marker)
        if facts.service_text and facts.service_text.strip():
            check_compose(facts.service_text, None, source)
            for name in service_names(host):
                check_unmanaged_service(facts.service_text, name, markers, source)
        compose_text = replace_block(facts.service_text or "", desired.service, markers, source)
        for name in service_names(host):
            check_compose(compose_text, name, f"{source} (after the edit)")
        wanted = [FileChange(host.docker.compose_file, facts.service_text, compose_text, "0644", keep_owner=True,
                             validated=True),
                  FileChange(host.env_path, facts.env_text, desired.env, self.env_access(host)[1], secret=True),
                  FileChange(host.config_path, facts.config_text, desired.config, "0644")]
        changes = changed_files(wanted, facts)
        warnings = plaintext_secrets_warning(host, facts.service_text or "", desired.secret_names) + tuple(
            grace_warnings(host.vars, self.default_grace))
        if ImageRef.parse(host.docker.image).moving:
            warnings += (f"image {host.docker.image} is a tag that moves every week; name a release in hosts.yaml "
                         "(ghcr.io/berriai/litellm:v1.110.2) so every host runs what was tested",)
        switching = instances.enabled(host) or instances.live_color(facts.proxy_text)
        restart = switch_verb(host, changes, desired, facts) if switching else restart_verb(host, changes, facts)
        return Plan(changes, restart, warnings)

    def served(self, host: Host, text: str | None) -> str | None:
        """The image our block runs: its gateway's, or (vars.zero_downtime) its instances' one image."""
        return served_image(text or "", host.service_name) or served_image(
            text or "", self.instance(host, instances.COLORS[0]).service_name)

    def served_port(self, host: Host, text: str | None) -> int | None:
        return served_port(text or "", host.service_name)

    def running_version(self, runs: str | None) -> Version | None:
        """From the image's tag (`...:v1.84.0@sha256:...`)."""
        return release_version(ImageRef.parse(runs).tag if runs else None)

    def same_release(self, deployed: str, wanted: str, upgrade: bool) -> bool:
        """The same image, tag and all, unless an upgrade pulls the tag again."""
        return not upgrade and ImageRef.parse(deployed).unpinned == ImageRef.parse(wanted).unpinned

    def refusal(self, facts: HostFacts, restart: str | None) -> str | None:
        return compose_v1_refusal(facts, restart)

    def run_refusal(self, runs: str, arch: str | None, facts: HostFacts) -> str | None:
        return arch_refusal(runs, arch, facts.engine_arch)

    def wanted(self, host: Host) -> str:
        return host.docker.image

    def pinned(self, host: Host, facts: HostFacts, upgrade: bool) -> str | None:
        """The image reference our block should run (the digest pinned), or None until the host pulls
        hosts.yaml's image; `describe` and `config.diff` compare against this, as a deploy would write."""
        deployed = self.served(host, facts.service_text)
        return resolve_image(host.docker.image, deployed, facts.wanted_digests, fresh=upgrade)

    def running(self, host: Host, runs: str) -> Host:
        return host.with_settings(image=runs)

    def running_now(self, host: Host, facts: HostFacts) -> str:
        return facts.state.image if facts.state else host.docker.image

    def ports(self, host: Host, state: GatewayState | None) -> tuple[str, ...]:
        if state and state.network_mode == "host":
            return (f"host network, {host.local_address}:{host.port}",)
        return state.ports if state else ()

    def runs_line(self, host: Host, runs: str, image_id: str, digests: Sequence[str]) -> str:
        return f"  image   {runs}  {image_id[:19]}  {', '.join(digests) or 'no registry digest (local image)'}"

    def commands(self, host: Host, facts: HostFacts) -> ComposeCommands:
        return compose_commands(host, facts)

    def logs(self, host: Host, tail: int, follow: bool = False, since: str | None = None) -> list[str]:
        return container.logs(host, tail, follow, since)

    def execute(self, host: Host, command: list[str]) -> list[str]:
        return container.execute(host, command)

    def environment(self, host: Host) -> list[str]:
        return container.execute(host, ["env"])

    def stop(self, host: Host) -> list[str]:
        return container.stop(host)

    def remove(self, host: Host) -> list[str]:
        return container.remove(host)

    def prune(self, host: Host, runs: str, releases_dir: str) -> str:
        return container.prune_images(ImageRef.parse(runs).name, releases_dir)

    def removal(self, host: Host, facts: HostFacts, deploy_id: str) -> Removal:
        """Like blockinfile's state=absent: the container removed, our block taken out of the
        compose file (backed up, validated), or the file among the backups where it held only ours."""
        planned = plan_remove(host, facts)
        removal = Removal(changed=tuple(planned.changed), restart="removed" if planned.container else None,
                          install=planned.compose)
        if planned.container:
            removal = replace(removal, before=(compose_commands(host, facts).remove(),),
                              done=(f"removed container {host.docker.container_name}",))
        if planned.compose:
            removal = replace(removal, done=(*removal.done, f"took the {host.service_name} block out of "
                                                            f"{host.docker.compose_file}"))
        if planned.take_away:
            removal = replace(removal, after=(files.take_away(host, planned.take_away, deploy_id),),
                              done=(*removal.done, f"moved {planned.take_away}, which held only the "
                                                   f"{host.service_name} service, to {host.backup_dir}"))
        if facts.instances:  # vars.zero_downtime's proxy and instances (and a single gateway, if any is left)
            names = [host.docker.container_name, instances.proxy(host).docker.container_name,
                     *(self.instance(host, color).docker.container_name for color in instances.COLORS)]
            removal = replace(removal, restart="removed", before=(line("docker", "rm", "-f", *names) + " >/dev/null 2>&1 || true",),
                              after=(*removal.after, files.take_away(host, instances.proxy_config_path(host), deploy_id)),
                              done=(f"removed containers {', '.join(names[1:])}",
                                    *(done for done in removal.done if not done.startswith("removed container "))))
        return removal


RUNTIME = DockerCompose()


def compose_v1_refusal(facts: HostFacts, restart: str | None) -> str | None:
    """Why docker-compose v1 may not recreate the container on this engine, or None."""
    if facts.compose_flavour != "v1" or restart != "up" or facts.state is None or not facts.engine_version:
        return None
    major = re.match(r"\d+", facts.engine_version)
    if not major or int(major.group()) <= V1_LAST_ENGINE:
        return None
    return (f"docker-compose v1 cannot recreate containers on Docker Engine {facts.engine_version} (it fails "
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


def service_names(host: Host) -> list[str]:
    """The services our block defines: the gateway's, or with vars.zero_downtime the proxy's and both instances'."""
    if not instances.enabled(host):
        return [host.service_name]
    return [instances.proxy(host).service_name, *(RUNTIME.instance(host, c).service_name for c in instances.COLORS)]


def restart_verb(host: Host, changes: Sequence[FileChange], facts: HostFacts) -> str | None:
    """`restart` re-reads config.yaml but keeps the container; compose or env changes need `up`.
    A config-only change to a stopped or crash-looping container also takes `restart`: `up` would
    see an unchanged service and leave it as it is."""
    changed = {change.path for change in changes}
    if facts.state is None or changed & {host.docker.compose_file, host.env_path}:
        return "up"
    if host.config_path in changed:
        return "restart"
    return None if facts.state.running else "up"


def plaintext_secrets_warning(host: Host, compose_text: str, secret_names: tuple[str, ...]) -> tuple[str, ...]:
    """A compose file taken over (the old role wrote the master key into `environment:`) may hold
    our secrets in plain text: they now move to the env file, and the old ones should be rotated."""
    found = [name for name in secret_names if re.search(rf"\b{re.escape(name)}\s*[=:]\s*[^\s$]", compose_text)]
    if not found:
        return ()
    return (f"{host.docker.compose_file} held {', '.join(found)} in plain text; its backup in {host.backup_dir} is 0600 "
            f"and the secrets now live in {host.env_path}; rotate them (inv secrets.rotate --host {host.name})",)


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
    source = f"{host.name}:{host.docker.compose_file}"
    markers = Markers.from_template(host.docker.marker)
    compose = None
    if facts.service_text and find_block(facts.service_text, markers, source):
        remaining = remove_block(facts.service_text, markers, source)
        if only_empty_services(remaining) and host.docker.compose_file not in facts.real_paths:
            return RemovePlan(facts.state is not None, None, take_away=host.docker.compose_file)
        check_compose(remaining, None, source)  # decided before the container goes, not after
        compose = FileChange(host.docker.compose_file, facts.service_text, remaining, "0644", keep_owner=True, validated=True)
    return RemovePlan(facts.state is not None, compose)
