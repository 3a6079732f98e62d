"""Desired files vs what the host holds -> the files to write and how to restart (pure). What each
runtime writes and which verb restarts it is the runtime's (`runtimes.*.plan`); the shapes are here."""

from __future__ import annotations

import difflib
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import instances
from .envfile import masked_env
from .facts import HostFacts

if TYPE_CHECKING:
    from .host import Host
    from .render import DesiredFiles


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
    # The file that says what runs the gateway: the runtime validates it before it is moved in.
    validated: bool = False

    @property
    def target(self) -> str:
        return self.resolved or self.path

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)


@dataclass(frozen=True)
class Plan:
    """The files to write and the verb that restarts the gateway on them. A runtime restarts for
    every change it plans (a file written but not read would be drift): RESTART is None only when
    CHANGES is empty, and a plan that breaks this is a ValueError."""

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
    # vars.zero_downtime on a host whose proxy is the host's own program: the program, checked first.
    proxy_program: str | None = None

    def __post_init__(self) -> None:
        if self.changes and self.restart is None:
            raise ValueError(f"a plan writes {', '.join(c.path for c in self.changes)} without restarting")

    @property
    def changed(self) -> bool:
        return bool(self.changes) or self.restart is not None


def changed_files(wanted: list[FileChange], facts: HostFacts) -> tuple[FileChange, ...]:
    """The files of WANTED whose text differs from the host's, each written through the symlink
    the host has at its path (facts.real_paths)."""
    return tuple(replace(change, resolved=facts.real_paths.get(change.path)) for change in wanted
                 if change.new != change.old)


@dataclass(frozen=True)
class Preparation:
    """What a runtime does on the host before any file changes, in one round trip; its failure
    leaves the host as it was. SAID is printed first (nothing where empty), DOING named if it
    fails; UPLOADS are local files staged for SCRIPT (stage folder, or None without uploads -> the
    script); REFUSED is an exit status whose last line says why on its own."""

    said: str
    doing: str
    script: Callable[[str | None], str]
    uploads: tuple[Path, ...] = ()
    refused: int | None = None


@dataclass(frozen=True)
class RollbackSteps:
    """How a failed deploy puts the host back: restore the files it wrote, then bring the gateway
    to the state it had: `remove` (there was none), `stop` (it was stopped) or `start` with the
    plan's verb, verified on the port the restored files serve."""

    restore: bool
    gateway: str
    port: int | None = None


def rollback_steps(plan: Plan, before: HostFacts, port: int) -> RollbackSteps:
    """PORT: the one the files the rollback restores serve on."""
    if before.state is None:
        return RollbackSteps(bool(plan.changes), "remove")
    if not before.state.running:
        return RollbackSteps(bool(plan.changes), "stop")
    return RollbackSteps(bool(plan.changes), "start", port)


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


def switch_verb(host: Host, changes: Sequence[FileChange], desired: DesiredFiles, facts: HostFacts) -> str | None:
    """On a host with vars.zero_downtime, or where it was just turned off: "switch"
    (`litedeploy.switch`) where anything changed or does not run as it should (the live instance,
    the proxy, the proxy's configuration), else None."""
    live = instances.live_color(facts.proxy_text)
    if not instances.enabled(host):
        return "switch"
    running = [facts.instances.get(role) for role in (live, "proxy") if role]
    settled = live and all(state and state.running for state in running) and facts.proxy_text == desired.proxy.get(live)
    return "switch" if changes or not settled else None
