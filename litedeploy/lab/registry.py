"""A real registry on loopback (Debian's docker-registry) serving the lab image as LiteLLM releases,
two that work and one that fails at start, so pulls, upgrades and rollbacks go through `docker pull`
as they do against ghcr.io.

It serves them under two repositories whose images share no image ID: `litellm-lab`, which hosts.yaml's
lab hosts run, and `litellm-releases`, for the tests of pulls, upgrades and pruning alone. A deploy
prunes its repository's images that none of its kept releases runs, and a test that takes a tag off
the engine to force a pull must not take it from a deploy running beside it."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

import yaml

from .image import lock_of
from .process import Say, alive, run, spawn, stop, succeeds, wait

ADDRESS, PORT = "127.0.0.1", 15500
LAB_REPOSITORY, RELEASE_TESTS = "litellm-lab", "litellm-releases"
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


def release(tag: str, repository: str = LAB_REPOSITORY) -> str:
    return f"{ADDRESS}:{PORT}/{repository}:{tag}"


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
    """Pushes every release the registry lacks, or whose local image was made from another build of
    the lab image (a refreshed lock). Docker pulls from 127.0.0.0/8 over plain HTTP."""
    built = lock_of(("docker",), built_image)
    for repository in (LAB_REPOSITORY, RELEASE_TESTS):
        for tag, changes in RELEASES.items():
            name = release(tag, repository)
            current = lock_of(("docker",), name) == built
            if current and _in_registry(repository, tag):
                continue
            say(f"lab: publishing {name}")
            if not current:
                container = run(["docker", "create", built_image]).strip()
                try:
                    run(["docker", "commit", *[word for change in changes for word in ("--change", change)],
                         "--change", f"LABEL org.litedeploy.lab.repository={repository}", container, name])
                finally:
                    succeeds(["docker", "rm", container])
            run(["docker", "push", "-q", name])


def manifest_url(repository: str, tag: str) -> str:
    return f"http://{ADDRESS}:{PORT}/v2/{repository}/manifests/{tag}"


def _in_registry(repository: str, tag: str) -> bool:
    request = urllib.request.Request(
        manifest_url(repository, tag), method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False
