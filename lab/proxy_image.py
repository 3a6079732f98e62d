"""The lab's reverse proxy image: Debian 12's HAProxy in a minimal root filesystem, run as the
official `haproxy` image runs it (its command, its stop signal), because no registry can be pulled
from. Published to the lab registry as `127.0.0.1:15500/haproxy-lab:2.6`, which hosts.yaml's lab
hosts name in `vars.proxy_image`. Cached: built only when the engine's image was made from other
build settings."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from .image import CHROOT_ENV, LOCK_LABEL, debootstrap, import_rootfs, lock_of
from .process import Say, run
from .registry import in_registry, push, release

REPOSITORY, TAG = "haproxy-lab", "2.6"
BUILT = f"localhost/{REPOSITORY}:{TAG}"
# The official image's command (github.com/docker-library/haproxy): the master-worker mode (-W)
# reloads on SIGUSR2 without closing the listening socket. Its STOPSIGNAL (SIGUSR1, a soft stop)
# cannot be set by `docker import`; our compose block sets it for either image.
# Its user: `haproxy`, not root, as the official image's (USER haproxy), with its state folder its own.
CHANGES = ('CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]', "WORKDIR /var/lib/haproxy",
           "USER haproxy")
PACKAGES = "haproxy"
SETUP = "mkdir -p /var/lib/haproxy && chown haproxy:haproxy /var/lib/haproxy"
BUILD = hashlib.sha256("\n".join((PACKAGES, SETUP, *CHANGES)).encode()).hexdigest()[:12]


def build(state: Path, say: Say) -> bool:
    """Builds the image unless the engine has it from these settings; True when it built."""
    if lock_of(("docker",), BUILT) == BUILD:
        return False
    say(f"lab: building {BUILT} (debootstrap with Debian's haproxy)")
    started = time.monotonic()
    rootfs = state / "proxy-rootfs"
    try:
        debootstrap(rootfs, PACKAGES)
        (rootfs / "usr/local/etc/haproxy").mkdir(parents=True, exist_ok=True)
        run(["chroot", str(rootfs), "sh", "-c", SETUP], env=CHROOT_ENV)
        import_rootfs(rootfs, ("docker",), BUILT, (*CHANGES, f"LABEL {LOCK_LABEL}={BUILD}"))
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    say(f"lab: built {BUILT} in {time.monotonic() - started:.0f} s")
    return True


def publish(say: Say) -> None:
    """Pushes the image to the lab registry unless it holds this build already."""
    name = release(TAG, REPOSITORY)
    if lock_of(("docker",), name) == BUILD and in_registry(REPOSITORY, TAG):
        return
    run(["docker", "tag", BUILT, name])
    say(f"lab: publishing {name}")
    push([name])
