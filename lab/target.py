"""The local target "lab": this machine made into deploy hosts shaped like the ones users have.

On 127.0.0.1 it runs one real sshd per host profile (standard, compose v1 only, hardened without
TCP forwarding, a login shell that prints text, one without root's rc file), all reaching the machine's Docker engine; with
`hosts=N` it adds N hosts in network namespaces of its own, each with an address on a veth link, its
own sshd and host key, and its own Docker engine with bridge networking, and on the first of them a
host without Docker for the gateway (systemd as PID 1, see `systemd_host`). They run a local image
that behaves like ghcr.io/berriai/litellm, which a registry on loopback also serves as releases
(see `registry`). Everything the lab starts is recorded in the state folder, so `down` stops
exactly that.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from litedeploy.errors import DeployError
from litedeploy.host import Host
from litedeploy.inventory import LOCAL_PATHS

from . import netns, proxy_image, registry, systemd_host
from .image import LAB_IMAGE, build_image, download_wheels, install_compose_v2, saved_image
from .netns import NamespaceHost
from .process import Say, alive, docker_answers, listening, run, spawn, stop, succeeds, wait
from .sshd import NAMESPACE_PROFILE, PROFILES, SshdPaths, SshdProfile, rc_script, sshd_config

# Binary -> the Debian package that provides it.
APT_PACKAGES = {"/usr/sbin/sshd": "openssh-server", "/usr/bin/ssh-keygen": "openssh-client",
                "/usr/sbin/dockerd": "docker.io",
                "/usr/bin/docker-compose": "docker-compose", "/usr/sbin/debootstrap": "debootstrap",
                "/usr/bin/sudo": "sudo", "/usr/sbin/ip": "iproute2", "/usr/bin/nsenter": "util-linux",
                "/usr/bin/docker-registry": "docker-registry", "/usr/bin/redis-server": "redis-server",
                # Let's Encrypt's ACME test server and its DNS server (lab/acme_ca.py).
                "/usr/bin/pebble": "pebble", "/usr/bin/pebble-challtestsrv": "pebble"}
# A non-root user with a password and sudo, as many production hosts are reached.
SUDO_USER = "litedeploy-sudoer"


@dataclass(frozen=True)
class Lab:
    """The lab's state folder and the inventory entry its standard profile must satisfy."""

    state: Path
    host: Host

    @property
    def host_key(self) -> Path:
        return self.state / "ssh_host_ed25519_key"

    @property
    def authorized_keys(self) -> Path:
        return self.state / "authorized_keys"

    @property
    def dockerd_pid(self) -> Path:
        return self.state / "dockerd.pid"

    @property
    def compose_v2_config(self) -> Path:
        """A DOCKER_CONFIG folder holding the compose v2 CLI plugin."""
        return self.state / "docker-config"

    @property
    def sudo_password_file(self) -> Path:
        return self.state / "sudo-password"

    @property
    def client_key(self) -> Path:
        return self._required("ssh_key")

    @property
    def known_hosts(self) -> Path:
        return self._required("known_hosts")

    def _required(self, setting: str) -> Path:
        path = getattr(self.host, setting)
        if not self.host.ssh_key or not self.host.known_hosts:
            raise DeployError(f"hosts.yaml: host {self.host.name!r} needs ssh_key and known_hosts for the lab")
        return Path(path)

    def port(self, profile: str) -> int:
        """The loopback port of a profile's sshd."""
        return self.host.ssh_port + PROFILES[profile].port_offset

    def sshd_paths(self, profile: str) -> SshdPaths:
        # The standard profile keeps the plain names (sshd.log), which benchmarks read.
        prefix = "" if profile == "standard" else f"{profile}-"
        return SshdPaths(self.state, prefix, self.authorized_keys)

    def namespace_host(self, index: int) -> NamespaceHost:
        return NamespaceHost(index, self.state)


def up(lab: Lab, say: Say, hosts: int = 0) -> set[str]:
    """Returns what this call started (daemons, namespace hosts), so a caller can stop exactly that.

    What waits on the network or the disk runs side by side: the wheel download, the lab image's
    debootstrap, the namespace hosts' engines, the systemd host (its debootstrap, then its boot);
    then the image is loaded into every namespace host at once while the registry publishes it."""
    lab.state.mkdir(mode=0o700, parents=True, exist_ok=True)
    install_packages(say)
    _make_keys(lab)
    started: set[str] = set()
    namespace_hosts = [lab.namespace_host(index) for index in range(1, hosts + 1)]
    try:
        started.update(f"sshd:{name}" for name in PROFILES if _start_profile_sshd(lab, name, say))
        if _start_dockerd(lab, say):
            started.add("dockerd")
        with ThreadPoolExecutor(max_workers=2 * hosts + 4) as pool:
            wheels = pool.submit(download_wheels, lab.state, say)
            proxy = pool.submit(proxy_image.build, lab.state, say)
            engines = [pool.submit(_start_namespace_engine, host, say) for host in namespace_hosts]
            systemd = (pool.submit(_start_systemd_host, engines[0], namespace_hosts[0], lab.state, say)
                       if hosts else None)
            install_compose_v2(lab.compose_v2_config, say)
            build_image(LAB_IMAGE, wheels.result, lab.state, say)
            if registry.start(lab.state, say):
                started.add("registry")
            publishing = pool.submit(registry.publish, LAB_IMAGE, say)
            proxy.result()
            proxy_image.publish(say)
            if namespace_hosts:
                saved = saved_image(LAB_IMAGE, lab.state, say)
                finished = [pool.submit(_finish_namespace_host, lab, host, engine, saved, say)
                            for host, engine in zip(namespace_hosts, engines)]
                started |= {f"host:{host.index}" for host, engine, rest in zip(namespace_hosts, engines, finished)
                            if engine.result() | rest.result()}
            publishing.result()
            wheels.result()  # labsd installs from them, even when the image was built before
            if systemd and systemd.result():
                started.add("systemd-host")
    except BaseException:
        # A failed `up` returns nothing to stop, and what it started would outlive the run. Its
        # namespace hosts go too (their engines may have started before the failure; the systemd
        # host's container ends with lab1's engine).
        for item in sorted(started | {f"host:{host.index}" for host in namespace_hosts}, reverse=True):
            with contextlib.suppress(Exception):
                stop_daemons(lab, say, [item])
        raise
    _write_known_hosts(lab)
    return started


def down(lab: Lab, say: Say) -> None:
    if docker_answers():
        succeeds(["docker", "stop", lab.host.docker.container_name])
    for host in netns.existing_hosts(lab.state):
        if host.index == 1 and docker_answers(*host.docker):
            systemd_host.stop(host, say)
        netns.destroy(host, say)
    stop_daemons(lab, say, [*(f"sshd:{name}" for name in PROFILES), "registry", "dockerd"])
    remove_sudo_user(lab, say)


def stop_daemons(lab: Lab, say: Say, started: Iterable[str]) -> None:
    """Stops what `up` reported as started: `systemd-host`, `sshd:PROFILE`, `registry`, `dockerd`,
    `host:N`."""
    # The systemd host before its engine's namespace host, those, the sshds and the registry before the engine.
    for item in sorted(started, reverse=True):
        kind, _, name = item.partition(":")
        if kind == "systemd-host":
            systemd_host.stop(lab.namespace_host(1), say)
        elif kind == "host":
            netns.destroy(lab.namespace_host(int(name)), say)
        elif kind == "sshd":
            stop(lab.sshd_paths(name).pidfile, f"sshd ({name})", say)
        elif kind == "registry":
            registry.stop_in(lab.state, say)
        else:
            stop(lab.dockerd_pid, "dockerd", say)


def install_packages(say: Say) -> None:
    missing = sorted({package for binary, package in APT_PACKAGES.items() if not os.path.exists(binary)})
    if not missing:
        return
    say(f"lab: installing {' '.join(missing)} (apt)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def ensure_sudo_user(lab: Lab, say: Say) -> str:
    """The sudo user (created once, with a random password kept in the state folder) may log in with
    the lab's client key on every lab sshd; sudo keeps the lab's Docker settings, as an admin who
    points DOCKER_HOST elsewhere configures it."""
    if lab.sudo_password_file.exists() and succeeds(["id", SUDO_USER]):
        return lab.sudo_password_file.read_text().strip()
    say(f"lab: creating the sudo user {SUDO_USER}")
    password = "pw-" + secrets.token_urlsafe(12)
    if not succeeds(["id", SUDO_USER]):
        run(["useradd", "-m", "-s", "/bin/bash", SUDO_USER])
    run(["chpasswd"], input=f"{SUDO_USER}:{password}")
    ssh_dir = Path(f"/home/{SUDO_USER}/.ssh")
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(Path(f"{lab.client_key}.pub").read_text())
    run(["chown", "-R", f"{SUDO_USER}:{SUDO_USER}", str(ssh_dir)])
    rule = Path(f"/etc/sudoers.d/{SUDO_USER}")
    rule.write_text(f'Defaults:{SUDO_USER} env_keep += "DOCKER_HOST DOCKER_CONFIG"\n{SUDO_USER} ALL=(ALL) ALL\n')
    rule.chmod(0o440)
    lab.sudo_password_file.write_text(password + "\n")
    lab.sudo_password_file.chmod(0o600)
    return password


def remove_sudo_user(lab: Lab, say: Say) -> None:
    if not lab.sudo_password_file.exists():
        return
    say(f"lab: removing the sudo user {SUDO_USER}")
    Path(f"/etc/sudoers.d/{SUDO_USER}").unlink(missing_ok=True)
    succeeds(["userdel", "-r", SUDO_USER])
    lab.sudo_password_file.unlink()


def _make_keys(lab: Lab) -> None:
    client_key = lab.client_key
    if not lab.host_key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "litedeploy-lab-host", "-f", str(lab.host_key)])
    if not client_key.exists():
        client_key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "litedeploy-lab-client", "-f", str(client_key)])
    # Root may log in with the lab key from this machine only, on loopback or a lab link.
    sources = f"127.0.0.1,{netns.SUBNET_PREFIX}.*.1"
    lab.authorized_keys.write_text(f'from="{sources}" {Path(f"{client_key}.pub").read_text().strip()}\n')


def _environment(lab: Lab, profile: SshdProfile, docker_socket: str | None = None) -> dict[str, str]:
    environment = {"DOCKER_CONFIG": str(lab.compose_v2_config)} if profile.compose_v2 else {}
    if docker_socket:
        environment["DOCKER_HOST"] = docker_socket
    return environment


def _start_sshd(paths: SshdPaths, profile: SshdProfile, config: str, wrap: list[str], say: Say,
                where: str) -> bool:
    """Writes the config (and the profile's shell rc) and starts sshd unless it runs already."""
    paths.config.write_text(config)
    if profile.own_home:
        paths.rc_home.mkdir(mode=0o700, exist_ok=True)
        (paths.rc_home / ".bashrc").write_text(rc_script(profile))
    if alive(paths.pidfile):
        return False
    say(f"lab: starting sshd ({profile.name}) on {where}")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    run([*wrap, "/usr/sbin/sshd", "-f", str(paths.config), "-E", str(paths.log)])
    wait(lambda: alive(paths.pidfile), 10, f"sshd ({profile.name}) did not start; see {paths.log}")
    return True


def _start_profile_sshd(lab: Lab, name: str, say: Say) -> bool:
    profile, paths, port = PROFILES[name], lab.sshd_paths(name), lab.port(name)
    config = sshd_config(profile, paths, lab.host.address, port, lab.host_key, _environment(lab, profile))
    started = _start_sshd(paths, profile, config, [], say, f"{lab.host.address}:{port}")
    wait(lambda: listening(lab.host.address, port), 10, f"sshd ({name}) did not start listening")
    return started


def _start_dockerd(lab: Lab, say: Say) -> bool:
    if docker_answers():
        return False
    say("lab: starting dockerd")
    spawn(["dockerd", "--iptables=false", "--ip-masq=false", "--bridge=none"], lab.dockerd_pid,
          lab.state / "dockerd.log")
    wait(docker_answers, 60, f"dockerd did not answer; see {lab.state / 'dockerd.log'}")
    return True


def _start_namespace_engine(host: NamespaceHost, say: Say) -> bool:
    """The host's link and Docker engine; True when either had to be made."""
    netns.reclaim(host, say)
    created = netns.create_link(host, say)
    return netns.start_dockerd(host, say) or created


def _start_systemd_host(engine: Future[bool], host: NamespaceHost, state: Path, say: Say) -> bool:
    """The systemd host (its image built first), once the engine of the namespace host it runs on
    answers; True when it had to be started."""
    engine.result()
    return systemd_host.start(host, state, say)


def _finish_namespace_host(lab: Lab, host: NamespaceHost, engine: Future[bool], saved: Path, say: Say) -> bool:
    """Image, registry and sshd of a namespace host, once its engine answers (with the lab image
    cached, the image is ready before a fresh engine is); True when any had to be started."""
    engine.result()
    netns.load_image(host, LAB_IMAGE, saved, say)
    started_registry = registry.start(lab.state, say, host.folder, host.in_netns([]))
    host_key = host.folder / "ssh_host_ed25519_key"
    if not host_key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"litedeploy-{host.name}", "-f", str(host_key)])
    paths = host.sshd_paths
    config = sshd_config(NAMESPACE_PROFILE, paths, host.address, 22, host_key,
                         _environment(lab, NAMESPACE_PROFILE, host.docker_socket))
    started_sshd = _start_sshd(paths, NAMESPACE_PROFILE, config, host.in_netns([]), say,
                               f"{host.name} {host.address}:22")
    return started_registry or started_sshd


def _write_known_hosts(lab: Lab) -> None:
    """Every lab sshd's host key, so strict host key checking (the default) accepts them all."""
    key = " ".join(Path(f"{lab.host_key}.pub").read_text().split()[:2])
    lines = [f"[{lab.host.address}]:{lab.port(name)} {key}" for name in PROFILES]
    for host in netns.existing_hosts(lab.state):
        public = host.folder / "ssh_host_ed25519_key.pub"
        if public.exists():
            lines.append(f"{host.address} {' '.join(public.read_text().split()[:2])}")
        if host.index == 1 and docker_answers(*host.docker) and succeeds(
                [*host.docker, "inspect", systemd_host.CONTAINER]):
            lines.append(f"[{host.address}]:{systemd_host.SSH_PORT} {systemd_host.host_key(host)}")
    lab.known_hosts.write_text("\n".join(lines) + "\n")


def inventory_copy(repo: Path) -> tuple[dict, dict]:
    """REPO's hosts.yaml and its `lab` entry, local paths made absolute, for a copy a benchmark
    writes elsewhere (and changes)."""
    data = yaml.safe_load((repo / "hosts.yaml").read_text())
    entry = data["hosts"]["lab"]
    for key in LOCAL_PATHS:
        if key in entry:
            entry[key] = str(repo / entry[key])
    return data, entry
