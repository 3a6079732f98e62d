"""The one script that reads what is on the host, and the parser of its output: the managed files,
optionally the deploy lock taken first, and the runtime's questions (`Runtime.questions`).

Every fact is defined where its command is built (`FACTS` of `files`, `lock`, `compose`,
`container`, `unit`): a key the command prints and the parser of its value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

from .. import instances, runtimes
from ..facts import Fact, HostFacts
from ..host import Host
from . import compose, container, files, lock, script, unit

FACTS: Mapping[str, Fact] = {fact.key: fact for module in (files, lock, compose, container, unit)
                             for fact in module.FACTS}
# Fields several lines feed: each line's part is added to the others'.
_MERGED = {field.name for field in fields(HostFacts) if field.name in ("real_paths", "not_files", "not_text", "instances")}


def gather(host: Host, lock_owner: dict | None = None, break_lock: bool = False) -> str:
    """The lock first (breaking a stale one when told to), then the managed files, then the runtime's
    questions."""
    runtime = runtimes.of(host)
    return script(lock.break_stale(host) if break_lock else None,
                  lock.take(host, lock_owner) if lock_owner is not None else None,
                  files.contents(host, runtime.managed_files(host)), *runtime.questions(host))


def parse_facts(output: str, host: Host | None = None) -> HostFacts:
    """`KEY VALUE` lines -> HostFacts (lines of no known fact are skipped). With the host, managed
    paths are reported by their names (symlinks, non-files, non-text)."""
    managed = runtimes.of(host).managed_files(host) if host else {}
    found: dict[str, Any] = {}
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        fact = FACTS.get(key)
        if fact is None:
            continue
        for name, parsed in fact.parse(value.strip(), managed).items():
            if name in _MERGED and name in found:
                parsed = {**found[name], **parsed} if isinstance(parsed, dict) else found[name] + parsed
            found[name] = parsed
    facts = HostFacts(**{"service_text": None, "config_text": None, "env_text": None, "compose_flavour": None,
                         "state": None, **found})
    # Behind vars.zero_downtime's proxy, the gateway is the instance its configuration names.
    live = instances.live_color(facts.proxy_text) if host else None
    return replace(facts, state=facts.instances[live]) if live and live in facts.instances else facts
