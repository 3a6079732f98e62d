"""The `systemd` runtime, for a host without Docker: LiteLLM from a venv of pinned packages, run by
a unit as its own system user. What runs is the venv the unit's ExecStart names
(`/opt/litellm/litellm-1.106.2-ab12cd34`, one per set of packages)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from packaging.version import Version

from .. import instances
from ..advisories import release_version
from ..commands import files, line, script, unit
from ..commands.unit import UnitCommands, template_path, unit_name, unit_path
from ..errors import DeployError, RenderError
from ..facts import GatewayState, HostFacts
from ..host import Host
from ..plan import FileChange, Plan, Preparation, changed_files, switch_verb
from ..render import DesiredFiles
from ..settings import grace_warnings
from .base import Removal, Rendering, Runtime

# The venv's name says which LiteLLM it holds: litellm-VERSION-DIGEST (Host.venv_dir).
_VENV = re.compile(r"litellm-(?P<version>[^/]+)-[0-9a-f]{8}")
# vars.zero_downtime's proxy: Debian's haproxy package, where its unit runs it.
HAPROXY = "/usr/sbin/haproxy"


class Systemd(Runtime):
    kind = "service"
    what_runs = "the venv"
    release_file = "litellm.service"
    service_template = "litellm.service.j2"
    default_grace = "90s"  # DefaultTimeoutStopSec
    proxy_template = "litellm-proxy.service.j2"

    def settings_error(self, settings: Mapping[str, Any]) -> str | None:
        if re.search(r"[\s\"'\\]", settings["config_dir"]):
            return ("'config_dir' must be a path without spaces, quotes or backslashes on a systemd host (the "
                    f"unit's ExecStart names it), not {settings['config_dir']!r}")
        return None

    def claims(self, host: Host) -> Sequence[tuple[str, Any, Any]]:
        return (("service_name", host.service_name, None),)

    def service_file(self, host: Host) -> str:
        """The unit; with vars.zero_downtime the template unit its two instances run from."""
        return template_path(host) if instances.enabled(host) else unit_path(host)

    def runs_instances(self, host: Host, text: str) -> bool:
        """A template unit: its ExecStart listens on its instance's name (`--port %i`)."""
        return re.search(r"^ExecStart=.* --port %i\b", text, re.MULTILINE) is not None

    def managed_files(self, host: Host) -> dict[str, str]:
        return {**super().managed_files(host), "proxy_service_file": unit_path(instances.proxy(host))}

    # -- vars.zero_downtime -----------------------------------------------------------------------
    def instance(self, host: Host, color: str) -> Host:
        """An instance of the template unit, named for its port (`litellm@4001`): `--port %i`."""
        port = instances.ports(host)[instances.COLORS.index(color)]
        return replace(host, service_name=f"{host.service_name}@{port}", port=port, bind="127.0.0.1")

    def render_instances(self, host: Host, rendered: Rendering) -> tuple[str, str | None]:
        """The template unit (listening on loopback at the instance's port, a runtime folder of each
        instance's own) and the proxy's unit."""
        template = rendered(self.service_template, host=replace(host, bind="127.0.0.1"), port="%i",
                            instance_suffix="-%i")
        proxy = rendered(self.proxy_template, proxy=instances.proxy(host), proxy_config=instances.proxy_config_path(host))
        return template, proxy

    def proxy_admin_socket(self, host: Host) -> str:
        return f"/run/{instances.proxy(host).service_name}/admin.sock"  # the proxy unit's RuntimeDirectory

    def proxy_up(self, host: Host, facts: HostFacts) -> str:
        name = unit_name(instances.proxy(host))
        return script("set -e", "systemctl daemon-reload", line("systemctl", "enable", "--quiet", name),
                      f"systemctl is-active --quiet {line(name)} || {line('systemctl', 'start', name)}")

    def proxy_reload(self, host: Host) -> list[str]:
        return ["systemctl", "reload", unit_name(instances.proxy(host))]

    def start(self, host: Host) -> list[str]:
        return UnitCommands(host).start()

    def leftovers(self, host: Host, zero_downtime: bool) -> list[str]:
        if zero_downtime:
            return [unit_path(host)]  # the single gateway's unit, stopped and disabled
        return [instances.proxy_config_path(host), template_path(host), unit_path(instances.proxy(host))]

    def holder(self, host: Host) -> str:
        return f"service {host.service_name}"

    def env_access(self, host: Host) -> tuple[str, str]:
        return host.systemd.service_user, "0640"  # the unit's user reads it

    def check_service(self, text: str, host: Host) -> None:
        """A unit systemd would run: one ExecStart naming the venv, never a secret of its own."""
        where = f"templates/{self.service_template} (host {host.name})"
        starts = [line for line in text.splitlines() if line.startswith("ExecStart=")]
        if len(starts) != 1 or not starts[0].startswith(f"ExecStart={host.systemd.venv_dir}/bin/"):
            raise RenderError(f"{where}: must have one ExecStart running a program of {host.systemd.venv_dir}/bin")
        if instances.enabled(host) != self.runs_instances(host, text):
            raise RenderError(f"{where}: with vars.zero_downtime the unit is a template whose ExecStart listens on "
                              "--port %i (its instance's name), and only then")
        if not re.search(rf"^EnvironmentFile={re.escape(host.env_path)}$", text, re.MULTILINE):
            raise RenderError(f"{where}: must read its secrets from EnvironmentFile={host.env_path}")

    def questions(self, host: Host) -> list[str]:
        """The unit, venvs and user; vars.zero_downtime's units where it is on or its proxy is left."""
        asked = script(*[unit.state(self.instance(host, color), key=f"service_{color}") for color in instances.COLORS],
                       unit.state(instances.proxy(host), key="service_proxy"))
        if not instances.enabled(host):
            asked = f"if [ -f {line(instances.proxy_config_path(host))} ]; then\n{asked}\nfi"
        return [unit.runtime_facts(host), asked]

    def state(self, host: Host) -> str:
        return unit.state(host)

    def plan(self, host: Host, desired: DesiredFiles, facts: HostFacts) -> Plan:
        """The unit, config and env (the latter two root:USER 0640, as the unit's user reads them); a
        changed unit or a new venv means daemon-reload and restart (`up`), a changed config or env a
        restart, nothing else nothing."""
        for path in facts.not_files:
            raise DeployError(f"{host.name}:{path}: is not a regular file (a directory?); it must name a file")
        path = self.service_file(host)
        group, mode = self.env_access(host)
        wanted = [FileChange(path, facts.service_text, desired.service, "0644", validated=True),
                  FileChange(host.env_path, facts.env_text, desired.env, mode, secret=True, group=group),
                  FileChange(host.config_path, facts.config_text, desired.config, "0640", group=host.systemd.service_user)]
        if desired.proxy_service is not None:
            wanted.append(FileChange(unit_path(instances.proxy(host)), facts.proxy_service_text,
                                     desired.proxy_service, "0644"))
        changes = changed_files(wanted, facts)
        runs = self.served(host, desired.service)
        venv = None if runs in facts.venvs else runs
        if venv and venv != host.systemd.venv_dir:  # a release's unit whose venv a later change removed
            raise DeployError(f"{host.name}:{venv}: the venv this unit runs is gone; deploy its packages again")
        changed = {change.path for change in changes}
        restart: str | None
        if instances.enabled(host) or instances.live_color(facts.proxy_text):
            restart = switch_verb(host, changes, desired, facts) or ("switch" if venv else None)
        elif venv or path in changed or facts.state is None or not facts.state.running:
            restart = "up"
        else:
            restart = "restart" if changed else None
        prisma = runs if host.vars.get("database") and restart else None
        return Plan(changes, restart, tuple(grace_warnings(host.vars, self.default_grace)),
                    user=None if facts.service_user else host.systemd.service_user, venv=venv, prisma_venv=prisma,
                    proxy_program=HAPROXY if instances.enabled(host) and restart else None)

    def served(self, host: Host, text: str | None) -> str | None:
        found = re.search(r"^ExecStart=(\S+)/bin/litellm\b", text or "", re.MULTILINE)
        return found.group(1) if found else None

    def served_port(self, host: Host, text: str | None) -> int | None:
        found = re.search(r"^ExecStart=.* --port (\d+)", text or "", re.MULTILINE)
        return int(found.group(1)) if found else None

    def running_version(self, runs: str | None) -> Version | None:
        """From the venv's name, which litedeploy gives it (`/opt/litellm/litellm-1.106.2-ab12cd34`)."""
        match = _VENV.search(runs or "")
        return release_version(match["version"]) if match else None

    def preparation(self, host: Host, plan: Plan) -> Preparation | None:
        """The service user, the venv (from the wheel folder hosts.yaml names, uploaded, or the host's
        package index), and the Prisma client LiteLLM needs with a database; a venv is only used once
        a unit names it."""
        if not (plan.user or plan.venv or plan.prisma_venv or plan.proxy_program):
            return None
        source = f"the wheels in {host.systemd.wheels}" if host.systemd.wheels else "the host's package index"
        doing = f"installing {' '.join(host.systemd.packages)} into {plan.venv}" if plan.venv else "preparing"

        def script_for(stage: str | None) -> str:
            return script("set -e", unit.program_check(plan.proxy_program, "haproxy") if plan.proxy_program else None,
                          unit.ensure_user(host) if plan.user else None,
                          unit.install_venv(host, stage) if plan.venv else None,
                          unit.prisma_client_check(plan.prisma_venv) if plan.prisma_venv else None)
        wheels = tuple(sorted(Path(host.systemd.wheels).glob("*.whl"))) if plan.venv and host.systemd.wheels else ()
        return Preparation(f"{doing} from {source}" if plan.venv else "", doing, script_for, wheels,
                           refused=unit.REFUSED)

    def describe(self, runs: str) -> str:
        return "the venv"

    def same_release(self, deployed: str, wanted: str, upgrade: bool) -> bool:
        return deployed == wanted

    def wanted(self, host: Host) -> str:
        return host.systemd.venv_dir

    def pinned(self, host: Host, facts: HostFacts, upgrade: bool) -> str:
        return host.systemd.venv_dir

    def check_local(self, host: Host, upgrade: bool) -> None:
        """No image to upgrade; a wheel folder hosts.yaml names must hold wheels."""
        if upgrade:
            raise DeployError(f"{host.name}: runs LiteLLM as a systemd service (runtime: systemd): there is no "
                              "image to upgrade; pin the new version in its packages in hosts.yaml and deploy")
        if host.systemd.wheels and not any(Path(host.systemd.wheels).glob("*.whl")):
            raise DeployError(f"hosts.yaml (host {host.name}): wheels {host.systemd.wheels} holds no .whl files "
                              f"(make it with: pip download -d {host.systemd.wheels} {' '.join(host.systemd.packages)})")

    def running_now(self, host: Host, facts: HostFacts) -> str:
        return self.served(host, facts.service_text) or host.systemd.venv_dir

    def ports(self, host: Host, state: GatewayState | None) -> tuple[str, ...]:
        return (f"{host.bind}:{host.port} (the service listens on the host)",)

    def runs_line(self, host: Host, runs: str, image_id: str, digests: Sequence[str]) -> str:
        return f"  venv    {runs}  (systemd unit {self.service_file(host)})"

    def commands(self, host: Host, facts: HostFacts) -> UnitCommands:
        return UnitCommands(host)

    def logs(self, host: Host, tail: int, follow: bool = False, since: str | None = None) -> list[str]:
        return unit.logs(host, tail, follow, since)

    def execute(self, host: Host, command: list[str]) -> list[str]:
        return unit.execute(host, command)

    def environment(self, host: Host) -> str:
        return unit.environment(host)

    def stop(self, host: Host) -> str:
        return UnitCommands(host).reload_and_stop()

    def remove(self, host: Host) -> str:
        return UnitCommands(host).remove()

    def prune(self, host: Host, runs: str, releases_dir: str) -> str:
        return unit.prune_venvs(host, releases_dir)

    def removal(self, host: Host, facts: HostFacts, deploy_id: str) -> Removal:
        """The unit stopped, out of boot, its file among the backups; venvs stay too."""
        if facts.instances:  # vars.zero_downtime's proxy and instances, their units and the proxy's configuration
            units = [instances.proxy(host), *(self.instance(host, color) for color in instances.COLORS)]
            paths = self.leftovers(host, zero_downtime=False)
            return Removal(changed=tuple(paths), restart="removed",
                           before=tuple(UnitCommands(gateway).remove() for gateway in units),
                           after=tuple(files.take_away(host, path, deploy_id) for path in paths),
                           done=(f"stopped and disabled {', '.join(unit_name(gateway) for gateway in units)}",
                                 f"moved {', '.join(paths)} to {host.backup_dir}"))
        if facts.service_text is None and facts.state is None:
            return Removal()
        path = unit_path(host)
        kept = facts.service_text is not None
        # The file goes first: systemd still knows a loaded unit, and the removal's daemon-reload forgets it.
        return Removal(changed=(path,) if kept else (), restart="removed",
                       before=(script(files.take_away(host, path, deploy_id), UnitCommands(host).remove()),),
                       done=(f"stopped and disabled {unit.unit_name(host)}",
                             *([f"moved {path} to {host.backup_dir}"] if kept else [])))


RUNTIME = Systemd()
