"""A change on a host as a list of steps, each with its undo, run by one runner (Kamal's `Boot#run`,
made general: start the new one; on error stop it and re-raise; else stop the old one).

The runner owns what every change needs when a step fails or is interrupted (Ctrl-C, or SIGTERM
turned into one): the last log lines of the gateway it watches, taken before anything is undone;
the undo of each step done (and of the failed one, where its failure leaves something behind), in
reverse order; and the outcome the audit line records (`DeployFailed.rolled_back`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import DeployError, DeployFailed
from .host import Host
from .session import Session

LOG_LINES_ON_FAILURE = 30


@dataclass(frozen=True)
class Step:
    """One change on the host. DO makes it (its value is kept); UNDO takes it back, best effort,
    and may say what it put back (a DeployError from it means the undo failed). UNDO_IF_FAILED: its
    own failure leaves something to take back (a gateway started). FAILED: how the host stands
    once everything is undone, where this step fails; without it, what the undos said. WATCHED:
    the gateway whose logs explain this step's failure, where it is not the run's."""

    name: str
    do: Callable[[], Any]
    undo: Callable[[], str | None] | None = None
    undo_if_failed: bool = False
    failed: str | None = None
    watched: Host | None = None


def run(session: Session, steps: Sequence[Step], watched: Host) -> dict[str, Any]:
    """Runs STEPS in order and returns each one's value by name. Where one fails (DeployError) or is
    interrupted, and something was done, raises DeployFailed: the reason, "rolled back: HOW" (or
    "ROLLBACK FAILED too: ..."), the last log lines of WATCHED. Where nothing needs undoing, the
    failure is raised as it is (the host is as it was)."""
    done: list[Step] = []
    values: dict[str, Any] = {}
    for step in steps:
        try:
            values[step.name] = step.do()
        except (DeployError, KeyboardInterrupt) as failure:
            undoing = [*done, step] if step.undo_if_failed else done
            if not any(each.undo for each in undoing):
                raise
            raise _undone(session, failure, step, undoing, watched) from None
        done.append(step)
    return values


def _undone(session: Session, failure: BaseException, failed: Step, undoing: list[Step], watched: Host) -> DeployFailed:
    reason = f"{session.host.name}: interrupted" if isinstance(failure, KeyboardInterrupt) else str(failure)
    logs = session.remote.run(session.runtime.driver.logs(failed.watched or watched, LOG_LINES_ON_FAILURE),
                              check=False)
    details = session.redact(logs.stdout + logs.stderr)
    said: list[str] = []
    failures: list[str] = []
    for step in reversed(undoing):  # every undo, whatever one before it did: each puts back what it can
        if step.undo is None:
            continue
        try:
            what = step.undo()
        except DeployError as exc:
            failures.append(str(exc))
            continue
        if what:
            said.append(what)
    if failures:
        return DeployFailed(f"{reason}; ROLLBACK FAILED too: {'; '.join(failures)}", details=details, rolled_back=False)
    return DeployFailed(f"{reason}; rolled back: {failed.failed or ', '.join(said)}", details=details,
                        rolled_back=True)
