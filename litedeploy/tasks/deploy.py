"""The top-level `deploy` task."""

import sys

from invoke import task

from ..errors import DeployError
from .target import (HOSTS, PROFILE, hosts_of, project_of, reports_errors, seconds, terminate_as_interrupt,
                     whole_number)

MANAGED_FILES = 3  # the compose file, config.yaml, litellm.env


@task(help={"host": HOSTS,
            "check": "change nothing: say what would change (with --diff, how) and exit",
            "diff": "show a unified diff of each changed file, secret values masked",
            "break-lock": "remove a stale deploy lock left by a deploy that died",
            "lock-timeout": "seconds to wait for another deploy's lock (default 60)",
            "profile": PROFILE,
            "parallel": "how many hosts deploy at once (default 10)",
            "serial": "rolling: deploy N hosts at a time and stop after a batch with a failure"})
@reports_errors
def deploy(c, host=None, check=False, diff=False, break_lock=False, lock_timeout="60", profile=None,
           parallel="10", serial="0"):
    """Render, upload what changed, restart only if needed, verify; roll back if the gateway fails."""
    wait = seconds("lock-timeout", lock_timeout)
    pool, batch = whole_number("parallel", parallel, 1), whole_number("serial", serial)
    project = project_of(c)
    targets = hosts_of(c, project, host, profile)
    target = targets[0]
    # In a fleet each host's deploy runs on in its thread and finishes (audit line, lock released);
    # the interrupt ends the task once they have.
    with terminate_as_interrupt():
        if len(targets) > 1:
            _deploy_many(project, targets, pool, batch or None, check=check, break_lock=break_lock, lock_timeout=wait)
            return
        result = _deploy_one(project, target, check=check, break_lock=break_lock, lock_timeout=wait)
    if check or diff:
        for path, text in result.diffs:
            print(f"{target.name}: {'would change' if check else 'changed'} {path}")
            if diff:
                print(text, end="" if text.endswith("\n") else "\n")
    if check:
        restart = {"up": "create or recreate litellm", "restart": "restart litellm"}.get(result.plan.restart)
        print(f"{target.name}: check: {'would ' + restart if restart else 'would not restart'}; "
              f"{'nothing would change' if not result.plan.changes else ''}".rstrip("; "))
        return
    for warning in result.plan.warnings:
        print(f"{target.name}: warning: {warning}", file=sys.stderr)
    print(summary(result))
    print(recap(target.name, changed=len(result.plan.changes), restart=result.plan.restart,
                health=result.health_seconds))


def _deploy_one(project, target, **options):
    """One host's deploy; a failure still ends with its RECAP line."""
    from ..deploy import deploy as run_deploy
    try:
        return run_deploy(project, target, **options)
    except DeployError as exc:
        print(recap(target.name, changed=0, failed=True, rolled_back=getattr(exc, "rolled_back", False)),
              file=sys.stderr)
        raise


def _deploy_many(project, targets, parallel, serial, **options) -> None:
    from ..deploy import deploy as run_deploy
    from ..fleet import deploy_all, recap_table

    def one(target):
        result = run_deploy(project, target, **options)
        print(summary(result) if not options["check"] else
              f"{target.name}: check: {len(result.plan.changes)} files would change, "
              f"restart: {result.plan.restart or 'no'}", flush=True)
        return result
    outcomes = deploy_all(targets, one, parallel, serial)
    for outcome in outcomes:
        if outcome.error:
            print(f"error: {outcome.error}", file=sys.stderr)
    print(recap_table(outcomes))
    failed = [o.host for o in outcomes if not o.ok]
    if failed:
        raise DeployError(f"deploy did not succeed on {len(failed)} of {len(outcomes)} hosts: {', '.join(failed)}")


def summary(result) -> str:
    names = [change.name for change in result.plan.changes]
    changed = f"changed {', '.join(names)}" if names else "nothing changed"
    verb = {"up": "; recreated litellm", "restart": "; restarted litellm"}.get(result.plan.restart, "")
    return (f"{result.host}: ok, {changed}{verb}; answering after {result.health_seconds:.1f} s; "
            f"{len(result.models)} models listed")


def recap(host: str, changed: int, restart: str | None = None, health: float | None = None,
          failed: bool = False, rolled_back: bool = False) -> str:
    """One Ansible-style recap line per host."""
    ok = 0 if failed else MANAGED_FILES - changed
    parts = [f"RECAP {host:<12} ok={ok} changed={changed} failed={int(failed)}",
             f"restarted={restart or 'no'}"]
    if health is not None:
        parts.append(f"health={health:.1f}s")
    if failed:
        parts.append(f"rolled_back={'yes' if rolled_back else 'no'}")
    return "  ".join(parts)
