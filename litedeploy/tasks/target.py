"""Which project and host a task acts on, and how a DeployError reaches the user.

`inv TASK --host NAME` names an inventory entry; `fab -H NAME|ADDRESS[:PORT] TASK` hands the task a
Fabric Connection instead. Both lead to the same Host.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Callable

from invoke.exceptions import Exit

from ..errors import DeployError
from ..inventory import Host
from ..project import Project, load_project


def project_of(c) -> Project:
    settings = c.config.litellm
    return load_project(Path(settings.project), settings.inventory, settings.templates)


def host_of(c, project: Project, host: str | None) -> Host:
    if host:
        return project.inventory.host(host)
    named = getattr(c, "original_host", None)  # set when Fabric's -H made this a Connection
    if named:
        name = named.rsplit("@", 1)[-1]
        if name in project.inventory.hosts:
            return project.inventory.host(name)
        return project.inventory.host_at(c.host, c.port if ":" in name else None)
    raise DeployError("no host given: use --host NAME (inv) or -H NAME (fab)")


def reports_errors(body: Callable) -> Callable:
    """A DeployError ends the task with its one-line message and exit 1; --debug keeps the traceback."""
    @functools.wraps(body)
    def run(*args, **kwargs):
        try:
            return body(*args, **kwargs)
        except DeployError as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            details = getattr(exc, "details", "")
            if details:
                print(f"--- last lines of the container's log ---\n{details.rstrip()}\n---", file=sys.stderr)
            raise Exit(f"error: {exc}", code=1) from None
    return run
