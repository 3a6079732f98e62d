"""LiteLLM's releases and the advisories against them (pure): the version an image tag or a pinned
package names, under both of LiteLLM's tag schemes, the tag `--to VERSION` means on a host, and
which known advisories a version is exposed to. The facts (the default release, when the tag
scheme changed, the advisories with their sources) are data in litellm.yaml; this module reads
them and decides.

Tags: up to 1.83.x LiteLLM published releases as `v1.83.14-stable`; since 1.84.0 as `v1.84.0`
(patches `v1.84.0.post1`, candidates `v1.84.0-rc1`). `main-stable`, `main-latest` and `latest`
move, so they name no version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from .errors import DeployError, RenderError, parse_yaml

# A release tag of either scheme: an optional v, X.Y.Z, an optional .postN or rcN, an optional -stable.
_TAG = re.compile(r"(?P<v>v?)(?P<version>\d+\.\d+\.\d+(?:[.-]?(?:post|rc)\.?\d+)?)(?P<stable>-stable)?")
SEVERITIES = ("low", "medium", "high", "critical")  # GitHub's advisory database's words
_BOUND = re.compile(r"\s*(<=|>=|<|>|==)\s*(\S+)\s*")


def release_version(tag: str | None) -> Version | None:
    """`1.110.4`, `v1.110.4`, `v1.83.14-stable`, `v1.84.0.post1`, `v1.84.0-rc.1` -> its Version
    (PEP 440 ordering: rc1 < release < post1); a moving tag (`main-stable`) or any other -> None."""
    match = _TAG.fullmatch(tag or "")
    if not match:
        return None
    try:
        return Version(match["version"])
    except InvalidVersion:
        return None


@dataclass(frozen=True)
class Advisory:
    """One published advisory against the LiteLLM proxy (litellm.yaml's `advisories`)."""

    id: str  # GHSA id
    aliases: tuple[str, ...]  # CVE ids
    severity: str  # one of SEVERITIES
    summary: str
    affected: tuple[tuple[str, Version], ...]  # all must hold: (operator, version)
    fixed_in: str | None
    source: str  # where it is published

    def affects(self, version: Version) -> bool:
        compare = {"<": version.__lt__, "<=": version.__le__, ">": version.__gt__, ">=": version.__ge__,
                   "==": version.__eq__}
        return all(compare[operator](bound) for operator, bound in self.affected)

    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)

    def describe(self) -> str:
        fixed = f", fixed in {self.fixed_in}" if self.fixed_in else ""
        return f"{self.id} ({', '.join(self.aliases) + ', ' if self.aliases else ''}{self.severity}{fixed}): {self.summary}"


@dataclass(frozen=True)
class Releases:
    """litellm.yaml's `releases` and `advisories`: what the tool knows of LiteLLM's releases."""

    default_image: str  # the release a host runs unless hosts.yaml names another
    bare_tags_since: Version  # the first release tagged vX.Y.Z instead of vX.Y.Z-stable
    advisories: tuple[Advisory, ...]

    def exposure(self, version: Version | None) -> list[Advisory]:
        """The advisories VERSION is affected by, most severe first; none for an unknown version."""
        found = [advisory for advisory in self.advisories if version is not None and advisory.affects(version)]
        return sorted(found, key=lambda advisory: -SEVERITIES.index(advisory.severity))

    def tag_for(self, wanted: str, current_tag: str | None, where: str) -> str:
        """The tag `--to WANTED` names on a host whose image now has CURRENT_TAG. A version takes the
        host's scheme: `1.110.4` on a `v...` host is `v1.110.4`, `1.83.14` on a `v1.83.10-stable` host
        `v1.83.14-stable`, a candidate `1.84.0rc1` is `v1.84.0-rc.1` (LiteLLM's Docker candidates,
        docs.litellm.ai/blog/cleaner-release-versions). A tag with a `v` is taken as written. Raises
        DeployError for a `-stable` tag of a release that has none (1.84.0 and later)."""
        match = _TAG.fullmatch(wanted)
        version = release_version(wanted)
        if not match or version is None:
            return wanted
        bare = Version(version.base_version) >= self.bare_tags_since  # 1.84.0rc1 is of the new scheme
        if match["stable"] and bare:
            raise DeployError(f"{where}: LiteLLM tags releases from {self.bare_tags_since} as vX.Y.Z; there is no "
                              f"{wanted}: use --to v{match['version']}")
        if match["v"]:
            return wanted
        if match["stable"]:
            return f"v{wanted}"  # X.Y.Z-stable was only ever published with its v
        current = _TAG.fullmatch(current_tag or "")
        prefix = "v" if current is None or current["v"] else ""
        if version.pre:
            return f"{prefix}{version.base_version}-rc.{version.pre[1]}"
        return f"{prefix}{version}{'' if bare else '-stable'}"

    def refusal(self, version: Version | None, accepted: Iterable[str], runs: str) -> str | None:
        """Why a change to VERSION (RUNS, the image or venv, for the message) is refused: a critical
        advisory that `--accept-risk ID` (any of its names) did not accept."""
        accepted = {name.casefold() for name in accepted}
        blocking = [advisory for advisory in self.exposure(version) if advisory.severity == "critical"
                    and not accepted & {name.casefold() for name in advisory.names()}]
        if not blocking:
            return None
        first = blocking[0]
        others = f" (and {', '.join(a.id for a in blocking[1:])})" if blocking[1:] else ""
        return (f"{runs} is LiteLLM {version}, affected by the critical advisory {first.describe()}{others}; see "
                f"{first.source}. Choose a fixed release, or run again with --accept-risk {first.id}")

    def warnings(self, version: Version | None, runs: str, besides: str | None = None) -> list[str]:
        """One line for each advisory VERSION is exposed to that the refusal BESIDES does not name
        already (every one, where there is no refusal)."""
        return [f"{runs} is LiteLLM {version}, affected by {advisory.describe()}; see {advisory.source}"
                for advisory in self.exposure(version) if advisory.id not in (besides or "")]


def load_releases(path: Path) -> Releases:
    """litellm.yaml's `releases` and `advisories`. Raises RenderError naming the file and the key
    at fault."""
    try:
        data = parse_yaml(path.read_text(), str(path), RenderError)
    except OSError as error:
        raise RenderError(f"{path}: cannot read LiteLLM's facts ({error.strerror})") from None
    data = data if isinstance(data, dict) else {}
    releases = data.get("releases")
    if not isinstance(releases, dict) or not isinstance(releases.get("default_image"), str):
        raise RenderError(f"{path}: releases needs a default_image")
    since = release_version(str(releases.get("bare_tags_since", "")))
    if since is None:
        raise RenderError(f"{path}: releases.bare_tags_since must be a version such as 1.84.0")
    entries = data.get("advisories") or []
    if not isinstance(entries, list):
        raise RenderError(f"{path}: advisories must be a list")
    return Releases(releases["default_image"], since,
                    tuple(_advisory(entry, f"{path}: advisories[{index}]") for index, entry in enumerate(entries)))


def _advisory(entry: Any, where: str) -> Advisory:
    if not isinstance(entry, dict):
        raise RenderError(f"{where} must be a mapping (id, severity, affected, source, ...)")
    for key in ("id", "severity", "affected", "summary", "source"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise RenderError(f"{where}.{key} must be a text")
    if entry["severity"] not in SEVERITIES:
        raise RenderError(f"{where}.severity must be one of {', '.join(SEVERITIES)}")
    bounds = []
    for part in entry["affected"].split(","):
        match = _BOUND.fullmatch(part)
        version = release_version(match[2]) if match else None
        if match is None or version is None:
            raise RenderError(f"{where}.affected: {part.strip()!r} is not a bound such as '< 1.84.0'")
        bounds.append((match[1], version))
    aliases = entry.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(alias, str) for alias in aliases):
        raise RenderError(f"{where}.aliases must be a list of ids")
    fixed = entry.get("fixed_in")
    return Advisory(entry["id"], tuple(aliases), entry["severity"], entry["summary"], tuple(bounds),
                    None if fixed is None else str(fixed), entry["source"])
