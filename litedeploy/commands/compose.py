"""Command lines for the litellm service: `docker compose` (v2) where the host has it, else
`docker-compose` (v1). Only the service is ever named, so compose never touches the admin's others."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from ..errors import RemoteError
from ..facts import DockerFacts, Fact, HostFacts
from ..host import Host
from . import Raw, line

# Where the Docker CLI looks for plugins (besides config.json's cliPluginsExtraDirs).
PLUGIN_DIRS = ("${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins", "/usr/local/lib/docker/cli-plugins",
               "/usr/local/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")
# Prints `flavour v2` or `flavour v1`. Finding the v2 plugin's file is enough: asking
# `docker compose version` costs the CLI's plugin discovery (60 ms), asked only when no file is
# found; v1 is a Python program that takes half a second to start.
FLAVOUR = ("for d in " + " ".join(f'"{folder}"' for folder in PLUGIN_DIRS) + "; do"
           " [ -x \"$d/docker-compose\" ] && { echo 'flavour v2'; exit 0; }; done;"
           " if docker compose version >/dev/null 2>&1; then echo 'flavour v2';"
           " elif command -v docker-compose >/dev/null 2>&1; then echo 'flavour v1'; fi")
FACTS = (Fact("flavour", DockerFacts, lambda value, paths: {"compose_flavour": value}),)


@dataclass(frozen=True)
class ComposeCommands:
    """The verbs of one service of the compose file: compose creates, restarts, pulls and lists it;
    stop, start and removal name its container, which works whatever the file holds now (a rollback
    may have taken the service out of it already)."""

    validated: ClassVar[str] = "compose file"
    flavour: str
    file: str
    project: str | None
    service: str
    container: str

    def _base(self) -> list[str]:
        words = ["docker", "compose"] if self.flavour == "v2" else ["docker-compose"]
        words += ["-f", self.file]
        if self.project:
            words += ["-p", self.project]
        return words

    def up(self) -> list[str]:
        """Creates or recreates the service alone: the only verb that applies compose and env changes."""
        return self._base() + ["up", "-d", "--no-deps", self.service]

    def create(self) -> list[str]:
        """Creates or recreates the service's container without starting it."""
        return self._base() + ["up", "--no-start", "--no-deps", self.service]

    def restart(self) -> list[str]:
        return self._base() + ["restart", self.service]

    def bringing_up(self, verb: str) -> list[str]:
        """The command for a plan's restart verb: "restart" (config only) or "up" (create/recreate)."""
        return self.restart() if verb == "restart" else self.up()

    def stop(self) -> list[str]:
        """Stops it as compose would: its own stop signal, then its stop_grace_period (kept by the container)."""
        return ["docker", "stop", self.container]

    def start(self) -> list[str]:
        return ["docker", "start", self.container]

    def pull(self) -> list[str]:
        return self._base() + ["pull", self.service]

    def restored(self) -> None:
        """Compose reads its file at each verb: nothing holds the one that went back."""
        return None

    def ps(self) -> list[str]:
        """Stopped containers too: v2's `ps` hides them unless asked."""
        return self._base() + ["ps", "--all", self.service]

    def validate(self, file: str) -> list[str]:
        """Checks a candidate compose file (in the real one's folder) without touching anything."""
        return replace(self, file=file)._base() + ["config", "-q"]

    def accepts(self, candidate: str, log: str) -> str:
        """The condition `compose accepts the candidate file`, its output kept in LOG."""
        return line(*self.validate(candidate), Raw(">"), log, Raw("2>&1"))

    def remove(self) -> list[str]:
        """Removes the container at once, leaving the user's other services alone (`stop` first lets
        it finish its requests)."""
        return ["docker", "rm", "-f", self.container]


def compose_commands(host: Host, facts: HostFacts) -> ComposeCommands:
    if facts.docker.compose_flavour is None:
        raise RemoteError(f"{host.name}: neither 'docker compose' nor 'docker-compose' is installed")
    # Keep the project the running container belongs to, or compose would create a second one.
    state = facts.gateway.state
    running_project = state.compose_project if state else None
    return ComposeCommands(facts.docker.compose_flavour, host.docker.compose_file,
                           host.docker.compose_project or running_project, host.service_name,
                           host.docker.container_name)
