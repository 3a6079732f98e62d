"""The `systemd` runtime, for a host without Docker: LiteLLM from a venv of pinned packages, run by
a unit as its own system user. What runs is the venv the unit's ExecStart names
(`/opt/litellm/litellm-1.106.2-ab12cd34`, one per set of packages)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.version import Version

from ..advisories import release_version
from ..commands import Command, files, line, script, unit
from ..commands.unit import UnitCommands, template_path, unit_name, unit_path
from ..errors import DeployError, RenderError
from ..facts import GatewayState, Holder, HostFacts
from ..host import FrontDoor, Host
from ..plan import DesiredFiles, FileChange, Preparation, Verb
from ..settings import grace_warnings
from .base import DoorPart, Driver, ProxyNetwork, Removal, Rendering, Runtime, ServiceFile, WhatRuns, handover

# The venv's name says which LiteLLM it holds: litellm-VERSION-DIGEST (SystemdSettings.venv_dir).
_VENV = re.compile(r"litellm-(?P<version>[^/]+)-[0-9a-f]{8}")
DEFAULT_GRACE = "90s"  # DefaultTimeoutStopSec


class Unit(ServiceFile):
    """The gateway's unit (behind the front door, the template unit its instances run from)."""

    template = "litellm.service.j2"
    release_file = "litellm.service"

    def path(self, host: Host) -> str:
        return unit_path(host)

    def check(self, text: str, host: Host, gateways: Sequence[Host]) -> None:
        """A unit systemd would run: one ExecStart naming the venv (a template's where it runs the front
        door's instances among GATEWAYS), never a secret of its own."""
        where = f"templates/{self.template} (host {host.name})"
        venv_dir = host.systemd.venv_dir
        starts = [line for line in text.splitlines() if line.startswith("ExecStart=")]
        if len(starts) != 1 or not starts[0].startswith(f"ExecStart={venv_dir}/bin/"):
            raise RenderError(f"{where}: must have one ExecStart running a program of {venv_dir}/bin")
        if (len(gateways) > 1) != DOOR.runs_instances(host, text):  # the instances behind a front door
            raise RenderError(f"{where}: with vars.zero_downtime the unit is a template whose ExecStart listens on "
                              "--port %i (its instance's name), and only then")
        if not re.search(rf"^EnvironmentFile={re.escape(host.env_path)}$", text, re.MULTILINE):
            raise RenderError(f"{where}: must read its secrets from EnvironmentFile={host.env_path}")

    def files(self, host: Host, desired: DesiredFiles, facts: HostFacts, service_path: str,
              gateways: Sequence[Host]) -> tuple[list[FileChange], tuple[str, ...]]:
        """The unit, config and env (the latter two root:USER 0640, as the unit's user reads them),
        and the front door's unit where it has one."""
        for path in facts.files.not_files:
            raise DeployError(f"{host.name}:{path}: is not a regular file (a directory?); it must name a file")
        group, mode = self.env_access(host)
        wanted = [FileChange(service_path, facts.files.service_text, desired.service, "0644", validated=True),
                  FileChange(host.env_path, facts.files.env_text, desired.env, mode, secret=True, group=group),
                  FileChange(host.config_path, facts.files.config_text, desired.config, "0640",
                             group=host.systemd.service_user)]
        if desired.proxy_service is not None:
            wanted.append(FileChange(DOOR.extra_files(host)["proxy_service_file"], facts.files.proxy_service_text,
                                     desired.proxy_service, "0644"))
        if self._missing_venv(host, facts, desired) not in (None, host.systemd.venv_dir):
            # a release's unit whose venv a later change removed
            raise DeployError(f"{host.name}:{self.served(host, desired.service)}: the venv this unit runs is gone; "
                              "deploy its packages again")
        return wanted, tuple(grace_warnings(gateways[-1].vars, DEFAULT_GRACE))

    def in_place_verb(self, host: Host, changed: set[str], facts: HostFacts, desired: DesiredFiles) -> Verb | None:
        """A changed unit or a new venv means daemon-reload and restart (`up`), a changed config or
        env a restart, nothing else nothing."""
        if self._missing_venv(host, facts, desired) or unit_path(host) in changed or facts.gateway.state is None \
                or not facts.gateway.state.running:
            return Verb.UP
        return Verb.RESTART if changed else None

    def _missing_venv(self, host: Host, facts: HostFacts, desired: DesiredFiles) -> str | None:
        runs = self.served(host, desired.service)
        return None if runs in facts.systemd.venvs else runs

    def served(self, host: Host, text: str | None) -> str | None:
        found = re.search(r"^ExecStart=(\S+)/bin/litellm\b", text or "", re.MULTILINE)
        return found.group(1) if found else None

    def served_port(self, host: Host, text: str | None) -> int | None:
        found = re.search(r"^ExecStart=.* --port (\d+)", text or "", re.MULTILINE)
        return int(found.group(1)) if found else None

    def env_access(self, host: Host) -> tuple[str, str]:
        return host.systemd.service_user, "0640"  # the unit's user reads it


class Venv(WhatRuns):
    """A venv of hosts.yaml's pinned packages, one per set."""

    def wanted(self, host: Host) -> str:
        return host.systemd.venv_dir

    def pinned(self, host: Host, facts: HostFacts, upgrade: bool) -> str:
        return host.systemd.venv_dir

    def version(self, runs: str | None) -> Version | None:
        """From the venv's name, which litedeploy gives it (`/opt/litellm/litellm-1.106.2-ab12cd34`)."""
        match = _VENV.search(runs or "")
        return release_version(match["version"]) if match else None

    def same_release(self, deployed: str, wanted: str, upgrade: bool) -> bool:
        return deployed == wanted

    def describe(self, runs: str) -> str:
        return "the venv"

    def check_local(self, host: Host, upgrade: bool) -> None:
        """No image to upgrade; a wheel folder hosts.yaml names must hold wheels."""
        wheels, packages = host.systemd.wheels, host.systemd.packages
        if upgrade:
            raise DeployError(f"{host.name}: runs LiteLLM as a systemd service (runtime: systemd): there is no "
                              "image to upgrade; pin the new version in its packages in hosts.yaml and deploy")
        if wheels and not any(Path(wheels).glob("*.whl")):
            raise DeployError(f"hosts.yaml (host {host.name}): wheels {wheels} holds no .whl files "
                              f"(make it with: pip download -d {wheels} {' '.join(packages)})")

    def preparation(self, host: Host, facts: HostFacts, runs: str | None, verb: Verb | None,
                    programs: Mapping[str, str]) -> Preparation | None:
        """The service user, the venv (from the wheel folder hosts.yaml names, uploaded, or the host's
        package index), the Prisma client LiteLLM needs with a database, and the front door's
        PROGRAMS; a venv is only used once a unit names it."""
        settings = host.systemd
        user = None if facts.systemd.service_user_exists else settings.service_user
        venv = None if runs in facts.systemd.venvs else runs
        prisma = runs if host.vars.get("database") and verb else None
        if not (user or venv or prisma or programs):
            return None
        source = f"the wheels in {settings.wheels}" if settings.wheels else "the host's package index"
        doing = f"installing {' '.join(settings.packages)} into {venv}" if venv else "preparing"

        def script_for(stage: str | None) -> str:
            return script("set -e", *(unit.program_check(program, package) for package, program in programs.items()),
                          unit.ensure_user(host) if user else None,
                          unit.install_venv(host, stage) if venv else None,
                          unit.prisma_client_check(prisma) if prisma else None)
        wheels = tuple(sorted(Path(settings.wheels).glob("*.whl"))) if venv and settings.wheels else ()
        return Preparation(f"{doing} from {source}" if venv else "", doing, script_for, wheels,
                           refused=unit.REFUSED, user=user, venv=venv)

    def prune(self, host: Host, runs: str, releases_dir: str) -> str:
        return unit.prune_venvs(host, releases_dir)

    def now(self, host: Host, facts: HostFacts) -> str:
        return UNIT.served(host, facts.files.service_text) or host.systemd.venv_dir

    def details(self, host: Host, runs: str, image_id: str, digests: Sequence[str], service_file: str) -> tuple[str, ...]:
        return ("venv", runs, f"(systemd unit {service_file})")


class Units(Driver):
    """The gateway's unit, through systemctl and the journal."""

    def questions(self, host: Host, extra: Sequence[str] = ()) -> list[str]:
        """The unit, venvs and user, and the topology's EXTRA questions."""
        return [unit.runtime_facts(host), *extra]

    def state(self, host: Host, role: str | None = None) -> str:
        return unit.state(host, key=f"service_{role}" if role else "service")

    def verbs(self, host: Host, facts: HostFacts) -> UnitCommands:
        return UnitCommands(host)

    def logs(self, host: Host, tail: int, follow: bool = False, since: str | None = None) -> list[str]:
        return unit.logs(host, tail, follow, since)

    def execute(self, host: Host, command: list[str]) -> list[str]:
        return unit.execute(host, command)

    def environment(self, host: Host) -> str:
        return unit.environment(host)

    def holder(self, host: Host) -> Holder:
        return Holder("service", host.service_name)

    def ports(self, host: Host, state: GatewayState | None) -> tuple[str, ...]:
        return (f"{host.bind}:{host.port} (the service listens on the host)",)

    def removal(self, host: Host, facts: HostFacts, deploy_id: str, door: Sequence[Host],
                door_paths: Sequence[str]) -> Removal:
        """The unit stopped, out of boot, its file among the backups; venvs stay too. The front door's
        units and files where the host has them."""
        if facts.gateway.instances:
            return Removal(changed=tuple(door_paths), removed=True,
                           before=tuple(UnitCommands(gateway).remove() for gateway in door),
                           after=tuple(files.take_away(host, path, deploy_id) for path in door_paths),
                           done=(f"stopped and disabled {', '.join(unit_name(gateway) for gateway in door)}",
                                 f"moved {', '.join(door_paths)} to {host.backup_dir}"))
        if facts.files.service_text is None and facts.gateway.state is None:
            return Removal()
        path = unit_path(host)
        kept = facts.files.service_text is not None
        # The file goes first: systemd still knows a loaded unit, and the removal's daemon-reload forgets it.
        return Removal(changed=(path,) if kept else (), removed=True,
                       before=(script(files.take_away(host, path, deploy_id), UnitCommands(host).remove()),),
                       done=(f"stopped and disabled {unit.unit_name(host)}",
                             *([f"moved {path} to {host.backup_dir}"] if kept else [])))


class UnitDoor(DoorPart):
    """Debian's HAProxy in a unit of its own, as Debian's haproxy.service runs it; the instances
    from a template unit (`litellm@4001`), each listening on its own loopback port."""

    program = {"haproxy": "/usr/sbin/haproxy"}

    def instance(self, host: Host, color: str, port: int) -> Host:
        """An instance of the template unit, named for its port (`litellm@4001`): `--port %i`."""
        return host.with_settings(service_name=f"{host.service_name}@{port}", port=port, bind="127.0.0.1")

    def proxy(self, host: Host) -> Host:
        return host.with_settings(service_name=f"{host.service_name}-proxy")

    def render(self, host: Host, door: FrontDoor, gateways: Sequence[Host],
               rendered: Rendering) -> tuple[str, str | None]:
        """The template unit (listening on loopback at the instance's port, a runtime folder of each
        instance's own) and the proxy's unit."""
        proxy, instance, _ = gateways  # their vars hold the grace the door derived (`frontdoor.stop_grace`)
        template = rendered(UNIT.template, host=host.with_settings(bind="127.0.0.1"), port="%i", instance_suffix="-%i",
                            vars=instance.vars)
        proxy_unit = rendered("litellm-proxy.service.j2", proxy=proxy, vars=proxy.vars, proxy_config=door.config_path)
        return template, proxy_unit

    def service_file(self, host: Host) -> str:
        return template_path(host)

    def extra_files(self, host: Host) -> dict[str, str]:
        return {"proxy_service_file": unit_path(self.proxy(host))}

    def runs_instances(self, host: Host, text: str) -> bool:
        """A template unit: its ExecStart listens on its instance's name (`--port %i`)."""
        return re.search(r"^ExecStart=.* --port %i\b", text, re.MULTILINE) is not None

    def network(self, host: Host) -> ProxyNetwork:
        """The host's own: its bind, the instances on loopback, the socket in the unit's RuntimeDirectory."""
        return ProxyNetwork(host.bind, f"/run/{self.proxy(host).service_name}/admin.sock",
                            posixpath.join(host.config_dir, "proxy"))  # the folder of frontdoor.config_path

    def up(self, host: Host, facts: HostFacts, after: str | None = None, stopping: Command | None = None) -> str:
        name = unit_name(self.proxy(host))
        enabled = ("set -e", "systemctl daemon-reload", line("systemctl", "enable", "--quiet", name))
        if stopping is not None:
            return script(*enabled, handover(host, DEFAULT_GRACE, stopping, ["systemctl", "start", name]))
        return script(*enabled, f"systemctl is-active --quiet {line(name)} || {line('systemctl', 'start', name)}")

    def reload(self, host: Host) -> list[str]:
        return ["systemctl", "reload", unit_name(self.proxy(host))]


UNIT = Unit()
DOOR = UnitDoor()
RUNTIME = Runtime(kind="service", what_runs="the venv", default_grace=DEFAULT_GRACE, service=UNIT, release=Venv(),
                  driver=Units(), door=DOOR)
