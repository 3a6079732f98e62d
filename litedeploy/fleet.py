"""Deploying many hosts: in parallel with a bounded pool, or rolling in batches that stop at the
first failure. Each host has its own connection and outcome; one failure never hides the others."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

from .errors import DeployError
from .inventory import Host


@dataclass(frozen=True)
class Outcome:
    host: str
    result: object | None  # a DeployResult when the deploy succeeded
    error: str | None
    rolled_back: bool
    seconds: float
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.skipped


def deploy_all(hosts: Sequence[Host], deploy_one: Callable[[Host], object], parallel: int,
               serial: int | None = None) -> list[Outcome]:
    """With serial N, hosts go N at a time and a batch with a failure stops the rollout; without it,
    all go at once, at most `parallel` at a time."""
    batches = [hosts[i:i + serial] for i in range(0, len(hosts), serial)] if serial else [list(hosts)]
    outcomes: dict[str, Outcome] = {}
    for number, batch in enumerate(batches):
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(batch)))) as pool:
            for outcome in pool.map(lambda host: _one(host, deploy_one), batch):
                outcomes[outcome.host] = outcome
        if serial and not all(outcomes[host.name].ok for host in batch):
            for later in batches[number + 1:]:
                for host in later:
                    outcomes[host.name] = Outcome(host.name, None, None, False, 0.0, skipped=True)
            break
    return [outcomes[host.name] for host in hosts]


def _one(host: Host, deploy_one: Callable[[Host], object]) -> Outcome:
    start = time.monotonic()
    try:
        return Outcome(host.name, deploy_one(host), None, False, time.monotonic() - start)
    except DeployError as exc:
        return Outcome(host.name, None, str(exc), getattr(exc, "rolled_back", False), time.monotonic() - start)


def as_record(outcome: Outcome) -> dict:
    """One host's outcome as `deploy --json` prints it."""
    result = outcome.result
    plan = getattr(result, "plan", None)
    return {"host": outcome.host, "result": _result(outcome), "ok": outcome.ok,
            "changed": [change.path for change in plan.changes] if plan else [],
            "restart": plan.restart if plan else None, "image": getattr(result, "image", None),
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
