"""The deploy pipeline as named steps, over one connection, with one audit line per task on the host:

1. `render_host`: secrets and templates, every mistake in the inputs found before connecting;
2. `recorded`: the host's lock taken (with the facts, in one round trip) and the audit record begun;
3. `_check_database`, `_check_advisories`: refusals, before anything changes;
4. `WhatRuns.pinned` or `_pulled`: what will run, pinned;
5. `_apply`: plan, then steps (`steps.run`): prepare, install, restart and verify, undone by
   `_roll_back`; or, behind the front door, `switch`;
6. on the way out, the release kept, what no release runs pruned, the audit line written and the
   lock released, in one round trip.

What differs between runtimes (what runs, which files, which verbs) is the host's runtime's
(`runtimes.base.Runtime`); what differs with the front door, its topology's (`frontdoor.Topology`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from . import acme_certificate, locking, runtimes
from .audit import AuditRecord
from .commands import ServiceCommands, audit, files, script
from .envfile import env_pairs
from .errors import DeployError, VerifyError
from .facts import HostFacts
from .frontdoor import ONE_GATEWAY, BehindTheDoor, described, door_gateways, stray
from .host import COLORS, Host
from .images import ImageRef, resolve_image
from .inventory import SETTINGS
from .plan import DesiredFiles, Plan, Verb, file_diff, rollback_steps
from .project import Project
from .releases import SALT_KEY, choose_release, migration_refusal, salt_key_refusal
from .render import render_host
from .session import Session, host_secrets, opened
from .steps import Step, run
from .switch import reload_door, switch, switch_off
from .verify import SmokePlan, check_models, is_draining, liveliness, smoke, wait_until_live


@dataclass(frozen=True)
class DeployResult:
    host: str
    plan: Plan
    health_seconds: float | None
    models: tuple[str, ...]
    # (path, unified diff with every secret masked) per changed file
    diffs: tuple[tuple[str, str], ...]
    runs: str | None = None  # what the service file runs, pinned (`ServiceFile.served`)


def deploy(project: Project, host: Host, out: TextIO = sys.stderr, *, check: bool = False,
           break_lock: bool = False, lock_timeout: float = 60, upgrade: bool = False,
           yes: bool = False, accept_risk: tuple[str, ...] = ()) -> DeployResult:
    """With check, stops after the plan: nothing on the host changes, nothing is pulled and no lock
    is taken. An upgrade pulls the image's tag again, where a deploy keeps the digest it pinned.
    A change to a release a critical advisory affects is refused before anything changes unless
    ACCEPT_RISK names it (a host that runs it already gets a warning: its config can still change)."""
    runtime = runtimes.of(host)
    secrets = host_secrets(host)
    # Every mistake in the inputs before connecting (a certificate that is not valid now among them).
    render_host(project.templates, host, secrets, runtime, datetime.now(timezone.utc))
    runtime.release.check_local(host, upgrade)
    wanted = runtime.release.wanted(host)
    with opened(host, secrets) as session:
        if check:
            return _preview(project, session, upgrade, accept_risk, out)
        with recorded(session, project.root, "upgrade" if upgrade else "deploy", out, break_lock,
                      lock_timeout) as (facts, record):
            deployed = _check_database(session, facts, wanted, upgrade, yes, secrets.get(SALT_KEY))
            _check_advisories(project, session, wanted, facts, accept_risk, out)
            runs, arch = runtime.release.pinned(host, facts, upgrade), facts.docker.wanted_arch
            if runs is None:
                runs, arch, _ = _pulled(session, wanted, out)
            refusal = runtime.release.refusal(runs, arch, facts)
            if refusal:  # after the pull, before anything stops
                raise DeployError(f"{host.name}: {refusal}")
            record.runs, record.previous_runs = runs, deployed
            pinned = session.layout.pin(runtime, runtime.release.running(host, runs), facts, upgrade,
                                        lambda image: _pulled(session, image, out)[2])
            issued = acme_certificate.for_deploy(session, project.templates, facts, datetime.now(timezone.utc), out)
            # Verified as of now, after the CA issued: a certificate is valid from the second it was made.
            desired = render_host(project.templates, pinned, secrets, runtime, datetime.now(timezone.utc), issued)
            return _apply_recorded(session, desired, facts, record, out)


def _preview(project: Project, session: Session, upgrade: bool, accept_risk: tuple[str, ...],
             out: TextIO) -> DeployResult:
    """--check: the plan and its diffs against what the host holds, the warnings a deploy would give."""
    host, runtime = session.host, session.runtime
    facts = session.facts()
    _check_advisories(project, session, runtime.release.wanted(host), facts, accept_risk, out, check=True)
    held, renewal = acme_certificate.renewal(session, facts, datetime.now(timezone.utc))
    plan = session.plan(render_host(project.templates, session.as_deployed(facts, upgrade), session.secrets,
                                    runtime, issued=held), facts)
    if renewal:
        plan = replace(plan, warnings=(*plan.warnings, f"would ask the ACME CA for a certificate: {renewal}"))
    if runtime.release.pinned(host, facts, upgrade) is None:
        plan = replace(plan, warnings=(*plan.warnings, f"would pull {runtime.release.wanted(host)}"))
    refusal = runtime.driver.refusal(facts, plan.restart)
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
        runtime, layout = session.runtime, session.layout
        release = choose_release(host, session.releases(), facts, to, runtime)
        runs = release.runs(host, runtime) or runtime.release.wanted(host)
        _check_advisories(project, session, runs, facts, accept_risk, out)
        desired = release.desired(host, frozenset(secrets), runtime)
        kept_while = layout.kept_under(runtime, host, desired.service)
        if kept_while:
            now = "off" if kept_while == "on" else "on"
            raise DeployError(f"{host.name}: release {release.id} was kept while vars.zero_downtime was "
                              f"{kept_while}, and it is {now} now; choose a release kept since (--to, see "
                              "ops.history), or set zero_downtime as it was")
        if layout.door:  # the proxy's configuration is no release's: hosts.yaml's, as rendered now
            desired = replace(desired, proxy=render_host(project.templates, session.as_deployed(facts), secrets,
                                                         runtime).proxy)
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
        desired = render_host(project.templates, session.as_deployed(facts), secrets, session.runtime)
        plan = Plan((), Verb.SWITCH)
        _stop_stray(session, facts, out)
        health, models = _switched(session, plan, desired, facts, record.id,
                                   SmokePlan.of(facts.files.config_text or ""),
                                   out)
        record.restart = plan.restart
        return DeployResult(host.name, plan, health, models, ())


def _check_advisories(project: Project, session: Session, runs: str, facts: HostFacts,
                      accept_risk: tuple[str, ...], out: TextIO, check: bool = False) -> None:
    """Refuses a change to RUNS (an image reference, a venv) when a critical advisory in
    litellm.yaml affects the LiteLLM it holds and ACCEPT_RISK does not name it. Where the host runs
    that version already (a config change, a key rotation) or under --check, the refusal is a
    warning; so is every other advisory, and a version that cannot be told."""
    host, release = session.host, session.runtime.release
    version = release.version(runs)
    what = f"{host.name}: {release.describe(runs)}"
    refusal = project.releases.refusal(version, accept_risk, what)
    already = version is not None and release.version(session.runtime.service.served(host, facts.files.service_text)) \
        == version
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
    deployed = session.runtime.service.served(host, facts.files.service_text)
    refusal = None if yes else (migration_refusal(host, session.runtime, deployed, wanted, upgrade)
                                or salt_key_refusal(host, facts.files.env_text, salt))
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
    deploy brings it all back (`Driver.removal`). Returns what was done, a line each."""
    with opened(host) as session, \
            recorded(session, project.root, "remove", out, break_lock, lock_timeout) as (facts, record):
        runtime = session.runtime
        door = described(host)
        door_paths = ONE_GATEWAY.leftovers(runtime, host, before=BehindTheDoor(door))
        removal = runtime.driver.removal(host, facts, record.id, door_gateways(runtime, host, door), door_paths)
        for command in removal.before:
            session.remote.run(command)
        if removal.install:
            session.install([removal.install], record.id, session.verbs(facts))
        for command in removal.after:
            session.remote.run(command)
        record.changed, record.restart = list(removal.changed), Verb.REMOVED if removal.removed else None
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
    prune = None if runs == record.previous_runs else runtime.release.prune(host, runs, files.releases_dir(host))
    return files.keep_release(host, record.id, prune, session.release_names())


def _apply(session: Session, desired: DesiredFiles, facts: HostFacts, deploy_id: str, out: TextIO) -> DeployResult:
    host, runtime = session.host, session.runtime
    plan = session.plan(desired, facts)
    refusal = runtime.driver.refusal(facts, plan.restart)
    if refusal:
        raise DeployError(f"{host.name}: {refusal}")
    # A running gateway the plan leaves alone is asked once whether it answers.
    running = facts.gateway.state is not None and facts.gateway.state.running
    probe = liveliness(session.gateway) if not plan.restart and running else None
    if probe is not None and is_draining(probe):
        # Its drain began (/health/drain, or a stop that never ended): it takes no new work. The
        # deploy leaves a gateway that answers.
        out.write(f"{host.name}: the gateway is draining (503 shutting_down); restarting it\n")
        plan = replace(plan, restart=session.layout.restart_verb())
    expected = SmokePlan.of(desired.config)
    _stop_stray(session, facts, out)
    if plan.restart is None:  # nothing to install or restart, so nothing to roll back to
        answered = probe is not None and probe.status == 200
        health = 0.0 if answered else wait_until_live(session.gateway, host.health_timeout, out)
        return DeployResult(host.name, plan, health, tuple(check_models(session.gateway, expected)), ())
    if plan.restart == Verb.SWITCH:
        health, models = _switched(session, plan, desired, facts, deploy_id, expected, out)
        return DeployResult(host.name, plan, health, models, _diffs(plan, session))
    if plan.restart == Verb.RELOAD:
        health = reload_door(session, plan, desired, facts, deploy_id, out)
        return DeployResult(host.name, plan, health, tuple(check_models(session.gateway, expected)),
                            _diffs(plan, session))
    verbs = session.verbs(facts)
    verb = plan.restart
    if verb == Verb.UP and not (facts.gateway.state and facts.gateway.state.running):
        _check_port_free(session)
    preparation = plan.preparation
    done = run(session, [
        Step("prepare", lambda: session.prepare(preparation, out) if preparation else None),
        Step("install", lambda: session.install(plan.changes, deploy_id, verbs) if plan.changes else None),
        Step("restart", lambda: _restart_and_verify(session, verb, expected, verbs, out),
             undo=lambda: _roll_back(session, plan, verb, facts, verbs, deploy_id, out), undo_if_failed=True),
    ], watched=host)
    health, models = done["restart"]
    return DeployResult(host.name, plan, health, models, _diffs(plan, session))


def _switched(session: Session, plan: Plan, desired: DesiredFiles, facts: HostFacts, deploy_id: str,
              expected: SmokePlan, out: TextIO) -> tuple[float, tuple[str, ...]]:
    """A change behind the front door (`switch`), or the door turned off (`switch_off`)."""
    layout = session.layout
    if isinstance(layout, BehindTheDoor):
        return switch(session, layout, plan, desired, facts, deploy_id, expected, out)
    return switch_off(session, plan, facts, deploy_id, expected, out)


def _stop_stray(session: Session, facts: HostFacts, out: TextIO) -> None:
    """An instance that runs beside the live one (`frontdoor.stray`: started by hand, left by an
    interrupted change) is named, stopped (finishing what it holds) and removed, before a switch
    checks its port and starts the new instance in its place."""
    idle = stray(facts)
    if idle is None:
        return
    host, runtime = session.host, session.runtime
    _, *instances = door_gateways(runtime, host, described(host))
    instance = dict(zip(COLORS, instances))[idle]
    out.write(f"{host.name}: {runtime.driver.holder(instance)} runs beside the live instance and takes no traffic; "
              "stopping it\n")
    verbs = session.verbs(facts, instance)
    session.remote.run(verbs.stop(), check=False)
    session.remote.run(verbs.remove(), check=False)


def _check_port_free(session: Session) -> None:
    """A new gateway could not bind the port: fail before the host changes, naming who has it."""
    host = session.host
    now = session.state_and_port()
    if now.docker.unreachable:
        raise DeployError(f"{host.name}: the Docker engine does not answer {host.ssh_user}; start it or give the "
                          "user access to its socket")
    other = now.gateway.held_by_other(session.runtime.driver.holder(host))
    if other:
        raise DeployError(f"{host.name}: port {host.port} is already in use by {other}; stop it or set "
                          "another port in hosts.yaml")


def _restart_and_verify(session: Session, verb: Verb, expected: SmokePlan, verbs: ServiceCommands,
                        out: TextIO) -> tuple[float, tuple[str, ...]]:
    """VERB (restart, up), then the full smoke: a chat answer proves the credentials."""
    host, gateway = session.host, session.gateway
    health = session.start_and_wait(verbs.bringing_up(verb), out)
    failed = [check for check in smoke(gateway, expected, expected.models[:1], redis_probe=session.reaches_redis)
              if not check.ok]
    if failed:
        raise VerifyError(f"{host.name}: smoke failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed))
    return health, tuple(expected.models)


def _roll_back(session: Session, plan: Plan, verb: Verb, before: HostFacts, verbs: ServiceCommands,
               deploy_id: str, out: TextIO) -> str:
    """Restores this deploy's backups and brings the gateway back as it was with VERB (a systemd
    unit's previous venv is still there: only a kept release's unit stops a venv from being
    pruned); says how. Raises DeployError where the gateway does not come back."""
    host, remote, runtime = session.host, session.remote, session.runtime
    steps = rollback_steps(plan, before, runtime.service.served_port(host, before.files.service_text) or host.port)
    kind = runtime.kind
    if steps.restore:
        session.restore(plan.changes, deploy_id, verbs)
    if steps.gateway == "remove":
        remote.run(verbs.remove(), check=False)
        return f"previous files restored, the new {kind} removed"
    if steps.gateway == "stop":
        remote.run(verbs.stop(), check=False)
        return f"previous files restored, the {kind} left stopped as it was"
    # The restored files may serve another port than the one this deploy wanted. The previous
    # gateway gets as long as LiteLLM takes to start (the default wait at least), not a
    # health_timeout set tight to fail a bad deploy early: judged by that, it "failed" too.
    patience = max(host.health_timeout, SETTINGS["health_timeout"])
    restored = session.driving(replace(host, port=steps.port or host.port, health_timeout=patience))
    seconds = restored.start_and_wait(verbs.bringing_up(verb), out)
    return f"previous files and {kind} restored, answering again after {seconds:.1f} s"


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
