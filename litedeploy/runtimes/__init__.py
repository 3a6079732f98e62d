"""What runs the gateway on a host, decided here and nowhere else, from hosts.yaml's `runtime`.

Each runtime is a module holding one `base.Runtime` named RUNTIME: `docker` (a service of the
host's compose file, `runtimes.compose`) and `systemd` (a venv under a unit, `runtimes.systemd`).
The registry names modules, imported the first time a host asks for one (a plugin, as Ansible's
loader and pyinfra's connectors have them): no module of ours imports a runtime's, so no import
runs back up, and a Docker deploy never loads the systemd module.
A third runtime is a module and a line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..host import Host
    from .base import Runtime

REGISTRY = {
    "docker": "litedeploy.runtimes.compose",
    "systemd": "litedeploy.runtimes.systemd",
}


def named(name: str) -> Runtime:
    """The runtime hosts.yaml calls NAME (one of REGISTRY's keys; KeyError otherwise)."""
    return importlib.import_module(REGISTRY[name]).RUNTIME


def of(host: Host) -> Runtime:
    """The runtime that runs HOST's gateway."""
    return named(host.runtime)
