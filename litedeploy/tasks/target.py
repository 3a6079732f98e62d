"""Which project and host a task acts on, and how a DeployError reaches the user.

`inv TASK --host NAME` names an inventory entry; `fab -H NAME|ADDRESS[:PORT] TASK` hands the task a
Fabric Connection instead. Both lead to the same Host.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.exceptions import Exit

from ..errors import DeployError, InventoryError
from ..host import Host

if TYPE_CHECKING:
    from ..project import Project


HOSTS = "a host or group of hosts.yaml, or a pattern: a,b  web*  prod:!fox2"
PROFILE = "a profile from hosts.yaml's profiles (default: the host's own)"


# Numeric options are declared with string defaults and parsed here: Invoke's own int parsing
# would end a typo like `--tail abc` in a traceback.
def whole_number(option: str, value: str | int, minimum: int = 0) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise DeployError(f"--{option} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise DeployError(f"--{option} must be at least {minimum}, not {number}")
    return number


def seconds(option: str, value: str | float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DeployError(f"--{option} must be a number of seconds, not {value!r}") from None
    if not 0 <= number < float("inf"):
        raise DeployError(f"--{option} must be zero or more seconds, not {value}")
    return number


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI job cancelled, `kill`) is handled like Ctrl-C, so a deploy rolls back and
    writes its audit line instead of dying with the host half changed and the lock held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def project_of(c) -> Project:
    from ..project import load_project
    settings = c.config.litellm
    return load_project(Path(settings.project), settings.inventory, settings.templates, settings.catalog)


def host_of(c, project: Project, host: str | None, profile: str | None = None) -> Host:
    """--host, else fab's -H, else LITEDEPLOY_HOST (from the environment or .env)."""
    inventory = project.inventory
    profile = profile or os.environ.get("LITEDEPLOY_PROFILE") or None
    named = getattr(c, "original_host", None)  # set when Fabric's -H made this a Connection
    if not host and named:
        name = named.rsplit("@", 1)[-1]
        if name in inventory.hosts:
            return inventory.host(name, profile)
        # Fabric keeps -H's port only in c.port (22 unless given or set in ~/.ssh/config). Another
        # port must be an entry's; with 22, an entry with port 22 wins, else the one entry at that address.
        try:
            found = inventory.host_at(c.host, c.port)
        except InventoryError:
            if c.port != 22:
                raise
            found = inventory.host_at(c.host, None)
        return inventory.with_profile(found, profile or found.profile)
    host = host or os.environ.get("LITEDEPLOY_HOST")
    if host:
        return inventory.host(host, profile)
    raise DeployError("no host given: use --host NAME (inv), -H NAME (fab), or LITEDEPLOY_HOST in .env")


def hosts_of(c, project: Project, host: str | None, profile: str | None = None) -> list[Host]:
    """`--host a,b` or a group names several hosts; `fab -H a,b` calls the task once per host instead."""
    if not host and getattr(c, "original_host", None):
        return [host_of(c, project, None, profile)]  # fab -H: explicit, so it wins over LITEDEPLOY_HOST
    pattern = host or os.environ.get("LITEDEPLOY_HOST") or ""
    expanded = project.inventory.select(pattern) if pattern.strip() else []
    if len(expanded) > 1:
        return [host_of(c, project, name, profile) for name in expanded]
    return [host_of(c, project, expanded[0] if expanded else None, profile)]


def on_each_host(c, host: str | None, action: Callable[[Project, Host], object], profile: str | None = None,
                 streams: bool = False) -> None:
    """Runs the action on each named host through the fleet runner: `litellm.parallel` hosts at once
    (invoke.yaml or INVOKE_LITELLM_PARALLEL; one at a time for a task that streams its output). A
    failing host is reported and the others still run; the task then fails naming every host that
    failed."""
    from ..fleet import report, run_hosts
    project = project_of(c)
    targets = hosts_of(c, project, host, profile)
    if len(targets) == 1:
        action(project, targets[0])
        return
    parallel = 1 if streams else whole_number("parallel (litellm.parallel)", c.config.litellm.parallel, 1)
    report(run_hosts(targets, lambda target: action(project, target), parallel))


def _show_details(exc: DeployError) -> None:
    details = getattr(exc, "details", "")
    if details:
        print(f"--- last lines of the gateway's log ---\n{details.rstrip()}\n---", file=sys.stderr)


def reports_errors(body: Callable) -> Callable:
    """A DeployError ends the task with its one-line message and exit 1 (a failed command of the
    user's: its own code); --debug keeps the traceback."""
    @functools.wraps(body)
    def run(*args, **kwargs):
        try:
            return body(*args, **kwargs)
        except DeployError as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            _show_details(exc)
            raise Exit(f"error: {exc}", code=getattr(exc, "exit_code", 1)) from None
    return run
