"""One SSH connection per host per task: facts, staged atomic installs with backups, commands, and
tunnels to the gateway's port. Everything that crosses the wire goes through here."""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import socket
from typing import Callable, Sequence

import paramiko
from fabric import Connection

from .errors import RemoteError
from .facts import HostFacts, facts_script, parse_facts
from .inventory import Host
from .plan import FileChange

CONNECT_TIMEOUT = 10
BACKUPS_KEPT = 5
# Paramiko logs every refused tunnel at ERROR; while the gateway starts, refusals are expected.
# Its records still reach a handler configured with --debug.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def connect(host: Host) -> Connection:
    """A Fabric connection that refuses unknown host keys (Fabric's own default accepts any)."""
    connect_kwargs: dict = {"banner_timeout": CONNECT_TIMEOUT, "auth_timeout": CONNECT_TIMEOUT}
    if host.ssh_key:
        connect_kwargs.update(key_filename=[host.ssh_key], look_for_keys=False, allow_agent=False)
    connection = Connection(host.address, user=host.ssh_user, port=host.ssh_port,
                            connect_timeout=CONNECT_TIMEOUT, connect_kwargs=connect_kwargs)
    client = connection.client
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if host.known_hosts:
        if os.path.exists(host.known_hosts):
            client.load_host_keys(host.known_hosts)
    else:
        client.load_system_host_keys()
    return connection


class Remote:
    """A host reached over one connection; opened on entry, closed on exit."""

    def __init__(self, host: Host, redact: Callable[[str], str] = lambda text: text) -> None:
        self.host = host
        self.redact = redact
        self.connection = connect(host)

    def __enter__(self) -> "Remote":
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.connection.close()

    def open(self) -> None:
        where = f"{self.host.name} ({self.host.ssh_user}@{self.host.address}:{self.host.ssh_port})"
        try:
            self.connection.open()
        except paramiko.BadHostKeyException:
            raise RemoteError(f"{where}: host key has CHANGED from the one in "
                              f"{self.host.known_hosts or '~/.ssh/known_hosts'}; refusing to connect") from None
        except paramiko.AuthenticationException:
            raise RemoteError(f"{where}: SSH authentication failed") from None
        except paramiko.SSHException as exc:
            if "known_hosts" in str(exc):
                raise RemoteError(f"{where}: host key is not in "
                                  f"{self.host.known_hosts or '~/.ssh/known_hosts'}; refusing to connect") from None
            raise RemoteError(f"{where}: SSH failed: {exc}") from None
        except socket.gaierror:
            raise RemoteError(f"{where}: cannot resolve {self.host.address}") from None
        except (TimeoutError, socket.timeout):
            raise RemoteError(f"{where}: unreachable (no answer in {CONNECT_TIMEOUT} s)") from None
        except OSError as exc:
            raise RemoteError(f"{where}: unreachable ({exc.strerror or exc})") from None

    def run(self, command: Sequence[str] | str, *, check: bool = True):
        """Runs argv (or a script) as root: directly, or through sudo where the host says so."""
        line = command if isinstance(command, str) else shlex.join(command)
        if self.host.sudo:
            result = self.connection.sudo(line, hide=True, warn=True, in_stream=False)
        else:
            result = self.connection.run(line, hide=True, warn=True, in_stream=False)
        if check and result.failed:
            what = line.split()[0] if not isinstance(command, str) else "script"
            detail = self.redact(result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or [""]
            raise RemoteError(f"{self.host.name}: {what} failed (exit {result.exited}): {detail[0]}")
        return result

    def gather_facts(self) -> HostFacts:
        return parse_facts(self.run(["sh", "-c", facts_script(self.host)]).stdout)

    def install(self, changes: Sequence[FileChange]) -> None:
        """Stages every file in a private directory over SFTP, then swaps them in with one command."""
        stage = f"/tmp/.litedeploy-{secrets.token_hex(8)}"
        sftp = self.connection.sftp()
        sftp.mkdir(stage, 0o700)
        for index, change in enumerate(changes):
            with sftp.open(f"{stage}/{index}", "w") as staged:
                staged.write(change.new.encode())
        self.run(["sh", "-c", install_script(self.host, changes, stage)])

    def tunnel(self, port: int, timeout: float) -> paramiko.Channel:
        """A stream to ADDRESS:PORT as seen from the host, so a firewalled port still answers."""
        transport = self.connection.client.get_transport()
        try:
            return transport.open_channel("direct-tcpip", (self.host.local_address, port),
                                          ("127.0.0.1", 0), timeout=timeout)
        except paramiko.ChannelException as exc:
            raise ConnectionRefusedError(f"{self.host.local_address}:{port}: {exc}") from None


def install_script(host: Host, changes: Sequence[FileChange], stage: str) -> str:
    """Backs up each target, installs the staged copy beside it with its mode, renames it in place."""
    q = shlex.quote
    lines = [
        "set -e", f"trap 'rm -rf {q(stage)}' EXIT", "umask 077",
        f"[ -d {q(host.config_dir)} ] || install -d -m 0755 -o root -g root {q(host.config_dir)}",
        f"[ -d {q(host.backup_dir)} ] || install -d -m 0700 -o root -g root {q(host.backup_dir)}",
        "stamp=$(date -u +%Y%m%dT%H%M%S.%NZ)",
    ]
    for index, change in enumerate(changes):
        target, backup = q(change.path), q(f"{host.backup_dir}/{change.name}")
        temp = q(f"{os.path.dirname(change.path)}/.{change.name}.litedeploy-new")
        owner = "-o root -g root"
        lines += [
            f"mkdir -p {q(os.path.dirname(change.path))}",
            f"mode={change.mode}; owner='{owner}'",
            f"if [ -f {target} ]; then cp -p {target} {backup}.$stamp;"
            + (f" mode=$(stat -c %a {target}); owner=\"-o $(stat -c %u {target}) -g $(stat -c %g {target})\";"
               if change.keep_owner else "")
            + " fi",
            f"install -m $mode $owner {q(f'{stage}/{index}')} {temp}",
            f"mv -f {temp} {target}",
            f"ls -1t {backup}.* 2>/dev/null | tail -n +{BACKUPS_KEPT + 1} | xargs -r rm -f --",
        ]
    return "\n".join(lines)
