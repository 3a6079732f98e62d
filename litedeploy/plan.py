"""Desired files vs what the host holds -> the files to write and how to restart (pure). What each
runtime writes is the runtime's (`ServiceFile.files`), which verb restarts it the topology's
(`frontdoor.Topology.plan`); the shapes are here."""

from __future__ import annotations

import difflib
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

from .envfile import masked_env
from .facts import HostFacts


class Verb(str, Enum):
    """How a change reaches the gateway (the audit line's `restart`): written as its value."""

    RESTART = "restart"  # the gateway re-reads its files in place (config only)
    UP = "up"  # the gateway created or recreated
    # Behind the front door, a new instance and the door pointed at it (`switch.switch`); where the
    # door was just turned off, the door stopped and the gateway on the port again (`switch.switch_off`).
    SWITCH = "switch"
    # Behind the front door, only the door's certificate changed (a renewal): written, HAProxy reloaded.
    RELOAD = "reload"
    REMOVED = "removed"  # `compose.remove`

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class DesiredFiles:
    """What the host should hold: LiteLLM's config, the secret env file, and what runs LiteLLM, as
    its runtime words it (`ServiceFile.template`): the compose service block, the systemd unit."""

    config: str
    env: str
    service: str
    # The env file's variables that hold secrets (the rest, like the region, do not).
    secret_names: tuple[str, ...] = ()
    # Behind the front door: the proxy's configuration, by the instance it makes live, and the
    # proxy's own service file where the runtime has one apart (the systemd runtime's unit).
    proxy: Mapping[str, str] = field(default_factory=dict)
    proxy_service: str | None = None
    # With HTTPS (vars.tls): the door's certificate chain and private key, as HAProxy's `crt` reads them.
    certificate: str | None = None


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
    # False for a file no diff may show a line of (it holds a private key): it is named, not shown.
    shown: bool = True

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
    restart: Verb | None
    # Things the admin should act on although the deploy goes ahead.
    warnings: tuple[str, ...] = ()
    # What the host needs before any file changes (a user, a venv, a program): the runtime's.
    preparation: Preparation | None = None
    # How many files the plan compared with the host's (CHANGES are those that differ).
    managed: int = 0

    def __post_init__(self) -> None:
        if self.changes and self.restart is None:
            raise ValueError(f"a plan writes {', '.join(c.path for c in self.changes)} without restarting")

    @property
    def changed(self) -> bool:
        return bool(self.changes) or self.restart is not None


def changed_files(wanted: list[FileChange], facts: HostFacts) -> tuple[FileChange, ...]:
    """The files of WANTED whose text differs from the host's, each written through the symlink
    the host has at its path (facts.files.real_paths)."""
    return tuple(replace(change, resolved=facts.files.real_paths.get(change.path)) for change in wanted
                 if change.new != change.old)


@dataclass(frozen=True)
class Preparation:
    """What a runtime does on the host before any file changes, in one round trip; its failure
    leaves the host as it was. SAID is printed first (nothing where empty), DOING named if it
    fails; UPLOADS are local files staged for SCRIPT (stage folder, or None without uploads -> the
    script); REFUSED is an exit status whose last line says why on its own. USER and VENV: the
    system user it creates and the venv it installs, where it does (`--check` names them)."""

    said: str
    doing: str
    script: Callable[[str | None], str]
    uploads: tuple[Path, ...] = ()
    refused: int | None = None
    user: str | None = None
    venv: str | None = None


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
    if before.gateway.state is None:
        return RollbackSteps(bool(plan.changes), "remove")
    if not before.gateway.state.running:
        return RollbackSteps(bool(plan.changes), "stop")
    return RollbackSteps(bool(plan.changes), "start", port)


def file_diff(change: FileChange, redact: Callable[[str], str]) -> str:
    """A unified diff of what the host holds against what we render, every secret value masked.

    In the env file each value is masked, old and new alike; a changed value stays visible as a
    changed line, so the diff says which keys change without saying to what. A file not SHOWN is
    only named."""
    if not change.shown:
        return f"--- {change.path} ({'absent' if change.old is None else 'on host'})\n" \
               f"+++ {change.path} (rendered: holds a private key, not shown)\n"
    if change.secret:
        old, new = masked_env(change.old or "", change.new, "old"), masked_env(change.new, change.old or "", "new")
    else:
        old, new = redact(change.old or ""), redact(change.new)
    label = "(absent)" if change.old is None else "(on host)"
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        f"{change.path} {label}", f"{change.path} (rendered)"))
