"""The local target "lab": this machine made into a deploy host, all on 127.0.0.1.

It runs a private sshd (own port, own host key, an authorized key made for the lab, the host key
recorded for strict checking), a Docker engine, and a local image that behaves like
ghcr.io/berriai/litellm:main-stable (same WORKDIR, ENTRYPOINT and CMD), built from Debian's and
PyPI's packages because no registry can be pulled from. Everything it starts is recorded in the
state folder, so `down` stops exactly that.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .errors import DeployError
from .inventory import Host

# Pinned: unpinned, pip backtracks through many releases (LAB-NOTES).
LITELLM_REQUIREMENTS = ("litellm[proxy]==1.106.2", "prisma==0.15.0")
# Binary -> the Debian package that provides it.
APT_PACKAGES = {"/usr/sbin/sshd": "openssh-server", "/usr/bin/ssh-keygen": "openssh-client",
                "/usr/sbin/dockerd": "docker.io",
                "/usr/bin/docker-compose": "docker-compose", "/usr/sbin/debootstrap": "debootstrap",
                # for targets reached as a non-root user
                "/usr/bin/sudo": "sudo"}
IMAGE_PATH = "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGE_CHANGES = (
    "WORKDIR /app",
    f"ENV PATH={IMAGE_PATH}",
    # The lab has no internet: use the price map bundled with litellm instead of downloading it.
    "ENV LITELLM_LOCAL_MODEL_COST_MAP=True",
    'ENTRYPOINT ["docker/prod_entrypoint.sh"]',
    'CMD ["--port", "4000"]',
)
# What the official image's entrypoint does in the end.
ENTRYPOINT_SCRIPT = '#!/bin/sh\nexec litellm "$@"\n'

Say = Callable[[str], None]


@dataclass(frozen=True)
class Lab:
    """The lab's state folder and the inventory entry it must satisfy."""

    state: Path
    host: Host

    @property
    def sshd_config(self) -> Path:
        return self.state / "sshd_config"

    @property
    def sshd_pid(self) -> Path:
        return self.state / "sshd.pid"

    @property
    def dockerd_pid(self) -> Path:
        return self.state / "dockerd.pid"

    @property
    def host_key(self) -> Path:
        return self.state / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        if not self.host.ssh_key or not self.host.known_hosts:
            raise DeployError(f"hosts.yaml: host {self.host.name!r} needs ssh_key and known_hosts for the lab")
        return Path(self.host.ssh_key)


def up(lab: Lab, say: Say) -> set[str]:
    """Returns the daemons this call started, so a caller can stop exactly those."""
    lab.state.mkdir(mode=0o700, parents=True, exist_ok=True)
    install_packages(say)
    started = {name for name, start in (("sshd", start_sshd), ("dockerd", start_dockerd)) if start(lab, say)}
    build_image(lab, say)
    return started


def down(lab: Lab, say: Say) -> None:
    if _docker_answers():
        subprocess.run(["docker", "stop", lab.host.container_name], capture_output=True, check=False)
    stop_daemons(lab, say, ("sshd", "dockerd"))


def stop_daemons(lab: Lab, say: Say, names: Iterable[str]) -> None:
    """Stops those of the named daemons that the lab started (it records their pids)."""
    for name in names:
        _stop(lab.state / f"{name}.pid", name, say)


def install_packages(say: Say) -> None:
    missing = sorted({package for binary, package in APT_PACKAGES.items() if not os.path.exists(binary)})
    if not missing:
        return
    say(f"lab: installing {' '.join(missing)} (apt)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-q"], env=env)
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def start_sshd(lab: Lab, say: Say) -> bool:
    client_key = lab.client_key
    if not lab.host_key.exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "litedeploy-lab-host", "-f", str(lab.host_key)])
    if not client_key.exists():
        client_key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "litedeploy-lab-client", "-f", str(client_key)])
    authorized = lab.state / "authorized_keys"
    authorized.write_text(f'from="127.0.0.1" {Path(f"{client_key}.pub").read_text().strip()}\n')
    host_public = Path(f"{lab.host_key}.pub").read_text().split()[:2]
    Path(lab.host.known_hosts).write_text(f"[{lab.host.address}]:{lab.host.ssh_port} {' '.join(host_public)}\n")
    lab.sshd_config.write_text(sshd_config(lab))
    if _alive(lab.sshd_pid):
        return False
    say(f"lab: starting sshd on {lab.host.address}:{lab.host.ssh_port}")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    _run(["/usr/sbin/sshd", "-f", str(lab.sshd_config), "-E", str(lab.state / "sshd.log")])
    _wait(lambda: _listening(lab.host.address, lab.host.ssh_port), 10, "sshd did not start listening")
    return True


def sshd_config(lab: Lab) -> str:
    return "\n".join([
        f"ListenAddress {lab.host.address}",
        f"Port {lab.host.ssh_port}",
        f"HostKey {lab.host_key}",
        f"PidFile {lab.sshd_pid}",
        # root's key is the lab's own; other users (a sudo user, say) bring their own file.
        f"AuthorizedKeysFile {lab.state / 'authorized_keys'} .ssh/authorized_keys",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        # The state folder lives in the user's checkout, whose modes sshd cannot vouch for.
        "StrictModes no",
        "Subsystem sftp internal-sftp",
        # One sshd stands in for every host of a fleet benchmark; OpenSSH's default (10:30:100)
        # drops connections at random beyond ten that are still authenticating.
        "MaxStartups 100",
        "LogLevel VERBOSE",
        "",
    ])


def start_dockerd(lab: Lab, say: Say) -> bool:
    if _docker_answers():
        return False
    say("lab: starting dockerd")
    log = open(lab.state / "dockerd.log", "ab")
    process = subprocess.Popen(["dockerd", "--iptables=false", "--ip-masq=false", "--bridge=none"],
                               stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    lab.dockerd_pid.write_text(f"{process.pid}\n")
    _wait(_docker_answers, 60, f"dockerd did not answer; see {lab.state / 'dockerd.log'}")
    return True


def build_image(lab: Lab, say: Say) -> None:
    """Cached: built only when the image is missing (its tag carries the litellm version)."""
    image = lab.host.image
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
        return
    say(f"lab: building {image} (debootstrap + pip, about 2.5 minutes, once)")
    rootfs = lab.state / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    started = time.monotonic()
    try:
        _run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
              "bookworm", str(rootfs)])
        shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "tmp/ca.crt")
        # A clean environment: the host's pip settings point at folders the chroot does not have.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "PIP_CERT": "/tmp/ca.crt",
               "PIP_CONFIG_FILE": "/dev/null", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
               "PIP_DEFAULT_TIMEOUT": "180"}
        _run(["chroot", str(rootfs), "python3", "-m", "venv", "/opt/venv"], env=env)
        _run(["chroot", str(rootfs), "/opt/venv/bin/pip", "install", "-q", "--no-cache-dir",
              *LITELLM_REQUIREMENTS], env=env)
        entrypoint = rootfs / "app/docker/prod_entrypoint.sh"
        entrypoint.parent.mkdir(parents=True)
        entrypoint.write_text(ENTRYPOINT_SCRIPT)
        entrypoint.chmod(0o755)
        (rootfs / "etc/resolv.conf").write_text("")
        (rootfs / "tmp/ca.crt").unlink()
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / cache, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        changes = [word for change in IMAGE_CHANGES for word in ("-c", change)]
        _run(["docker", "import", *changes, "-", image], stdin=tar.stdout)
        tar.wait()
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    say(f"lab: built {image} in {time.monotonic() - started:.0f} s")


def _run(argv: list[str], **kwargs) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or [""]
        raise DeployError(f"lab: {argv[0]} failed (exit {proc.returncode}): {detail[0]}")


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _listening(address: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((address, port)) == 0


def _alive(pidfile: Path) -> int | None:
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


def _stop(pidfile: Path, name: str, say: Say) -> None:
    pid = _alive(pidfile)
    if pid:
        say(f"lab: stopping {name}")
        os.kill(pid, signal.SIGTERM)
        try:
            _wait(lambda: _alive(pidfile) is None, 30, f"{name} did not stop")
        except DeployError:
            os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def _wait(ready: Callable[[], object], timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise DeployError(f"lab: {failure}")
        time.sleep(0.2)
