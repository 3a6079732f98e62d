"""The litellm service in the host's compose file, and only that service: the user's other services
are never named, so compose never touches them. On a systemd host (runtime: systemd) the same
tasks drive the unit with systemctl; `remove` stops and disables it, and `pull`, which only means
something for a container, says so."""

from __future__ import annotations

from collections.abc import Callable
from operator import methodcaller
from typing import TYPE_CHECKING

from invoke import task

from ..frontdoor import topology
from ..plan import Verb
from .target import HOSTS, on_each_host, reports_errors

if TYPE_CHECKING:
    from ..commands import ServiceCommands


def _on_service(c, host: str | None, verb: Callable[[ServiceCommands], list[str] | str], done: str,
                wait: bool = False, show_output: bool = False, switches: bool = False) -> None:
    from ..session import opened

    def act(project, target):
        if switches and topology(target).restart_verb() is Verb.SWITCH:  # restart, up: to the other instance
            from ..deploy import restart as switch_instances
            result = switch_instances(project, target)
            print(f"{target.name}: {done}; switched to a new instance answering after {result.health_seconds:.1f} s")
            return
        with opened(target) as session:
            remote = session.remote
            # Behind the front door, the live instance (the proxy is deploy's to change).
            facts = session.facts()  # one round trip: the live instance comes with the rest
            gateway = session.serving(facts)
            command = verb(session.verbs(facts, gateway))
            seconds = None
            if wait:
                seconds = session.driving(gateway).start_and_wait(command)
            else:
                output = remote.run(command).stdout
                if show_output:
                    print(session.redact(output), end="")
        print(f"{target.name}: {done}" + (f"; answering after {seconds:.1f} s" if wait else ""))
    on_each_host(c, host, act)


@task(help={"host": HOSTS})
@reports_errors
def restart(c, host=None):
    """Restart the litellm container and wait until it answers again."""
    _on_service(c, host, methodcaller("restart"), "restarted litellm", wait=True, switches=True)


@task(help={"host": HOSTS})
@reports_errors
def up(c, host=None):
    """Create or recreate the litellm container from the compose file as it is, and wait for it."""
    _on_service(c, host, methodcaller("up"), "litellm is up", wait=True, switches=True)


@task(help={"host": HOSTS})
@reports_errors
def stop(c, host=None):
    """Stop the litellm container (it stays stopped across reboots until started)."""
    _on_service(c, host, methodcaller("stop"), "stopped litellm")


@task(help={"host": HOSTS})
@reports_errors
def start(c, host=None):
    """Start the stopped litellm container and wait until it answers."""
    _on_service(c, host, methodcaller("start"), "started litellm", wait=True)


@task(help={"host": HOSTS})
@reports_errors
def pull(c, host=None):
    """Pull the image the compose file names, at its pinned digest (a new release: `inv upgrade`)."""
    _on_service(c, host, methodcaller("pull"), "pulled the litellm image")


@task(help={"host": HOSTS})
@reports_errors
def ps(c, host=None):
    """The litellm service as compose sees it."""
    _on_service(c, host, methodcaller("ps"), "listed", show_output=True)


@task(help={"host": HOSTS, "break-lock": "remove a stale deploy lock left by a deploy that died"})
@reports_errors
def remove(c, host=None, break_lock=False):
    """Remove the litellm container and its block from the compose file (like state=absent).

    The rest of the compose file, config.yaml and the env file stay; backups are kept."""
    from ..deploy import remove as remove_service

    def act(project, target):
        done = remove_service(project, target, break_lock=break_lock)
        print(f"{target.name}: " + ("; ".join(done) if done else "nothing to remove"))
    on_each_host(c, host, act)
