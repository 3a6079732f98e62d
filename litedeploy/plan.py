"""Desired files vs what the host holds -> the files to write and how to restart (pure)."""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from .composefile import (
    Markers,
    check_compose,
    check_unmanaged_service,
    find_block,
    only_empty_services,
    remove_block,
    replace_block,
    served_image,
    served_port,
)
from .envfile import masked_env
from .errors import ComposeFileError, DeployError
from .facts import HostFacts
from .images import ImageRef, resolve_image
from .inventory import Host
from .render import DesiredFiles
from .settings import grace_warnings


@dataclass(frozen=True)
class FileChange:
    path: str
    old: str | None
    new: str
    mode: str
    secret: bool = False
    # The user's compose file keeps its owner and mode; our own files are root:root.
    keep_owner: bool = False
    # Where `path` is a symlink, the file it leads to: that file is rewritten, the link kept.
    resolved: str | None = None
    # Our files are root's; the systemd runtime's config and env are readable by the service's group.
    group: str = "root"

    @property
    def target(self) -> str:
        return self.resolved or self.path

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)


@dataclass(frozen=True)
class Plan:
    changes: tuple[FileChange, ...]
    restart: str | None  # None, "restart" (config only) or "up" (create or recreate)
    # Things the admin should act on although the deploy goes ahead.
    warnings: tuple[str, ...] = ()
    # The systemd runtime's preparation, before any file changes: the service user to create and
    # the venv to install.
    user: str | None = None
    venv: str | None = None
    # The venv whose generated Prisma client LiteLLM needs before it starts on a database.
    prisma_venv: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.changes) or self.restart is not None


def plan_deploy(host: Host, desired: DesiredFiles, facts: HostFacts) -> Plan:
    if host.systemd:
        return plan_unit_deploy(host, desired, facts)
    source = f"{host.name}:{host.compose_file}"
    if facts.docker_unreachable:
        raise DeployError(f"{host.name}: the Docker engine does not answer {host.ssh_user} (docker version failed): "
                          "start it (systemctl start docker) or give the user access to its socket")
    for path in facts.not_files:
        error = ComposeFileError if path == host.compose_file else DeployError
        raise error(f"{host.name}:{path}: is not a regular file (a directory?); it must name a file")
    if host.compose_file in facts.not_text:
        raise ComposeFileError(f"{source}: is not UTF-8 text; litedeploy edits compose files as text only")
    markers = Markers.from_template(host.marker)
    if facts.compose_text and facts.compose_text.strip():
        check_compose(facts.compose_text, None, source)
        check_unmanaged_service(facts.compose_text, host.service_name, markers, source)
    compose_text = replace_block(facts.compose_text or "", desired.block, markers, source)
    check_compose(compose_text, host.service_name, f"{source} (after the edit)")
    wanted = [FileChange(host.compose_file, facts.compose_text, compose_text, "0644", keep_owner=True),
              FileChange(host.env_path, facts.env_text, desired.env, "0600", secret=True),
              FileChange(host.config_path, facts.config_text, desired.config, "0644")]
    changes = [replace(change, resolved=facts.real_paths.get(change.path)) for change in wanted
               if change.new != change.old]
    warnings = plaintext_secrets_warning(host, facts.compose_text or "", desired.secret_names) + tuple(
        grace_warnings(host.vars, host.runtime))
    if ImageRef.parse(host.image).moving:
        warnings += (f"image {host.image} is a tag that moves every week; name a release in hosts.yaml "
                     "(ghcr.io/berriai/litellm:v1.110.2) so every host runs what was tested",)
    return Plan(tuple(changes), restart_verb(host, changes, facts), warnings)


# The first Docker Engine whose image inspect lacks the ContainerConfig key docker-compose v1 reads
# when it recreates a container (docker/compose#11742: `KeyError: 'ContainerConfig'`, the old
# container renamed and left stopped).
V1_LAST_ENGINE = 24


def compose_v1_refusal(facts: HostFacts, restart: str | None) -> str | None:
    """Why docker-compose v1 may not recreate the container on this engine, or None."""
    if facts.compose_flavour != "v1" or restart != "up" or facts.container is None or not facts.engine_version:
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


def plan_unit_deploy(host: Host, desired: DesiredFiles, facts: HostFacts) -> Plan:
    """The systemd runtime: the unit, config and env (the latter two root:USER 0640, as the unit's
    user reads them); a changed unit or a new venv means daemon-reload and restart (`up`), a changed
    config or env a restart, nothing else nothing."""
    for path in facts.not_files:
        raise DeployError(f"{host.name}:{path}: is not a regular file (a directory?); it must name a file")
    wanted = [FileChange(host.unit_path, facts.unit_text, desired.unit or "", "0644"),
              FileChange(host.env_path, facts.env_text, desired.env, "0640", secret=True, group=host.service_user),
              FileChange(host.config_path, facts.config_text, desired.config, "0640", group=host.service_user)]
    changes = [replace(change, resolved=facts.real_paths.get(change.path)) for change in wanted
               if change.new != change.old]
    runs = served(host, desired.unit)
    venv = None if runs in facts.venvs else runs
    if venv and venv != host.venv_dir:  # a release's unit whose venv a later change removed
        raise DeployError(f"{host.name}:{venv}: the venv this unit runs is gone; deploy its packages again")
    changed = {change.path for change in changes}
    restart: str | None
    if venv or host.unit_path in changed or facts.container is None or not facts.container.running:
        restart = "up"
    else:
        restart = "restart" if changed else None
    prisma = runs if host.vars.get("database") and restart else None
    return Plan(tuple(changes), restart, tuple(grace_warnings(host.vars, host.runtime)),
                user=None if facts.service_user else host.service_user, venv=venv, prisma_venv=prisma)


def served(host: Host, text: str | None) -> str | None:
    """What the gateway runs, read from the file that says so: the image of our compose block, or
    the venv of the unit's ExecStart."""
    if host.systemd:
        found = re.search(r"^ExecStart=(\S+)/bin/litellm\b", text or "", re.MULTILINE)
        return found.group(1) if found else None
    return served_image(text or "", host.service_name)


def pinned_image(host: Host, facts: HostFacts, upgrade: bool = False) -> str | None:
    """The image reference our block should run (the digest pinned), or None until the host pulls
    hosts.yaml's image; `describe` and `config.diff` compare against this, as a deploy would write."""
    deployed = served_image(facts.compose_text or "", host.service_name)
    return resolve_image(host.image, deployed, facts.wanted_digests, fresh=upgrade)


@dataclass(frozen=True)
class RollbackSteps:
    """How a failed deploy puts the host back: restore the files it wrote, then bring the container
    to the state it had: `remove` (there was none), `stop` (it was stopped) or `start` with the
    plan's verb, verified on the port the restored files serve."""

    restore: bool
    container: str
    port: int | None = None


def rollback_steps(host: Host, plan: Plan, before: HostFacts) -> RollbackSteps:
    if before.container is None:
        return RollbackSteps(bool(plan.changes), "remove")
    if not before.container.running:
        return RollbackSteps(bool(plan.changes), "stop")
    if host.systemd:
        found = re.search(r"^ExecStart=.* --port (\d+)", before.unit_text or "", re.MULTILINE)
        return RollbackSteps(bool(plan.changes), "start", int(found.group(1)) if found else host.port)
    return RollbackSteps(bool(plan.changes), "start",
                         served_port(before.compose_text or "", host.service_name) or host.port)


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
    source = f"{host.name}:{host.compose_file}"
    markers = Markers.from_template(host.marker)
    compose = None
    if facts.compose_text and find_block(facts.compose_text, markers, source):
        remaining = remove_block(facts.compose_text, markers, source)
        if only_empty_services(remaining) and host.compose_file not in facts.real_paths:
            return RemovePlan(facts.container is not None, None, take_away=host.compose_file)
        check_compose(remaining, None, source)  # decided before the container goes, not after
        compose = FileChange(host.compose_file, facts.compose_text, remaining, "0644", keep_owner=True)
    return RemovePlan(facts.container is not None, compose)


def plaintext_secrets_warning(host: Host, compose_text: str, secret_names: tuple[str, ...]) -> tuple[str, ...]:
    """A compose file taken over (the old role wrote the master key into `environment:`) may hold
    our secrets in plain text: they now move to the env file, and the old ones should be rotated."""
    found = [name for name in secret_names if re.search(rf"\b{re.escape(name)}\s*[=:]\s*[^\s$]", compose_text)]
    if not found:
        return ()
    return (f"{host.compose_file} held {', '.join(found)} in plain text; its backup in {host.backup_dir} is 0600 "
            f"and the secrets now live in {host.env_path}; rotate them (inv secrets.rotate --host {host.name})",)


def restart_verb(host: Host, changes: list[FileChange], facts: HostFacts) -> str | None:
    """`restart` re-reads config.yaml but keeps the container; compose or env changes need `up`.
    A config-only change to a stopped or crash-looping container also takes `restart`: `up` would
    see an unchanged service and leave it as it is."""
    changed = {change.path for change in changes}
    if facts.container is None or changed & {host.compose_file, host.env_path}:
        return "up"
    if host.config_path in changed:
        return "restart"
    return None if facts.container.running else "up"


def file_diff(change: FileChange, redact: Callable[[str], str]) -> str:
    """A unified diff of what the host holds against what we render, every secret value masked.

    In the env file each value is masked, old and new alike; a changed value stays visible as a
    changed line, so the diff says which keys change without saying to what."""
    if change.secret:
        old, new = masked_env(change.old or "", change.new, "old"), masked_env(change.new, change.old or "", "new")
    else:
        old, new = redact(change.old or ""), redact(change.new)
    label = "(absent)" if change.old is None else "(on host)"
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        f"{change.path} {label}", f"{change.path} (rendered)"))

