"""Commands for the systemd runtime: the unit's state and verbs, its journal, a command in its
environment, the service user, and the venvs LiteLLM runs from (installed from the host's package
index or a staged wheel folder, and pruned to those kept releases still run)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import ClassVar

from ..errors import DeployError
from ..facts import Fact, GatewayFacts, GatewayState, SystemdFacts, decode, flag
from ..host import Host
from . import Raw, line, script

SHOW = ("ActiveState", "SubState", "NRestarts", "MainPID", "ExecMainStartTimestamp", "ExecMainStatus", "LoadState")
# Written last into a venv: a venv without it is a broken install, made again.
COMPLETE = ".litedeploy-complete"


def unit_name(host: Host) -> str:
    return f"{host.service_name}.service"


def unit_path(host: Host) -> str:
    return f"/etc/systemd/system/{unit_name(host)}"


def template_path(host: Host) -> str:
    """vars.zero_downtime's template unit, whose instances (`NAME@PORT`) are blue and green."""
    return f"/etc/systemd/system/{host.service_name}@.service"


def state(host: Host, key: str = "service") -> str:
    """Prints a `service` fact line (the unit's properties, base64), as `container.state` does for
    Docker (KEY: `service_blue`... for vars.zero_downtime's units)."""
    show = line("systemctl", "show", "--timestamp=utc", "-p", ",".join(SHOW), unit_name(host))
    return f"s=$({show} 2>/dev/null) && printf '{key} %s\\n' \"$(printf '%s' \"$s\" | base64 -w0)\""


def parse_state(value: str, paths: Mapping[str, str] = {}) -> dict[str, GatewayState | None]:
    """The `service` line: `systemctl show` properties, base64; no state where systemd has no such unit file."""
    show = dict(pair.split("=", 1) for pair in decode(value).splitlines() if "=" in pair)
    if show.get("LoadState") == "not-found":
        return {"state": None}
    active = show.get("ActiveState", "")
    started = show.get("ExecMainStartTimestamp", "")  # "Tue 2026-11-24 02:30:00 UTC" with --timestamp=utc
    return {"state": GatewayState(
        status=show.get("SubState", "") if active in ("active", "activating", "reloading") else active,
        running=active == "active" and show.get("SubState") == "running",
        started_at=datetime.strptime(started, "%a %Y-%m-%d %H:%M:%S UTC").replace(tzinfo=timezone.utc).isoformat()
        if started.endswith(" UTC") else "",
        restart_count=int(show.get("NRestarts") or 0),
        exit_code=int(show.get("ExecMainStatus") or 0),
        health=None, image="", image_id="", compose_project=None, kind="service")}


def runtime_facts(host: Host) -> str:
    """Prints the unit's state, the venvs installed completely under venv_root, and whether the
    service user exists."""
    return script(
        state(host),
        f"printf 'venvs'; for d in {line(host.systemd.venv_root)}/litellm-*; do [ -f \"$d/{COMPLETE}\" ] && printf ' %s' \"$d\";"
        " done; echo",
        f"id -u {line(host.systemd.service_user)} >/dev/null 2>&1 && echo 'service_user 1'",
        "true",
    )


def parse_instance(role: str) -> Fact:
    """The state of one of vars.zero_downtime's units (ROLE: blue, green, proxy), where systemd knows it."""
    def parse(value: str, paths: Mapping[str, str]) -> dict:
        found = parse_state(value)["state"]
        return {"instances": {role: found}} if found else {}
    return Fact(f"service_{role}", GatewayFacts, parse)


FACTS = (
    Fact("service", GatewayFacts, parse_state),
    *(parse_instance(role) for role in ("blue", "green", "proxy")),
    Fact("venvs", SystemdFacts, lambda value, paths: {"venvs": tuple(value.split())}),
    flag("service_user", SystemdFacts, "service_user_exists"),
)


@dataclass(frozen=True)
class UnitCommands:
    """The compose verbs' counterparts for a unit, so `compose.*` tasks and the deploy drive either runtime."""

    validated: ClassVar[str] = "unit"
    host: Host

    def _systemctl(self, *verbs: str) -> list[str]:
        return ["systemctl", *verbs, unit_name(self.host)]

    def up(self) -> str:
        """Applies a changed unit: reload systemd's view of it, enable it for boot, (re)start it."""
        return script("set -e", "systemctl daemon-reload", line(*self._systemctl("enable", "--quiet")),
                      line(*self._systemctl("restart")))

    def restart(self) -> list[str]:
        return self._systemctl("restart")

    def bringing_up(self, verb: str) -> list[str] | str:
        """The command for a plan's restart verb: "restart" (config and env only) or "up" (a new unit or venv)."""
        return self.restart() if verb == "restart" else self.up()

    def stop(self) -> str:
        """Stops the unit as its file now says (a rollback may have just put back the previous one)."""
        return script("systemctl daemon-reload", line(*self._systemctl("stop")))

    def start(self) -> list[str]:
        return self._systemctl("start")

    def restored(self) -> str:
        """After files went back: systemd forgets the unit it loaded from the rejected ones, so an
        instance that restarts later (a crash, a reboot) runs what the file says again."""
        return "systemctl daemon-reload"

    def ps(self) -> list[str]:
        return ["systemctl", "status", "--no-pager", "--lines=0", unit_name(self.host)]

    def accepts(self, candidate: str, log: str) -> str:
        """The condition `systemd accepts the candidate unit`: `systemd-analyze verify` under the
        unit's own name, failing on a command that is not there and on any line it would ignore (a
        mistyped limit is silently dropped by systemd otherwise); LOG keeps the lines about this unit,
        named by its real path. Accepted where the host has no systemd-analyze."""
        name, real = unit_name(self.host), unit_path(self.host)
        return (f"( command -v systemd-analyze >/dev/null || exit 0; d=$(mktemp -d) && cp {line(candidate)} \"$d/{name}\""
                f" && systemd-analyze verify \"$d/{name}\" > \"$d/log\" 2>&1; rc=$?;"
                f" sed \"s|$d/{name}|{real}|g\" \"$d/log\" | grep -F -- {line(name)} > {line(log)}; rm -rf \"$d\";"
                f" [ $rc = 0 ] && ! grep -q {line('^' + real + ':')} {line(log)} )")

    def pull(self) -> list[str]:
        raise DeployError(f"{self.host.name}: runs LiteLLM as a systemd service (runtime: systemd): there is no "
                          "image to pull; deploy installs the packages hosts.yaml pins")

    def remove(self) -> str:
        """Stops the unit and takes it out of boot whether or not its file is still there (a rollback
        may have removed it already), then forgets it."""
        name = unit_name(self.host)
        return script(line("systemctl", "stop", name), line("rm", "-f", f"/etc/systemd/system/multi-user.target.wants/{name}"),
                      "systemctl daemon-reload", line("systemctl", "reset-failed", name) + " 2>/dev/null", "true")


def logs(host: Host, tail: int, follow: bool = False, since: str | None = None) -> list[str]:
    words = ["journalctl", "--unit", unit_name(host), "--lines", str(tail), "--no-pager", "--output", "cat"]
    if follow:
        words.append("--follow")
    if since:
        words += ["--since", journal_time(since)]
    return words


def journal_time(since: str) -> str:
    """`docker logs --since` in journalctl's words: a duration (10m, 1h30m) counts back from now, a
    time without zone is this machine's local time (as for docker), a number is Unix time."""
    if re.fullmatch(r"\d+(\.\d+)?", since):
        return f"@{int(float(since))}"
    if re.fullmatch(r"[\d.]+[a-zµ]+.*", since):
        return f"-{since}"
    return f"@{int(datetime.fromisoformat(since.replace('Z', '+00:00')).timestamp())}"


def environment(host: Host) -> str:
    """The environment the unit's main process runs with (what `docker exec env` shows for a container)."""
    pid = line("systemctl", "show", "-p", "MainPID", "--value", unit_name(host))
    return f"p=$({pid}) && [ \"$p\" != 0 ] && tr '\\0' '\\n' < /proc/$p/environ"


def execute(host: Host, command: list[str]) -> list[str]:
    """A command as the service user, with the unit's env file and the venv first on PATH."""
    return ["systemd-run", "--quiet", "--pipe", "--wait", "--collect", f"--uid={host.systemd.service_user}",
            f"--property=EnvironmentFile={host.env_path}",
            f"--setenv=PATH={host.systemd.venv_dir}/bin:/usr/local/bin:/usr/bin:/bin",
            # systemd-run looks the program up on its own PATH; the shell finds it on the venv's.
            "/bin/sh", "-c", 'exec "$@"', "sh", *command]


def ensure_user(host: Host) -> str:
    """A system user and group without a login, as the hx role's litellm user."""
    user = line(host.systemd.service_user)
    return (f"id -u {user} >/dev/null 2>&1 || useradd --system --user-group --home-dir /nonexistent "
            f"--no-create-home --shell /usr/sbin/nologin {user}")


def install_venv(host: Host, wheels: str | None) -> str:
    """A venv with the pinned packages, from the staged wheel folder (no index) or the host's index;
    marked complete only when pip succeeded, so a half-made venv is made again next time."""
    source = ["--no-index", "--find-links", wheels] if wheels else []
    return script(
        "set -e",
        line("rm", "-rf", host.systemd.venv_dir),
        f"trap {line(line('rm', '-rf', host.systemd.venv_dir))} EXIT",
        line("install", "-d", "-m", "0755", host.systemd.venv_root),
        line(host.systemd.python, "-m", "venv", host.systemd.venv_dir),
        line(f"{host.systemd.venv_dir}/bin/pip", "install", "--quiet", "--disable-pip-version-check", "--no-cache-dir",
             *source, *host.systemd.packages, Raw(">&2")),
        line("touch", posixpath.join(host.systemd.venv_dir, COMPLETE)),
        "trap - EXIT",
    )


def program_check(program: str, package: str) -> str:
    """Fails with the reason where PROGRAM, which Debian's PACKAGE installs, is missing."""
    reason = f"{program} is not installed; install Debian's {package} package (apt-get install {package}) and deploy again"
    return f"[ -x {line(program)} ] || {{ {line('echo', reason)} >&2; exit {REFUSED}; }}"


REFUSED = 79  # (no exit code pip or a shell uses) the exit code of a check that refuses (program_check, prisma_client_check)


def prisma_client_check(venv: str) -> str:
    """Fails with the reason when VENV has no generated Prisma client: with a database LiteLLM
    imports it at start and, without it, exits ("The Client hasn't been generated yet"), so the unit
    would crash-loop. Generating it downloads Prisma's engines, which a host without egress cannot."""
    python, schema = f"{venv}/bin/python", f"{venv}/lib/python3*/site-packages/litellm/proxy/schema.prisma"
    reason = (f"{venv} has no generated Prisma client, which LiteLLM needs with vars.database (the unit would "
              f"crash-loop); generate it on the host ({venv}/bin/prisma generate --schema {schema}) or install "
              "from wheels of a machine that did, then deploy again")
    return (f"{line(python, '-c', 'from prisma import Prisma')} >/dev/null 2>&1 || "
            f"{{ {line('echo', reason)} >&2; exit {REFUSED}; }}")


def prune_venvs(host: Host, releases_dir: str) -> str:
    """Removes venvs under venv_root that neither the unit (or vars.zero_downtime's template unit)
    nor a kept release's unit runs."""
    root = line(host.systemd.venv_root)
    return script(
        f"keep=\" $(cat {line(unit_path(host))} {line(template_path(host))} {line(releases_dir)}/*/litellm.service"
        " 2>/dev/null"
        " | sed -n 's|^ExecStart=\\(.*\\)/bin/litellm.*|\\1|p' | sort -u | tr '\\n' ' ') \"",
        f"for d in {root}/litellm-*; do [ -d \"$d\" ] || continue;"
        " case \"$keep\" in *\" $d \"*) ;; *) rm -rf -- \"$d\";; esac; done",
    )
