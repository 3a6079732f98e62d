"""The one script that reads what is on the host (`facts.parse_facts` reads its output): managed
files, compose flavour, container, image digests; optionally taking the deploy lock first."""

from __future__ import annotations

from ..inventory import Host
from . import container, files, lock, script
from .compose import FLAVOUR


def gather(host: Host, lock_owner: dict | None = None, break_lock: bool = False) -> str:
    """The Docker questions run side by side (each answer in a file of its own, printed in order):
    on a host the compose CLI alone takes tens of milliseconds to answer."""
    return script(
        lock.break_stale(host) if break_lock else None,
        lock.take(host, lock_owner) if lock_owner is not None else None,
        files.contents(host),
        "t=$(mktemp -d) || exit 1",
        f"( {FLAVOUR} ) > \"$t/flavour\" &",
        f"( {container.state(host, digests=True)} ) > \"$t/container\" &",
        f"( {container.wanted_image(host.image)} ) > \"$t/wanted\" &",
        "wait",
        "cat \"$t/flavour\" \"$t/container\" \"$t/wanted\"; rm -rf \"$t\"",
    )
