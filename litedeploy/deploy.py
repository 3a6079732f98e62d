"""The deploy pipeline: secrets, render, lock + facts, plan, install, restart, verify, and on failure
roll back — all over one connection, with one audit line per deploy on the host."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from .advisories import running_version
from .audit import AuditRecord
from .commands import argv, audit, container, files, lock, runtime, script, unit
from .commands.compose import compose_commands
from .commands.runtime import ServiceCommands
from .envfile import env_pairs
from .errors import DeployError, DeployFailed, RemoteError, VerifyError
from .facts import HostFacts
from .images import ImageRef, resolve_image
from .inventory import SETTINGS, Host
from .plan import (
    Plan,
    arch_refusal,
    compose_v1_refusal,
    file_diff,
    pinned_image,
    plan_deploy,
    plan_remove,
    rollback_steps,
    served,
)
from .project import Project
from .releases import SALT_KEY, choose_release, migration_refusal, salt_key_refusal
from .render import render_host
from .session import Session, host_secrets, opened
from .verify import SmokePlan, check_models, draining, smoke, wait_until_live

LOCK_POLL_SECONDS = 2
LOG_LINES_ON_FAILURE = 30


@dataclass(frozen=True)
class DeployResult:
    host: str
    plan: Plan
    health_seconds: float | None
    models: tuple[str, ...]
    # (path, unified diff with every secret masked) per changed file
    diffs: tuple[tuple[str, str], ...]
    image: str | None = None  # what the service block runs, pinned to its digest


def deploy(project: Project, host: Host, out: TextIO = sys.stderr, *, check: bool = False,
           break_lock: bool = False, lock_timeout: float = 60, upgrade: bool = False,
           yes: bool = False, accept_risk: tuple[str, ...] = ()) -> DeployResult:
    """With check, stops after the plan: nothing on the host changes, nothing is pulled and no lock
    is taken. An upgrade pulls the image's tag again, where a deploy keeps the digest it pinned.
    A change to a release a critical advisory affects is refused before anything changes unless
    ACCEPT_RISK names it (a host that runs it already gets a warning: its config can still change)."""
    secrets = host_secrets(host)
    render_host(project.templates, host, secrets)  # every mistake in the inputs before connecting
    if host.systemd:
        return _deploy_unit(project, host, secrets, out, check, break_lock, lock_timeout, upgrade, yes, accept_risk)
    with opened(host, secrets) as session:
        if check:
            facts = session.facts()
            _check_advisories(project, host, host.image, facts, accept_risk, out, check=True)
            image = pinned_image(host, facts, upgrade)
            plan = plan_deploy(host, render_host(project.templates, replace(host, image=image or host.image),
                                                 secrets), facts)
            if image is None:
                plan = replace(plan, warnings=(*plan.warnings, f"would pull {host.image}"))
            refusal = compose_v1_refusal(facts, plan.restart)
            if refusal:
                plan = replace(plan, warnings=(*plan.warnings, f"would be refused: {refusal}"))
            return DeployResult(host.name, plan, None, (), _diffs(plan, session))
        action = "upgrade" if upgrade else "deploy"
        with locked(session, project.root, action, out, break_lock, lock_timeout) as (facts, record):
            deployed = _check_database(host, facts, host.image, upgrade, yes, secrets.get(SALT_KEY))
            _check_advisories(project, host, host.image, facts, accept_risk, out)
            image, arch = pinned_image(host, facts, upgrade), facts.wanted_arch
            if image is None:
                image, arch = _pulled(session, out)
            refusal = arch_refusal(image, arch, facts.engine_arch)
            if refusal:  # after the pull, before anything stops
                raise DeployError(f"{host.name}: {refusal}")
            record.image, record.previous_image = image, deployed
            return _apply_recorded(session, render_host(project.templates, replace(host, image=image), secrets),
                                   facts, record, out)


def _deploy_unit(project: Project, host: Host, secrets, out: TextIO, check: bool, break_lock: bool,
                 lock_timeout: float, upgrade: bool, yes: bool, accept_risk: tuple[str, ...]) -> DeployResult:
    """The systemd runtime's deploy: no image to pin or pull; what runs is the venv the unit names.
    A wheel folder hosts.yaml names must hold wheels, found before connecting."""
    if upgrade:
        raise DeployError(f"{host.name}: runs LiteLLM as a systemd service (runtime: systemd): there is no image "
                          "to upgrade; pin the new version in its packages in hosts.yaml and deploy")
    if host.wheels and not any(Path(host.wheels).glob("*.whl")):
        raise DeployError(f"hosts.yaml (host {host.name}): wheels {host.wheels} holds no .whl files "
                          f"(make it with: pip download -d {host.wheels} {' '.join(host.packages)})")
    desired = render_host(project.templates, host, secrets)
    with opened(host, secrets) as session:
        if check:
            facts = session.facts()
            _check_advisories(project, host, host.venv_dir, facts, accept_risk, out, check=True)
            plan = plan_deploy(host, desired, facts)
            return DeployResult(host.name, plan, None, (), _diffs(plan, session))
        with locked(session, project.root, "deploy", out, break_lock, lock_timeout) as (facts, record):
            deployed = _check_database(host, facts, host.venv_dir, False, yes, secrets.get(SALT_KEY))
            _check_advisories(project, host, host.venv_dir, facts, accept_risk, out)
            record.image, record.previous_image = host.venv_dir, deployed
            return _apply_recorded(session, desired, facts, record, out)


def rollback(project: Project, host: Host, out: TextIO = sys.stderr, *, to: str | None = None,
             yes: bool = False, accept_risk: tuple[str, ...] = (), break_lock: bool = False,
             lock_timeout: float = 60) -> tuple[DeployResult, str]:
    """Puts back the service block (so the image digest), config and env of a kept release, and
    verifies like a deploy (failing that, back to what ran before). Returns the release's id.
    A release a critical advisory affects is refused unless ACCEPT_RISK names it."""
    secrets = host_secrets(host)
    with opened(host, secrets) as session, \
            locked(session, project.root, "rollback", out, break_lock, lock_timeout) as (facts, record):
        release = choose_release(host, session.releases(), facts, to)
        image = release.image(host) or host.image
        _check_advisories(project, host, image, facts, accept_risk, out)
        desired = release.desired(host, frozenset(secrets))
        deployed = _check_database(host, facts, image, False, yes, env_pairs(desired.env).get(SALT_KEY))
        record.image, record.previous_image, record.rollback_to = image, deployed, release.id
        return _apply_recorded(session, desired, facts, record, out), release.id


def _check_advisories(project: Project, host: Host, runs: str, facts: HostFacts, accept_risk: tuple[str, ...],
                      out: TextIO, check: bool = False) -> None:
    """Refuses a change to RUNS (an image reference, or a systemd host's venv) when a critical
    advisory in litellm.yaml affects the LiteLLM it holds and ACCEPT_RISK does not name it. Where
    the host runs that version already (a config change, a key rotation) or under --check, the
    refusal is a warning; so is every other advisory, and a version that cannot be told."""
    version = running_version(runs, host.systemd)
    what = f"{host.name}: {'the venv' if host.systemd else runs}"
    refusal = project.releases.refusal(version, accept_risk, what)
    already = version is not None and running_version(served(host, facts.service_text(host)), host.systemd) == version
    if refusal and not (already or check):
        raise DeployError(refusal)
    lines = [f"{refusal.removeprefix(host.name + ': ')} ({'the host runs it already' if already else 'would be refused'})"
             ] if refusal else []
    lines += [line.removeprefix(host.name + ": ") for line in project.releases.warnings(version, what, refusal)]
    if version is None and not ImageRef.parse(runs).moving:
        lines.append(f"cannot tell which LiteLLM {runs} is (no version in its tag): its advisories are not checked")
    for line in lines:
        out.write(f"{host.name}: warning: {line}\n")


def _check_database(host: Host, facts: HostFacts, wanted: str, upgrade: bool, yes: bool,
                    salt: str | None) -> str | None:
    """Refuses, on a host with a database and unless told yes, a change of image (schema
    migrations) or of the salt key (stored credentials); returns the image the block runs now."""
    deployed = served(host, facts.service_text(host))
    refusal = None if yes else (migration_refusal(host, deployed, wanted, upgrade)
                                or salt_key_refusal(host, facts.env_text, salt))
    if refusal:
        raise DeployError(refusal)
    return deployed


def _apply_recorded(session: Session, desired, facts: HostFacts, record: AuditRecord, out: TextIO) -> DeployResult:
    result = _apply(session, desired, facts, record.id, out)
    record.changed, record.restart = [c.path for c in result.plan.changes], result.plan.restart
    return replace(result, image=record.image)


def _pulled(session: Session, out: TextIO) -> tuple[str, str | None]:
    """Pulls the image while the running container keeps serving, and pins what came; its architecture."""
    host = session.host
    out.write(f"{host.name}: pulling {host.image}\n")
    out.flush()
    started = time.monotonic()
    digests, arch = session.pull_image(host.image)
    image = resolve_image(host.image, None, digests) or host.image  # a digest, once pulled
    out.write(f"{host.name}: pulled {image} in {time.monotonic() - started:.1f} s\n")
    return image, arch


def remove(project: Project, host: Host, out: TextIO = sys.stderr, *, break_lock: bool = False,
           lock_timeout: float = 60) -> list[str]:
    """Like blockinfile's state=absent: stops and removes the container, takes our block out of the
    compose file (backed up, validated); config and env stay, so a deploy brings it all back."""
    with opened(host) as session, \
            locked(session, project.root, "remove", out, break_lock, lock_timeout) as (facts, record):
        if host.systemd:
            return _remove_unit(session, facts, record)
        removal = plan_remove(host, facts)
        done = []
        commands = compose_commands(host, facts)
        if removal.container:
            session.remote.run(commands.remove())
            done.append(f"removed container {host.container_name}")
        if removal.compose:
            session.install([removal.compose], record.id, commands)
            done.append(f"took the {host.service_name} block out of {host.compose_file}")
        if removal.take_away:
            session.remote.run(files.take_away(host, removal.take_away, record.id))
            done.append(f"moved {removal.take_away}, which held only the {host.service_name} service, "
                        f"to {host.backup_dir}")
        record.changed, record.restart = list(removal.changed), "removed" if removal.container else None
        return done


def _remove_unit(session: Session, facts: HostFacts, record: AuditRecord) -> list[str]:
    """The systemd runtime's removal: the unit stopped, out of boot, its file kept among the backups;
    venvs, config and env stay, so a deploy brings it all back."""
    host = session.host
    if facts.unit_text is None and facts.container is None:
        return []
    # The file goes first: systemd still knows a loaded unit, and the removal's daemon-reload forgets it.
    session.remote.run(script(files.take_away(host, host.unit_path, record.id), unit.UnitCommands(host).remove()))
    record.changed, record.restart = [host.unit_path] if facts.unit_text is not None else [], "removed"
    return [f"stopped and disabled {unit.unit_name(host)}"] + (
        [f"moved {host.unit_path} to {host.backup_dir}"] if facts.unit_text is not None else [])


@contextmanager
def locked(session: Session, root: Path, action: str, out: TextIO, break_lock: bool,
           lock_timeout: float) -> Iterator[tuple[HostFacts, AuditRecord]]:
    """Holds the host's deploy lock (facts come with it, in the same round trip) and appends the
    audit line when done, whatever the outcome."""
    facts = _take_lock(session, lock_timeout, out, break_lock)
    keep = None  # the release script, once the outcome is known to be a changed host that works
    record = AuditRecord.begin(action, session.host.name, _commit(root))
    try:
        yield facts, record
        record.result = "ok"
        if record.image and record.changed:  # a deploy, upgrade or rollback that changed the host
            keep = files.keep_release(session.host, record.id, _prune(session.host, record.image,
                                                                      record.previous_image))
    except DeployError as exc:
        record.result, record.error = "failed", session.redact(str(exc))
        record.rolled_back = getattr(exc, "rolled_back", False)
        raise
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM turned into one, before anything changed
        record.result = "interrupted"
        raise
    finally:
        try:
            session.remote.run(script(keep, audit.append(session.host, record.as_json()), argv(lock.release(session.host))))
        except RemoteError:
            pass  # the connection is gone: the lock stays, and the next deploy says who holds it


def _prune(host: Host, image: str, previous: str | None) -> str | None:
    """Where what runs changed (IMAGE, from PREVIOUS), the images (or venvs) no kept release runs go."""
    if image == previous:
        return None
    if host.systemd:
        return unit.prune_venvs(host, files.releases_dir(host))
    return container.prune_images(ImageRef.parse(image).name, files.releases_dir(host))


def lock_owner() -> dict:
    """Who takes a lock: recorded in it, shown to whoever finds the host locked."""
    return {"user": getpass.getuser(), "from": socket.gethostname(), "pid": os.getpid(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def describe_holder(holder: dict | None) -> str:
    """`ann@laptop (pid 4242) since TIME: 'message'`, from a lock's owner record."""
    holder = holder or {}
    who = f"{holder.get('user', '?')}@{holder.get('from', '?')} (pid {holder.get('pid', '?')}) since {holder.get('since', '?')}"
    return who + (f": {holder['message']!r}" if holder.get("message") else "")


def _take_lock(session: Session, timeout: float, out: TextIO, break_lock: bool) -> HostFacts:
    owner = lock_owner()
    deadline = time.monotonic() + timeout
    while True:
        facts = session.facts(lock_owner=owner, break_lock=break_lock)
        break_lock = False  # only the stale lock found at the start, never a live deploy's
        if facts.lock_acquired:
            return facts
        who = describe_holder(facts.lock_holder)
        if facts.lock_live == lock.BY_HAND:
            raise DeployError(f"{session.host.name}: --break-lock refused: {who} locked the host by hand; when "
                              f"that work is done: inv lock.release --host {session.host.name}")
        if facts.lock_live:
            raise DeployError(f"{session.host.name}: --break-lock refused: the deploy holding the lock, {who}, is "
                              f"still connected (sshd pid {facts.lock_live}); wait for it with --lock-timeout")
        if time.monotonic() > deadline:
            raise DeployError(f"{session.host.name}: another deploy holds the lock: {who}; if it is stale, "
                              "run again with --break-lock")
        out.write(f"{session.host.name}: waiting for the deploy lock held by {who}\n")
        out.flush()
        time.sleep(LOCK_POLL_SECONDS)


def _apply(session: Session, desired, facts: HostFacts, deploy_id: str, out: TextIO) -> DeployResult:
    host, remote = session.host, session.remote
    plan = plan_deploy(host, desired, facts)
    refusal = None if host.systemd else compose_v1_refusal(facts, plan.restart)
    if refusal:
        raise DeployError(f"{host.name}: {refusal}")
    if not plan.restart and facts.container and facts.container.running and draining(session.gateway):
        # Its drain began (/health/drain, or a stop that never ended): it takes no new work. The
        # deploy leaves a gateway that answers.
        out.write(f"{host.name}: the gateway is draining (503 shutting_down); restarting it\n")
        plan = replace(plan, restart="restart")
    expected = SmokePlan.of(desired.config)
    if not plan.changed:  # nothing to install or restart, so nothing to roll back to
        health = wait_until_live(session.gateway, host.health_timeout, out)
        return DeployResult(host.name, plan, health, tuple(check_models(session.gateway, expected)), ())
    commands = runtime.service_commands(host, facts)
    if plan.restart == "up" and not (facts.container and facts.container.running):
        # A new container could not bind the port; fail before the host changes, naming who has it.
        now = session.container_and_port()
        if now.docker_unreachable:
            raise DeployError(f"{host.name}: the Docker engine does not answer {host.ssh_user}; start it or give the "
                              "user access to its socket")
        other = now.held_by_other(host.gateway_holder)
        if other:
            raise DeployError(f"{host.name}: port {host.port} is already in use by {other}; stop it or set "
                              "another port in hosts.yaml")
    if plan.user or plan.venv or plan.prisma_venv:
        session.prepare(plan, out)
    if plan.changes:
        session.install(plan.changes, deploy_id, commands)
    try:
        health, models = _restart_and_verify(session, plan, expected, commands, out)
    except (DeployError, KeyboardInterrupt) as failure:
        reason = f"{host.name}: interrupted" if isinstance(failure, KeyboardInterrupt) else str(failure)
        logs = remote.run(runtime.logs(host, LOG_LINES_ON_FAILURE), check=False)
        tail = session.redact(logs.stdout + logs.stderr)
        rolled_back, how = _roll_back(session, plan, facts, commands, deploy_id, out)
        raise DeployFailed(f"{reason}; {how}", details=tail, rolled_back=rolled_back) from None
    return DeployResult(host.name, plan, health, models, _diffs(plan, session))


def _restart_and_verify(session: Session, plan: Plan, expected: SmokePlan, commands: ServiceCommands,
                        out: TextIO) -> tuple[float, tuple[str, ...]]:
    """After a restart the full smoke (a chat answer proves the credentials); else the models list."""
    host, gateway = session.host, session.gateway
    if not plan.restart:
        return wait_until_live(gateway, host.health_timeout, out), tuple(check_models(gateway, expected))
    health = session.start_and_wait(commands.bringing_up(plan.restart), out)
    failed = [check for check in smoke(gateway, expected, expected.models[:1], redis_probe=session.reaches_redis)
              if not check.ok]
    if failed:
        raise VerifyError(f"{host.name}: smoke failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed))
    return health, tuple(expected.models)


def _roll_back(session: Session, plan: Plan, before: HostFacts, commands: ServiceCommands,
               deploy_id: str, out: TextIO) -> tuple[bool, str]:
    """Restores this deploy's backups and brings the gateway back as it was (a systemd unit's
    previous venv is still there: only a kept release's unit stops a venv from being pruned);
    says how that went."""
    host, remote = session.host, session.remote
    steps = rollback_steps(host, plan, before)
    kind = host.gateway_kind
    try:
        if steps.restore:
            remote.run(files.restore(host, plan.changes, deploy_id))
        if steps.container == "remove":
            remote.run(runtime.remove(host), check=False)
            return True, f"rolled back: previous files restored, the new {kind} removed"
        if steps.container == "stop":
            remote.run(runtime.stop(host), check=False)
            return True, f"rolled back: previous files restored, the {kind} left stopped as it was"
        # The restored files may serve another port than the one this deploy wanted. The previous
        # gateway gets as long as LiteLLM takes to start (the default wait at least), not a
        # health_timeout set tight to fail a bad deploy early: judged by that, it "failed" too.
        patience = max(host.health_timeout, SETTINGS["health_timeout"])
        restored = replace(session, host=replace(host, port=steps.port or host.port, health_timeout=patience))
        seconds = restored.start_and_wait(commands.bringing_up(plan.restart or "up"), out)
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
