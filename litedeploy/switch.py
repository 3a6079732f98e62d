"""Changes behind the front door, as steps on the host (`steps`); `frontdoor` holds the pure part.

A switch starts the idle instance with the new files beside the live one and proves it (liveliness,
readiness, the smoke's model and chat checks) on its own loopback port. Only then is the proxy
pointed at it: its configuration rewritten to name the new instance and HAProxy reloaded, which
keeps its listening socket, so no connection is refused. The instance that was live is stopped as
Docker or systemd stops it (LiteLLM finishes the requests it holds, streams included, within the
grace period), then removed. A new instance that fails never receives traffic: it is removed, the
files go back, and the live one never stopped.

Turning the door on makes the proxy (not started), tells the single gateway to stop once the first
instance answers, and starts the proxy the moment the port is free, in one script on the host (on
the host's network at once, as LiteLLM closes its listener before it drains; a port Docker
publishes stays held until the container has stopped); turning it off (`switch_off`) has the proxy
stop softly apart (its listener closes at once, what it holds finishes) and starts the single
gateway in its place, which binds the port only once LiteLLM has started. Either way a failure puts
the previous gateway back.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable
from typing import TextIO

from . import tls
from .commands import detached, files, line, once_port_free
from .errors import DeployError, VerifyError
from .facts import HostFacts
from .frontdoor import INSTANCE_HEADER, ONE_GATEWAY, BehindTheDoor, described, door_gateways, other
from .plan import DesiredFiles, FileChange, Plan
from .runtimes.base import STOP_SENT, port_free_within
from .session import Session
from .steps import Step, run
from .verify import SmokePlan, gateway_failure, smoke, wait_for_certificate, wait_for_instance

# How long a reloaded (or started) proxy may take before it forwards to the new instance.
PROXY_TIMEOUT = 30.0


def switch(session: Session, layout: BehindTheDoor, plan: Plan, desired: DesiredFiles, facts: HostFacts,
           deploy_id: str, expected: SmokePlan, out: TextIO) -> tuple[float, tuple[str, ...]]:
    """Applies PLAN (verb SWITCH) without refusing a request; returns the seconds the new instance
    took to answer and the models it serves. Raises DeployFailed (rolled back, saying how)."""
    host, runtime, remote = session.host, session.runtime, session.remote
    live = facts.live
    color = other(live)
    new = layout.instance(runtime, host, color)
    started = session.driving(new)
    verbs, new_verbs = session.verbs(facts), session.verbs(facts, new)
    # The single gateway of before the door, where it runs: it stops once the new instance answers.
    single = facts.gateway.state is not None and facts.gateway.state.running and live is None
    was_serving = layout.instance(runtime, host, live).service_name if live else (
        str(runtime.driver.holder(host)) if single else "nothing")
    serving = f"the live {was_serving}" if live else was_serving
    untouched = f"{new.service_name} never took traffic, the previous files are back, {serving} still serves"
    proxy = runtime.door.proxy(host)
    proxy_change = FileChange(layout.door.config_path, facts.files.proxy_text, desired.proxy[color], "0644")
    # The service file as the change leaves it: `up` recreates a proxy whose service it alters.
    service_change = next((change for change in plan.changes if change.path == runtime.door.service_file(host)), None)

    def start_new() -> float:
        out.write(f"{host.name}: starting {new.service_name} on 127.0.0.1:{new.port}; {serving} keeps serving\n")
        out.flush()
        remote.run(new_verbs.remove(), check=False)  # one an interrupted change left behind
        health = started.start_and_wait(new_verbs.up(), out)
        _prove(started, expected)
        return health

    def write_door_config() -> None:
        """Written (the previous one backed up) before anything stops; `point`'s undo restores it."""
        remote.run(line("install", "-d", "-m", "0755", posixpath.dirname(proxy_change.path)))
        session.install([proxy_change], deploy_id, verbs)

    # Whether the single gateway was told to stop (`point`'s way back restarts it only then).
    stop_sent = single

    def point() -> None:
        """The proxy started (or made anew, where our block changed it) and, where it ran before,
        reloaded; done once a fresh connection to the port is answered by the new instance."""
        nonlocal stop_sent
        if single:
            # The stop runs apart and the proxy starts the moment the port is free, in one script with
            # the proxy made before: LiteLLM closes its listener at once and then finishes what it holds,
            # which on the host's network frees the port at once; Docker keeps a published port
            # (bridge) until the container has stopped.
            out.write(f"{host.name}: stopping {runtime.driver.holder(host)} for the proxy to take port {host.port}\n")
            out.flush()

        def proxy_down() -> str | None:
            """A proxy that exited or restarts (its port privileged, its image no HAProxy) is named
            at once, not after PROXY_TIMEOUT with the port dead; its restarts count from before."""
            state = session.driving(proxy).gateway_state()
            failed = gateway_failure(state, facts.gateway.instances.get("proxy"))
            return f"the proxy {runtime.driver.holder(proxy)} is {state.status if state else 'gone'}" if failed else None

        started_up = remote.run(runtime.door.up(host, facts, service_change.new if service_change else None,
                                                stopping=verbs.stop() if single else None), check=False)
        stop_sent = single and STOP_SENT in started_up.stdout
        if started_up.failed:
            raise VerifyError(f"{host.name}: {proxy_down() or 'the proxy did not start: ' + remote.last_line(started_up)}")
        if not single:  # a proxy started now has read its configuration
            reloaded = remote.run(runtime.door.reload(host), check=False)
            if reloaded.failed:
                raise VerifyError(f"{host.name}: {proxy_down() or 'the proxy did not reload: ' + remote.last_line(reloaded)}")
        wait_for_instance(session.gateway, INSTANCE_HEADER, color, PROXY_TIMEOUT, proxy_down)

    # How the port stands once `point_back` is done: a proxy that was not there before is gone again.
    pointed_back = f"the proxy forwards to {was_serving} again" if live else \
        f"the proxy is removed, {was_serving} serves the port again" if single else "the proxy is removed"

    def point_back() -> None:
        session.restore([proxy_change], deploy_id, verbs, check=False)
        if live:
            remote.run(runtime.door.reload(host), check=False)
            return
        remote.run(session.verbs(facts, proxy).remove(), check=False)
        if stop_sent:  # it answers again before the rollback says so, once the stop begun apart is done
            remote.run(verbs.stop(), check=False)
            session.start_and_wait(verbs.start(), out)

    def put_back() -> None:
        """The files as they were; a proxy that ran before is recreated where `point` recreated it
        from this change's block (compose recreates only a container whose definition differs), and
        rereads its configuration."""
        session.restore(plan.changes, deploy_id, verbs, check=False)
        if live:
            remote.run(runtime.door.up(host, facts), check=False)
            remote.run(runtime.door.reload(host), check=False)

    # Its port is found held before anything changes, not once the files are in and it fails to start.
    holder = started.state_and_port().gateway.held_by_other(runtime.driver.holder(new))
    if holder:
        raise DeployError(f"{host.name}: port {new.port} of {new.service_name} (vars.instance_ports) is already in "
                          f"use by {holder}; stop it or set other vars.instance_ports in hosts.yaml")
    preparation = plan.preparation
    done = run(session, [
        # What the new instance needs (the service user, a venv, the proxy's program) before it starts.
        Step("prepare", lambda: session.prepare(preparation, out) if preparation else None),
        Step("install", lambda: session.install(plan.changes, deploy_id, verbs) if plan.changes else None,
             undo=put_back if plan.changes else None),
        Step("start", start_new, undo=_quietly(session, new_verbs.remove()), undo_if_failed=True, failed=untouched),
        Step("door config", write_door_config, failed=untouched),
        Step("point", point, undo=point_back, undo_if_failed=True, watched=proxy,
             failed=f"{pointed_back}, {new.service_name} is removed, the previous files are back"),
    ], watched=new)
    out.write(f"{host.name}: the proxy forwards to {new.service_name}; stopping {serving}\n")
    out.flush()
    # The other instance goes whether or not the proxy named it: one a failed change left running
    # would otherwise hold its port and memory until the next switch.
    old = session.verbs(facts, layout.instance(runtime, host, other(color)))
    remote.run(old.stop(), check=False)
    remote.run(old.remove(), check=False)
    if single:
        remote.run(verbs.remove(), check=False)
    for path in layout.leftovers(runtime, host, before=ONE_GATEWAY):  # done: a leftover stays, at worst
        remote.run(files.take_away(host, path, deploy_id), check=False)
    return done["start"], tuple(expected.models)


def switch_off(session: Session, plan: Plan, facts: HostFacts, deploy_id: str, expected: SmokePlan,
               out: TextIO) -> tuple[float, tuple[str, ...]]:
    """Applies PLAN (verb SWITCH, the door turned off): the proxy stops (its port is free for a
    moment), the single gateway starts in its place; the live instance runs on until it answers,
    and is the way back where it does not."""
    host, runtime, remote = session.host, session.runtime, session.remote
    door = described(host)
    proxy, *instances = door_gateways(runtime, host, door)
    verbs, proxy_verbs = session.verbs(facts), session.verbs(facts, proxy)

    def take_the_port() -> float:
        out.write(f"{host.name}: stopping the proxy; the single gateway takes port {host.port}\n")
        # The proxy's soft stop runs apart: it closes its listener at once and finishes what it holds
        # (streams included) while the single gateway starts; a port Docker publishes (bridge) stays
        # held until the proxy has stopped.
        remote.run(detached(proxy_verbs.stop()))
        remote.run(once_port_free(host.port, port_free_within(proxy, runtime.default_grace), "true",
                                  "the proxy was told to stop"))
        health = session.start_and_wait(verbs.up(), out)
        _prove(session, expected)
        return health

    def give_it_back() -> None:
        """The single gateway removed, the files restored, the proxy started again: its port, its
        live instance (which never stopped) behind it."""
        remote.run(verbs.remove(), check=False)
        session.restore(plan.changes, deploy_id, verbs, check=False)
        remote.run(proxy_verbs.stop(), check=False)  # the stop begun apart, waited for
        remote.run(proxy_verbs.start(), check=False)

    preparation = plan.preparation
    done = run(session, [
        Step("prepare", lambda: session.prepare(preparation, out) if preparation else None),
        Step("install", lambda: session.install(plan.changes, deploy_id, verbs)),
        Step("take the port", take_the_port, undo=give_it_back, undo_if_failed=True,
             failed="the proxy and its live instance are back, the previous files too"),
    ], watched=host)
    # Stopped before they go, the proxy first: what it still holds (streams) needs its live instance.
    for gateway in (proxy, *instances):
        remote.run(session.verbs(facts, gateway).stop(), check=False)
        remote.run(session.verbs(facts, gateway).remove(), check=False)
    for path in ONE_GATEWAY.leftovers(runtime, host, before=BehindTheDoor(door)):
        remote.run(files.take_away(host, path, deploy_id), check=False)
    return done["take the port"], tuple(expected.models)


def _prove(session: Session, expected: SmokePlan) -> None:
    """The full smoke, straight to one gateway: a chat answer proves its credentials."""
    failed = [check for check in smoke(session.gateway, expected, expected.models[:1],
                                       redis_probe=session.reaches_redis) if not check.ok]
    if failed:
        raise VerifyError(f"{session.host.name}: smoke failed: "
                          + "; ".join(f"{check.name}: {check.detail}" for check in failed))


def _quietly(session: Session, command: list[str] | str) -> Callable[[], None]:
    """An undo that runs COMMAND and goes on whatever it returns (the next undo still runs)."""
    def undo() -> None:
        session.remote.run(command, check=False)
    return undo


def reload_door(session: Session, plan: Plan, desired: DesiredFiles, facts: HostFacts, deploy_id: str,
                out: TextIO) -> float:
    """Applies PLAN (verb RELOAD: only the door's certificate changed, a renewal): the files written
    (backed up), HAProxy reloaded (its port never closes), done once a fresh handshake gets the new
    certificate; returns the seconds that took. A failure puts the files back and reloads again."""
    host, runtime, remote = session.host, session.runtime, session.remote
    verbs = session.verbs(facts)
    wanted = tls.of_bundle(desired.certificate or "")
    out.write(f"{host.name}: reloading the proxy for the certificate until {wanted.not_after:%Y-%m-%d}; "
              "the live instance keeps serving\n")
    out.flush()

    def reload() -> float:
        started = time.monotonic()
        reloaded = remote.run(runtime.door.reload(host), check=False)
        if reloaded.failed:
            raise VerifyError(f"{host.name}: the proxy did not reload: {remote.last_line(reloaded)}")
        wait_for_certificate(session.gateway, wanted, PROXY_TIMEOUT)
        return time.monotonic() - started

    def put_back() -> None:
        session.restore(plan.changes, deploy_id, verbs, check=False)
        remote.run(runtime.door.reload(host), check=False)

    done = run(session, [
        Step("install", lambda: session.install(plan.changes, deploy_id, verbs)),
        Step("reload", reload, undo=put_back, undo_if_failed=True,
             failed="the previous certificate is back and the proxy serves it"),
    ], watched=runtime.door.proxy(host))
    return float(done["reload"])
