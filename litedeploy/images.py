"""Image references and the digest a host runs (pure): a tag is resolved once, to the digest the
host pulled, and the compose block names that digest until an upgrade pulls the tag again.

A host names a release (`ghcr.io/berriai/litellm:v1.110.2`); the block then runs
`ghcr.io/berriai/litellm:v1.110.2@sha256:...`, which Docker and both composes read as the
digest (the tag stays for people to read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

# Tags that move to a new build every week: a deploy pins whatever they point at, but says so.
MOVING_TAGS = ("latest", "main", "main-latest", "main-stable", "main-nightly")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class ImageRef:
    name: str  # registry/path, without tag or digest
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        rest, _, digest = ref.partition("@")
        # A colon after the last slash starts the tag; one before it belongs to a registry's port.
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        name, tag = (rest[:colon], rest[colon + 1:]) if colon > slash else (rest, None)
        return cls(name, tag, digest or None)

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def unpinned(self) -> ImageRef:
        return replace(self, digest=None)

    def pinned(self, digest: str) -> ImageRef:
        return replace(self, digest=digest)

    def with_version(self, version: str) -> ImageRef:
        """`--to v1.2.3` names a tag of the same image; a reference with a `/` names another image."""
        return ImageRef.parse(version) if "/" in version else ImageRef(self.name, version, None)

    @property
    def moving(self) -> bool:
        return self.digest is None and (self.tag or "latest") in MOVING_TAGS


def resolve_image(wanted: str, deployed: str | None, local_digests: tuple[str, ...] | None,
                  fresh: bool = False) -> str | None:
    """The reference the block should run, or None when the host must pull `wanted` first.

    `deployed` is the image our block runs now; `local_digests` the RepoDigests of `wanted` on the
    host (None when it has no such image, () for a local build that no registry knows). `fresh`
    (an upgrade) ignores the digest already deployed and what the host holds: the tag is pulled again.
    """
    ref = ImageRef.parse(wanted)
    if ref.digest:
        return wanted
    if not fresh and deployed and ImageRef.parse(deployed).unpinned == ref and ImageRef.parse(deployed).digest:
        return deployed
    if fresh or local_digests is None:
        return None
    digest = next((digest for name, _, digest in (entry.partition("@") for entry in local_digests)
                   if _short(name) == _short(ref.name) and _DIGEST.fullmatch(digest)), None)
    return str(ref.pinned(digest)) if digest else wanted


def _short(name: str) -> str:
    """Docker Hub's names as Docker prints them: `nginx`, not `docker.io/library/nginx`."""
    return name.removeprefix("docker.io/").removeprefix("library/")
