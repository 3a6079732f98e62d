"""One SSH connection per host per task: facts, staged atomic installs with backups, commands, and
streams to the gateway's port (tunnels, or relays where sshd forbids tunnels). Everything that
crosses the wire goes through here."""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import socket
from typing import Callable, Sequence

import paramiko
from fabric import Config, Connection
from invoke.exceptions import AuthFailure

from .compose import ComposeCommands
from .errors import ComposeFileError, RemoteError
from .facts import (ContainerState, HostFacts, container_script, facts_script, parse_facts, port_holder_script,
                    pull_script)
from .hostcommands import (COMPOSE_REJECTED, OUTPUT_STARTS, after_output_start, break_stale_lock_script,
                           install_script, lock_script, marked, relay_command, releases_script, temp_path,
                           unlock_script)
from .inventory import Host
from .plan import FileChange
from .releases import Release, parse_releases

CONNECT_TIMEOUT = 10
# Paramiko logs every refused tunnel at ERROR; while the gateway starts, refusals are expected.
# Its records still reach a handler configured with --debug.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def connect(host: Host, sudo_password: str | None = None) -> Connection:
    """A Fabric connection that checks host keys (Fabric's own default accepts any)."""
    connect_kwargs: dict = {"banner_timeout": CONNECT_TIMEOUT, "auth_timeout": CONNECT_TIMEOUT}
    if host.ssh_key:
        connect_kwargs.update(key_filename=[host.ssh_key], look_for_keys=False, allow_agent=False)
    config = Config(overrides={"sudo": {"password": sudo_password}}) if sudo_password else None
    connection = Connection(host.address, user=host.ssh_user, port=host.ssh_port, config=config,
                            connect_timeout=CONNECT_TIMEOUT, connect_kwargs=connect_kwargs)
    client = connection.client
    known_hosts = host.known_hosts or os.path.expanduser("~/.ssh/known_hosts")
    if host.host_key == "accept-new":
        os.makedirs(os.path.dirname(known_hosts), mode=0o700, exist_ok=True)
        open(known_hosts, "a").close()
        client.set_missing_host_key_policy(_AcceptNew(known_hosts))
    else:
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if os.path.exists(known_hosts):
        client.load_host_keys(known_hosts)
    if not host.known_hosts:
        client.load_system_host_keys()
    return connection


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Records an unknown key by appending one line, leaving the rest of known_hosts as it was
    (paramiko's AutoAddPolicy would rewrite the whole file)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        with open(self.path, "a") as known:
            known.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


class Remote:
    """A host reached over one connection; opened on entry, closed on exit."""

    def __init__(self, host: Host, redact: Callable[[str], str] = lambda text: text,
                 sudo_password: str | None = None) -> None:
        self.host = host
        self.redact = redact
        self.connection = connect(host, sudo_password)
        # Until sshd refuses a direct-tcpip channel; then verification relays over exec instead.
        self.tunnels_allowed = True

    def __enter__(self) -> "Remote":
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.connection.close()

    def open(self) -> None:
        where = f"{self.host.name} ({self.host.ssh_user}@{self.host.address}:{self.host.ssh_port})"
        if self.host.ssh_key and not os.path.isfile(self.host.ssh_key):
            raise RemoteError(f"{self.host.name}: ssh_key {self.host.ssh_key} does not exist (hosts.yaml)")
        try:
            self.connection.open()
        except paramiko.BadHostKeyException:
            raise RemoteError(f"{where}: host key has CHANGED from the one in "
                              f"{self.host.known_hosts or '~/.ssh/known_hosts'}; refusing to connect") from None
        except paramiko.AuthenticationException:
            raise RemoteError(f"{where}: SSH authentication failed") from None
        except paramiko.SSHException as exc:
            transport = self.connection.client.get_transport()
            if transport is None or not transport.remote_version:
                raise RemoteError(f"{where}: no SSH greeting within {CONNECT_TIMEOUT} s") from None
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

    def _execute(self, line: str, **options):
        """Runs a command line as root (directly, or through sudo where the host says so) and turns a
        refused sudo password or a lost connection into a RemoteError. What the login shell prints
        before the command (a motd in root's .bashrc) is dropped, from streams and results alike."""
        runner = self.connection.sudo if self.host.sudo else self.connection.run
        for stream in ("out_stream", "err_stream"):
            if stream in options:
                options[stream] = FromOutputStart(options[stream])
        try:
            result = runner(marked(line), warn=True, in_stream=False, **options)
        except AuthFailure:
            raise RemoteError(f"{self.host.name}: sudo refused the password for {self.host.ssh_user}") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise RemoteError(f"{self.host.name}: connection lost ({exc or type(exc).__name__})") from None
        if result.failed and not self.connection.is_connected:
            raise RemoteError(f"{self.host.name}: connection lost while a command ran")
        result.stdout, result.stderr = after_output_start(result.stdout), after_output_start(result.stderr)
        return result

    def run(self, command: Sequence[str] | str, *, check: bool = True):
        """Runs argv (or a script) and returns its output; with check, a failure is a RemoteError."""
        line = command if isinstance(command, str) else shlex.join(command)
        result = self._execute(line, hide=True)
        if check and result.failed:
            raise RemoteError(f"{self.host.name}: {_program(command)} failed (exit {result.exited}): "
                              f"{self._last_line(result)}")
        return result

    def _last_line(self, result) -> str:
        lines = self.redact(result.stderr.strip() or result.stdout.strip()).splitlines()
        return lines[-1] if lines else ""

    def gather_facts(self, lock_owner: dict | None = None, break_lock: bool = False) -> HostFacts:
        """One round trip; with an owner it also tries to take the deploy lock in the same script,
        first removing a stale one when told to."""
        script = facts_script(self.host)
        if lock_owner is not None:
            script = f"{lock_script(self.host, lock_owner)}\n{script}"
        if break_lock:
            script = f"{break_stale_lock_script(self.host)}\n{script}"
        output = self.run(["sh", "-c", script]).stdout
        try:
            return parse_facts(output, self.host)
        except Exception:
            if "lock acquired" in output.splitlines():
                self.run(["sh", "-c", unlock_script(self.host)], check=False)  # never leave a lock behind
            raise

    def stream(self, command: Sequence[str], out) -> int:
        """Runs argv with its stdout and stderr written to `out` as they arrive; returns the exit code."""
        return self._execute(shlex.join(command), out_stream=out, err_stream=out).exited

    def container_state(self) -> ContainerState | None:
        return parse_facts(self.run(["sh", "-c", container_script(self.host)]).stdout).container

    def container_and_port(self, port: int) -> HostFacts:
        """The container's state and what holds the port, in one round trip."""
        script = f"{container_script(self.host)}\n{port_holder_script(port)}"
        return parse_facts(self.run(["sh", "-c", script]).stdout)

    def run_and_inspect(self, command: Sequence[str]) -> ContainerState | None:
        """Runs a compose verb and reads the container's state right after, in one round trip: the
        baseline against which a crash loop is recognised."""
        script = f"set -e\n{shlex.join(command)} >&2\n{container_script(self.host)} || true"
        return parse_facts(self.run(["sh", "-c", script]).stdout).container

    def pull_image(self, image: str) -> tuple[str, ...]:
        """Pulls while the running container keeps serving; returns the image's registry digests."""
        result = self.run(["sh", "-c", pull_script(image)], check=False)
        if result.failed:
            raise RemoteError(f"{self.host.name}: cannot pull {image}: {self._last_line(result)}")
        return parse_facts(result.stdout).wanted_digests or ()

    def releases(self) -> list[Release]:
        return parse_releases(self.run(["sh", "-c", releases_script(self.host)]).stdout)

    def install(self, changes: Sequence[FileChange], deploy_id: str, commands: ComposeCommands) -> None:
        """Stages every file in a private directory over SFTP (secrets never on a command line), then
        swaps them in with one script."""
        stage = f"/tmp/.litedeploy-{secrets.token_hex(8)}"
        sftp = self.connection.sftp()
        try:
            sftp.mkdir(stage, 0o700)
            for index, change in enumerate(changes):
                with sftp.open(f"{stage}/{index}", "w") as staged:
                    staged.write(change.new.encode())
        except OSError as exc:
            self.run(["rm", "-rf", stage], check=False)
            raise RemoteError(f"{self.host.name}: cannot stage files in /tmp: {exc}") from None
        result = self.run(["sh", "-c", install_script(self.host, changes, stage, deploy_id, commands)],
                          check=False)
        if result.exited == COMPOSE_REJECTED:
            # Compose v2 names the file it validated: the candidate beside the real one.
            reason = result.stderr.strip().splitlines()[-1]
            for change in changes:
                reason = reason.replace(temp_path(change), change.path)
            raise ComposeFileError(f"{self.host.name}:{self.host.compose_file}: {self.redact(reason)}")
        if result.failed:
            raise RemoteError(f"{self.host.name}: writing the files failed, the previous ones are in place: "
                              f"{self._last_line(result)}")

    def stream_to(self, port: int, timeout: float) -> "paramiko.Channel | RelayStream":
        """A stream to ADDRESS:PORT as seen from the host, so a firewalled port still answers: a
        direct-tcpip tunnel, or where sshd forbids those (`AllowTcpForwarding no`, refused at once)
        a relay through bash on the host, over an exec channel of the same connection."""
        if self.tunnels_allowed:
            transport = self.connection.client.get_transport()
            try:
                return transport.open_channel("direct-tcpip", (self.host.local_address, port),
                                              ("127.0.0.1", 0), timeout=timeout)
            except paramiko.ChannelException as exc:
                if exc.code != paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
                    raise ConnectionRefusedError(f"{self.host.local_address}:{port}: {exc}") from None
                self.tunnels_allowed = False
        return self._relay(port, timeout)

    def _relay(self, port: int, timeout: float) -> "RelayStream":
        channel = self.connection.client.get_transport().open_session(timeout=timeout)
        channel.settimeout(timeout)
        channel.exec_command(relay_command(self.host.local_address, port))
        reader = channel.makefile("rb")
        # The login shell may print text of its own (a motd in .bashrc) before the relay's word.
        for line in reader:
            if line.rstrip(b"\r\n") == OUTPUT_STARTS.encode():
                return RelayStream(channel, reader)
        status = channel.recv_exit_status()
        problem = channel.makefile_stderr("rb").read().decode(errors="replace").strip()
        channel.close()
        if status == 127:
            raise RemoteError(f"{self.host.name}: sshd refuses TCP forwarding and the host has no bash to "
                              f"reach port {port} through: {problem.splitlines()[-1] if problem else 'not found'}")
        raise ConnectionRefusedError(f"{self.host.local_address}:{port}: {problem or 'refused'}")


def _program(command: Sequence[str] | str) -> str:
    """What to call a failed command: its words before the first option (`docker compose`,
    `docker-compose`, `docker logs`), or "script"."""
    if isinstance(command, str):
        return "script"
    words = []
    for word in command[:2]:
        if word.startswith("-"):
            break
        words.append(word)
    return " ".join(words)


class FromOutputStart:
    """Passes a stream on from the output-start mark: anything before it is the login shell's."""

    def __init__(self, out) -> None:
        self.out = out
        self.started = False
        self.held = ""

    def write(self, text: str) -> None:
        if self.started:
            self.out.write(text)
            return
        self.held += text
        if f"{OUTPUT_STARTS}\n" in self.held:
            self.started = True
            rest = after_output_start(self.held)
            self.held = ""
            if rest:
                self.out.write(rest)

    def flush(self) -> None:
        self.out.flush()


class RelayStream:
    """One HTTP exchange relayed by bash on the host: the request is sent whole, then the host's
    side of stdin is closed (the relay keeps the TCP connection open until the answer is read)."""

    def __init__(self, channel: paramiko.Channel, reader) -> None:
        self.channel = channel
        self.reader = reader

    def settimeout(self, timeout: float) -> None:
        self.channel.settimeout(timeout)

    def sendall(self, data: bytes) -> None:
        self.channel.sendall(data)
        self.channel.shutdown_write()

    def makefile(self, *_mode):
        return self.reader

    def close(self) -> None:
        self.channel.close()
