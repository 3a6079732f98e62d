"""The executor: one SSH connection per host per task, and on it one shell that runs every command
of the task, uploads, and streams to a port (tunnels, or relays through the shell where sshd forbids
tunnels). It runs what `commands` builds and knows nothing of LiteLLM; everything that crosses the
wire goes through here."""

from __future__ import annotations

import codecs
import io
import logging
import os
import re
import secrets
import select
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paramiko
from fabric import Connection

from .commands import argv, line
from .commands.transfer import INPUT_READY, pipe, receive, relay
from .errors import RemoteError
from .host import Host
from .secrets import Redactor

NOTHING_SECRET = Redactor(())  # a connection made before any secret is known masks nothing

CONNECT_TIMEOUT = 10
# Bytes handed to paramiko at once when feeding a command's stdin.
SEND_SLICE = 1 << 20
# Paramiko logs every refused tunnel at ERROR; while the gateway starts, refusals are expected.
# Its records still reach a handler configured with --debug.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def connect(host: Host) -> Connection:
    """A Fabric connection that checks host keys (Fabric's own default accepts any)."""
    connect_kwargs: dict = {"banner_timeout": CONNECT_TIMEOUT, "auth_timeout": CONNECT_TIMEOUT}
    if host.ssh_key:
        connect_kwargs.update(key_filename=[host.ssh_key], look_for_keys=False, allow_agent=False)
    connection = Connection(host.address, user=host.ssh_user, port=host.ssh_port,
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
        load_known_hosts(client.get_host_keys(), known_hosts, host)
    if not host.known_hosts:
        client.load_system_host_keys()
    return connection


def load_known_hosts(keys: paramiko.HostKeys, path: str, host: Host) -> None:
    """OpenSSH's known_hosts into KEYS. paramiko cannot read its marker lines (@cert-authority,
    @revoked: a traceback) nor verify host certificates, so those lines are read here: a revoked key
    is left out, and a host an authority vouches for, with no key of its own in the file, is refused
    with how to pin its key (never accepted as new). Raises RemoteError naming the file and line of
    a line it cannot read."""
    names = {host.address if host.ssh_port == 22 else f"[{host.address}]:{host.ssh_port}"}
    with open(path, encoding="utf-8", errors="replace") as lines:
        numbered = [(number, text, text.split()) for number, text in enumerate(lines, 1)]
    marked = [fields for _, _, fields in numbered if fields and fields[0].startswith("@") and len(fields) >= 4]
    revoked = {(fields[2], fields[3]) for fields in marked if fields[0] == "@revoked"}
    vouched = any(_matches(name, fields[1]) for fields in marked if fields[0] == "@cert-authority" for name in names)
    for number, text, fields in numbered:
        if not fields or fields[0].startswith(("#", "@")):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(text, number)
        except (paramiko.hostkeys.InvalidHostKey, paramiko.SSHException, ValueError):
            raise RemoteError(f"{host.name}: {path}:{number} is not a known_hosts line paramiko can read") from None
        if entry and (entry.key.get_name(), entry.key.get_base64()) not in revoked:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)
    if vouched and not any(keys.lookup(name) for name in names):
        where = f"-p {host.ssh_port} {host.address}" if host.ssh_port != 22 else host.address
        raise RemoteError(f"{host.name}: {path} trusts an SSH certificate authority (@cert-authority) for "
                          f"{host.address}, which litedeploy cannot verify; pin the host's own key: "
                          f"ssh-keyscan {where}, check its fingerprint, and add that line to {path}")


def _matches(name: str, patterns: str) -> bool:
    """OpenSSH's host patterns (ssh_config PATTERNS): comma-separated, `*` and `?` wildcards (no
    character classes: `[host]:port` is literal), a `!pattern` that matches excludes the name."""
    def matching(pattern: str) -> bool:
        return re.fullmatch(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), name) is not None
    listed = patterns.split(",")
    return not any(matching(p[1:]) for p in listed if p.startswith("!")) and \
        any(matching(p) for p in listed if not p.startswith("!"))


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Records an unknown key by appending one line, leaving the rest of known_hosts as it was
    (paramiko's AutoAddPolicy would rewrite the whole file)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        with open(self.path, "a") as known:
            known.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    exited: int

    @property
    def failed(self) -> bool:
        return self.exited != 0


class Remote:
    """A host reached over one connection; opened on entry, closed on exit. Every command of the
    task runs in one shell on the host (one SSH session), started with the first command."""

    def __init__(self, host: Host, redact: Redactor = NOTHING_SECRET,
                 sudo_password: str | None = None) -> None:
        self.host = host
        self.redact = redact
        self.connection = connect(host)
        self.sudo_password = sudo_password
        self.shell: Shell | None = None
        # Until sshd refuses a direct-tcpip channel; then requests are relayed through the shell.
        self.tunnels_allowed = True

    def __enter__(self) -> Remote:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.shell:
            self.shell.close()
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
        except TimeoutError:
            raise RemoteError(f"{where}: unreachable (no answer in {CONNECT_TIMEOUT} s)") from None
        except OSError as exc:
            raise RemoteError(f"{where}: unreachable ({exc.strerror or exc})") from None

    def _shell(self) -> Shell:
        """The task's shell, started on first use and again after a failure ended it (over a new
        connection when the old one was lost, so a failed deploy still writes its audit line)."""
        if self.shell is None or self.shell.closed:
            transport = self.connection.client.get_transport()
            if transport is None or not transport.is_active():
                self.connection.close()
                self.open()
                transport = self.connection.client.get_transport()
            self.shell = Shell(self.host, transport, self.sudo_password)
        return self.shell

    def run(self, command: Sequence[str] | str, *, check: bool = True) -> Result:
        """Runs argv (or a script) in the task's shell (as root where the host says sudo) and returns its
        output; with check, a failure is a RemoteError."""
        out, err, code = self._shell().run(_line(command))
        result = Result(out.decode(errors="replace"), err.decode(errors="replace"), code)
        if check and result.failed:
            raise RemoteError(f"{self.host.name}: {_program(command)} failed (exit {result.exited}): "
                              f"{self.last_line(result)}")
        return result

    def last_line(self, result: Result) -> str:
        lines = self.redact(result.stderr.strip() or result.stdout.strip()).splitlines()
        return lines[-1] if lines else ""

    def stream(self, command: Sequence[str], out) -> int:
        """Runs argv with its stdout and stderr written to `out` (text) as they arrive; returns the exit code."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return self._shell().run(_line(command), sink=lambda data: out.write(decoder.decode(data)))[2]

    def feed(self, command: Sequence[str], data: bytes, timeout: float | None = None) -> tuple[bytes | None, str, int]:
        """Runs argv that says INPUT_READY and then reads DATA from its stdin; returns what it printed
        after that word (None when it never got that far), its stderr and its exit code."""
        out, err, code = self._shell().run(argv(command), request=data, timeout=timeout)
        ready = f"{INPUT_READY}\n".encode()
        return (out[len(ready):] if out.startswith(ready) else None), err.decode(errors="replace").strip(), code

    def upload(self, texts: Sequence[str | bytes], names: list[str] | None = None) -> str:
        """Stages each text (or file's bytes) as a file (0, 1, ... or NAMES) in a private folder,
        written from the shell's stdin: a secret never travels on a command line, and hosts without
        sshd's sftp subsystem work too. Returns the folder."""
        stage = f"/tmp/.litedeploy-{secrets.token_hex(8)}"
        contents = [text if isinstance(text, bytes) else text.encode() for text in texts]
        _, problem, code = self.feed(receive(stage, [len(data) for data in contents], names), b"".join(contents))
        if code != 0:
            self.run(["rm", "-rf", stage], check=False)
            said = self.redact(problem).splitlines()
            raise RemoteError(f"{self.host.name}: cannot stage files in /tmp: {said[-1] if said else code}")
        return stage

    def stream_to(self, address: str, port: int, timeout: float,
                  duplex: bool = False) -> paramiko.Channel | RelayStream:
        """A stream to ADDRESS:PORT as seen from the host, so a firewalled port still answers: a
        direct-tcpip tunnel, or where sshd forbids those (`AllowTcpForwarding no`, refused at once)
        one exchange relayed by bash through the task's shell; or, DUPLEX (TLS: a handshake is many
        exchanges), bash piping both ways in a session of its own on the task's connection."""
        if self.tunnels_allowed:
            transport = self.connection.client.get_transport()
            try:
                return transport.open_channel("direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=timeout)
            except paramiko.ChannelException as exc:
                if exc.code != paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
                    raise ConnectionRefusedError(f"{address}:{port}: {exc}") from None
                self.tunnels_allowed = False
            except paramiko.SSHException as exc:  # no channel at all (the transport busy or closing)
                raise ConnectionError(f"{address}:{port}: no channel for the stream: {exc}") from None
        if duplex:
            try:
                channel = self.connection.client.get_transport().open_session(timeout=timeout)
                channel.settimeout(timeout)
                channel.exec_command(argv(pipe(address, port)))
            except paramiko.SSHException as exc:  # sshd's MaxSessions reached, say: a stream not had, as a refusal
                raise ConnectionError(f"{address}:{port}: no session for the stream: {exc}") from None
            return channel
        return RelayStream(self, address, port, timeout)


def _line(command: Sequence[str] | str) -> str:
    """A script runs in a shell of its own (`exit` and `set -e` end it, not the task's shell)."""
    return argv(["sh", "-c", command]) if isinstance(command, str) else argv(command)


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


SUDO_PROMPT = "litedeploy-sudo-password:"


class Shell:
    """One `sh` on the host (through sudo where the host says so) that runs the task's commands one
    after another: an SSH session costs a round trip and a login shell (whose rc files may take a
    tenth of a second), a command in a running shell only the round trip. Each command's end and exit
    code are marked on stdout and stderr with a word of this shell's own; commands never read the
    shell's stdin (it carries the commands) unless they are given bytes to read."""

    def __init__(self, host: Host, transport: paramiko.Transport, sudo_password: str | None) -> None:
        self.host = host
        token = secrets.token_hex(8)
        self.end = f"litedeploy-end-{token}".encode()
        ready = f"litedeploy-ready-{token}"
        start = line("sh", "-c", f"echo {ready}; echo {ready} >&2; exec sh")
        if host.sudo:
            start = f"{line('sudo', '-S', '-p', SUDO_PROMPT)} {start}"
        try:
            self.channel = transport.open_session(timeout=CONNECT_TIMEOUT)
            self.channel.exec_command(start)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise RemoteError(f"{host.name}: cannot open a session ({exc or type(exc).__name__})") from None
        self.closed = False
        # What the login shell prints first (a motd in root's .bashrc) is not ours: dropped.
        out, err = Marked(ready.encode()), Marked(ready.encode())
        prompts, refused = 0, ""

        def answered() -> bool:
            nonlocal prompts, refused
            if err.kept.count(SUDO_PROMPT.encode()) > prompts:
                if sudo_password and ("\n" in sudo_password or "\r" in sudo_password):  # a PEM block is let through
                    refused = "SUDO_PASSWORD holds a line break: the root shell would read its other lines"
                    return True
                if prompts or not sudo_password:
                    refused = (f"sudo refused the password for {host.ssh_user}" if prompts else
                               f"sudo asks {host.ssh_user} for a password: set SUDO_PASSWORD in the host's "
                               "secrets or LITEDEPLOY_SUDO_PASSWORD")
                    return True
                self.channel.sendall(f"{sudo_password}\n".encode())
                prompts += 1
            return out.done and err.done
        try:
            self._pump(out, err, answered, time.monotonic() + 3 * CONNECT_TIMEOUT)
        except TimeoutError:
            self.close()
            raise RemoteError(f"{host.name}: the shell on the host did not start within {3 * CONNECT_TIMEOUT} s") from None
        except RemoteError:
            said = err.kept.decode(errors="replace").replace(SUDO_PROMPT, "").strip().splitlines()
            raise RemoteError(f"{host.name}: cannot start a shell: {said[-1] if said else 'the session ended'}") from None
        if refused:
            self.close()
            raise RemoteError(f"{host.name}: {refused}")

    def run(self, command: str, sink: Callable[[bytes], None] | None = None, request: bytes | None = None,
            timeout: float | None = None) -> tuple[bytes, bytes, int]:
        """Runs one command line; returns its stdout, stderr and exit code (with a sink, both streams
        go there as they arrive instead). With a request, the command keeps the shell's stdin and the
        request is written to it once the command printed INPUT_READY."""
        redirect = "" if request is not None else " </dev/null"
        end = self.end.decode()
        text = f"{command}{redirect}; printf '%s %s\\n' {end} $?; printf '%s\\n' {end} >&2\n"
        out, err = Marked(self.end, coded=True, sink=sink), Marked(self.end, sink=sink)
        sent = request is None
        ready = f"{INPUT_READY}\n".encode()

        def finished() -> bool:
            nonlocal sent
            if request is not None and not sent and out.kept.startswith(ready):
                # In slices: paramiko's sendall copies what is left after every packet.
                for start in range(0, len(request), SEND_SLICE):
                    self.channel.sendall(request[start:start + SEND_SLICE])
                sent = True
            return out.done and err.done
        try:
            self.channel.sendall(text.encode())
            self._pump(out, err, finished, None if timeout is None else time.monotonic() + timeout)
        except BaseException:
            self.close()  # a command may still run in it: the next one gets a new shell
            raise
        return bytes(out.kept), bytes(err.kept), out.code

    def _pump(self, out: Marked, err: Marked, finished: Callable[[], bool], deadline: float | None) -> None:
        channel = self.channel
        while not finished():
            got = False
            while channel.recv_stderr_ready():
                err.feed(channel.recv_stderr(65536))
                got = True
            while channel.recv_ready():
                data = channel.recv(65536)
                if not data:
                    break
                out.feed(data)
                got = True
            if got or finished():
                continue
            if channel.closed or channel.eof_received or not channel.get_transport().is_active():
                self.close()
                raise RemoteError(f"{self.host.name}: connection lost while a command ran")
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise TimeoutError(f"{self.host.name}: no answer in time")
            select.select([channel], [], [], wait)

    def close(self) -> None:
        self.closed = True
        self.channel.close()


class Marked:
    """One stream of the shell: the bytes before the mark are the command's; the mark ends them (on
    stdout followed by the exit code). Bytes that might be the start of the mark are held back."""

    def __init__(self, mark: bytes, coded: bool = False, sink: Callable[[bytes], None] | None = None) -> None:
        self.mark = mark
        self.coded = coded
        self.sink = sink
        self.pending = bytearray()
        self.kept = bytearray()
        self.done = False
        self.code = 0

    def feed(self, data: bytes) -> None:
        self.pending += data
        at = self.pending.find(self.mark)
        if at < 0:
            self._pass(len(self.pending) - _partial(self.pending, self.mark))
            return
        self._pass(at)
        rest = bytes(self.pending[len(self.mark):])
        if self.coded:
            if b"\n" not in rest:
                return  # the exit code is still on its way
            self.code = int(rest.split(b"\n", 1)[0])
        self.done = True
        self.pending.clear()

    def _pass(self, count: int) -> None:
        if count <= 0:
            return
        chunk = bytes(self.pending[:count])
        del self.pending[:count]
        if self.sink:
            self.sink(chunk)
        else:
            self.kept += chunk


def _partial(data: bytearray, mark: bytes) -> int:
    """How many bytes at the end of data could begin the mark."""
    for size in range(min(len(mark) - 1, len(data)), 0, -1):
        if data.endswith(mark[:size]):
            return size
    return 0


class RelayStream:
    """One HTTP exchange relayed by bash on the host through the task's shell: the request is sent
    whole, the answer read whole (the server closes after it: requests say `Connection: close`)."""

    def __init__(self, remote: Remote, address: str, port: int, timeout: float) -> None:
        self.remote, self.address, self.port, self.timeout = remote, address, port, timeout
        self.answer = b""

    def settimeout(self, timeout: float) -> None:
        self.timeout = timeout

    def sendall(self, data: bytes) -> None:
        answer, problem, code = self.remote.feed(relay(self.address, self.port, len(data)), data, self.timeout)
        if answer is not None:
            self.answer = answer
            return
        if code == 127:
            raise RemoteError(f"{self.remote.host.name}: sshd refuses TCP forwarding and the host has no bash to "
                              f"reach port {self.port} through: {problem.splitlines()[-1] if problem else 'not found'}")
        raise ConnectionRefusedError(f"{self.address}:{self.port}: {problem or 'refused'}")

    def makefile(self, *_mode):
        return io.BytesIO(self.answer)

    def close(self) -> None:
        self.answer = b""
