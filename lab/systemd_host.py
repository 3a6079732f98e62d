"""A lab host without Docker for the gateway: a container whose PID 1 is systemd, with its own
hardened sshd (no forwarding), run on namespace host 1's engine and reached over SSH at that host's
address (port 2222). It is shaped like the hosts of the hx_litellm_proxy role: Debian with
python3-venv and sudo, no package index (the namespace has no route out), so LiteLLM reaches it as
the lab's folder of locked wheels (`image.download_wheels`); two Ollama stand-ins answer on its
loopback as the role's backends do. Debian's haproxy is installed, as `zero_downtime: true` needs it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

from litedeploy.errors import DeployError

from .image import debootstrap, import_rootfs
from .netns import NamespaceHost
from .process import Say, run, succeeds, wait
from .sshd import NO_FORWARDING

PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,sudo,python3-venv,ca-certificates,iproute2,procps,haproxy"
# Tagged by what it holds: a changed package list builds a new image instead of reusing the old one.
IMAGE = f"localhost/litedeploy-systemd-host:bookworm-{hashlib.sha256(PACKAGES.encode()).hexdigest()[:8]}"
CONTAINER = "litedeploy-systemd-host"
SSH_PORT = 2222
# Published on lab1's address as a server's would be: its sshd, and the gateway's port (labsd's 4000),
# where a team's requests arrive (the zero-downtime tests send their load there).
PUBLISHED = ((SSH_PORT, 22), (4000, 4000))
PUBLISHED_LABEL = ",".join(f"{outside}:{inside}" for outside, inside in PUBLISHED)
# The stand-ins answer where the role's default backends would: Ollama's port, on the host itself.
STANDIN_PORTS = (11434, 11435)
# What systemd needs to be PID 1 here (LAB-NOTES): `--privileged` is refused by this kernel.
SYSTEMD_FLAGS = ("--tmpfs", "/run", "--tmpfs", "/run/lock", "--cgroupns=private", "--cap-add", "SYS_ADMIN",
                 "--stop-signal", "SIGRTMIN+3")
STANDIN_SCRIPT = Path(__file__).with_name("ollama_standin.py")
# Debian's sshd with root's key only and the hardened profile's forwarding settings: every HTTP
# check of the gateway is relayed through the task's shell, as on a CIS-hardened host.
SSHD_SETTINGS = ["PermitRootLogin prohibit-password", "PasswordAuthentication no", *NO_FORWARDING]
STANDIN_UNIT = """[Unit]
Description=Ollama stand-in on port %i (litedeploy lab)

[Service]
ExecStart=/usr/bin/python3 /usr/local/lib/ollama_standin.py standin-%i %i
User=nobody

[Install]
WantedBy=multi-user.target
"""


def build(engine: NamespaceHost, state: Path, say: Say) -> None:
    """The host's image, in the namespace host's engine, loaded from the machine's engine, where it
    is built once per machine (as the lab image is): a fresh clone's lab only loads it (a few
    seconds) instead of a debootstrap of two minutes. Cached: skipped while that engine has it."""
    if succeeds([*engine.docker, "image", "inspect", IMAGE]):
        return
    if not succeeds(["docker", "image", "inspect", IMAGE]):
        _build_on_machine(state, say)
    say(f"lab: loading {IMAGE} into {engine.name}")
    save = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
    run([*engine.docker, "load", "-q"], stdin=save.stdout)
    if save.wait() != 0:
        raise DeployError(f"lab: docker save {IMAGE} failed (exit {save.returncode})")


def _build_on_machine(state: Path, say: Say) -> None:
    say(f"lab: building the systemd host image {IMAGE} (debootstrap, about two minutes, once)")
    started = time.monotonic()
    rootfs = state / "systemd-rootfs"
    try:
        debootstrap(rootfs, PACKAGES)
        (rootfs / "etc/systemd/system/ollama-standin@.service").write_text(STANDIN_UNIT)
        run(["chroot", str(rootfs), "ssh-keygen", "-A"])
        run(["chroot", str(rootfs), "systemctl", "enable", "ssh", *[f"ollama-standin@{port}" for port in STANDIN_PORTS]])
        import_rootfs(rootfs, ("docker",), IMAGE, ('CMD ["/sbin/init"]',))
        older = run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE.split(":")[0]]).split()
        subprocess.run(["docker", "rmi", "-f", *[name for name in older if name != IMAGE]], capture_output=True)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    say(f"lab: built {IMAGE} in {time.monotonic() - started:.0f} s")


def start(engine: NamespaceHost, state: Path, say: Say) -> bool:
    """Boots the host (systemd, sshd, the stand-ins) unless it runs; root logs in with the lab's key
    from the engine's bridge, where docker-proxy relays SSH from. False when it was running."""
    running = subprocess.run([*engine.docker, "inspect", "--format",
                              '{{.Config.Image}} {{.State.Running}} {{index .Config.Labels "org.litedeploy.lab.ports"}}',
                              CONTAINER], capture_output=True, text=True).stdout.split()
    if running == [IMAGE, "true", PUBLISHED_LABEL] and \
            succeeds([*engine.docker, "exec", CONTAINER, "systemctl", "is-active", "ssh"]):
        return False
    build(engine, state, say)
    say(f"lab: starting the systemd host at {engine.address}:{SSH_PORT} (on {engine.name}'s engine)")
    subprocess.run([*engine.docker, "rm", "-f", CONTAINER], capture_output=True)
    keys, config = state / "systemd-host-authorized_keys", state / "systemd-host-sshd.conf"
    keys.write_text((state / "authorized_keys").read_text().replace('from="', f'from="{engine.bridge_gateway},', 1))
    config.write_text("\n".join(SSHD_SETTINGS) + "\n")
    run([*engine.docker, "run", "-d", "--name", CONTAINER, "--hostname", "labsd", *SYSTEMD_FLAGS,
         "--label", f"org.litedeploy.lab.ports={PUBLISHED_LABEL}",
         *[word for outside, inside in PUBLISHED for word in ("-p", f"{engine.address}:{outside}:{inside}")],
         "-v", f"{keys}:/root/.ssh/authorized_keys:ro",
         "-v", f"{config}:/etc/ssh/sshd_config.d/litedeploy.conf:ro",
         "-v", f"{STANDIN_SCRIPT}:/usr/local/lib/ollama_standin.py:ro", IMAGE])
    wait(lambda: succeeds([*engine.docker, "exec", CONTAINER, "systemctl", "is-active", "ssh"]), 60,
         f"the systemd host did not start sshd; see `{' '.join(engine.docker)} logs {CONTAINER}`")
    return True


def host_key(engine: NamespaceHost) -> str:
    """`TYPE KEY` of the host's sshd, for known_hosts."""
    found = run([*engine.docker, "exec", CONTAINER, "cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
    return " ".join(found.split()[:2])


def stop(engine: NamespaceHost, say: Say) -> None:
    if subprocess.run([*engine.docker, "rm", "-f", CONTAINER], capture_output=True).returncode == 0:
        say("lab: stopped the systemd host")
