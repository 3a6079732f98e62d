"""The runtime interface: everything the tool asks of "what runs the gateway" on one host.

Each method takes the host (its settings) and returns data: commands to run, a plan, a reading of
a file. Nothing here talks to a host; `session` and `deploy` run what a runtime builds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from .. import instances
from ..errors import DeployError

if TYPE_CHECKING:
    from packaging.version import Version

    from ..facts import GatewayState, HostFacts
    from ..host import Host
    from ..plan import FileChange, Plan, Preparation, RollbackSteps
    from ..render import DesiredFiles


# Renders one of our templates with more context: (template name, **context) -> text.
Rendering = Callable[..., str]
# Pulls an image onto the host: its reference -> the RepoDigests it has there.
Puller = Callable[[str], tuple[str, ...]]


class ServiceCommands(Protocol):
    """The verbs `compose.*` tasks and the deploy drive, whichever the runtime: each an argv list or
    a shell script."""

    validated: ClassVar[str]  # what `accepts` checks: "compose file", "unit"

    def up(self) -> list[str] | str: ...
    def restart(self) -> list[str] | str: ...
    def bringing_up(self, verb: str) -> list[str] | str: ...
    def stop(self) -> list[str] | str: ...
    def start(self) -> list[str] | str: ...
    def pull(self) -> list[str] | str: ...
    def ps(self) -> list[str] | str: ...
    def remove(self) -> list[str] | str: ...
    def accepts(self, candidate: str, log: str) -> str: ...


class Runtime(ABC):
    """One way of running LiteLLM on a host. Class attributes name things; methods build data."""

    kind: ClassVar[str]  # what the gateway is, in the runtime's words: "container", "service"
    what_runs: ClassVar[str]  # what a change of release replaces: "the image", "the venv"
    release_file: ClassVar[str]  # the service file's name inside a release folder
    service_template: ClassVar[str]  # templates/ file rendered into the service file (or its block)
    # How long the runtime waits for LiteLLM to stop before it kills it, when vars say nothing
    # (Docker: `docker stop`'s 10 s; systemd: DefaultTimeoutStopSec, 90 s).
    default_grace: ClassVar[str]
    # What a service file the runtime rejects raises (the exit status an admin's script sees).
    rejected: ClassVar[type[DeployError]] = DeployError
    # vars.zero_downtime's proxy, as the runtime runs it (the templates/ file `render_instances` renders).
    proxy_template: ClassVar[str]

    # -- vars.zero_downtime (`litedeploy.instances`, `litedeploy.switch`) --------------------------
    def instance(self, host: Host, color: str) -> Host:
        """Instance COLOR as a host of its own (its name, its loopback port)."""
        return instances.instance(host, color)

    def render_instances(self, host: Host, rendered: Rendering) -> tuple[str, str | None]:
        """The service text with the proxy and both instances, and the proxy's own service file
        where it has one apart; RENDERED(template, **context) renders a template of ours."""
        raise NotImplementedError(f"the {self.kind} runtime has no proxy")

    @abstractmethod
    def runs_instances(self, host: Host, text: str) -> bool:
        """Whether a service text of ours (a kept release's) runs vars.zero_downtime's instances."""

    def with_proxy(self, host: Host, facts: HostFacts, upgrade: bool, pull: Puller | None) -> Host:
        """HOST with its proxy pinned, where the proxy is an image (`DockerCompose.with_proxy`); a
        proxy the host's packages provide is the host's to keep current."""
        return host

    def proxy_admin_socket(self, host: Host) -> str:
        """Where the proxy's runtime API socket is, as the proxy sees its file system."""
        raise NotImplementedError(f"the {self.kind} runtime has no proxy")

    def proxy_up(self, host: Host, facts: HostFacts) -> list[str] | str:
        """Starts the proxy where it does not run (as its service file now says); else leaves it."""
        raise NotImplementedError(f"the {self.kind} runtime has no proxy")

    def proxy_reload(self, host: Host) -> list[str] | str:
        """The command that has the running proxy read its configuration again, without closing its port."""
        raise NotImplementedError(f"the {self.kind} runtime has no proxy")

    def leftovers(self, host: Host, zero_downtime: bool) -> list[str]:
        """The files a change to (ZERO_DOWNTIME true) or from the setting leaves unused, moved among
        the backups once it worked."""
        return []

    def start(self, host: Host) -> list[str] | str:
        """Starts the stopped gateway HOST names (an instance, the proxy) as it was created."""
        raise NotImplementedError(f"the {self.kind} runtime cannot start a gateway it stopped")

    # -- settings --------------------------------------------------------------------------------
    def settings_error(self, settings: Mapping[str, Any]) -> str | None:
        """What is wrong with a host's merged settings for this runtime, or None."""
        return None

    @abstractmethod
    def claims(self, host: Host) -> Sequence[tuple[str, Any, Any]]:
        """What two hosts of this runtime on one machine cannot share: (setting, value, scope) each;
        two hosts clash where all three are equal."""

    @abstractmethod
    def service_file(self, host: Host) -> str:
        """The file that says what runs the gateway, validated before it is moved in."""

    @abstractmethod
    def holder(self, host: Host) -> str:
        """How `commands.container.port_holder` names our own gateway when it holds the port
        (`container litellm`, `service litellm`); errors name the gateway so too."""

    @abstractmethod
    def env_access(self, host: Host) -> tuple[str, str]:
        """(group, mode) of the env file: who besides root reads the secrets."""

    # -- render ----------------------------------------------------------------------------------
    @abstractmethod
    def check_service(self, text: str, host: Host) -> None:
        """Raises RenderError where the rendered service text would not run the gateway as meant."""

    def service_part(self, host: Host, text: str, source: str) -> str | None:
        """What of a kept service file TEXT is ours (what `render` would render), or None where SOURCE
        holds none of it."""
        return text

    def loopback_is_own(self, host: Host) -> bool:
        """Whether 127.0.0.1 inside the gateway is the gateway's own (a bridged container), not the host's."""
        return False

    # -- facts -----------------------------------------------------------------------------------
    @abstractmethod
    def questions(self, host: Host) -> list[str]:
        """The runtime's part of the one facts round trip: scripts printing `key value` lines."""

    @abstractmethod
    def state(self, host: Host) -> str:
        """A script printing the gateway's state line (parsed into `facts.GatewayState`)."""

    # -- plan ------------------------------------------------------------------------------------
    @abstractmethod
    def plan(self, host: Host, desired: DesiredFiles, facts: HostFacts) -> Plan:
        """The files to write and the restart verb; raises DeployError (or ComposeFileError) where
        the host cannot take the change."""

    @abstractmethod
    def served(self, host: Host, text: str | None) -> str | None:
        """What the service file TEXT runs (an image reference, a venv), or None."""

    @abstractmethod
    def served_port(self, host: Host, text: str | None) -> int | None:
        """The port the service file TEXT serves on, or None."""

    @abstractmethod
    def running_version(self, runs: str | None) -> Version | None:
        """The LiteLLM version of what runs (`served`), or None where it cannot be told."""

    @abstractmethod
    def same_release(self, deployed: str, wanted: str, upgrade: bool) -> bool:
        """Whether a change from DEPLOYED to WANTED keeps the LiteLLM release (no schema migration)."""

    def preparation(self, host: Host, plan: Plan) -> Preparation | None:
        """What the host needs before the plan's files change (a user, a venv), or None."""
        return None

    def describe(self, runs: str) -> str:
        """RUNS as a warning names it."""
        return runs

    def run_refusal(self, runs: str, arch: str | None, facts: HostFacts) -> str | None:
        """Why RUNS (whose architecture is ARCH, where known) cannot run on the host, found before
        anything stops."""
        return None

    def refusal(self, facts: HostFacts, restart: str | None) -> str | None:
        """Why the host's tooling cannot carry out a restart verb, found before anything changes."""
        return None

    def rollback_steps(self, host: Host, plan: Plan, before: HostFacts) -> RollbackSteps:
        from ..plan import rollback_steps

        return rollback_steps(plan, before, self.served_port(host, before.service_text) or host.port)

    # -- what runs -------------------------------------------------------------------------------
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

    def as_deployed(self, host: Host, facts: HostFacts, upgrade: bool = False) -> Host:
        """HOST as a deploy would render it now: pinned where that is known without a pull, else as
        hosts.yaml asks (what `config.diff`, `ops.status` and `--check` compare with the host)."""
        return self.with_proxy(self.running(host, self.pinned(host, facts, upgrade) or self.wanted(host)), facts,
                               upgrade, None)

    def check_local(self, host: Host, upgrade: bool) -> None:
        """Raises DeployError for a deploy this runtime cannot do, found before connecting."""
        return None

    # -- status ----------------------------------------------------------------------------------
    @abstractmethod
    def running_now(self, host: Host, facts: HostFacts) -> str:
        """What runs now, as `ops.status` shows it (an image reference, a venv)."""

    @abstractmethod
    def ports(self, host: Host, state: GatewayState | None) -> tuple[str, ...]:
        """Where the gateway listens, as `ops.status` shows it."""

    @abstractmethod
    def runs_line(self, host: Host, runs: str, image_id: str, digests: Sequence[str]) -> str:
        """`ops.status`'s line about what runs."""

    # -- commands --------------------------------------------------------------------------------
    @abstractmethod
    def commands(self, host: Host, facts: HostFacts) -> ServiceCommands:
        """The service's verbs on this host; RemoteError where its tooling is missing."""

    @abstractmethod
    def logs(self, host: Host, tail: int, follow: bool = False, since: str | None = None) -> list[str]:
        """The gateway's last TAIL log lines (since a `docker logs --since` time, following)."""

    @abstractmethod
    def execute(self, host: Host, command: list[str]) -> list[str]:
        """COMMAND run beside the gateway, with its environment (no terminal)."""

    @abstractmethod
    def environment(self, host: Host) -> list[str] | str:
        """Prints the gateway process's environment, one NAME=value a line."""

    @abstractmethod
    def stop(self, host: Host) -> list[str] | str:
        """Stops the gateway as its (just restored) service file says."""

    @abstractmethod
    def remove(self, host: Host) -> list[str] | str:
        """Takes away a gateway that was not there before a deploy."""

    @abstractmethod
    def prune(self, host: Host, runs: str, releases_dir: str) -> str:
        """Removes what ran (images like RUNS, venvs) that neither the service file nor a kept
        release runs."""

    @abstractmethod
    def removal(self, host: Host, facts: HostFacts, deploy_id: str) -> Removal:
        """What `compose.remove` does on this host: the gateway stopped and gone, its service file
        out of the way (backed up); config and env stay, so a deploy brings it all back."""

    # -- files -----------------------------------------------------------------------------------
    def managed_files(self, host: Host) -> dict[str, str]:
        """The files a deploy manages, by the fact that carries each one's text (`commands.files.FILE_FACTS`)."""
        return {"service_file": self.service_file(host), "config_file": host.config_path, "env_file": host.env_path,
                "proxy_file": instances.proxy_config_path(host)}

    def release_names(self, host: Host) -> dict[str, str]:
        """Each managed path -> its file's name inside a release folder."""
        names = {"service_file": self.release_file, "config_file": "config.yaml", "env_file": "litellm.env"}
        # Not the proxy's configuration: which instance is live is the host's state, not a release's.
        return {path: names[fact] for fact, path in self.managed_files(host).items() if fact in names}


@dataclass(frozen=True)
class Removal:
    """A removal as data: commands run BEFORE the install of INSTALL (a service file with our part
    taken out) and AFTER it; DONE says what happened, CHANGED the paths, RESTART the audit's verb."""

    changed: tuple[str, ...] = ()
    restart: str | None = None
    install: FileChange | None = None
    before: tuple[list[str] | str, ...] = ()
    after: tuple[list[str] | str, ...] = ()
    done: tuple[str, ...] = ()
