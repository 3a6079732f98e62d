"""A real registry on loopback (Debian's docker-registry) serving the lab image as LiteLLM releases,
two that work and one that fails at start, so pulls, upgrades and rollbacks go through `docker pull`
as they do against ghcr.io.

It serves them under two repositories whose images share no image ID: `litellm-lab`, which hosts.yaml's
lab hosts run, and `litellm-releases`, for the tests of pulls, upgrades and pruning alone. A deploy
prunes its repository's images that none of its kept releases runs, and a test that takes a tag off
the engine to force a pull must not take it from a deploy running beside it."""

from __future__ import annotations

import hashlib
import http.client
import json
import posixpath
import struct
import subprocess
import tarfile
import tempfile
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import yaml

from litedeploy.errors import DeployError

from .image import lock_of
from .process import Say, alive, run, spawn, stop, succeeds, wait

ADDRESS, PORT = "127.0.0.1", 15500
LAB_REPOSITORY, RELEASE_TESTS = "litellm-lab", "litellm-releases"
# Release tag -> the `docker commit --change` lines that make it from the lab build. Each gets a
# digest of its own; all share the build's one big layer, so a pull moves only a few kilobytes.
RELEASES: dict[str, tuple[str, ...]] = {
    "1.106.2": ("LABEL org.litedeploy.lab.release=1.106.2",),
    "1.106.3": ("LABEL org.litedeploy.lab.release=1.106.3",),
    # LiteLLM's two tag schemes: up to 1.83.x `vX.Y.Z-stable` (this one has a critical advisory in
    # litellm.yaml), from 1.84.0 on `vX.Y.Z`.
    "v1.83.14-stable": ("LABEL org.litedeploy.lab.release=1.83.14",),
    "v1.106.3": ("LABEL org.litedeploy.lab.release=1.106.3",),
    # Starts, prints what a release with a broken dependency prints, and exits.
    "1.107.0": ("LABEL org.litedeploy.lab.release=1.107.0",
                'ENTRYPOINT ["/bin/sh", "-c", "echo \'ImportError: cannot import name ProxyConfig '
                '(lab release 1.107.0 is broken on purpose)\' >&2; exit 1"]'),
}
BROKEN_RELEASE = "1.107.0"
# Built for another architecture: its image config says arm64 and its entrypoint is an aarch64
# program, as a release pulled from a registry without an amd64 build would be.
FOREIGN_RELEASE = "1.106.3-arm64"
FOREIGN_ARCH, FOREIGN_ENTRYPOINT = "arm64", "/usr/local/bin/litellm-arm64"
RELEASES[FOREIGN_RELEASE] = (f"LABEL org.litedeploy.lab.architecture={FOREIGN_ARCH}",
                             f'ENTRYPOINT ["{FOREIGN_ENTRYPOINT}"]')
# What the lab's releases are published as (see push).
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


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
    names = []
    for repository in (LAB_REPOSITORY, RELEASE_TESTS):
        for tag, changes in RELEASES.items():
            name = release(tag, repository)
            current = lock_of(("docker",), name) == built
            if current and in_registry(repository, tag):
                continue
            if not current:
                container = run(["docker", "create", built_image]).strip()
                try:
                    if tag == FOREIGN_RELEASE:
                        _copy_aarch64_program(container, FOREIGN_ENTRYPOINT)
                    run(["docker", "commit", *[word for change in changes for word in ("--change", change)],
                         "--change", f"LABEL org.litedeploy.lab.repository={repository}", container, name])
                finally:
                    succeeds(["docker", "rm", container])
            names.append(name)
    if names:
        say(f"lab: publishing {', '.join(names)}")
        push(names)


def push(names: list[str]) -> None:
    """What `docker push` does for these images, without compressing their layers: `docker save`'s
    layer tars go to the registry as they are, under an OCI image manifest (uncompressed layers are
    an OCI layer type; Docker's pull accepts them). Gzipping the lab image's 870 MB layer took
    docker push most of 90 s of a CPU; here the upload is bound by the disk.

    names: `127.0.0.1:15500/REPOSITORY:TAG` of local images. Raises DeployError when the
    registry refuses a blob or manifest."""
    blobs: dict[str, tuple[str, int]] = {}  # archive member -> (digest, size), each layer once
    texts: dict[str, bytes] = {}
    links: dict[str, str] = {}  # archive member -> the member it links to
    first = _repository_of(names[0])  # where the layers are uploaded; other repositories mount them
    with subprocess.Popen(["docker", "save", *names], stdout=subprocess.PIPE) as save:
        assert save.stdout is not None
        with tarfile.open(fileobj=save.stdout, mode="r|") as archive:
            for member in archive:
                if member.issym():  # a layer docker save writes once, under another folder
                    links[member.name] = posixpath.normpath(posixpath.join(posixpath.dirname(member.name),
                                                                            member.linkname))
                elif member.isfile() and (data := archive.extractfile(member)) is not None:
                    if member.name.endswith("/layer.tar"):
                        blobs[member.name] = _upload(first, data, member.size)
                    else:
                        texts[member.name] = data.read()
    if save.returncode != 0:
        raise DeployError(f"lab: docker save {' '.join(names)} failed (exit {save.returncode})")
    blobs.update({name: blobs[target] for name, target in links.items() if target in blobs})
    for image in json.loads(texts["manifest.json"]):
        config = _with_architecture(texts[image["Config"]])
        layers = [blobs[name] for name in image["Layers"]]
        for name in image["RepoTags"]:
            repository, tag = _repository_of(name), name.rsplit(":", 1)[1]
            config_digest = _blob(repository, config)
            for digest, _ in layers:
                _link(repository, digest, first)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                           "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}
                           for digest, size in layers]}).encode()
            _request("PUT", f"/v2/{repository}/manifests/{tag}", manifest, {"Content-Type": OCI_MANIFEST}, 201)
    # docker push records the digest on the local image; a pull of what the engine has does the
    # same (only the manifest moves). Without it, every lab host's first deploy pulls, and a deploy
    # beside it prunes the repository's images it finds with a digest.
    for name in names:
        run(["docker", "pull", "-q", name])


def _with_architecture(config: bytes) -> bytes:
    """An image config whose `org.litedeploy.lab.architecture` label names another architecture,
    saying so: what `docker image inspect` reports as the image's Architecture after a pull."""
    data = json.loads(config)
    arch = ((data.get("config") or {}).get("Labels") or {}).get("org.litedeploy.lab.architecture")
    if not arch:
        return config
    return json.dumps({**data, "architecture": arch}).encode()


def _copy_aarch64_program(container: str, path: str) -> None:
    """An ELF header for AArch64 (e_machine 183) and one loadable segment: what the kernel of an
    x86-64 host refuses to run (exec format error)."""
    header = (b"\x7fELF\x02\x01\x01" + bytes(9)
              + struct.pack("<HHIQQQIHHHHHH", 2, 183, 1, 0x400078, 64, 0, 0, 64, 56, 1, 0, 0, 0)
              + struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 0x80, 0x80, 0x1000)
              + bytes(8))
    with tempfile.TemporaryDirectory() as folder:
        program = Path(folder) / "program"
        program.write_bytes(header)
        program.chmod(0o755)
        run(["docker", "cp", str(program), f"{container}:{path}"])


def _repository_of(name: str) -> str:
    return name.split("/", 1)[1].rsplit(":", 1)[0]


class _Hashing:
    """A file's reader that hashes what it hands out (http.client reads the body in blocks)."""

    def __init__(self, source: IO[bytes]):
        self.source, self.sha256 = source, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        block = self.source.read(size)
        self.sha256.update(block)
        return block


def _upload(repository: str, source: IO[bytes] | None, size: int) -> tuple[str, int]:
    """Streams a blob of known size to the registry (a chunked upload: its digest is known only at
    the end); (digest, size)."""
    assert source is not None
    body = _Hashing(source)
    sent = _request("PATCH", _upload_location(repository), body,
                    {"Content-Type": "application/octet-stream", "Content-Length": str(size)}, 202)
    digest = f"sha256:{body.sha256.hexdigest()}"
    _finish_upload(sent.headers["Location"], digest, b"")
    return digest, size


def _blob(repository: str, data: bytes) -> str:
    """A small blob, uploaded unless the repository has it; its digest."""
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    if not _has_blob(repository, digest):
        _finish_upload(_upload_location(repository), digest, data)
    return digest


def _link(repository: str, digest: str, source: str) -> None:
    """Makes a blob uploaded to `source` a blob of `repository` too (the registry's cross-repository mount)."""
    if source != repository and not _has_blob(repository, digest):
        _request("POST", f"/v2/{repository}/blobs/uploads/?mount={digest}&from={source}", b"", {}, 201)


def _has_blob(repository: str, digest: str) -> bool:
    return _request("HEAD", f"/v2/{repository}/blobs/{digest}", b"", {}, None).status == 200


def _upload_location(repository: str) -> str:
    """Where a new upload to the repository goes (the registry names it)."""
    return _request("POST", f"/v2/{repository}/blobs/uploads/", b"", {}, 202).headers["Location"]


def _finish_upload(location: str, digest: str, data: bytes) -> None:
    """Completes an upload with its last bytes (all of a small blob's), the registry checking the digest."""
    _request("PUT", f"{location}{'&' if '?' in location else '?'}digest={digest}", data,
             {"Content-Type": "application/octet-stream"}, 201)


def _request(method: str, target: str, body: bytes | _Hashing, headers: dict[str, str],
             expected: int | None) -> http.client.HTTPResponse:
    """One request to the registry; the answer, read. Raises DeployError for another status than
    `expected` (None: any)."""
    path = urllib.parse.urlsplit(target)
    connection = http.client.HTTPConnection(ADDRESS, PORT, timeout=600, blocksize=1 << 20)
    try:
        connection.request(method, f"{path.path}?{path.query}" if path.query else path.path, body, headers)
        answer = connection.getresponse()
        detail = answer.read()
    finally:
        connection.close()
    if expected is not None and answer.status != expected:
        raise DeployError(f"lab: the registry answered {method} {path.path} with {answer.status}: "
                          f"{detail[:200].decode(errors='replace')}")
    return answer


def manifest_url(repository: str, tag: str) -> str:
    return f"http://{ADDRESS}:{PORT}/v2/{repository}/manifests/{tag}"


def pinned(tag: str, repository: str = LAB_REPOSITORY) -> str:
    """The release as a deploy pins it: its name and the digest the registry itself serves."""
    answer = _request("HEAD", f"/v2/{repository}/manifests/{tag}", b"", {"Accept": OCI_MANIFEST}, 200)
    return f"{release(tag, repository)}@{answer.headers['Docker-Content-Digest']}"


def in_registry(repository: str, tag: str) -> bool:
    try:
        return _request("HEAD", f"/v2/{repository}/manifests/{tag}", b"", {"Accept": OCI_MANIFEST}, None).status == 200
    except OSError:  # no registry answers
        return False
