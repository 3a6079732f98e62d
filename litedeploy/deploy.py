"""The deploy pipeline as named steps, over one connection, with one audit line per task on the host:

1. `render_host`: secrets and templates, every mistake in the inputs found before connecting;
2. `recorded`: the host's lock taken (with the facts, in one round trip) and the audit record begun;
3. `_check_database`, `_check_advisories`: refusals, before anything changes;
4. `Runtime.pinned` or `_pulled`: what will run, pinned;
5. `_apply`: plan, prepare, install, restart and verify, and on failure `_roll_back`;
6. on the way out, the release kept, what no release runs pruned, the audit line written and the
   lock released, in one round trip.

What differs between runtimes (what runs, which files, which verbs) is the host's runtime's (`runtimes.base.Runtime`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from . import instances, locking, runtimes
from .audit import AuditRecord
from .commands import audit, files, script
from .envfile import env_pairs
from .errors import DeployError, DeployFailed, VerifyError
from .facts import HostFacts
from .host import Host
from .images import ImageRef, resolve_image
from .inventory import SETTINGS
from .plan import Plan, file_diff
from .project import Project
from .releases import SALT_KEY, choose_release, migration_refusal, salt_key_refusal
from .render import DesiredFiles, render_host
from .runtimes.base import ServiceCommands
from .session import Session, host_secrets, opened
from .switch import LOG_LINES_ON_FAILURE, switch
from .verify import SmokePlan, check_models, is_draining, liveliness, smoke, wait_until_live


@dataclass(frozen=True)
class DeployResult:
    host: str
    plan: Plan
    health_seconds: float | None
    models: tuple[str, ...]
    # (path, unified diff with every secret masked) per changed file
    diffs: tuple[tuple[str, str], ...]
    runs: str | None = None  # what the service file runs, pinned (`Runtime.served`)


def deploy(project: Project, host: Host, out: TextIO = sys.stderr, *, check: bool = False,
           break_lock: bool = False, lock_timeout: float = 60, upgrade: bool = False,
           yes: bool = False, accept_risk: tuple[str, ...] = ()) -> DeployResult:
    """With check, stops after the plan: nothing on the host changes, nothing is pulled and no lock
    is taken. An upgrade pulls the image's tag again, where a deploy keeps the digest it pinned.
    A change to a release a critical advisory affects is refused before anything changes unless
    ACCEPT_RISK names it (a host that runs it already gets a warning: its config can still change)."""
    runtime = runtimes.of(host)
    secrets = host_secrets(host)
    render_host(project.templates, host, secrets)  # every mistake in the inputs before connecting
    runtime.check_local(host, upgrade)
    wanted = runtime.wanted(host)
    with opened(host, secrets) as session:
        if check:
            return _preview(project, session, upgrade, accept_risk, out)
        with recorded(session, project.root, "upgrade" if upgrade else "deploy", out, break_lock,
                      lock_timeout) as (facts, record):
            deployed = _check_database(session, facts, wanted, upgrade, yes, secrets.get(SALT_KEY))
            _check_advisories(project, host, wanted, facts, accept_risk, out)
            runs, arch = runtime.pinned(host, facts, upgrade), facts.wanted_arch
            if runs is None:
                runs, arch, _ = _pulled(session, host.docker.image, out)
            refusal = runtime.run_refusal(runs, arch, facts)
            if refusal:  # after the pull, before anything stops
                raise DeployError(f"{host.name}: {refusal}")
            record.runs, record.previous_runs = runs, deployed
            pinned = runtime.with_proxy(runtime.running(host, runs), facts, upgrade,
                                        lambda image: _pulled(session, image, out)[2])
            desired = render_host(project.templates, pinned, secrets)
            return _apply_recorded(session, desired, facts, record, out)


def _preview(project: Project, session: Session, upgrade: bool, accept_risk: tuple[str, ...],
             out: TextIO) -> DeployResult:
    """--check: the plan and its diffs against what the host holds, the warnings a deploy would give."""
    host, runtime = session.host, session.runtime
    facts = session.facts()
    _check_advisories(project, host, runtime.wanted(host), facts, accept_risk, out, check=True)
    plan = runtime.plan(host, render_host(project.templates, runtime.as_deployed(host, facts, upgrade),
                                          session.secrets), facts)
    if runtime.pinned(host, facts, upgrade) is None:
        plan = replace(plan, warnings=(*plan.warnings, f"would pull {host.docker.image}"))
    refusal = runtime.refusal(facts, plan.restart)
    if refusal:
        plan = replace(plan, warnings=(*plan.warnings, f"would be refused: {refusal}"))
    return DeployResult(host.name, plan, None, (), _diffs(plan, session))


def rollback(project: Project, host: Host, out: TextIO = sys.stderr, *, to: str | None = None,
             yes: bool = False, accept_risk: tuple[str, ...] = (), break_lock: bool = False,
             lock_timeout: float = 60) -> tuple[DeployResult, str]:
    """Puts back what a kept release ran (our compose block, so its image digest; or its unit, so its
    venv), its config and env, and verifies like a deploy (failing that, back to what ran before).
    Returns the release's id. A release a critical advisory affects is refused unless ACCEPT_RISK
    names it."""
    secrets = host_secrets(host)
    with opened(host, secrets) as session, \
            recorded(session, project.root, "rollback", out, break_lock, lock_timeout) as (facts, record):
        release = choose_release(host, session.releases(), facts, to)
        runs = release.runs(host) or session.runtime.wanted(host)
        _check_advisories(project, host, runs, facts, accept_risk, out)
        desired = release.desired(host, frozenset(secrets))
        if session.runtime.runs_instances(host, desired.service) != instances.enabled(host):
            setting = "on" if instances.enabled(host) else "off"
            raise DeployError(f"{host.name}: release {release.id} was kept while vars.zero_downtime was "
                              f"{'off' if setting == 'on' else 'on'}, and it is {setting} now; choose a release "
                              "kept since (--to, see ops.history), or set zero_downtime as it was")
        if instances.enabled(host):  # the proxy's configuration is no release's: hosts.yaml's, as rendered now
            desired = replace(desired, proxy=render_host(project.templates, session.runtime.as_deployed(host, facts),
                                                         secrets).proxy)
        deployed = _check_database(session, facts, runs, False, yes, env_pairs(desired.env).get(SALT_KEY))
        record.runs, record.previous_runs, record.rollback_to = runs, deployed, release.id
        return _apply_recorded(session, desired, facts, record, out), release.id


def restart(project: Project, host: Host, out: TextIO = sys.stderr, *, break_lock: bool = False,
            lock_timeout: float = 60) -> DeployResult:
    """vars.zero_downtime's restart: the idle instance started from the files as they are, proven,
    and the proxy switched to it (`switch`); the live one stops once it has finished its requests."""
    secrets = host_secrets(host)
    with opened(host, secrets) as session, \
            recorded(session, project.root, "restart", out, break_lock, lock_timeout) as (facts, record):
        desired = render_host(project.templates, session.runtime.as_deployed(host, facts), secrets)
        plan = Plan((), "switch")
        health, models = switch(session, plan, desired, facts, record.id, SmokePlan.of(facts.config_text or ""),
                                out)
        record.restart = plan.restart
        return DeployResult(host.name, plan, health, models, ())


def _check_advisories(project: Project, host: Host, runs: str, facts: HostFacts, accept_risk: tuple[str, ...],
                      out: TextIO, check: bool = False) -> None:
    """Refuses a change to RUNS (an image reference, a venv) when a critical advisory in
    litellm.yaml affects the LiteLLM it holds and ACCEPT_RISK does not name it. Where the host runs
    that version already (a config change, a key rotation) or under --check, the refusal is a
    warning; so is every other advisory, and a version that cannot be told."""
    runtime = runtimes.of(host)
    version = runtime.running_version(runs)
    what = f"{host.name}: {runtime.describe(runs)}"
    refusal = project.releases.refusal(version, accept_risk, what)
    already = version is not None and runtime.running_version(runtime.served(host, facts.service_text)) == version
    if refusal and not (already or check):
        raise DeployError(refusal)
    lines = [f"{refusal.removeprefix(host.name + ': ')} ({'the host runs it already' if already else 'would be refused'})"
             ] if refusal else []
    lines += [line.removeprefix(host.name + ": ") for line in project.releases.warnings(version, what, refusal)]
    if version is None and not ImageRef.parse(runs).moving:
        lines.append(f"cannot tell which LiteLLM {runs} is (no version in its tag): its advisories are not checked")
    for line in lines:
        out.write(f"{host.name}: warning: {line}\n")


def _check_database(session: Session, facts: HostFacts, wanted: str, upgrade: bool, yes: bool,
                    salt: str | None) -> str | None:
    """Refuses, on a host with a database and unless told yes, a change of release (schema
    migrations) or of the salt key (stored credentials); returns what the service file runs now."""
    host = session.host
    deployed = session.runtime.served(host, facts.service_text)
    refusal = None if yes else (migration_refusal(host, deployed, wanted, upgrade)
                                or salt_key_refusal(host, facts.env_text, salt))
    if refusal:
        raise DeployError(refusal)
    return deployed


def _apply_recorded(session: Session, desired: DesiredFiles, facts: HostFacts, record: AuditRecord,
                    out: TextIO) -> DeployResult:
    result = _apply(session, desired, facts, record.id, out)
    record.changed, record.restart = [c.path for c in result.plan.changes], result.plan.restart
    return replace(result, runs=record.runs)


def _pulled(session: Session, image: str, out: TextIO) -> tuple[str, str | None, tuple[str, ...]]:
    """Pulls IMAGE while the running container keeps serving; what came, pinned, its architecture
    and its registry digests."""
    host = session.host
    out.write(f"{host.name}: pulling {image}\n")
    out.flush()
    started = time.monotonic()
    digests, arch = session.pull_image(image)
    pinned = resolve_image(image, None, digests) or image  # a digest, once pulled
    out.write(f"{host.name}: pulled {pinned} in {time.monotonic() - started:.1f} s\n")
    return pinned, arch, digests


def remove(project: Project, host: Host, out: TextIO = sys.stderr, *, break_lock: bool = False,
           lock_timeout: float = 60) -> list[str]:
    """Like blockinfile's state=absent: the gateway stopped and removed, its service file out of
    the way (our block out of the compose file, backed up and validated); config and env stay, so a
    deploy brings it all back (`Runtime.removal`). Returns what was done, a line each."""
    with opened(host) as session, \
            recorded(session, project.root, "remove", out, break_lock, lock_timeout) as (facts, record):
        removal = session.runtime.removal(host, facts, record.id)
        for command in removal.before:
            session.remote.run(command)
        if removal.install:
            session.install([removal.install], record.id, session.runtime.commands(host, facts))
        for command in removal.after:
            session.remote.run(command)
        record.changed, record.restart = list(removal.changed), removal.restart
        return list(removal.done)


@contextmanager
def recorded(session: Session, root: Path, action: str, out: TextIO, break_lock: bool,
             lock_timeout: float) -> Iterator[tuple[HostFacts, AuditRecord]]:
    """Holds the host's deploy lock (`locking.held`; the facts come with it) for a task whose
    outcome goes into the audit record; as the lock is released, in the same round trip, the audit
    line is appended and, where the task changed what runs and worked, the release is kept and
    what no kept release runs is pruned."""
    taker, commit = locking.owner(), _commit(root)
    closing: list[str] = []  # the audit line (and the release kept), once the outcome is known
    with locking.held(session, taker, out, break_lock, lock_timeout, lambda: "\n".join(closing)) as facts:
        record = AuditRecord.begin(action, session.host.name, commit, taker)
        keep = None
        try:
            yield facts, record
            record.result = "ok"
            if record.runs and record.changed:  # a deploy, upgrade or rollback that changed the host
                keep = _kept_release(session, record)
        except DeployError as exc:
            record.result, record.error = "failed", session.redact(str(exc))
            record.rolled_back = getattr(exc, "rolled_back", False)
            raise
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM turned into one, before anything changed
            record.result = "interrupted"
            raise
        finally:
            closing.append(script(keep, audit.append(session.host, record.as_json())))

def _kept_release(session: Session, record: AuditRecord) -> str:
    """The script keeping this task's files as release RECORD.id; where what runs changed, the
    images (or venvs) no kept release runs go."""
    host, runtime = session.host, session.runtime
    runs = record.runs or ""
    prune = None if runs == record.previous_runs else runtime.prune(host, runs, files.releases_dir(host))
    return files.keep_release(host, record.id, prune, runtime.release_names(host))


def _apply(session: Session, desired: DesiredFiles, facts: HostFacts, deploy_id: str, out: TextIO) -> DeployResult:
    host, remote, runtime = session.host, session.remote, session.runtime
    plan = runtime.plan(host, desired, facts)
    refusal = runtime.refusal(facts, plan.restart)
    if refusal:
        raise DeployError(f"{host.name}: {refusal}")
    # A running gateway the plan leaves alone is asked once whether it answers.
    probe = liveliness(session.gateway) if not plan.restart and facts.state and facts.state.running else None
    if probe is not None and is_draining(probe):
        # Its drain began (/health/drain, or a stop that never ended): it takes no new work. The
        # deploy leaves a gateway that answers.
        out.write(f"{host.name}: the gateway is draining (503 shutting_down); restarting it\n")
        plan = replace(plan, restart="switch" if instances.enabled(host) else "restart")
    expected = SmokePlan.of(desired.config)
    if plan.restart is None:  # nothing to install or restart, so nothing to roll back to
        answered = probe is not None and probe.status == 200
        health = 0.0 if answered else wait_until_live(session.gateway, host.health_timeout, out)
        return DeployResult(host.name, plan, health, tuple(check_models(session.gateway, expected)), ())
    if plan.restart == "switch":  # vars.zero_downtime: a second instance, then the proxy switched to it
        health, models = switch(session, plan, desired, facts, deploy_id, expected, out)
        return DeployResult(host.name, plan, health, models, _diffs(plan, session))
    commands = runtime.commands(host, facts)
    if plan.restart == "up" and not (facts.state and facts.state.running):
        _check_port_free(session)
    preparation = runtime.preparation(host, plan)
    if preparation:
        session.prepare(preparation, out)
    if plan.changes:
        session.install(plan.changes, deploy_id, commands)
    try:
        health, models = _restart_and_verify(session, plan.restart, expected, commands, out)
    except (DeployError, KeyboardInterrupt) as failure:
        reason = f"{host.name}: interrupted" if isinstance(failure, KeyboardInterrupt) else str(failure)
        logs = remote.run(runtime.logs(host, LOG_LINES_ON_FAILURE), check=False)
        tail = session.redact(logs.stdout + logs.stderr)
        rolled_back, how = _roll_back(session, plan, plan.restart, facts, commands, deploy_id, out)
        raise DeployFailed(f"{reason}; {how}", details=tail, rolled_back=rolled_back) from None
    return DeployResult(host.name, plan, health, models, _diffs(plan, session))


def _check_port_free(session: Session) -> None:
    """A new gateway could not bind the port: fail before the host changes, naming who has it."""
    host = session.host
    now = session.state_and_port()
    if now.docker_unreachable:
        raise DeployError(f"{host.name}: the Docker engine does not answer {host.ssh_user}; start it or give the "
                          "user access to its socket")
    other = now.held_by_other(session.runtime.holder(host))
    if other:
        raise DeployError(f"{host.name}: port {host.port} is already in use by {other}; stop it or set "
                          "another port in hosts.yaml")


def _restart_and_verify(session: Session, verb: str, expected: SmokePlan, commands: ServiceCommands,
                        out: TextIO) -> tuple[float, tuple[str, ...]]:
    """VERB ("restart", "up"), then the full smoke: a chat answer proves the credentials."""
    host, gateway = session.host, session.gateway
    health = session.start_and_wait(commands.bringing_up(verb), out)
    failed = [check for check in smoke(gateway, expected, expected.models[:1], redis_probe=session.reaches_redis)
              if not check.ok]
    if failed:
        raise VerifyError(f"{host.name}: smoke failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed))
    return health, tuple(expected.models)


def _roll_back(session: Session, plan: Plan, verb: str, before: HostFacts, commands: ServiceCommands,
               deploy_id: str, out: TextIO) -> tuple[bool, str]:
    """Restores this deploy's backups and brings the gateway back as it was with VERB (a systemd
    unit's previous venv is still there: only a kept release's unit stops a venv from being
    pruned); says how that went."""
    host, remote, runtime = session.host, session.remote, session.runtime
    steps = runtime.rollback_steps(host, plan, before)
    kind = runtime.kind
    try:
        if steps.restore:
            remote.run(files.restore(host, plan.changes, deploy_id))
        if steps.gateway == "remove":
            remote.run(runtime.remove(host), check=False)
            return True, f"rolled back: previous files restored, the new {kind} removed"
        if steps.gateway == "stop":
            remote.run(runtime.stop(host), check=False)
            return True, f"rolled back: previous files restored, the {kind} left stopped as it was"
        # The restored files may serve another port than the one this deploy wanted. The previous
        # gateway gets as long as LiteLLM takes to start (the default wait at least), not a
        # health_timeout set tight to fail a bad deploy early: judged by that, it "failed" too.
        patience = max(host.health_timeout, SETTINGS["health_timeout"])
        restored = replace(session, host=replace(host, port=steps.port or host.port, health_timeout=patience))
        seconds = restored.start_and_wait(commands.bringing_up(verb), out)
        return True, f"rolled back: previous files and {kind} restored, answering again after {seconds:.1f} s"
    except DeployError as exc:
        return False, f"ROLLBACK FAILED too: {exc}"


def _diffs(plan: Plan, session: Session) -> tuple[tuple[str, str], ...]:
    return tuple((change.path, file_diff(change, session.redact)) for change in plan.changes)


def _commit(root: Path) -> str | None:
    """The repo's commit, marked dirty when the working tree has changes, for the audit line."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
