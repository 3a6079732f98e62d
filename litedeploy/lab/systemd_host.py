"""A lab host without Docker for the gateway: a container whose PID 1 is systemd, with its own
hardened sshd (no forwarding), run on namespace host 1's engine and reached over SSH at that host's
address (port 2222). It is shaped like the hosts of the hx_litellm_proxy role: Debian with
python3-venv and sudo, no package index (the namespace has no route out), so LiteLLM reaches it as
a folder of wheels, built here once with the host's own Python; two Ollama stand-ins answer on its
loopback as the role's backends do.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

from .image import LITELLM_REQUIREMENTS
from .netns import NamespaceHost
from .process import Say, run, succeeds, wait
from .sshd import NO_FORWARDING

PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,sudo,python3-venv,ca-certificates,iproute2,procps"
# Tagged by what it holds: a changed package list builds a new image instead of reusing the old one.
IMAGE = f"localhost/litedeploy-systemd-host:bookworm-{hashlib.sha256(PACKAGES.encode()).hexdigest()[:8]}"
CONTAINER = "litedeploy-systemd-host"
SSH_PORT = 2222
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


def wheels_dir(state: Path) -> Path:
    """The wheel folder an inventory's `wheels` names for the lab's systemd hosts."""
    return state / "wheels" / LITELLM_REQUIREMENTS[0].split("==")[1]


def build(engine: NamespaceHost, state: Path, say: Say) -> None:
    """The image (in the namespace host's engine) and the wheel folder, made together by one
    debootstrap: the wheels are resolved by the Python the host runs (Debian's 3.11.2, whose
    markers pip's --python-version cannot evaluate). Cached: skipped when both exist."""
    wheels = wheels_dir(state)
    if wheels.is_dir() and succeeds([*engine.docker, "image", "inspect", IMAGE]):
        return
    say(f"lab: building the systemd host image {IMAGE} and the wheel folder (about 1.5 minutes, once)")
    started = time.monotonic()
    rootfs = state / "systemd-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    try:
        run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(rootfs)])
        shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "tmp/ca.crt")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "PIP_CERT": "/tmp/ca.crt",
               "PIP_CONFIG_FILE": "/dev/null", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_DEFAULT_TIMEOUT": "180"}
        run(["chroot", str(rootfs), "python3", "-m", "venv", "/tmp/download"], env=env)
        run(["chroot", str(rootfs), "/tmp/download/bin/pip", "download", "-q", "--only-binary=:all:",
             "-d", "/tmp/wheels", *LITELLM_REQUIREMENTS], env=env)
        partial = wheels.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(rootfs / "tmp/wheels"), partial)
        (rootfs / "tmp/ca.crt").unlink()
        for cache in ("tmp/download", "var/cache/apt/archives", "var/lib/apt/lists", "root/.cache"):
            shutil.rmtree(rootfs / cache, ignore_errors=True)
        (rootfs / "etc/resolv.conf").write_text("")
        (rootfs / "etc/systemd/system/ollama-standin@.service").write_text(STANDIN_UNIT)
        run(["chroot", str(rootfs), "ssh-keygen", "-A"])
        run(["chroot", str(rootfs), "systemctl", "enable", "ssh", *[f"ollama-standin@{port}" for port in STANDIN_PORTS]])
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run([*engine.docker, "import", "-c", 'CMD ["/sbin/init"]', "-", IMAGE], stdin=tar.stdout)
        tar.wait()
        older = run([*engine.docker, "images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE.split(":")[0]]).split()
        subprocess.run([*engine.docker, "rmi", "-f", *[name for name in older if name != IMAGE]], capture_output=True)
        shutil.rmtree(wheels, ignore_errors=True)
        partial.rename(wheels)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    say(f"lab: built {IMAGE} and {len(list(wheels.iterdir()))} wheels in {time.monotonic() - started:.0f} s")


def start(engine: NamespaceHost, state: Path, say: Say) -> bool:
    """Boots the host (systemd, sshd, the stand-ins) unless it runs; root logs in with the lab's key
    from the engine's bridge, where docker-proxy relays SSH from. False when it was running."""
    running = subprocess.run([*engine.docker, "inspect", "--format", "{{.Config.Image}} {{.State.Running}}", CONTAINER],
                             capture_output=True, text=True).stdout.split()
    if running == [IMAGE, "true"] and succeeds([*engine.docker, "exec", CONTAINER, "systemctl", "is-active", "ssh"]):
        return False
    build(engine, state, say)
    say(f"lab: starting the systemd host at {engine.address}:{SSH_PORT} (on {engine.name}'s engine)")
    subprocess.run([*engine.docker, "rm", "-f", CONTAINER], capture_output=True)
    keys, config = state / "systemd-host-authorized_keys", state / "systemd-host-sshd.conf"
    keys.write_text((state / "authorized_keys").read_text().replace('from="', f'from="{engine.bridge_gateway},', 1))
    config.write_text("\n".join(SSHD_SETTINGS) + "\n")
    run([*engine.docker, "run", "-d", "--name", CONTAINER, "--hostname", "labsd", *SYSTEMD_FLAGS,
         "-p", f"{engine.address}:{SSH_PORT}:22", "-v", f"{keys}:/root/.ssh/authorized_keys:ro",
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
