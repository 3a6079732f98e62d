"""The one script that reads what is on the host (`facts.parse_facts` reads its output): managed
files, compose flavour, container, image digests; optionally taking the deploy lock first."""

from __future__ import annotations

from ..inventory import Host
from . import container, files, lock, script, unit
from .compose import FLAVOUR


def gather(host: Host, lock_owner: dict | None = None, break_lock: bool = False) -> str:
    """The Docker questions run side by side, each answer in a file of its own printed in order (on a
    host the compose CLI alone takes tens of milliseconds to answer); one after another where no
    temporary folder can be made (a full /tmp must not stop a deploy from reading the host). A
    systemd host is asked about its unit, venvs and service user instead."""
    taking = (lock.break_stale(host) if break_lock else None,
              lock.take(host, lock_owner) if lock_owner is not None else None, files.contents(host))
    if host.systemd:
        return script(*taking, unit.runtime_facts(host))
    questions = [FLAVOUR, container.state(host, digests=True), container.wanted_image(host.image), container.ENGINE]
    return script(
        *taking,
        "if t=$(mktemp -d 2>/dev/null); then",
        [f"  ( {question} ) > \"$t/{index}\" &" for index, question in enumerate(questions)],
        "  wait; cat " + " ".join(f"\"$t/{index}\"" for index in range(len(questions))) + "; rm -rf \"$t\"",
        "else",
        [f"  ( {question} )" for question in questions],
        "fi",
        "true",
    )
