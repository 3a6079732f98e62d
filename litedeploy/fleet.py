"""One runner for every task over one host or many: a bounded pool of hosts at once (or rolling
batches that stop at the first failure), each with its own connection and typed outcome; one
failure never hides the others. What a host's task prints is held until it is done and printed in
the hosts' order, so parallel hosts read exactly like one after another."""

from __future__ import annotations

import io
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import DeployError
from .host import Host


@dataclass(frozen=True)
class Outcome:
    host: str
    result: object | None  # what the task returned for the host (a DeployResult for a deploy)
    error: str | None
    rolled_back: bool
    seconds: float
    skipped: bool = False
    details: str = ""  # the container's last log lines, when a deploy failed with them

    @property
    def ok(self) -> bool:
        return self.error is None and not self.skipped


def run_hosts(hosts: Sequence[Host], action: Callable[[Host], object], parallel: int,
              serial: int | None = None) -> list[Outcome]:
    """With serial N, hosts go N at a time and a batch with a failure stops the rollout; without it,
    all go at once, at most `parallel` at a time."""
    batches = [hosts[i:i + serial] for i in range(0, len(hosts), serial)] if serial else [list(hosts)]
    outcomes: dict[str, Outcome] = {}
    with _held_output(hosts if parallel > 1 else ()) as hold:
        for number, batch in enumerate(batches):
            with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(batch)))) as pool:
                for outcome in pool.map(lambda host: hold(host, lambda: _one(host, action)), batch):
                    outcomes[outcome.host] = outcome
            if serial and not all(outcomes[host.name].ok for host in batch):
                for later in batches[number + 1:]:
                    for host in later:
                        outcomes[host.name] = Outcome(host.name, None, None, False, 0.0, skipped=True)
                break
    return [outcomes[host.name] for host in hosts]


def _one(host: Host, action: Callable[[Host], object]) -> Outcome:
    start = time.monotonic()
    try:
        return Outcome(host.name, action(host), None, False, time.monotonic() - start)
    except DeployError as exc:
        return Outcome(host.name, None, str(exc), getattr(exc, "rolled_back", False), time.monotonic() - start,
                       details=getattr(exc, "details", ""))


class _ThreadOutput(io.TextIOBase):
    """sys.stdout while hosts run: each host's thread writes to its own buffer."""

    def __init__(self, real) -> None:
        self.real = real
        self.local = threading.local()

    def write(self, text: str) -> int:
        buffer = getattr(self.local, "buffer", None)
        return (buffer or self.real).write(text)

    def flush(self) -> None:
        if getattr(self.local, "buffer", None) is None:
            self.real.flush()


@contextmanager
def _held_output(hosts: Sequence[Host]) -> Iterator[Callable[[Host, Callable[[], Outcome]], Outcome]]:
    """Runs each host's task with its printing held, and prints the held text in the hosts' order as
    soon as every host before it is done."""
    if not hosts:
        yield lambda host, run: run()
        return
    real, order = sys.stdout, [host.name for host in hosts]
    held: dict[str, str] = {}
    printed = 0
    lock = threading.Lock()
    proxy = _ThreadOutput(real)

    def hold(host: Host, run: Callable[[], Outcome]) -> Outcome:
        nonlocal printed
        proxy.local.buffer = io.StringIO()
        try:
            return run()
        finally:
            with lock:
                held[host.name] = proxy.local.buffer.getvalue()
                proxy.local.buffer = None
                while printed < len(order) and order[printed] in held:
                    real.write(held.pop(order[printed]))
                    printed += 1
                real.flush()
    sys.stdout = proxy
    try:
        yield hold
    finally:
        sys.stdout = real
        for name in order[printed:]:  # hosts a rollout skipped print nothing; the rest in order
            real.write(held.pop(name, ""))
        real.flush()


def report(outcomes: Sequence[Outcome], failed: str = "failed") -> None:
    """Every host's error (stderr), the RECAP table; a DeployError naming the hosts that did not succeed."""
    for outcome in outcomes:
        if outcome.details:
            print(f"--- {outcome.host}: last lines of the container's log ---\n{outcome.details.rstrip()}\n---",
                  file=sys.stderr)
        if outcome.error:
            print(f"error: {outcome.error}", file=sys.stderr)
    print(recap_table(outcomes))
    require_success(outcomes, failed)


def require_success(outcomes: Sequence[Outcome], failed: str = "failed") -> None:
    """The task's exit: a DeployError naming every host that did not succeed."""
    not_ok = [o.host for o in outcomes if not o.ok]
    if not_ok:
        raise DeployError(f"{failed} on {len(not_ok)} of {len(outcomes)} hosts: {', '.join(not_ok)}")


def as_record(outcome: Outcome) -> dict:
    """One host's outcome as `deploy --json` prints it."""
    result = outcome.result
    plan = getattr(result, "plan", None)
    return {"host": outcome.host, "result": _result(outcome), "ok": outcome.ok,
            "changed": [change.path for change in plan.changes] if plan else [],
            "restart": plan.restart if plan else None, "image": getattr(result, "runs", None),
            "health_seconds": getattr(result, "health_seconds", None), "seconds": round(outcome.seconds, 2),
            "warnings": list(plan.warnings) if plan else [], "error": outcome.error,
            "rolled_back": outcome.rolled_back}


def _result(outcome: Outcome) -> str:
    return "skipped" if outcome.skipped else "ok" if outcome.ok else "rolled back" if outcome.rolled_back else "failed"


def recap_table(outcomes: Sequence[Outcome]) -> str:
    width = max(len(o.host) for o in outcomes)
    lines = [f"RECAP {'host':<{width}}  result       changed  restart  health  seconds"]
    for o in outcomes:
        result = _result(o)
        plan = getattr(o.result, "plan", None)
        health = getattr(o.result, "health_seconds", None)
        lines.append(f"RECAP {o.host:<{width}}  {result:<11}  {len(plan.changes) if plan else '-':>7}  "
                     f"{(plan.restart or 'no') if plan else '-':<7}  "
                     f"{f'{health:.1f}s' if health is not None else '-':>6}  {o.seconds:7.1f}")
    return "\n".join(lines)
