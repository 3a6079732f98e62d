"""The host's deploy lock, as Kamal's `commands/lock.rb`: take it, read its holder, release it,
break a stale one. Only built here; `session` runs them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..facts import Fact, LockFacts, decode
from ..host import Host
from . import line


def path(host: Host) -> str:
    """In /run/lock, which a reboot empties: after a reboot no deploy can still be running."""
    return f"/run/lock/litedeploy{host.config_dir.replace('/', '_')}"


# The pid of the sshd process serving this SSH connection (sshd-session since OpenSSH 9.8): it lives
# exactly as long as the deploy that took the lock stays connected.
_CONNECTION_PID = ("c=$$; while [ \"$c\" -gt 1 ]; do case $(cat /proc/$c/comm 2>/dev/null) in"
                   " sshd|sshd-session) break;; esac; c=$(cut -d' ' -f4 /proc/$c/stat 2>/dev/null || echo 1); done")


# The line `take` prints when this deploy has the lock.
ACQUIRED = "acquired"
TAKEN = f"lock {ACQUIRED}"

# What `break_stale` reports, in place of a connection, for a lock taken by hand (lock.acquire).
BY_HAND = "by-hand"


def take(host: Host, owner: dict) -> str:
    """Takes the lock atomically (mkdir) and says `lock acquired`, or prints who holds it; the
    holder's SSH connection is recorded, so a lock is known to be live while that connection is.
    An owner with a message (lock.acquire) marks the lock as taken by hand: never stale."""
    lock = line(path(host))
    by_hand = f" : > {lock}/{BY_HAND};" if owner.get("message") else ""
    return "\n".join([
        f"if mkdir {lock} 2>/dev/null; then printf '%s\\n' {line(json.dumps(owner))} > {lock}/owner;{by_hand}",
        f"  {_CONNECTION_PID}; echo \"$c\" > {lock}/connection; echo {line(TAKEN)};",
        f"else {holder(host)}; fi",
    ])


def holder(host: Host) -> str:
    """Prints `lock held BASE64-OWNER` when the host is locked, nothing otherwise."""
    lock = line(path(host))
    return f"if [ -d {lock} ]; then printf 'lock held '; base64 -w0 < {lock}/owner 2>/dev/null; echo; fi"


def release(host: Host) -> list[str]:
    return ["rm", "-rf", path(host)]


def break_stale(host: Host) -> str:
    """Removes the lock unless the connection of the deploy holding it is still open (`lock_live
    PID`) or it was taken by hand, for maintenance (`lock_live by-hand`): lock.release ends that."""
    lock = line(path(host))
    return (f"if [ -e {lock}/{BY_HAND} ]; then echo 'lock_live {BY_HAND}'; else"
            f" c=$(cat {lock}/connection 2>/dev/null); case $(cat /proc/${{c:-0}}/comm 2>/dev/null) in"
            f" sshd|sshd-session) echo \"lock_live $c\";; *) rm -rf {lock};; esac; fi")


def _lock(value: str, paths: Mapping[str, str]) -> dict[str, Any]:
    """`lock acquired`, or `lock held BASE64-OWNER` (an owner that cannot be read is an unknown one)."""
    if value == ACQUIRED:
        return {"acquired": True}
    if not value.startswith("held"):
        return {}
    try:
        encoded = value.partition(" ")[2]
        return {"holder": json.loads(decode(encoded)) if encoded else {}}
    except ValueError:
        return {"holder": {}}


FACTS = (Fact("lock", LockFacts, _lock), Fact("lock_live", LockFacts, lambda value, paths: {"live": value}))
