"""Command lines for the litellm service: `docker compose` (v2) where the host has it, else
`docker-compose` (v1). Only built here, as argv lists; remote runs them."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import RemoteError
from .facts import HostFacts
from .inventory import Host


@dataclass(frozen=True)
class ComposeCommands:
    flavour: str
    file: str
    project: str | None
    service: str

    def _base(self) -> list[str]:
        words = ["docker", "compose"] if self.flavour == "v2" else ["docker-compose"]
        words += ["-f", self.file]
        if self.project:
            words += ["-p", self.project]
        return words

    def up(self) -> list[str]:
        """Creates or recreates the service alone: the only verb that applies compose and env changes."""
        return self._base() + ["up", "-d", "--no-deps", self.service]

    def restart(self) -> list[str]:
        return self._base() + ["restart", self.service]

    def bringing_up(self, verb: str) -> list[str]:
        """The command for a plan's restart verb: "restart" (config only) or "up" (create/recreate)."""
        return self.restart() if verb == "restart" else self.up()

    def stop(self) -> list[str]:
        return self._base() + ["stop", self.service]

    def start(self) -> list[str]:
        return self._base() + ["start", self.service]

    def pull(self) -> list[str]:
        return self._base() + ["pull", self.service]

    def ps(self) -> list[str]:
        """Stopped containers too: v2's `ps` hides them unless asked."""
        return self._base() + ["ps", "--all", self.service]

    def validate(self, file: str) -> list[str]:
        """Checks a candidate compose file (in the real one's folder) without touching anything."""
        return replace(self, file=file)._base() + ["config", "-q"]

    def remove(self) -> list[str]:
        """Stops and removes the service's container, leaving the user's other services alone."""
        return self._base() + ["rm", "--stop", "--force", self.service]


def compose_commands(host: Host, facts: HostFacts) -> ComposeCommands:
    if facts.compose_flavour is None:
        raise RemoteError(f"{host.name}: neither 'docker compose' nor 'docker-compose' is installed")
    # Keep the project the running container belongs to, or compose would create a second one.
    running_project = facts.container.compose_project if facts.container else None
    return ComposeCommands(facts.compose_flavour, host.compose_file,
                           host.compose_project or running_project, host.service_name)


def container_logs(host: Host, tail: int, follow: bool = False, since: str | None = None) -> list[str]:
    words = ["docker", "logs", "--tail", str(tail)]
    if follow:
        words.append("--follow")
    if since:
        words += ["--since", since]
    return words + [host.container_name]
