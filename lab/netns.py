"""Lab hosts in network namespaces: each a separate host on a veth link, with an address, an sshd
and a Docker engine (bridge networking, published ports) of its own, sharing only the filesystem.

Addresses are 10.213.N.0/24 per host (this machine .1, the host .2) and 10.214.N.0/24 for its
Docker bridge; they exist only on links the lab creates, so no traffic leaves this machine.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from litedeploy.errors import DeployError

from . import locks, registry
from .image import lock_of
from .process import Say, alive, docker_answers, run, spawn, stop, succeeds, wait
from .sshd import SshdPaths

SUBNET_PREFIX = "10.213"
BRIDGE_PREFIX = "10.214"


@dataclass(frozen=True)
class NamespaceHost:
    index: int
    state: Path  # the lab's state folder

    @property
    def name(self) -> str:
        return f"lab{self.index}"

    @property
    def netns(self) -> str:
        return f"litedeploy-{self.name}"

    @property
    def veth(self) -> str:
        """This machine's end of the link; the namespace's end is called eth0, as on a real host."""
        return f"ldv-{self.name}"

    @property
    def address(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index}.2"

    @property
    def peer_address(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index}.1"

    @property
    def bridge_gateway(self) -> str:
        """Its Docker bridge's own address, from which docker-proxy reaches a published port's container."""
        return f"{BRIDGE_PREFIX}.{self.index}.1"

    @property
    def folder(self) -> Path:
        return self.state / self.name

    @property
    def exec_root(self) -> Path:
        """Short and on tmpfs: containerd's sockets live under it and unix socket paths are short."""
        return Path(f"/run/litedeploy-{self.name}")

    @property
    def docker_socket(self) -> str:
        return f"unix://{self.exec_root}/docker.sock"

    @property
    def docker(self) -> tuple[str, ...]:
        """The docker CLI pointed at this host's engine."""
        return ("docker", "-H", self.docker_socket)

    @property
    def dockerd_pid(self) -> Path:
        return self.folder / "dockerd.pid"

    @property
    def sshd_paths(self) -> SshdPaths:
        """Its sshd's files; root logs in with the lab's authorized key, as everywhere in the lab."""
        return SshdPaths(self.folder, "", self.state / "authorized_keys")

    def in_netns(self, argv: list[str]) -> list[str]:
        """argv run in the namespace's network only (`ip netns exec` would also remount /sys and hide
        the cgroups dockerd needs)."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", *argv]


def namespace_exists(host: NamespaceHost) -> bool:
    return os.path.exists(f"/run/netns/{host.netns}")


def create_link(host: NamespaceHost, say: Say) -> bool:
    """The namespace and its veth link with both addresses; False when they were there already."""
    if namespace_exists(host):
        return False
    taken = run(["ip", "-o", "-4", "addr", "show"])
    if f" {SUBNET_PREFIX}.{host.index}." in taken:
        raise DeployError(f"lab: {SUBNET_PREFIX}.{host.index}.0/24 is already used on this machine; "
                          "remove that address or run `inv lab.down` first")
    say(f"lab: creating host {host.name} at {host.address} (network namespace {host.netns})")
    peer = f"{host.veth}p"
    for argv in (["ip", "netns", "add", host.netns],
                 ["ip", "link", "add", host.veth, "type", "veth", "peer", "name", peer],
                 ["ip", "link", "set", peer, "netns", host.netns],
                 ["ip", "-n", host.netns, "link", "set", peer, "name", "eth0"],
                 ["ip", "addr", "add", f"{host.peer_address}/24", "dev", host.veth],
                 ["ip", "link", "set", host.veth, "up"],
                 ["ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0"],
                 ["ip", "-n", host.netns, "link", "set", "eth0", "up"],
                 ["ip", "-n", host.netns, "link", "set", "lo", "up"]):
        run(argv)
    return True


def start_dockerd(host: NamespaceHost, say: Say) -> bool:
    """A Docker engine of the host's own: own data-root, exec-root, socket and cgroup parent, with
    bridge networking (no iptables rules: published ports go through docker-proxy)."""
    if alive(host.dockerd_pid) and docker_answers(*host.docker):
        return False
    say(f"lab: starting dockerd on {host.name}")
    host.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    host.exec_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    spawn(host.in_netns(["dockerd", "--data-root", str(host.folder / "docker"), "--exec-root", str(host.exec_root),
                         "-H", host.docker_socket, "-p", str(host.exec_root / "dockerd.pid"),
                         "--bip", f"{host.bridge_gateway}/24", "--iptables=false", "--ip-masq=false",
                         "--cgroup-parent", f"litedeploy-{host.name}"]),
          host.dockerd_pid, host.folder / "dockerd.log")
    wait(lambda: docker_answers(*host.docker), 60, f"dockerd on {host.name} did not answer; "
                                                    f"see {host.folder / 'dockerd.log'}")
    return True


def load_image(host: NamespaceHost, image: str, saved: Path, say: Say) -> None:
    """Loads the archive unless the host's engine has the image from the same lock."""
    if lock_of(host.docker, image) == locks.LITELLM.digest:
        return
    say(f"lab: loading {image} into {host.name}")
    run([*host.docker, "load", "-i", str(saved)])


def destroy(host: NamespaceHost, say: Say) -> None:
    """Stops the host's sshd and dockerd (its containers with it) and removes its link; its image
    store stays on disk, so the next `lab.up` need not load the image again."""
    stop(host.sshd_paths.pidfile, f"sshd on {host.name}", say)
    registry.stop_in(host.folder, say)
    stop(host.dockerd_pid, f"dockerd on {host.name}", say)
    _remove_link(host, say)


def reclaim(host: NamespaceHost, say: Say) -> None:
    """Clears what a lab that was killed (not stopped) left of the host before its engine starts
    anew: the namespace, the engine's pid file and the containers' network namespaces, which a
    killed dockerd leaves mounted under its exec-root. Reused, those keep their veths on the
    namespace's docker0 with the addresses the new engine hands out again, and connections to a
    new container's published port go now to it, now to a dead duplicate. Nothing is done while
    this lab's engine runs; an engine of another lab answering on the socket is refused.

    Raises DeployError when another lab's engine holds the host."""
    if alive(host.dockerd_pid) and docker_answers(*host.docker):
        return
    if docker_answers(*host.docker):
        raise DeployError(f"lab: {host.name}'s engine ({host.docker_socket}) belongs to another lab than "
                          f"{host.state}; stop that one with its `inv lab.down`")
    if namespace_exists(host) or host.exec_root.exists():
        say(f"lab: clearing what a stopped lab left of {host.name}")
        _remove_link(host, say)


def _remove_link(host: NamespaceHost, say: Say) -> None:
    """The engine's exec-root (sockets, pid file, containers' namespaces) and the namespace."""
    unmount_below(host.exec_root)
    shutil.rmtree(host.exec_root, ignore_errors=True)
    if namespace_exists(host):
        say(f"lab: removing host {host.name} ({host.netns})")
        # Deleting the namespace deletes its end of the veth pair, and with it ours: a moment later,
        # when the kernel has freed the namespace.
        run(["ip", "netns", "delete", host.netns])
        wait(lambda: not succeeds(["ip", "link", "show", "dev", host.veth]), 30,
             f"{host.veth} outlived {host.netns}; a process may still run in it")


def mounts_below(folder: Path) -> list[str]:
    """Mount points below the folder, deepest first, from /proc/self/mounts (the lab's folders have
    no characters it would escape)."""
    prefix = f"{folder}/"
    points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return sorted((point for point in points if point.startswith(prefix)), key=len, reverse=True)


def unmount_below(folder: Path) -> None:
    """Unmounts what a killed engine left mounted below the folder."""
    for point in mounts_below(folder):
        run(["umount", point])


def existing_hosts(state: Path) -> list[NamespaceHost]:
    """The namespace hosts the lab made, by their folders and namespaces."""
    indexes = {int(path.name[3:]) for path in state.glob("lab[0-9]*") if path.name[3:].isdigit()}
    indexes |= {int(name.removeprefix("litedeploy-lab")) for name in _netns_names()
                if name.removeprefix("litedeploy-lab").isdigit()}
    return [NamespaceHost(index, state) for index in sorted(indexes)]


def _netns_names() -> list[str]:
    try:
        return os.listdir("/run/netns")
    except OSError:
        return []
