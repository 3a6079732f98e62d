"""The real Claude Code CLI, pinned by `locks/claude-code.json` and run against a gateway from a
network namespace that reaches nothing but that gateway.

Claude Code 2.1.x ships as two npm packages: `@anthropic-ai/claude-code`, a wrapper whose
postinstall copies a native binary over its `bin/claude.exe` stub, and one optional dependency
per platform that holds that binary (`@anthropic-ai/claude-code-linux-x64`: a ~400 MB ELF file,
`package/claude`, in a ~186 MB tarball). Nothing is downloaded from outside the npm registry,
so `install` fetches both tarballs with `npm pack`, checks each against the lock's sha512
integrity, and runs the platform binary directly; the wrapper's postinstall is never run.

`run_in_netns` gives each run a fresh namespace with only `lo` up. Two relays join it to the
gateway: one in this namespace listens on a UNIX socket (a file, so both namespaces see it) and
connects to the gateway over TCP; one inside the namespace listens on 127.0.0.1:<port> and
connects to that socket. The CLI's telemetry, update checks and any other host it may try
fail at once, which is what the namespace is for.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from litedeploy.errors import DeployError

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "locks" / "claude-code.json"
MAIN_PACKAGE = "@anthropic-ai/claude-code"
PLATFORM_PACKAGE = "@anthropic-ai/claude-code-linux-x64"
# The port the CLI sees as its gateway inside the namespace; any free one works there.
NETNS_PORT = 4000
# Written beside the unpacked package once its tarball matched the lock: a later install whose
# marker names the same integrity skips the 186 MB download.
_MARKER = ".litedeploy-verified"
# Each switch the 2.1.x binary reads (its strings name them) that cuts traffic to hosts other
# than ANTHROPIC_BASE_URL: update checks, telemetry, error reports, feature flags, surveys.
QUIET_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_UPDATES": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_GROWTHBOOK": "1",
    "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
    "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
}
_KEY_VARS = ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY")
_runs = itertools.count()


class ClaudeCodeError(DeployError):
    """The pinned CLI cannot be installed or run: the message names the package, file or step."""


# --- the lock -------------------------------------------------------------------------------


def read_lock(path: Path = LOCK) -> list[dict]:
    """The lock's packages: [{"name", "version", "tarball", "integrity", "binary"?}, ...].

    Exactly one entry has "binary", the path of the runnable file inside its unpacked tarball.
    Raises ClaudeCodeError if the file is missing or lacks those fields.
    """
    try:
        packages = json.loads(path.read_text())["packages"]
        for package in packages:
            for field in ("name", "version", "tarball", "integrity"):
                if not isinstance(package[field], str):
                    raise KeyError(field)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ClaudeCodeError(f"{path}: not a Claude Code lock ({err!r})") from err
    if [bool(p.get("binary")) for p in packages].count(True) != 1:
        raise ClaudeCodeError(f"{path}: exactly one package must name its 'binary'")
    return packages


def npm_dist(name: str, version: str) -> dict:
    """What `npm view NAME@VERSION dist` says: {"tarball", "integrity", "shasum", ...}."""
    out = subprocess.run(["npm", "view", f"{name}@{version}", "dist", "--json"],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise ClaudeCodeError(f"npm view {name}@{version} failed: {out.stderr.strip()[-300:]}")
    return json.loads(out.stdout)


def write_lock(version: str, path: Path = LOCK) -> dict:
    """Pins Claude Code VERSION (e.g. "2.1.332") and its linux-x64 binary package into PATH.

    Refreshing is on purpose only: `python -c 'from lab.claude_code import
    write_lock; write_lock("2.1.NNN")'`. Returns the document written.
    """
    packages = []
    for name in (MAIN_PACKAGE, PLATFORM_PACKAGE):
        dist = npm_dist(name, version)
        entry = {"name": name, "version": version, "tarball": dist["tarball"], "integrity": dist["integrity"]}
        if name == PLATFORM_PACKAGE:
            entry["binary"] = "package/claude"
        packages.append(entry)
    doc = {"source": LOCK_SOURCE, "packages": packages}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


LOCK_SOURCE = (
    "Written by lab.claude_code.write_lock(VERSION) from `npm view PKG@VERSION dist` "
    "(tarball, integrity) for the wrapper @anthropic-ai/claude-code and the optional dependency "
    "that holds the linux x64 glibc binary, @anthropic-ai/claude-code-linux-x64 (file "
    "package/claude; no download outside the npm registry at install or run time). install() "
    "fetches each with `npm pack` and refuses a tarball whose sha512 differs. Refresh: "
    "`npm view @anthropic-ai/claude-code version`, then "
    "python -c 'from lab.claude_code import write_lock; write_lock(\"2.1.NNN\")'."
)


# --- install --------------------------------------------------------------------------------


def sri_sha512(path: Path) -> str:
    """The file's Subresource Integrity string, as npm records it: "sha512-<base64>"."""
    digest = hashlib.sha512()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def _folder(dest: Path, package: dict) -> Path:
    """Where one package unpacks: DEST/<name without scope>-<version>."""
    return dest / f"{package['name'].rsplit('/', 1)[-1]}-{package['version']}"


def _installed(folder: Path, package: dict) -> bool:
    marker = folder / _MARKER
    return marker.is_file() and marker.read_text().strip() == package["integrity"]


def _fetch_verified(package: dict, into: Path) -> Path:
    """Downloads the package's tarball with npm into INTO and checks it against the lock."""
    spec = f"{package['name']}@{package['version']}"
    out = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", str(into)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise ClaudeCodeError(f"npm pack {spec} failed: {out.stderr.strip()[-300:]}")
    tarball = into / json.loads(out.stdout)[0]["filename"]
    actual = sri_sha512(tarball)
    if actual != package["integrity"]:
        # The registry served other bytes than the lock pinned: never unpack or run them.
        tarball.unlink()
        raise ClaudeCodeError(f"{spec}: tarball integrity {actual} does not match the lock's "
                              f"{package['integrity']}; refusing it (refresh the lock on purpose)")
    return tarball


def _check_members(archive: tarfile.TarFile, tarball: Path) -> None:
    """Raises ClaudeCodeError for a member that is a link or names a path outside the folder."""
    for member in archive.getmembers():
        parts = Path(member.name).parts
        if member.issym() or member.islnk() or member.name.startswith("/") or ".." in parts:
            raise ClaudeCodeError(f"{tarball.name}: refusing member {member.name!r}")


def _check_platform() -> None:
    # The lock pins the glibc x86_64 build only; anything else would fail with an obscure exec error.
    libc, _ = platform.libc_ver()
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64") or libc != "glibc":
        raise ClaudeCodeError(f"the lock pins Claude Code for linux x64 glibc, not "
                              f"{sys.platform} {platform.machine()} {libc or 'no glibc'}")


def install(dest: Path, lock: Path = LOCK) -> Path:
    """Installs the locked packages under DEST and returns the runnable `claude` binary.

    Shape: DEST/claude-code-<ver>/package/..., DEST/claude-code-linux-x64-<ver>/package/claude.
    A package already unpacked from a tarball that matched the lock is kept as it is.
    Raises ClaudeCodeError on a non linux-x64-glibc machine, a failed `npm pack`, or a tarball
    whose sha512 differs from the lock's integrity (it is deleted, not unpacked).
    """
    _check_platform()
    dest.mkdir(parents=True, exist_ok=True)
    binary: Path | None = None
    for package in read_lock(lock):
        folder = _folder(dest, package)
        if not _installed(folder, package):
            shutil.rmtree(folder, ignore_errors=True)
            with tempfile.TemporaryDirectory(dir=dest) as download:
                tarball = _fetch_verified(package, Path(download))
                staging = Path(download) / "unpacked"
                with tarfile.open(tarball) as archive:
                    # The "data" filter refuses links and paths out of STAGING; Python before
                    # 3.11.4 (Debian 12 has 3.11.2) lacks it, and there the names are checked here.
                    if hasattr(tarfile, "data_filter"):
                        archive.extractall(staging, filter="data")
                    else:
                        _check_members(archive, tarball)
                        archive.extractall(staging)
                # Renamed into place only when whole, so an interrupted install is redone.
                (staging / _MARKER).write_text(package["integrity"] + "\n")
                staging.rename(folder)
        if package.get("binary"):
            binary = folder / package["binary"]
            if not os.access(binary, os.X_OK):
                raise ClaudeCodeError(f"{binary}: missing or not executable in {package['name']}")
    assert binary is not None  # read_lock insists on exactly one
    return binary


# --- relays ---------------------------------------------------------------------------------

# Run with `python -I -c` (needs only the standard library, so it runs the same inside the
# namespace): argv LISTEN CONNECT, each "tcp:HOST:PORT" or "unix:PATH". Prints "ready" once
# listening, then pipes every accepted connection to a new one to CONNECT, a thread per direction.
_RELAY = r"""
import socket, sys, threading
def addr(spec):
    kind, _, rest = spec.partition(":")
    if kind == "unix":
        return socket.AF_UNIX, rest
    host, _, port = rest.rpartition(":")
    return socket.AF_INET, (host, int(port))
def pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
def serve(client):
    family, target = addr(sys.argv[2])
    upstream = socket.socket(family, socket.SOCK_STREAM)
    try:
        upstream.connect(target)
    except OSError:
        client.close(); upstream.close(); return
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    pipe(upstream, client)
family, where = addr(sys.argv[1])
server = socket.socket(family, socket.SOCK_STREAM)
if family == socket.AF_INET:
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(where)
server.listen(64)
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def _start_relay(prefix: list[str], listen: str, connect: str, log: Path) -> subprocess.Popen:
    """Starts one relay (PREFIX e.g. ["ip", "netns", "exec", NS]) and waits for its "ready".

    Its stderr goes to LOG, a file, so a chatty relay can never block on a full pipe.
    """
    with open(log, "ab") as errors:
        relay = subprocess.Popen([*prefix, sys.executable, "-I", "-c", _RELAY, listen, connect],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
                                 text=True, start_new_session=True)
    assert relay.stdout is not None  # stdout=PIPE
    line = relay.stdout.readline()  # "" if it died: bind failed, no such namespace
    if line.strip() != "ready":
        _stop(relay)
        raise ClaudeCodeError(f"relay {listen} -> {connect} did not start: {log.read_text().strip()[-300:]}")
    return relay


def _stop(process: subprocess.Popen | None) -> None:
    """Ends PROCESS and its session (TERM, KILL after 5 s) and closes our ends of its pipes."""
    if process is None:
        return
    if process.poll() is None:
        # A process group of its own: ip-netns-exec'd programs and what they spawned go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for stream in (process.stdout, process.stderr):
        if stream:
            stream.close()


def _ip(*args: str) -> None:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise ClaudeCodeError(f"ip {' '.join(args)} failed: {out.stderr.strip()}")


# --- running --------------------------------------------------------------------------------


def cli_env(home: Path, port: int, master_key_env: Mapping[str, str],
            extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The CLI's whole environment: nothing is inherited from this process but PATH and LANG.

    MASTER_KEY_ENV must hold ANTHROPIC_AUTH_TOKEN (sent as `Authorization: Bearer`, which LiteLLM
    accepts) or ANTHROPIC_API_KEY (sent as `x-api-key`). EXTRA_ENV (e.g. ANTHROPIC_MODEL,
    ANTHROPIC_DEFAULT_OPUS_MODEL) comes last and may override the defaults.
    Raises ClaudeCodeError if no key is given.
    """
    if not any(master_key_env.get(var) for var in _KEY_VARS):
        raise ClaudeCodeError(f"master_key_env must set one of {', '.join(_KEY_VARS)}")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": os.environ.get("LANG", "C.UTF-8"),
           "HOME": str(home), "TERM": "dumb", "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
           **QUIET_ENV}
    env.update(master_key_env)
    env.update(extra_env or {})
    return env


def seed_home(home: Path) -> None:
    """A HOME whose ~/.claude.json says onboarding is done, so no first-run screen can appear."""
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    (home / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True, "numStartups": 1}))


def run_in_netns(binary: Path, gateway_host: str, gateway_port: int, master_key_env: Mapping[str, str],
                 prompt: str, model: str | None, workdir: Path, timeout: float, *,
                 extra_env: Mapping[str, str] | None = None, args: Sequence[str] = (),
                 port: int = NETNS_PORT) -> subprocess.CompletedProcess[str]:
    """Runs `claude -p PROMPT [--model MODEL] [ARGS...]` in WORKDIR inside a fresh network namespace.

    There the CLI reaches 127.0.0.1:PORT, relayed to GATEWAY_HOST:GATEWAY_PORT of this namespace,
    and nothing else. HOME is a new temporary folder (see seed_home); the key travels only in the
    environment (see cli_env), never on the command line. Returns the finished process, text
    stdout/stderr, whatever its exit code. Needs root (`ip netns`).
    Raises ClaudeCodeError if the namespace or a relay cannot be set up, or if the CLI has not
    finished within TIMEOUT seconds (it is killed; the message ends with its stderr).
    The namespace ("ccli-<pid>-<n>"), both relays and the temporary folder are always removed.
    """
    namespace = f"ccli-{os.getpid()}-{next(_runs)}"
    scratch = Path(tempfile.mkdtemp(prefix="ccli-"))
    socket_path = scratch / "gateway.sock"
    home = scratch / "home"
    argv = [str(binary), "-p", prompt, *(["--model", model] if model else []), *args]
    relays: list[subprocess.Popen] = []
    cli: subprocess.Popen | None = None
    created = False
    try:
        env = cli_env(home, port, master_key_env, extra_env)
        seed_home(home)
        _ip("netns", "add", namespace)
        created = True
        _ip("-n", namespace, "link", "set", "lo", "up")
        relays.append(_start_relay([], f"unix:{socket_path}", f"tcp:{gateway_host}:{gateway_port}",
                                   scratch / "relay-outside.log"))
        relays.append(_start_relay(["ip", "netns", "exec", namespace], f"tcp:127.0.0.1:{port}",
                                   f"unix:{socket_path}", scratch / "relay-inside.log"))
        # ip netns exec runs the CLI as its own process (it execs); a session of its own lets a
        # timeout kill whatever the CLI started too.
        cli = subprocess.Popen(["ip", "netns", "exec", namespace, *argv], cwd=workdir, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
        try:
            stdout, stderr = cli.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(cli.pid, signal.SIGKILL)
            stdout, stderr = cli.communicate()
            raise ClaudeCodeError(
                f"claude -p did not finish within {timeout:g}s; stderr: {stderr.strip()[-300:]}") from None
        return subprocess.CompletedProcess(argv, cli.returncode, stdout, stderr)
    finally:
        for process in (cli, *relays):
            _stop(process)
        if created:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        shutil.rmtree(scratch, ignore_errors=True)
