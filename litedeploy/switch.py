"""Zero-downtime changes (`vars.zero_downtime`), the steps on the host; `instances` holds the pure part.

A change starts the idle instance with the new files beside the live one and proves it (liveliness,
readiness, the smoke's model and chat checks) on its own loopback port. Only then is the proxy
switched: its configuration rewritten to name the new instance and HAProxy reloaded, which keeps its
listening socket, so no connection is refused. The instance that was live is stopped as Docker or
systemd stops it (LiteLLM finishes the requests it holds, streams included, within the grace
period), then removed. A new instance that fails never receives traffic: it is removed, the files go
back, and the live one never stopped.

Turning the setting on stops the single gateway once the first instance answers and starts the proxy
on the port (a moment without a listener); turning it off stops the proxy and starts the single
gateway in its place. Either way a failure puts the previous gateway back.
"""

from __future__ import annotations

import posixpath
from dataclasses import replace
from typing import TextIO

from . import instances
from .commands import files, line
from .errors import DeployError, DeployFailed, VerifyError
from .facts import HostFacts
from .host import Host
from .plan import FileChange, Plan
from .render import DesiredFiles
from .session import Session
from .verify import SmokePlan, smoke, wait_for_instance

LOG_LINES_ON_FAILURE = 30
# How long a reloaded (or started) proxy may take before it forwards to the new instance.
PROXY_TIMEOUT = 30.0


def switch(session: Session, plan: Plan, desired: DesiredFiles, facts: HostFacts, deploy_id: str,
           expected: SmokePlan, out: TextIO) -> tuple[float, tuple[str, ...]]:
    """Applies PLAN (restart "switch") without refusing a request; returns the seconds the new
    instance took to answer and the models it serves. Raises DeployFailed (rolled back, saying how)."""
    if not instances.enabled(session.host):
        return _turn_off(session, plan, facts, deploy_id, expected, out)
    host, runtime, remote = session.host, session.runtime, session.remote
    live = instances.live_color(facts.proxy_text)
    color = instances.other(live)
    new = runtime.instance(host, color)
    started = replace(session, host=new)
    new_commands = runtime.commands(new, facts)
    # The single gateway of before the setting, where it runs: it stops once the new instance answers.
    single = facts.state is not None and facts.state.running and live is None
    serving = f"the live {runtime.instance(host, live).service_name}" if live else (
        f"{runtime.holder(host)}" if single else "nothing")
    untouched = f"{new.service_name} never took traffic, the previous files are back, {serving} still serves"
    if plan.changes:
        session.install(plan.changes, deploy_id, runtime.commands(host, facts))
    out.write(f"{host.name}: starting {new.service_name} on 127.0.0.1:{new.port}; {serving} keeps serving\n")
    out.flush()
    try:
        remote.run(new_commands.remove(), check=False)  # one an interrupted change left behind
        health = started.start_and_wait(new_commands.up(), out)
        _prove(started, expected)
    except (DeployError, KeyboardInterrupt) as failure:
        raise _rolled_back(session, failure, new, plan.changes, deploy_id, untouched) from None
    proxy_change = FileChange(instances.proxy_config_path(host), facts.proxy_text, desired.proxy[color], "0644")
    try:  # written (the previous one backed up) before anything stops: the undo below restores it
        remote.run(line("install", "-d", "-m", "0755", posixpath.dirname(proxy_change.path)))
        session.install([proxy_change], deploy_id, runtime.commands(host, facts))
    except (DeployError, KeyboardInterrupt) as failure:
        raise _rolled_back(session, failure, new, plan.changes, deploy_id, untouched) from None
    try:
        if single:
            out.write(f"{host.name}: stopping {runtime.holder(host)} for the proxy to take port {host.port}\n")
            remote.run(runtime.stop(host))
        _point_proxy(session, facts, color)
    except (DeployError, KeyboardInterrupt) as failure:
        undo: list[list[str] | str] = [files.restore(host, [proxy_change], deploy_id)]
        undo += [runtime.proxy_reload(host)] if live else [runtime.remove(instances.proxy(host)), runtime.start(host)]
        for command in undo:
            remote.run(command, check=False)
        raise _rolled_back(session, failure, new, plan.changes, deploy_id,
                           f"the proxy forwards to {serving.removeprefix('the live ')} again, {new.service_name} "
                           "is removed, the previous files are back") from None
    out.write(f"{host.name}: the proxy forwards to {new.service_name}; stopping {serving}\n")
    out.flush()
    # The other instance goes whether or not the proxy named it: one a failed change left running
    # would otherwise hold its port and memory until the next switch.
    old = runtime.instance(host, instances.other(color))
    remote.run(runtime.stop(old), check=False)
    remote.run(runtime.remove(old), check=False)
    if single:
        remote.run(runtime.remove(host), check=False)
    for path in runtime.leftovers(host, zero_downtime=True):  # the switch is done: a leftover stays, at worst
        remote.run(files.take_away(host, path, deploy_id), check=False)
    return health, tuple(expected.models)


def _turn_off(session: Session, plan: Plan, facts: HostFacts, deploy_id: str, expected: SmokePlan,
              out: TextIO) -> tuple[float, tuple[str, ...]]:
    """The proxy stops (its port is free for a moment), the single gateway starts in its place; the
    live instance runs on until it answers, and is the way back where it does not."""
    host, runtime, remote = session.host, session.runtime, session.remote
    proxy = instances.proxy(host)
    commands = runtime.commands(host, facts)
    session.install(plan.changes, deploy_id, commands)
    out.write(f"{host.name}: stopping the proxy; the single gateway takes port {host.port}\n")
    try:
        remote.run(runtime.stop(proxy), check=False)
        health = session.start_and_wait(commands.up(), out)
        _prove(session, expected)
    except (DeployError, KeyboardInterrupt) as failure:
        error = _failure(session, failure, host, "the proxy and its live instance are back, the previous files too")
        for command in (runtime.remove(host), files.restore(host, plan.changes, deploy_id), runtime.start(proxy)):
            remote.run(command, check=False)
        raise error from None
    for role in (*instances.COLORS, "proxy"):
        remote.run(runtime.remove(proxy if role == "proxy" else runtime.instance(host, role)), check=False)
    for path in runtime.leftovers(host, zero_downtime=False):
        remote.run(files.take_away(host, path, deploy_id), check=False)
    return health, tuple(expected.models)


def _prove(session: Session, expected: SmokePlan) -> None:
    """The full smoke, straight to one gateway: a chat answer proves its credentials."""
    failed = [check for check in smoke(session.gateway, expected, expected.models[:1],
                                       redis_probe=session.reaches_redis) if not check.ok]
    if failed:
        raise VerifyError(f"{session.host.name}: smoke failed: "
                          + "; ".join(f"{check.name}: {check.detail}" for check in failed))


def _point_proxy(session: Session, facts: HostFacts, color: str) -> None:
    """With the proxy's configuration naming COLOR: the proxy started (or recreated, where our block
    changed it) and reloaded; done once a fresh connection to the port is answered by COLOR."""
    host, runtime, remote = session.host, session.runtime, session.remote
    remote.run(runtime.proxy_up(host, facts))
    remote.run(runtime.proxy_reload(host))
    wait_for_instance(session.gateway, instances.INSTANCE_HEADER, color, PROXY_TIMEOUT)


def _rolled_back(session: Session, failure: BaseException, new: Host, changes: tuple[FileChange, ...] | list,
                 deploy_id: str, how: str) -> DeployFailed:
    """The new instance removed and the previous files restored; the failure, the new instance's
    last log lines and HOW the host stands now."""
    runtime, remote = session.runtime, session.remote
    logs = remote.run(runtime.logs(new, LOG_LINES_ON_FAILURE), check=False)
    remote.run(runtime.remove(new), check=False)
    if changes:
        remote.run(files.restore(session.host, list(changes), deploy_id), check=False)
    return _failure(session, failure, new, how, session.redact(logs.stdout + logs.stderr))


def _failure(session: Session, failure: BaseException, gateway: Host, how: str, details: str = "") -> DeployFailed:
    reason = f"{session.host.name}: interrupted" if isinstance(failure, KeyboardInterrupt) else str(failure)
    if not details:
        logs = session.remote.run(session.runtime.logs(gateway, LOG_LINES_ON_FAILURE), check=False)
        details = session.redact(logs.stdout + logs.stderr)
    return DeployFailed(f"{reason}; rolled back: {how}", details=details, rolled_back=True)
