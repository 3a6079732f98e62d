"""The top-level tasks that change what a host runs: `deploy`, `upgrade` and `rollback`."""

import json
import sys
from typing import TYPE_CHECKING

from invoke import task

from ..errors import DeployError
from ..frontdoor import listening
from ..host import DockerSettings, Host
from ..images import ImageRef
from ..inventory import check_distinct
from ..plan import Verb
from .target import (
    HOSTS,
    PROFILE,
    hosts_of,
    on_each_host,
    project_of,
    reports_errors,
    seconds,
    terminate_as_interrupt,
    whole_number,
)

if TYPE_CHECKING:
    from ..deploy import DeployResult

ACCEPT_RISK = ("go ahead although the release is affected by this critical LiteLLM advisory (its GHSA or CVE "
               "id; repeat for several); see litellm.yaml")
JSON = "print one JSON object per host (result, changes, restart, image, timings, error) instead of text"
YES = ("go ahead although, on a host with a database, the image changes (a rollback does not undo "
       "LiteLLM's schema migrations) or LITELLM_SALT_KEY changes (what LiteLLM stored with the old one is lost)")


@task(help={"host": HOSTS,
            "check": "change nothing: say what would change (with --diff, how) and exit",
            "diff": "show a unified diff of each changed file, secret values masked",
            "break-lock": "remove a stale deploy lock left by a deploy that died",
            "lock-timeout": "seconds to wait for another deploy's lock (default 60)",
            "profile": PROFILE,
            "parallel": "how many hosts deploy at once (default 10)",
            "serial": "rolling: deploy N hosts at a time and stop after a batch with a failure",
            "yes": YES, "accept-risk": ACCEPT_RISK, "json": JSON}, iterable=["accept_risk"])
@reports_errors
def deploy(c, host=None, check=False, diff=False, break_lock=False, lock_timeout="60", profile=None,
           parallel="10", serial="0", yes=False, accept_risk=None, json_=False):
    """Render, upload what changed, restart only if needed, verify; roll back if the gateway fails.

    The image runs by digest: a tag is pinned to what the host pulled the first time, until
    `upgrade` pulls it again."""
    _change(c, host, profile, parallel, serial, diff, json_, check=check, break_lock=break_lock,
            lock_timeout=seconds("lock-timeout", lock_timeout), yes=yes, accept_risk=tuple(accept_risk or ()))


@task(help={"host": HOSTS,
            "to": "the release to run: a version or tag of the host's image (1.110.2, v1.110.2, v1.83.14-stable) or a whole image reference",
            "check": "change nothing: say what would change and exit", "diff": "show how each file would change",
            "break-lock": "remove a stale deploy lock left by a deploy that died",
            "lock-timeout": "seconds to wait for another deploy's lock (default 60)", "profile": PROFILE,
            "parallel": "how many hosts upgrade at once (default 10)",
            "serial": "rolling: upgrade N hosts at a time and stop after a batch with a failure", "yes": YES,
            "accept-risk": ACCEPT_RISK, "json": JSON}, iterable=["accept_risk"])
@reports_errors
def upgrade(c, host=None, to=None, check=False, diff=False, break_lock=False, lock_timeout="60", profile=None,
            parallel="10", serial="0", yes=False, accept_risk=None, json_=False):
    """Pull the release while the old container serves, swap, verify; on failure back to the old digest.

    Without --to the host's image tag is pulled again; --to overrides hosts.yaml for this run only: set the same image there, or the next deploy goes
    back to the one it names."""
    _change(c, host, profile, parallel, serial, diff, json_, to=to, check=check, break_lock=break_lock,
            lock_timeout=seconds("lock-timeout", lock_timeout), yes=yes, accept_risk=tuple(accept_risk or ()),
            upgrade=True)


def _change(c, host, profile, parallel, serial, diff, as_json, to=None, **options) -> None:
    """`deploy` and `upgrade` over one host or many; `options` go to each host's deploy."""
    pool, batch = whole_number("parallel", parallel, 1), whole_number("serial", serial)
    check = options["check"]
    project = project_of(c)
    targets = hosts_of(c, project, host, profile)
    if to:
        targets = [_running_release(target, to, project) for target in targets]
    check_distinct(targets, project.inventory.path, listening)
    _check_shared_database(project, targets)
    target = targets[0]
    # In a fleet each host's deploy runs on in its thread and finishes (audit line, lock released);
    # the interrupt ends the task once they have.
    with terminate_as_interrupt():
        if len(targets) > 1 or as_json:
            _deploy_many(project, targets, pool, batch or None, as_json, diff, **options)
            return
        result = _deploy_one(project, target, **options)
    print(report_of(result, check, diff), end="")
    if not check:
        print(recap(target.name, managed=result.plan.managed, changed=len(result.plan.changes),
                    restart=result.plan.restart, health=result.health_seconds))
    if to and project.inventory.host(target.name).docker.image != target.docker.image:
        print(f"{target.name}: hosts.yaml still names {project.inventory.host(target.name).docker.image}: set image: "
              f"{target.docker.image} there, or the next deploy goes back to it", file=sys.stderr)


@task(help={"host": HOSTS, "to": "the deploy id of the release to go back to (default: the last one "
                                  "that differs from what runs now); see ops.history",
            "break-lock": "remove a stale deploy lock left by a deploy that died",
            "lock-timeout": "seconds to wait for another deploy's lock (default 60)", "yes": YES,
            "accept-risk": ACCEPT_RISK}, iterable=["accept_risk"])
@reports_errors
def rollback(c, host=None, to=None, break_lock=False, lock_timeout="60", yes=False, accept_risk=None):
    """Put back the image, config and env of an earlier deploy, kept on the host; verify like a deploy.

    Only our service block of the compose file goes back; the admin's other services stay as they are."""
    from ..deploy import rollback as run_rollback
    wait = seconds("lock-timeout", lock_timeout)

    def back(project, target):
        with terminate_as_interrupt():
            result, release = _with_recap(run_rollback, project, target, to=to, yes=yes,
                                          accept_risk=tuple(accept_risk or ()), break_lock=break_lock,
                                          lock_timeout=wait)
        print(f"{target.name}: back to release {release}")
        print(summary(result))
        print(recap(target.name, managed=result.plan.managed, changed=len(result.plan.changes),
                    restart=result.plan.restart, health=result.health_seconds))
    on_each_host(c, host, back)


def _running_release(target: Host, to: str, project) -> Host:
    """TARGET running the release `--to` names, where it runs an image (a systemd host's upgrade is
    refused by its runtime, naming why)."""
    if not isinstance(target.runtime_settings, DockerSettings):
        return target
    return target.with_settings(image=str(_upgraded(ImageRef.parse(target.docker.image), to, project, target.name)))


def _upgraded(image: ImageRef, to: str, project, name: str) -> ImageRef:
    """The image `--to` names: a whole reference as written, a version or tag in the host's own scheme."""
    if "/" in to:
        return image.with_version(to)
    return image.with_version(project.releases.tag_for(to, image.tag, f"{name}: --to"))


def _check_shared_database(project, targets) -> None:
    """The hosts deployed and their groups' other members, where they share a database, must agree
    (see shared.py), before anything is sent to any of them."""
    from ..session import host_secrets
    from ..shared import check_shared_database
    names = {target.name for target in targets}
    members = names | {member for group in project.inventory.groups.values() if names & set(group) for member in group}
    hosts = {**{name: project.inventory.host(name) for name in members}, **{t.name: t for t in targets}}
    check_shared_database([(host, host_secrets(host)) for _, host in sorted(hosts.items())
                           if host.vars.get("database")])


def _deploy_one(project, target, **options):
    from ..deploy import deploy as run_deploy
    return _with_recap(run_deploy, project, target, **options)


def _with_recap(change, project, target, **options):
    """One host's deploy or rollback; a failure still ends with its RECAP line."""
    try:
        return change(project, target, **options)
    except DeployError as exc:
        print(recap(target.name, changed=0, managed=0, failed=True, rolled_back=getattr(exc, "rolled_back", False)),
              file=sys.stderr)
        raise


def _deploy_many(project, targets, parallel, serial, as_json, diff, **options) -> None:
    """Many hosts (or one, for --json) through the fleet runner: each host's report (with --check
    --diff its diffs) and a recap table, or one JSON object per host on stdout."""
    from ..deploy import deploy as run_deploy
    from ..fleet import as_record, report, require_success, run_hosts

    def one(target):
        result = run_deploy(project, target, **options)
        if not as_json:
            print(report_of(result, options["check"], diff), end="")
        return result
    outcomes = run_hosts(targets, one, parallel, serial)
    if not as_json:
        report(outcomes, failed="deploy did not succeed")
        return
    for outcome in outcomes:
        print(json.dumps(as_record(outcome)))
    require_success(outcomes, failed="deploy did not succeed")


def report_of(result: "DeployResult", check: bool, diff: bool) -> str:
    """What a host's deploy says: the files it changed (or would, with --check) and with --diff how,
    then its summary line; warnings go to stderr at once."""
    name, plan = result.host, result.plan
    for warning in plan.warnings:
        print(f"{name}: warning: {warning}", file=sys.stderr)
    lines = []
    for path, text in result.diffs if check or diff else ():
        lines.append(f"{name}: {'would change' if check else 'changed'} {path}")
        if diff:
            lines.append(text.rstrip("\n"))
    if check:
        preparation = plan.preparation
        if preparation and preparation.user:
            lines.append(f"{name}: would create the system user {preparation.user}")
        if preparation and preparation.venv:
            lines.append(f"{name}: would install a venv at {preparation.venv}")
        restart = {Verb.UP: "create or recreate litellm", Verb.RESTART: "restart litellm",
                   Verb.RELOAD: "reload the front door"}.get(plan.restart) if plan.restart else None
        lines.append(f"{name}: check: {'would ' + restart if restart else 'would not restart'}; "
                     f"{'nothing would change' if not plan.changes else ''}".rstrip("; "))
    else:
        lines.append(summary(result))
    return "\n".join(lines) + "\n"


def summary(result: "DeployResult") -> str:
    preparation = result.plan.preparation
    names = [change.name for change in result.plan.changes] + (["venv"] if preparation and preparation.venv else [])
    changed = f"changed {', '.join(names)}" if names else "nothing changed"
    verb = {Verb.UP: "; recreated litellm", Verb.RESTART: "; restarted litellm",
            Verb.RELOAD: "; reloaded the front door"}.get(result.plan.restart, "") if result.plan.restart else ""
    image = f"; runs {result.runs}" if result.runs else ""
    return (f"{result.host}: ok, {changed}{verb}{image}; answering after {result.health_seconds:.1f} s; "
            f"{len(result.models)} models listed")


def recap(host: str, changed: int, restart: str | None = None, health: float | None = None, *, managed: int,
          failed: bool = False, rolled_back: bool = False) -> str:
    """One Ansible-style recap line per host: of the MANAGED files the plan compared, those left ok."""
    ok = 0 if failed else managed - changed
    parts = [f"RECAP {host:<12} ok={ok} changed={changed} failed={int(failed)}",
             f"restarted={restart or 'no'}"]
    if health is not None:
        parts.append(f"health={health:.1f}s")
    if failed:
        parts.append(f"rolled_back={'yes' if rolled_back else 'no'}")
    return "  ".join(parts)
