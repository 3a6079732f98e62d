"""The sshds of the lab, one per host profile: the shapes production hosts come in.

A profile is data (how sshd and the login shell behave); `sshd_config` turns it into the file sshd
reads. Every lab sshd is a real OpenSSH server with its own config, pid file and log.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SshdProfile:
    name: str
    # Added to the lab host's ssh_port: each loopback profile listens on a port of its own.
    port_offset: int
    # `docker compose` (v2, a CLI plugin) besides docker-compose v1; without it only v1 is there.
    compose_v2: bool = True
    # CIS benchmarks recommend `AllowTcpForwarding no`: no direct-tcpip tunnels at all.
    tcp_forwarding: bool = True
    # Text the login shell prints for every command, as many root rc files (motd, fortune) do.
    rc_text: str = ""
    # The login shell gets a HOME of its own (whose .bashrc prints rc_text, if any), not this
    # machine's /root, whose .bashrc runs pyenv for every command (a normal host has no such rc).
    own_home: bool = False


PROFILES = {profile.name: profile for profile in (
    SshdProfile("standard", 0),
    SshdProfile("compose-v1", 1, compose_v2=False),
    SshdProfile("hardened", 2, tcp_forwarding=False),
    SshdProfile("noisy-rc", 3, rc_text="Welcome to the lab host!\n  Authorized use only. Last audit: today\n",
                own_home=True),
    SshdProfile("quiet-rc", 4, own_home=True),
)}
# The CIS forwarding settings of the hardened profile.
NO_FORWARDING = ["AllowTcpForwarding no", "AllowStreamLocalForwarding no", "AllowAgentForwarding no",
                 "X11Forwarding no", "PermitTunnel no", "GatewayPorts no"]
# The namespace hosts are shaped like a production host: hardened sshd, compose v2, bridge networking.
NAMESPACE_PROFILE = PROFILES["hardened"]


@dataclass(frozen=True)
class SshdPaths:
    """Where one sshd keeps its files; the authorized keys file is the lab's own (root's key)."""

    folder: Path
    prefix: str
    authorized_keys: Path

    @property
    def config(self) -> Path:
        return self.folder / f"{self.prefix}sshd_config"

    @property
    def pidfile(self) -> Path:
        return self.folder / f"{self.prefix}sshd.pid"

    @property
    def log(self) -> Path:
        return self.folder / f"{self.prefix}sshd.log"

    @property
    def rc_home(self) -> Path:
        """The login shell's HOME for a profile with a home of its own: bash run by sshd reads its .bashrc."""
        return self.folder / f"{self.prefix}home"


def sshd_config(profile: SshdProfile, paths: SshdPaths, address: str, port: int, host_key: Path,
                environment: dict[str, str]) -> str:
    """`environment` reaches every command of every user (sshd's SetEnv): a Docker engine or a
    compose plugin of the lab's own, and for a profile with a home of its own a HOME whose .bashrc
    prints the rc text (so the machine's real /root/.bashrc stays as it is)."""
    if profile.own_home:
        environment = {**environment, "HOME": str(paths.rc_home)}
    lines = [
        f"ListenAddress {address}",
        f"Port {port}",
        f"HostKey {host_key}",
        f"PidFile {paths.pidfile}",
        # root's key is the lab's own; other users (the sudo user, say) bring their own file.
        f"AuthorizedKeysFile {paths.authorized_keys} .ssh/authorized_keys",
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
    ]
    if environment:
        lines.append("SetEnv " + " ".join(f"{name}={value}" for name, value in sorted(environment.items())))
    if not profile.tcp_forwarding:
        lines += NO_FORWARDING
    return "\n".join(lines) + "\n"


def rc_script(profile: SshdProfile) -> str:
    """The .bashrc that prints the profile's text before every command."""
    return "".join(f"echo {shlex.quote(line)}\n" for line in profile.rc_text.splitlines())
