"""The one script that reads what is on the host, and the parser of its output: the managed files,
optionally the deploy lock taken first, and the questions of the runtime and the topology
(`Driver.questions`, `Topology.questions`).

Every fact is defined where its command is built (`FACTS` of `files`, `lock`, `compose`,
`container`, `unit`): a key the command prints and the parser of its value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..facts import Fact, FileFacts, GatewayFacts, HostFacts
from ..host import Host
from . import compose, container, files, lock, script, unit

FACTS: Mapping[str, Fact] = {fact.key: fact for module in (files, lock, compose, container, unit)
                             for fact in module.FACTS}
# Fields several lines feed (part, field): each line's share is added to the others'.
_MERGED = {(FileFacts, "real_paths"), (FileFacts, "not_files"), (FileFacts, "not_text"), (GatewayFacts, "instances")}


def gather(host: Host, managed: Mapping[str, str], questions: Sequence[str], lock_owner: dict | None = None,
           break_lock: bool = False) -> str:
    """The lock first (breaking a stale one when told to), then the MANAGED files (by the fact that
    carries each one's text), then the runtime's QUESTIONS."""
    return script(lock.break_stale(host) if break_lock else None,
                  lock.take(host, lock_owner) if lock_owner is not None else None,
                  files.contents(host, managed), *questions)


def parse_facts(output: str, managed: Mapping[str, str] | None = None) -> HostFacts:
    """`KEY VALUE` lines -> HostFacts, each fact's fields into its part (lines of no known fact are
    skipped). With the MANAGED files (`gather`'s), their paths are reported by their names
    (symlinks, non-files, non-text), and behind a front door the gateway's state is the live
    instance's."""
    managed = managed or {}
    found: dict[type, dict[str, Any]] = {}
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        fact = FACTS.get(key)
        if fact is None:
            continue
        part = found.setdefault(fact.part, {})
        for name, parsed in fact.parse(value.strip(), managed).items():
            if (fact.part, name) in _MERGED and name in part:
                parsed = {**part[name], **parsed} if isinstance(parsed, dict) else part[name] + parsed
            part[name] = parsed
    facts = HostFacts.from_parts(found)
    # Behind the front door, the gateway is the instance its configuration names.
    live = facts.live if managed else None
    if live is None or live not in facts.gateway.instances:
        return facts
    return replace(facts, gateway=replace(facts.gateway, state=facts.gateway.instances[live]))
