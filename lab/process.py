"""Starting, watching and stopping the lab's own daemons, each recorded by a pid file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from litedeploy.errors import DeployError

Say = Callable[[str], None]


def run(argv: list[str], **kwargs) -> str:
    """Runs a command to completion; a failure is a DeployError with its last line of output."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or [""]
        raise DeployError(f"lab: {' '.join(argv[:2])} failed (exit {proc.returncode}): {detail[0]}")
    return proc.stdout


def spawn(argv: list[str], pidfile: Path, log: Path) -> None:
    """Starts a daemon that stays in the foreground, in a session of its own, its pid recorded."""
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    pidfile.write_text(f"{process.pid}\n")


def alive(pidfile: Path) -> int | None:
    """The pid in the file if that process runs; a zombie child of ours is reaped and counts as gone."""
    try:
        pid = int(pidfile.read_text().split()[0])
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return None
    return pid


def stop(pidfile: Path, name: str, say: Say) -> None:
    pid = alive(pidfile)
    if pid:
        say(f"lab: stopping {name}")
        os.kill(pid, signal.SIGTERM)
        try:
            wait(lambda: alive(pidfile) is None, 30, f"{name} did not stop")
        except DeployError:
            os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def wait(ready: Callable[[], object], timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise DeployError(f"lab: {failure}")
        time.sleep(0.2)


def listening(address: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((address, port)) == 0


def succeeds(argv: list[str], timeout: float = 60) -> bool:
    """Runs a command whose failure is an answer, not an error."""
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def docker_answers(*docker: str) -> bool:
    """Whether the Docker engine behind this CLI prefix (`docker`, `docker -H ...`) answers."""
    return succeeds([*(docker or ("docker",)), "info"], timeout=10)
