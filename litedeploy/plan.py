"""Desired files vs what the host holds -> the files to write and how to restart (pure)."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from .composefile import Markers, check_compose, replace_block
from .facts import HostFacts, sha256
from .inventory import Host
from .render import DesiredFiles


@dataclass(frozen=True)
class FileChange:
    path: str
    new: str
    mode: str
    secret: bool = False
    # The user's compose file keeps its owner and mode; our own files are root:root.
    keep_owner: bool = False

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)


@dataclass(frozen=True)
class Plan:
    changes: tuple[FileChange, ...]
    restart: str | None  # None, "restart" (config only) or "up" (create or recreate)

    @property
    def changed(self) -> bool:
        return bool(self.changes) or self.restart is not None


def plan_deploy(host: Host, desired: DesiredFiles, facts: HostFacts) -> Plan:
    compose_text = replace_block(facts.compose_text or "", desired.block,
                                 Markers.from_template(host.marker), f"{host.name}:{host.compose_file}")
    check_compose(compose_text, host.service_name, f"{host.name}:{host.compose_file} (after the edit)")
    changes = []
    if compose_text != facts.compose_text:
        changes.append(FileChange(host.compose_file, compose_text, "0644", keep_owner=True))
    if sha256(desired.env) != facts.env_sha256:
        changes.append(FileChange(host.env_path, desired.env, "0600", secret=True))
    if desired.config != facts.config_text:
        changes.append(FileChange(host.config_path, desired.config, "0644"))
    return Plan(tuple(changes), restart_verb(host, changes, facts))


def restart_verb(host: Host, changes: list[FileChange], facts: HostFacts) -> str | None:
    """`restart` re-reads config.yaml but keeps the container; compose or env changes need `up`."""
    if facts.container is None or not facts.container.running:
        return "up"
    changed = {change.path for change in changes}
    if changed & {host.compose_file, host.env_path}:
        return "up"
    if host.config_path in changed:
        return "restart"
    return None
