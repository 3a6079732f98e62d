"""The one place that picks a command by the host's runtime (`docker` or `systemd`): what the rest
of the tool asks of "the gateway" (its state, verbs, logs, environment, a command run beside it)."""

from __future__ import annotations

from ..facts import HostFacts
from ..inventory import Host
from . import container, unit
from .compose import ComposeCommands, compose_commands
from .unit import UnitCommands

ServiceCommands = ComposeCommands | UnitCommands


def service_commands(host: Host, facts: HostFacts) -> ServiceCommands:
    return UnitCommands(host) if host.systemd else compose_commands(host, facts)


def state(host: Host) -> str:
    return unit.state(host) if host.systemd else container.state(host)


def logs(host: Host, tail: int, follow: bool = False, since: str | None = None) -> list[str]:
    return (unit.logs if host.systemd else container.logs)(host, tail, follow, since)


def execute(host: Host, command: list[str]) -> list[str]:
    return (unit.execute if host.systemd else container.execute)(host, command)


def environment(host: Host) -> list[str] | str:
    return unit.environment(host) if host.systemd else container.execute(host, ["env"])


def stop(host: Host) -> list[str] | str:
    return UnitCommands(host).reload_and_stop() if host.systemd else container.stop(host)


def remove(host: Host) -> list[str] | str:
    """Takes away a gateway that was not there before: the container, or the unit's running process."""
    return UnitCommands(host).remove() if host.systemd else container.remove(host)
