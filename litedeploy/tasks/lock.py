"""The deploy lock by hand, as Kamal's `lock` commands: hold a host during maintenance so no
deploy, upgrade or rollback starts, with a message saying why; see who holds it; release it."""

from invoke import task

from .target import HOSTS, on_each_host, reports_errors


@task(help={"host": HOSTS, "message": "why the host is locked (shown to whoever tries to deploy)"})
@reports_errors
def acquire(c, host=None, message=None):
    """Take the host's deploy lock until `lock.release` (a reboot also releases it)."""
    from ..commands import lock
    from ..errors import DeployError
    from ..locking import describe_holder, owner
    from ..session import opened

    def take(project, target):
        taker = owner(message or "locked by hand")
        with opened(target) as session:
            facts = session.read(lock.take(target, taker))
        if not facts.lock.acquired:
            raise DeployError(f"{target.name}: already locked by {describe_holder(facts.lock.holder)}")
        print(f"{target.name}: locked ({taker['message']})")
    on_each_host(c, host, take)


@task(help={"host": HOSTS})
@reports_errors
def status(c, host=None):
    """Who holds the host's deploy lock, since when and why."""
    _report_holder(c, host, release=False, held="locked by {}", free="not locked")


@task(help={"host": HOSTS})
@reports_errors
def release(c, host=None):
    """Release the host's deploy lock, whoever took it (say who that was)."""
    _report_holder(c, host, release=True, held="released the lock of {}", free="was not locked")


def _report_holder(c, host, release: bool, held: str, free: str) -> None:
    """Reads the lock's holder (and removes the lock, when releasing) in one round trip per host."""
    from ..commands import argv, lock, script
    from ..locking import describe_holder
    from ..session import opened

    def report(project, target):
        with opened(target) as session:
            holder = session.read(script(lock.holder(target),
                                         argv(lock.release(target)) if release else None)).lock.holder
        print(f"{target.name}: " + (held.format(describe_holder(holder)) if holder is not None else free))
    on_each_host(c, host, report)
