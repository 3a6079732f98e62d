"""What `ops.status` reports, decided from facts and the rendered files (pure)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .advisories import Releases
from .facts import HostFacts
from .frontdoor import Topology, described, door_gateways, stray
from .host import COLORS, Host
from .plan import DesiredFiles

if TYPE_CHECKING:
    from .runtimes.base import Runtime


@dataclass(frozen=True)
class Status:
    host: str
    profile: str
    state: str  # running, exited, restarting, ... or "absent"
    health: str | None
    uptime_seconds: float | None
    restarts: int
    exit_code: int | None
    image: str
    image_id: str
    digests: tuple[str, ...]
    ports: tuple[str, ...]
    config_on_host: str | None  # sha256 prefixes
    config_in_repo: str
    drift: tuple[str, ...]  # files the repo would change
    # config.yaml is newer than the container's start. A hint, not a failure: LiteLLM reads its config
    # seconds after the process starts, so a file written in that window is already in use.
    restart_pending: bool
    answering: bool
    runtime: str = "docker"
    # The advisories (litellm.yaml) the running release is exposed to: `ID severity fixed-in`, most severe first.
    advisories: tuple[str, ...] = ()
    draining: bool = False  # it answers 503 shutting_down: its graceful shutdown began
    # vars.zero_downtime: the proxy and the instance it forwards to ("litellm-proxy -> litellm-blue ...").
    live: str | None = None
    # vars.tls: the certificate the door serves, as a client's handshake verified it ("NAMES by
    # ISSUER, N days left (until DATE)"), or why none was read.
    certificate: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "running" and self.answering and not self.drift


def describe(host: Host, runtime: Runtime, layout: Topology, facts: HostFacts, desired: DesiredFiles,
             answering: bool, now: datetime, releases: Releases) -> Status:
    state = facts.gateway.state
    started = _parse_time(state.started_at) if state and state.running else None
    drift = tuple(change.name for change in layout.plan(runtime, host, desired, facts).changes)
    pending = bool(started and facts.files.config_mtime and facts.files.config_mtime > started.timestamp())
    runs = runtime.release.now(host, facts)
    return Status(
        host=host.name, profile=host.profile or "default", state=state.status if state else "absent",
        health=state.health if state else None,
        uptime_seconds=(now - started).total_seconds() if started else None,
        restarts=state.restart_count if state else 0,
        exit_code=state.exit_code if state else None,
        image=runs, image_id=state.image_id if state else "",
        digests=facts.gateway.image_digests,
        ports=runtime.driver.ports(host, state),
        config_on_host=_digest(facts.files.config_text) if facts.files.config_text is not None else None,
        config_in_repo=_digest(desired.config), drift=drift, restart_pending=pending, answering=answering,
        runtime=host.runtime, live=_live(host, runtime, layout, facts), advisories=tuple(
            f"{advisory.id} {advisory.severity}" + (f", fixed in {advisory.fixed_in}" if advisory.fixed_in else "")
            for advisory in releases.exposure(runtime.release.version(runs))))


def _live(host: Host, runtime: Runtime, layout: Topology, facts: HostFacts) -> str | None:
    """Which instance the front door forwards to, and whether its proxy runs."""
    live = facts.live
    if not live:
        return None
    proxy, *instances = door_gateways(runtime, host, layout.door or described(host))
    instance = dict(zip(COLORS, instances))[live]
    state = facts.gateway.instances.get("proxy")
    idle, serving = stray(facts), facts.gateway.instances.get(live)
    also = f"; {runtime.driver.holder(dict(zip(COLORS, instances))[idle])} runs too and takes no traffic while the " \
        "live one answers (the next deploy stops it)" if idle else ""
    if not (serving and serving.running):  # after `docker compose down`: a plain `up -d` starts no instance
        also += "; it does not run (deploy starts an instance)"
    return (f"{runtime.driver.holder(proxy)} ({state.status if state else 'absent'}) on {host.bind}:{host.port} "
            f"forwards to {runtime.driver.holder(instance)} on 127.0.0.1:{instance.port}{also}")


def runs_line(details: tuple[str, ...]) -> str:
    """`ops.status`'s line about what runs, from `WhatRuns.details`: the image (its id and registry
    digests), or the venv (the unit that runs it)."""
    what, runs, *identity = details
    return f"  {what:<7} {runs}  " + "  ".join(identity)


def deployed_profile(config_text: str | None) -> str | None:
    """The profile named in the header of a config.yaml we rendered ("default": the host's vars)."""
    found = re.search(r"^# profile: (\S+)$", config_text or "", re.MULTILINE)
    return found.group(1) if found and found.group(1) != "default" else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _parse_time(stamp: str) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds, which datetime does not take."""
    if not stamp or stamp.startswith("0001-"):
        return None
    return datetime.fromisoformat(re.sub(r"\.(\d{1,6})\d*", r".\1", stamp).replace("Z", "+00:00"))


def uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h{minutes}m" if days else f"{hours}h{minutes}m" if hours else f"{minutes}m{int(seconds) % 60}s"
