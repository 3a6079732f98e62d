"""A real registry on loopback (Debian's docker-registry) serving the lab image as LiteLLM releases,
two that work and one that fails at start, so pulls, upgrades and rollbacks go through `docker pull`
as they do against ghcr.io."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

import yaml

from .process import Say, alive, run, spawn, stop, succeeds, wait

ADDRESS, PORT = "127.0.0.1", 15500
REPOSITORY = f"{ADDRESS}:{PORT}/litellm-lab"
# Release tag -> the `docker commit --change` lines that make it from the lab build. Each gets a
# digest of its own; all share the build's one big layer, so a pull moves only a few kilobytes.
RELEASES: dict[str, tuple[str, ...]] = {
    "1.106.2": ("LABEL org.litedeploy.lab.release=1.106.2",),
    "1.106.3": ("LABEL org.litedeploy.lab.release=1.106.3",),
    # Starts, prints what a release with a broken dependency prints, and exits.
    "1.107.0": ("LABEL org.litedeploy.lab.release=1.107.0",
                'ENTRYPOINT ["/bin/sh", "-c", "echo \'ImportError: cannot import name ProxyConfig '
                '(lab release 1.107.0 is broken on purpose)\' >&2; exit 1"]'),
}
BROKEN_RELEASE = "1.107.0"


def release(tag: str) -> str:
    return f"{REPOSITORY}:{tag}"


def start(state: Path, say: Say, folder: Path | None = None, wrap: Sequence[str] = ()) -> bool:
    """Starts a registry on 127.0.0.1:15500 unless it runs. With `folder` and `wrap` (a namespace
    host's), one more serves the same blobs on that host's own loopback, so every lab host pulls
    the same image names as this machine does."""
    folder = folder or state
    pidfile = folder / "registry.pid"
    if alive(pidfile):
        return False
    config = folder / "registry.yml"
    config.write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(state / "registry")}, "delete": {"enabled": True}},
        "http": {"addr": f"{ADDRESS}:{PORT}"}}))
    say(f"lab: starting a registry on {ADDRESS}:{PORT}" + (f" ({folder.name})" if wrap else ""))
    spawn([*wrap, "docker-registry", "serve", str(config)], pidfile, folder / "registry.log")
    answering = [*wrap, "bash", "-c", f"exec 3<>/dev/tcp/{ADDRESS}/{PORT}"]
    wait(lambda: succeeds(answering), 20, f"the registry did not start; see {folder / 'registry.log'}")
    return True


def stop_in(folder: Path, say: Say) -> None:
    stop(folder / "registry.pid", f"the registry ({folder.name})", say)


def publish(built_image: str, say: Say) -> None:
    """Pushes every release the registry lacks (Docker pulls from 127.0.0.0/8 over plain HTTP)."""
    for tag, changes in RELEASES.items():
        if _in_registry(tag):
            continue
        say(f"lab: publishing {release(tag)}")
        if not succeeds(["docker", "image", "inspect", release(tag)]):
            container = run(["docker", "create", built_image]).strip()
            try:
                run(["docker", "commit", *[word for change in changes for word in ("--change", change)],
                     container, release(tag)])
            finally:
                succeeds(["docker", "rm", container])
        run(["docker", "push", "-q", release(tag)])


def _in_registry(tag: str) -> bool:
    request = urllib.request.Request(
        f"http://{ADDRESS}:{PORT}/v2/litellm-lab/manifests/{tag}", method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False
