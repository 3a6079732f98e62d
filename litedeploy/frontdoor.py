"""The front door: the reverse proxy that holds the host's port in front of the gateway, as one
component (Kamal's `Configuration::Proxy` beside its `Commands::Proxy`), and the topology a host
has, picked once (pure).

- `FrontDoor` is the spec, built from hosts.yaml in one place (`front_door`): the proxy's image,
  the loopback ports of the two instances behind it, its configuration file.
- A `Topology` says how the gateway meets the port: `OneGateway` (the gateway holds it) or
  `BehindTheDoor` (HAProxy holds it, forwarding to the live instance of two, blue and green). It
  answers everything that differs between the two: which gateways the service file defines, which
  files a deploy writes, what it renders, which verb a change takes, which gateway serves. Only
  `front_door` reads the setting; the rest ask the topology the session resolved (a deploy hands a
  SWITCH to `switch` by its type, a rollback renders the door's configuration where it has a door).
- The runtime's part of it (`runtimes.base.DoorPart`) says how its runtime runs the proxy and the
  instances; `switch` holds the steps on the host.

This is the blue-green deployment of Kamal's proxy and of Helm's rolling update, on one host: a
change starts the idle instance with the new files on its own loopback port, and the proxy is
switched to it only once it answers; the instance that was live finishes what it holds, then stops.
HAProxy is the proxy (Debian's package, or the official `haproxy` image): its configuration file
names the live instance, so that file is the one record of which instance serves, and a reload
(SIGUSR2 to its master process) hands the listening socket to a new worker without closing it,
while the old worker finishes the requests it holds (docs.haproxy.org/2.6/management.html, 4 and 5).
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .commands import line, script
from .errors import RenderError
from .facts import HostFacts
from .host import COLORS, FrontDoor, Host
from .plan import DesiredFiles, FileChange, Plan, Verb, changed_files
from .tls import BUNDLE_NAME, CHALLENGES_NAME, acme_settings

if TYPE_CHECKING:
    from .runtimes.base import ProxyNetwork, Puller, Rendering, Runtime

# The proxy where vars.proxy_image names none: the official image's LTS branch (hub.docker.com/_/haproxy,
# 3.2 is the long-term-support release of 2025, maintained to 2030).
DEFAULT_PROXY_IMAGE = "haproxy:3.2"
# The header the proxy adds to every answer: which instance gave it (a switch waits for it to change).
INSTANCE_HEADER = "X-Litedeploy-Instance"
PROXY_TEMPLATE = "haproxy.cfg.j2"
# LiteLLM's request timeout where litellm_settings sets none (docs.litellm.ai/docs/proxy/config_settings,
# `request_timeout`: 6000 seconds); the proxy waits as long for an answer's first byte.
LITELLM_REQUEST_TIMEOUT = 6000
# At a stop LiteLLM stops taking work and finishes what it holds for GRACEFUL_SHUTDOWN_TIMEOUT seconds
# (env), 30 by default (litellm/proxy/shutdown/graceful_shutdown_manager.py, 1.106.2).
LITELLM_DRAIN = 30
# What an instance is given beyond its drain before Docker or systemd kill it: LiteLLM's own exit.
DRAIN_MARGIN = 10
# HAProxy's longest timeout is 2^31 - 1 ms, about 24.8 days (docs.haproxy.org/2.6/configuration.html, 2.5).
MAX_PROXY_TIMEOUT = 2_000_000


def front_door(host: Host) -> FrontDoor | None:
    """The host's front door, or None: the one place that reads vars.zero_downtime, and vars.tls,
    which the door serves (HTTPS implies it, as Kamal's proxy ends TLS in front of its containers)."""
    return described(host) if host.vars.get("zero_downtime") or host.vars.get("tls") else None


def described(host: Host) -> FrontDoor:
    """The front door as hosts.yaml describes it, on or off (what a door turned off left behind is
    found by it): vars.proxy_image, and vars.instance_ports, by default the two ports after the host's."""
    chosen = host.vars.get("instance_ports") or (host.port + 1, host.port + 2)
    acme = acme_settings(host.vars.get("tls"))
    return FrontDoor(str(host.vars.get("proxy_image") or DEFAULT_PROXY_IMAGE), (int(chosen[0]), int(chosen[1])),
                     config_path(host), certificate_path(host) if host.vars.get("tls") else None,
                     acme["http_port"] if acme else None, challenges_path(host) if acme else None)


def gateway_names(host: Host, neighbours: bool = False) -> tuple[str, ...]:
    """The Host headers the front door accepts (vars.server_names, and with NEIGHBOURS the service
    name the compose network's other containers call it by; each alone, then with the host's port,
    lowercased as HAProxy's `lower` makes the request's), or () where it accepts any."""
    names = [str(name).lower() for name in host.vars.get("server_names") or ()]
    if names and neighbours:
        names.append(host.service_name.lower())
    return tuple(value for name in names for value in (name, f"{name}:{host.port}"))


def https(host: Host, door: FrontDoor | None) -> tuple[str, str | None] | None:
    """(the name litedeploy's own requests ask the certificate for, the CA file they trust besides
    the system's: vars.tls.ca_file) where HOST's port serves HTTPS behind DOOR (the host's own, as
    its topology has it: an instance's own settings would put it on other ports); None where it
    serves plain HTTP, as the instances behind the door do on loopback, or vars.tls is not a
    mapping (the render names it)."""
    settings, names = host.vars.get("tls"), gateway_names(host)
    if not door or not door.certificate_path or host.port in door.ports or not isinstance(settings, dict) or \
            not names:
        return None
    ca_file = settings.get("ca_file")
    return names[0], ca_file if isinstance(ca_file, str) else None


def host_header(host: Host) -> str:
    """The Host header litedeploy's own requests to the gateway send: its first name where the door
    accepts only its names, else the address it connects to."""
    names = gateway_names(host)
    return names[1] if names else f"{host.local_address}:{host.port}"


def listening(host: Host) -> tuple[tuple[str, str, int], ...]:
    """What HOST binds (`inventory.check_distinct`): its port, and behind a front door its
    instances' loopback ports too, and the door's plain-HTTP port for an ACME CA."""
    door = front_door(host)
    instances = tuple(("vars.instance_ports", "127.0.0.1", port) for port in door.ports) if door else ()
    acme = (("vars.tls.acme.http_port", host.bind, door.acme_port),) if door and door.acme_port else ()
    return (("port", host.bind, host.port), *instances, *acme)


def door_gateways(runtime: Runtime, host: Host, door: FrontDoor) -> tuple[Host, ...]:
    """The proxy, then the instances blue and green, as gateways of their own, each stopped with the
    grace LiteLLM's drain needs (`stop_grace`): the proxy, stopped (turned off, recreated), holds
    the same streams as the instance behind it."""
    graced = replace(host, vars={"stop_grace_period": stop_grace(host), **host.vars})
    return (runtime.door.proxy(graced), *(runtime.door.instance(graced, color, door.port(color)) for color in COLORS))


def stop_grace(host: Host) -> str:
    """How long an instance that stops may take (vars.stop_grace_period's format), where vars set
    none: LiteLLM's drain (env GRACEFUL_SHUTDOWN_TIMEOUT, else its default) and a margin. A switch
    stops the instance that served: Docker's default of 10 s would cut every stream and request
    still in flight after 10 s, which LiteLLM itself would have finished."""
    drain = str((host.vars.get("env") or {}).get("GRACEFUL_SHUTDOWN_TIMEOUT", LITELLM_DRAIN))
    return f"{int(float(drain)) + DRAIN_MARGIN if _number(drain) else LITELLM_DRAIN + DRAIN_MARGIN}s"


def _number(text: str) -> bool:
    try:
        return 0 <= float(text) < MAX_PROXY_TIMEOUT
    except ValueError:
        return False


REQUEST_TIMEOUT = "vars.litellm_settings.request_timeout"


def longest_wait(timeouts: Mapping[str, Any], where: str) -> float:
    """The seconds LiteLLM may take before an answer's first byte: the longest of TIMEOUTS (each
    setting by its hosts.yaml name: REQUEST_TIMEOUT, LiteLLM's default where it is unset, and each
    model's own `timeout`, which LiteLLM lets outlast the request timeout). The proxy waits that
    long and a little more: a shorter wait answers 504 where LiteLLM would still have answered.
    Raises RenderError for one the proxy cannot wait for."""
    given = {name: asked for name, asked in timeouts.items()
             if isinstance(asked, (int, float)) and not isinstance(asked, bool) and asked > 0}
    for name, asked in given.items():
        if not asked < MAX_PROXY_TIMEOUT:  # infinity too
            raise RenderError(f"{where}: {name} {asked!r} is longer than the proxy of zero_downtime can wait "
                              f"({MAX_PROXY_TIMEOUT} s); name a number of seconds")
    unset = {} if REQUEST_TIMEOUT in given else {REQUEST_TIMEOUT: LITELLM_REQUEST_TIMEOUT}
    return max({**unset, **given}.values())


def proxy_dir(host: Host) -> str:
    """The folder of the proxy's files (its configuration, certificate, HTTP-01 answers)."""
    return posixpath.join(host.config_dir, "proxy")


def config_path(host: Host) -> str:
    """Where the proxy's configuration is (also read where the door is off: one may be left)."""
    return posixpath.join(proxy_dir(host), "haproxy.cfg")


def certificate_path(host: Host) -> str:
    """Where the door's certificate and key are (`tls.BUNDLE_NAME`), beside its configuration."""
    return posixpath.join(proxy_dir(host), BUNDLE_NAME)


def acme_frontend(host: Host, network: ProxyNetwork, port: int | None) -> dict[str, Any]:
    """haproxy-acme.cfg.j2's context: the HTTP-01 PORT (None: no such frontend), the answers' map as
    the proxy sees it, the names the CA asks for (vars.server_names, lowercased)."""
    return {"acme_port": port, "challenges": posixpath.join(network.files, CHALLENGES_NAME),
            "acme_names": [str(name).lower() for name in host.vars.get("server_names") or ()]}


def pending_path(host: Host) -> str:
    """Where a certificate an ACME CA issued waits until a deploy has installed it (0600, root's): a
    deploy that fails after the CA issued does not make the next one ask again."""
    return f"{certificate_path(host)}.pending"


def challenges_path(host: Host) -> str:
    """Where the door's HTTP-01 answers are (`tls.CHALLENGES_NAME`), beside its configuration."""
    return posixpath.join(proxy_dir(host), CHALLENGES_NAME)


def other(color: str | None) -> str:
    """The instance a change starts: the one not live (blue where none is)."""
    return "green" if color == "blue" else "blue"


def stray(facts: HostFacts) -> str | None:
    """The instance that runs beside the live one, which runs too (started by hand, or left by an
    interrupted change), by color: it holds memory, and the proxy sends it requests only while the
    live one is down. Where the live one does not run, the other is what serves: no stray."""
    live = facts.live
    states = [facts.gateway.instances.get(color) for color in (live, other(live))] if live else []
    return other(live) if len(states) == 2 and all(state and state.running for state in states) else None


def topology(host: Host) -> Topology:
    """How HOST's gateway meets its port: behind its front door where it has one, else alone."""
    door = front_door(host)
    return BehindTheDoor(door) if door else ONE_GATEWAY


class Topology(ABC):
    """What differs between a gateway on the port and instances behind the front door."""

    door: FrontDoor | None = None

    @abstractmethod
    def gateways(self, runtime: Runtime, host: Host) -> tuple[Host, ...]:
        """The gateways our service file defines, the one that holds the port first."""

    @abstractmethod
    def service_file(self, runtime: Runtime, host: Host) -> str:
        """The file that says what runs."""

    @abstractmethod
    def written(self, runtime: Runtime, host: Host) -> dict[str, str]:
        """The files a deploy writes, by the fact that carries each one's text."""

    def managed_files(self, runtime: Runtime, host: Host) -> dict[str, str]:
        """The files the facts read: those written, and the door's own where one is left."""
        pending = {"pending_certificate_file": pending_path(host)} if acme_settings(host.vars.get("tls")) else {}
        return {**self.written(runtime, host), "proxy_file": config_path(host), **runtime.door.extra_files(host),
                **pending}

    @abstractmethod
    def render(self, runtime: Runtime, host: Host, rendered: Rendering,
               timeouts: Mapping[str, Any]) -> tuple[str, dict[str, str], str | None]:
        """(the service text, the proxy's configuration by the instance it makes live, the proxy's
        own service file); TIMEOUTS: each setting that lets LiteLLM wait, by its hosts.yaml name
        (`longest_wait`). Raises RenderError for settings the topology cannot take."""

    @abstractmethod
    def kept_under(self, runtime: Runtime, host: Host, text: str) -> str | None:
        """Where a service TEXT (a kept release's, or just rendered) runs another topology than this
        one: how vars.zero_downtime was when it was made ("on", "off"); else None."""

    @abstractmethod
    def plan(self, runtime: Runtime, host: Host, desired: DesiredFiles, facts: HostFacts) -> Plan:
        """The files to write and the verb; raises DeployError where the host cannot take them."""

    @abstractmethod
    def serving(self, runtime: Runtime, host: Host, door_facts: Callable[[], HostFacts]) -> Host:
        """The gateway that answers on the port now; DOOR_FACTS reads the door's configuration at
        least, where it is needed."""

    @abstractmethod
    def questions(self, runtime: Runtime, host: Host) -> list[str]:
        """Scripts printing the state of the door's proxy and instances, where there is a door (or
        one is left behind)."""

    def pin(self, runtime: Runtime, host: Host, facts: HostFacts, upgrade: bool, pull: Puller | None) -> Host:
        """HOST with what the door runs pinned (PULL: how to fetch an image the host lacks)."""
        return host

    @abstractmethod
    def restart_verb(self) -> Verb:
        """The verb that restarts the gateway with nothing changed (`compose.restart`, or one that
        answers but takes no work: it is draining)."""

    def leftovers(self, runtime: Runtime, host: Host, before: Topology) -> list[str]:
        """The files the topology BEFORE wrote that this one does not: moved among the backups once
        a change between them worked."""
        now = set(self.written(runtime, host).values())
        # The door's certificate and key too where this topology writes none (HTTPS turned off): the
        # topology before is worked out from today's settings, which no longer name it.
        return [path for path in dict.fromkeys((*before.written(runtime, host).values(), certificate_path(host),
                                                challenges_path(host), pending_path(host))) if path not in now]

    def _door_questions(self, runtime: Runtime, host: Host) -> str:
        """The state of the proxy and both instances, by role (proxy, blue, green)."""
        gateways = door_gateways(runtime, host, self.door or described(host))
        return script(*[runtime.driver.state(gateway, role) for gateway, role in zip(gateways, ("proxy", *COLORS))])

    def _planned(self, runtime: Runtime, host: Host, desired: DesiredFiles, facts: HostFacts,
                 verb: Callable[[tuple[FileChange, ...]], Verb | None], programs: Mapping[str, str]) -> Plan:
        """The runtime's files against the host's, the VERB they take, and what the host needs first
        (PROGRAMS: the door's, where it is up)."""
        wanted, warnings = runtime.service.files(host, desired, facts, self.service_file(runtime, host),
                                                 self.gateways(runtime, host))
        if self.door and self.door.certificate_path and desired.certificate is not None:
            wanted.append(FileChange(self.door.certificate_path, facts.files.certificate_text, desired.certificate,
                                     "0600", shown=False))
        if self.door and self.door.challenges_path:  # HAProxy refuses a map file that is not there
            wanted.append(FileChange(self.door.challenges_path, facts.files.challenges_text, "", "0644"))
        changes = changed_files(wanted, facts)
        restart = verb(changes)
        preparation = runtime.release.preparation(host, facts, runtime.service.served(host, desired.service), restart,
                                                  programs if restart else {})
        return Plan(changes, restart, warnings, preparation, managed=len(wanted))


class OneGateway(Topology):
    """The gateway holds the port itself."""

    def gateways(self, runtime: Runtime, host: Host) -> tuple[Host, ...]:
        return (host,)

    def service_file(self, runtime: Runtime, host: Host) -> str:
        return runtime.service.path(host)

    def written(self, runtime: Runtime, host: Host) -> dict[str, str]:
        return {"service_file": runtime.service.path(host), "config_file": host.config_path,
                "env_file": host.env_path}

    def render(self, runtime: Runtime, host: Host, rendered: Rendering,
               timeouts: Mapping[str, Any]) -> tuple[str, dict[str, str], str | None]:
        if host.vars.get("server_names"):
            raise RenderError(f"hosts.yaml (host {host.name}): vars.server_names are checked by the front door; set "
                              "vars.zero_downtime: true too (LiteLLM itself answers any name)")
        return rendered(runtime.service.template, host=host), {}, None

    def kept_under(self, runtime: Runtime, host: Host, text: str) -> str | None:
        return "on" if runtime.door.runs_instances(host, text) else None

    def plan(self, runtime: Runtime, host: Host, desired: DesiredFiles, facts: HostFacts) -> Plan:
        """In place; where the door was just turned off (its configuration is still on the host),
        the door stops and the gateway takes the port back (`switch`)."""
        def verb(changes: tuple[FileChange, ...]) -> Verb | None:
            return Verb.SWITCH if facts.live else runtime.service.in_place_verb(
                host, {change.path for change in changes}, facts, desired)
        return self._planned(runtime, host, desired, facts, verb, {})

    def serving(self, runtime: Runtime, host: Host, door_facts: Callable[[], HostFacts]) -> Host:
        return host

    def questions(self, runtime: Runtime, host: Host) -> list[str]:
        """Only where a door's configuration is left (it was just turned off): other hosts ask nothing more."""
        return [f"if [ -f {line(config_path(host))} ]; then\n{self._door_questions(runtime, host)}\nfi"]

    def restart_verb(self) -> Verb:
        return Verb.RESTART


ONE_GATEWAY = OneGateway()


@dataclass(frozen=True)
class BehindTheDoor(Topology):
    """HAProxy holds the port and forwards to the live instance of two."""

    door: FrontDoor

    def gateways(self, runtime: Runtime, host: Host) -> tuple[Host, ...]:
        return door_gateways(runtime, host, self.door)

    def instance(self, runtime: Runtime, host: Host, color: str) -> Host:
        return runtime.door.instance(host, color, self.door.port(color))

    def service_file(self, runtime: Runtime, host: Host) -> str:
        return runtime.door.service_file(host)

    def written(self, runtime: Runtime, host: Host) -> dict[str, str]:
        certificate = {"certificate_file": self.door.certificate_path} if self.door.certificate_path else {}
        if self.door.challenges_path:
            certificate["challenges_file"] = self.door.challenges_path
        return {"proxy_file": self.door.config_path, "service_file": runtime.door.service_file(host),
                "config_file": host.config_path, "env_file": host.env_path, **runtime.door.extra_files(host),
                **certificate}

    def render(self, runtime: Runtime, host: Host, rendered: Rendering,
               timeouts: Mapping[str, Any]) -> tuple[str, dict[str, str], str | None]:
        """The runtime's service text with the proxy and both instances, and the proxy's
        configuration for either instance live, waiting as long as LiteLLM may take (`longest_wait`)."""
        where = f"hosts.yaml (host {host.name})"
        if "use_x_forwarded_for" in (host.vars.get("general_settings") or {}):
            # LiteLLM takes X-Forwarded-For, whole, as the client's address when this is on (allowed_ips,
            # spend logs: litellm/proxy/auth/auth_utils.py get_request_ip_address, 1.106.2); behind the
            # door it is on, the door having set that header to the address it was connected from.
            raise RenderError(f"{where}: vars.general_settings.use_x_forwarded_for is set by litedeploy behind the "
                              "front door (vars.zero_downtime), which sets X-Forwarded-For itself; remove it")
        if self.door.certificate_path and not host.vars.get("server_names"):
            raise RenderError(f"{where}: vars.tls needs vars.server_names, the names (or addresses) clients reach the "
                              "gateway by, which its certificate must cover")
        if self.door.certificate_path and runtime.kind != "container":
            raise RenderError(f"{where}: vars.tls is built for the docker runtime so far; on systemd put HTTPS in "
                              "front of the gateway yourself")
        if host.port in self.door.ports:
            raise RenderError(f"{where}: vars.instance_ports must not hold the host's port {host.port}")
        if self.door.acme_port in (host.port, *self.door.ports):
            raise RenderError(f"{where}: vars.tls.acme.http_port {self.door.acme_port} is the host's port or an "
                              "instance's (vars.instance_ports); the door answers the ACME CA on a port of its own")
        if max(self.door.ports) > 65535:
            raise RenderError(f"{where}: the instances' default ports (port + 1, port + 2) pass 65535; set "
                              "vars.instance_ports")
        service, proxy_service = runtime.door.render(host, self.door, self.gateways(runtime, host), rendered)
        timeout = longest_wait(timeouts, where)
        network = runtime.door.network(host)
        configs = {color: rendered(PROXY_TEMPLATE, live=self.instance(runtime, host, color), color=color,
                                   idle=self.instance(runtime, host, other(color)), idle_color=other(color),
                                   timeout=int(timeout) + 10, header=INSTANCE_HEADER, network=network,
                                   names=gateway_names(host, neighbours=network.by_name),
                                   certificate=posixpath.join(network.files, BUNDLE_NAME)
                                   if self.door.certificate_path else None,
                                   **acme_frontend(host, network, self.door.acme_port)) for color in COLORS}
        return service, configs, proxy_service

    def kept_under(self, runtime: Runtime, host: Host, text: str) -> str | None:
        return None if runtime.door.runs_instances(host, text) else "off"

    def plan(self, runtime: Runtime, host: Host, desired: DesiredFiles, facts: HostFacts) -> Plan:
        """A switch where anything changed, where the gateway would need a new process in place (a
        new venv), or where the live instance, the proxy or its configuration is not as it should be;
        a reload of the proxy where only its certificate changed."""
        live = facts.live
        running = [facts.gateway.instances.get(role) for role in (live, "proxy") if role]
        settled = live and all(state and state.running for state in running) and \
            facts.files.proxy_text == desired.proxy.get(live)

        def verb(changes: tuple[FileChange, ...]) -> Verb | None:
            paths = {change.path for change in changes}
            in_place = runtime.service.in_place_verb(host, paths, facts, desired)
            if changes and settled and not in_place and paths <= {self.door.certificate_path, self.door.challenges_path}:
                return Verb.RELOAD  # a certificate the proxy alone reads: LiteLLM goes on as it is
            return Verb.SWITCH if changes or not settled or in_place else None
        return self._planned(runtime, host, desired, facts, verb, runtime.door.program)

    def serving(self, runtime: Runtime, host: Host, door_facts: Callable[[], HostFacts]) -> Host:
        live = door_facts().live
        return self.instance(runtime, host, live) if live else host

    def questions(self, runtime: Runtime, host: Host) -> list[str]:
        return [self._door_questions(runtime, host), *runtime.door.questions(host, self.door)]

    def pin(self, runtime: Runtime, host: Host, facts: HostFacts, upgrade: bool, pull: Puller | None) -> Host:
        """HOST with its proxy's image pinned to its registry digest where the runtime runs an image:
        written where hosts.yaml names it, as the gateway's image is (`WhatRuns.running`)."""
        pinned = runtime.door.pinned_image(host, self.door.image, facts, upgrade, pull)
        return replace(host, vars={**host.vars, "proxy_image": pinned})

    def restart_verb(self) -> Verb:
        return Verb.SWITCH
