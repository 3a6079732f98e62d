"""The host's deploy lock, handled in this one place: who takes it, waiting for it, breaking a
stale one, and releasing it (with whatever the task records as it ends, in the same round trip).
The lock's commands are `commands.lock`; the lock is taken in the facts round trip."""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TextIO

from .commands import argv, lock, script
from .errors import DeployError, RemoteError
from .facts import HostFacts
from .session import Session

POLL_SECONDS = 2


def owner(message: str | None = None) -> dict:
    """Who takes a lock: recorded in it, shown to whoever finds the host locked; a MESSAGE marks a
    lock taken by hand (`lock.acquire`), never stale."""
    taker = {"user": getpass.getuser(), "from": socket.gethostname(), "pid": os.getpid(),
             "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return {**taker, "message": message} if message else taker


def describe_holder(holder: dict | None) -> str:
    """`ann@laptop (pid 4242) since TIME: 'message'`, from a lock's owner record."""
    holder = holder or {}
    who = f"{holder.get('user', '?')}@{holder.get('from', '?')} (pid {holder.get('pid', '?')}) since {holder.get('since', '?')}"
    return who + (f": {holder['message']!r}" if holder.get("message") else "")


@contextmanager
def held(session: Session, taker: dict, out: TextIO, break_lock: bool, timeout: float,
         closing: Callable[[], str | None] = lambda: None) -> Iterator[HostFacts]:
    """Holds the host's lock for TAKER (`owner`), waiting up to TIMEOUT seconds for another deploy's,
    and yields the facts read with it. On the way out, whatever the outcome, runs CLOSING's script
    and releases the lock in one round trip; a connection already gone leaves the lock, and the
    next deploy says who holds it. Raises DeployError when the lock stays another's."""
    facts = _take(session, taker, timeout, out, break_lock)
    try:
        yield facts
    finally:
        try:
            session.remote.run(script(closing(), argv(lock.release(session.host))))
        except RemoteError:
            pass


def _take(session: Session, taker: dict, timeout: float, out: TextIO, break_lock: bool) -> HostFacts:
    name = session.host.name
    deadline = time.monotonic() + timeout
    while True:
        facts = session.facts(lock_owner=taker, break_lock=break_lock)
        break_lock = False  # only the stale lock found at the start, never a live deploy's
        if facts.lock.acquired:
            return facts
        who = describe_holder(facts.lock.holder)
        if facts.lock.live == lock.BY_HAND:
            raise DeployError(f"{name}: --break-lock refused: {who} locked the host by hand; when that work is "
                              f"done: inv lock.release --host {name}")
        if facts.lock.live:
            raise DeployError(f"{name}: --break-lock refused: the deploy holding the lock, {who}, is still "
                              f"connected (sshd pid {facts.lock.live}); wait for it with --lock-timeout")
        if time.monotonic() > deadline:
            raise DeployError(f"{name}: another deploy holds the lock: {who}; if it is stale, run again with "
                              "--break-lock")
        out.write(f"{name}: waiting for the deploy lock held by {who}\n")
        out.flush()
        time.sleep(POLL_SECONDS)
