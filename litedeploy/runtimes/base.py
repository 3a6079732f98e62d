"""The runtime interface, in four small parts: everything the tool asks of "what runs the gateway" on
one host, as pyinfra's connectors answer for theirs.

- `ServiceFile`: the file that says what runs the gateway (its template, check, plan and reading);
- `WhatRuns`: what a release replaces (an image digest, a venv): wanted, pinned, served, pruned;
- `Driver`: the state question and the verbs (start, stop, remove, logs, exec, env);
- `DoorPart`: the front door as this runtime runs it (`frontdoor`), and the instances behind it.

Each method takes the host (its settings) and returns data: commands to run, a plan's files, a
reading of a file. Nothing here talks to a host; `session`, `deploy` and `switch` run what a
runtime builds. A runtime's settings rules are its settings record's (`host.RUNTIME_SETTINGS`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..commands import Command, ServiceCommands, detached, once_port_free, script
from ..errors import DeployError
from ..settings import grace_seconds

if TYPE_CHECKING:
    from packaging.version import Version

    from ..facts import GatewayState, Holder, HostFacts
    from ..host import FrontDoor, Host
    from ..plan import DesiredFiles, FileChange, Preparation, Verb

# Renders one of our templates with more context: (template name, **context) -> text.
Rendering = Callable[..., str]
# Pulls an image onto the host: its reference -> the RepoDigests it has there.
Puller = Callable[[str], tuple[str, ...]]


class ServiceFile(ABC):
    """The file that says what runs the gateway: a compose block, a unit."""

    template: ClassVar[str]  # templates/ file rendered into the service file (or its block)
    release_file: ClassVar[str]  # the service file's name inside a release folder

    @abstractmethod
    def path(self, host: Host) -> str:
        """The file that runs the one gateway, validated before it is moved in."""

    @abstractmethod
    def check(self, text: str, host: Host, gateways: Sequence[Host]) -> None:
        """Raises RenderError where the rendered service text would not run GATEWAYS as meant."""

    def part(self, host: Host, text: str, source: str) -> str | None:
        """What of a kept service file TEXT is ours (what `render` would render), or None where SOURCE
        holds none of it."""
        return text

    @abstractmethod
    def files(self, host: Host, desired: DesiredFiles, facts: HostFacts, service_path: str,
              gateways: Sequence[Host]) -> tuple[list[FileChange], tuple[str, ...]]:
        """The files a deploy writes (the service file at SERVICE_PATH running GATEWAYS, env and
        config, the front door's unit) and the warnings; raises DeployError (or ComposeFileError)
        where the host cannot take them."""

    @abstractmethod
    def in_place_verb(self, host: Host, changed: set[str], facts: HostFacts, desired: DesiredFiles) -> Verb | None:
        """How the one gateway takes CHANGED paths in place: restart, up (create or recreate), or None."""

    @abstractmethod
    def served(self, host: Host, text: str | None) -> str | None:
        """What the service file TEXT runs (an image reference, a venv), or None."""

    @abstractmethod
    def served_port(self, host: Host, text: str | None) -> int | None:
        """The port the service file TEXT serves on, or None."""

    @abstractmethod
    def env_access(self, host: Host) -> tuple[str, str]:
        """(group, mode) of the env file: who besides root reads the secrets."""

    def loopback_is_own(self, host: Host) -> bool:
        """Whether 127.0.0.1 inside the gateway is the gateway's own (a bridged container), not the host's."""
        return False


class WhatRuns(ABC):
    """What a release replaces: an image (pinned to its registry digest), a venv."""

    @abstractmethod
    def wanted(self, host: Host) -> str:
        """What hosts.yaml asks to run, before any pinning (an image reference, a venv path)."""

    @abstractmethod
    def pinned(self, host: Host, facts: HostFacts, upgrade: bool) -> str | None:
        """What a deploy writes into the service file, where it is known without a pull; None
        until the host has hosts.yaml's image."""

    def running(self, host: Host, runs: str) -> Host:
        """HOST as rendered to run RUNS."""
        return host

    @abstractmethod
    def version(self, runs: str | None) -> Version | None:
        """The LiteLLM version of RUNS (`ServiceFile.served`), or None where it cannot be told."""

    @abstractmethod
    def same_release(self, deployed: str, wanted: str, upgrade: bool) -> bool:
        """Whether a change from DEPLOYED to WANTED keeps the LiteLLM release (no schema migration)."""

    def describe(self, runs: str) -> str:
        """RUNS as a warning names it."""
        return runs

    def refusal(self, runs: str, arch: str | None, facts: HostFacts) -> str | None:
        """Why RUNS (whose architecture is ARCH, where known) cannot run on the host, found before
        anything stops."""
        return None

    def check_local(self, host: Host, upgrade: bool) -> None:
        """Raises DeployError for a deploy this runtime cannot do, found before connecting."""
        return None

    def preparation(self, host: Host, facts: HostFacts, runs: str | None, verb: Verb | None,
                    programs: Mapping[str, str]) -> Preparation | None:
        """What the host needs before any file changes for VERB to run RUNS (a user, a venv, the
        PROGRAMS the front door runs, by their package), or None."""
        return None

    @abstractmethod
    def prune(self, host: Host, runs: str, releases_dir: str) -> str:
        """Removes what ran (images like RUNS, venvs) that neither the service file nor a kept
        release runs."""

    @abstractmethod
    def now(self, host: Host, facts: HostFacts) -> str:
        """What runs now, as `ops.status` names it (an image reference, a venv)."""

    @abstractmethod
    def details(self, host: Host, runs: str, image_id: str, digests: Sequence[str], service_file: str) -> tuple[str, ...]:
        """(what RUNS is, RUNS, its identity...) as `ops.status` lists them: ("image", ref, id,
        digests) or ("venv", path, the SERVICE_FILE that runs it)."""


class Driver(ABC):
    """The gateway's process on the host: its state and the verbs that drive it."""

    @abstractmethod
    def questions(self, host: Host, extra: Sequence[str] = ()) -> list[str]:
        """The runtime's part of the one facts round trip, with the topology's EXTRA questions:
        scripts printing `key value` lines."""

    @abstractmethod
    def state(self, host: Host, role: str | None = None) -> str:
        """A script printing gateway HOST's state line, parsed into `facts.GatewayState`: the
        gateway's, or that of the front door's ROLE (proxy, blue, green) into `GatewayFacts.instances`."""

    @abstractmethod
    def verbs(self, host: Host, facts: HostFacts) -> ServiceCommands:
        """The verbs of gateway HOST (the gateway, an instance, the proxy); RemoteError where the
        host's tooling is missing."""

    @abstractmethod
    def logs(self, host: Host, tail: int, follow: bool = False, since: str | None = None) -> list[str]:
        """The gateway's last TAIL log lines (since a `docker logs --since` time, following)."""

    @abstractmethod
    def execute(self, host: Host, command: list[str]) -> list[str]:
        """COMMAND run beside the gateway, with its environment (no terminal)."""

    @abstractmethod
    def environment(self, host: Host) -> Command:
        """Prints the gateway process's environment, one NAME=value a line."""

    @abstractmethod
    def holder(self, host: Host) -> Holder:
        """How `commands.container.port_holder` names our own gateway when it holds the port."""

    def refusal(self, facts: HostFacts, verb: Verb | None) -> str | None:
        """Why the host's tooling cannot carry out VERB, found before anything changes."""
        return None

    @abstractmethod
    def ports(self, host: Host, state: GatewayState | None) -> tuple[str, ...]:
        """Where the gateway listens, as `ops.status` lists it."""

    @abstractmethod
    def removal(self, host: Host, facts: HostFacts, deploy_id: str, door: Sequence[Host],
                door_paths: Sequence[str]) -> Removal:
        """What `compose.remove` does on this host: the gateway (and the front door's proxy and
        instances, DOOR, whose files are DOOR_PATHS, where the host has them) stopped and gone, the
        service file out of the way (backed up); config and env stay, so a deploy brings it all back."""


@dataclass(frozen=True)
class ProxyNetwork:
    """How the front door's proxy meets the network: BIND, the address it binds the host's port on
    as its own network namespace sees it ("" for all of them); BY_NAME, whether it reaches the
    instances by their service names through Docker's DNS (on a compose network) rather than on
    loopback; ADMIN_SOCKET, its runtime API socket, and FILES, the folder of its configuration and
    certificate, as the proxy sees its file system."""

    bind: str
    admin_socket: str
    files: str
    by_name: bool = False


class DoorPart(ABC):
    """The front door (`frontdoor.FrontDoor`) as this runtime runs it: its proxy, the two instances
    behind it, the files that say so, and the proxy's verbs beyond `Driver.verbs`."""

    program: ClassVar[Mapping[str, str]] = {}  # programs the host must have, by their package

    @abstractmethod
    def instance(self, host: Host, color: str, port: int) -> Host:
        """Instance COLOR as a gateway of its own (its name, its loopback PORT)."""

    @abstractmethod
    def proxy(self, host: Host) -> Host:
        """The proxy as a gateway of its own (its container or unit)."""

    @abstractmethod
    def render(self, host: Host, door: FrontDoor, gateways: Sequence[Host], rendered: Rendering) -> tuple[str, str | None]:
        """The service text with DOOR's proxy and its instances (GATEWAYS: the proxy, blue, green), and
        the proxy's own service file where it has one apart; RENDERED(template, **context) renders a
        template of ours."""

    @abstractmethod
    def service_file(self, host: Host) -> str:
        """The file that runs the instances (the compose file, a template unit)."""

    def extra_files(self, host: Host) -> dict[str, str]:
        """The proxy's own files besides its configuration, by the fact that carries each one's text."""
        return {}

    @abstractmethod
    def runs_instances(self, host: Host, text: str) -> bool:
        """Whether a service text of ours (a kept release's) runs the door's instances."""

    @abstractmethod
    def network(self, host: Host) -> ProxyNetwork:
        """How the proxy meets the host's port and the instances (haproxy.cfg.j2)."""

    def questions(self, host: Host, door: FrontDoor) -> list[str]:
        """The runtime's questions about DOOR's proxy for the facts round trip (its image's digests)."""
        return []

    def pinned_image(self, host: Host, image: str, facts: HostFacts, upgrade: bool, pull: Puller | None) -> str:
        """The proxy's IMAGE pinned to its registry digest where the proxy is an image; a proxy the
        host's packages provide is the host's to keep current."""
        return image

    @abstractmethod
    def up(self, host: Host, facts: HostFacts, after: str | None = None, stopping: Command | None = None) -> Command:
        """Starts the proxy where it does not run (as its service file now says, AFTER where the change
        wrote it); else leaves it, or recreates it where the change altered it, keeping its port
        answering where the runtime can. STOPPING: where the door is turned on, the single gateway's
        stop, sent apart (and STOP_SENT printed) once the proxy is ready to start; the proxy starts
        the moment the port is free (`once_port_free`: within the gateway's grace period and 30 s
        more)."""

    @abstractmethod
    def reload(self, host: Host) -> Command:
        """Has the running proxy read its configuration again, without closing its port."""

    def responder(self, host: Host, image: str, folder: str, port: int) -> tuple[Command, Command]:
        """(start, stop): a one-off of the proxy (IMAGE) answering on PORT from FOLDER's haproxy.cfg, where
        the door has no certificate yet to start with (`acme_certificate`)."""
        raise DeployError(f"{host.name}: vars.tls.acme is built for the docker runtime so far")


# What `DoorPart.up` prints once it has told the single gateway to stop (STOPPING): a way back that
# finds it missing knows the gateway never stopped.
STOP_SENT = "litedeploy-stop-sent"


def handover(host: Host, default_grace: str, stopping: Command, start: Command) -> str:
    """The turn-on's script once the proxy is ready to start: STOPPING (the single gateway's stop,
    DEFAULT_GRACE the runtime's where vars set none) sent apart and STOP_SENT printed, then START
    the moment the port is free (`once_port_free`)."""
    return script(detached(stopping), f"echo {STOP_SENT}",
                  once_port_free(host.port, port_free_within(host, default_grace), start,
                                 "the single gateway was told to stop"))


def port_free_within(host: Host, default_grace: str) -> float:
    """Seconds a single gateway told to stop may hold its port: its grace period (DEFAULT_GRACE, the
    runtime's, where vars set none) and 30 s more."""
    return 30.0 + (grace_seconds(host.vars, default_grace) or 0)


@dataclass(frozen=True)
class Runtime:
    """One way of running LiteLLM on a host: its names and its four parts."""

    kind: str  # what the gateway is, in the runtime's words: "container", "service"
    what_runs: str  # what a change of release replaces: "the image", "the venv"
    # How long the runtime waits for LiteLLM to stop before it kills it, when vars say nothing
    # (Docker: `docker stop`'s 10 s; systemd: DefaultTimeoutStopSec, 90 s).
    default_grace: str
    service: ServiceFile
    release: WhatRuns
    driver: Driver
    door: DoorPart
    # What a service file the runtime rejects raises (the exit status an admin's script sees).
    rejected: type[DeployError] = DeployError


@dataclass(frozen=True)
class Removal:
    """A removal as data: commands run BEFORE the install of INSTALL (a service file with our part
    taken out) and AFTER it; DONE says what happened, CHANGED the paths, REMOVED whether a gateway went."""

    changed: tuple[str, ...] = ()
    removed: bool = False
    install: FileChange | None = None
    before: tuple[Command, ...] = ()
    after: tuple[Command, ...] = ()
    done: tuple[str, ...] = ()
