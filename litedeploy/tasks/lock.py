"""The deploy lock by hand, as Kamal's `lock` commands: hold a host during maintenance so no
deploy, upgrade or rollback starts, with a message saying why; see who holds it; release it."""

from invoke import task

from .target import HOSTS, on_each_host, reports_errors


@task(help={"host": HOSTS, "message": "why the host is locked (shown to whoever tries to deploy)"})
@reports_errors
def acquire(c, host=None, message=None):
    """Take the host's deploy lock until `lock.release` (a reboot also releases it)."""
    from ..deploy import describe_holder, lock_owner
    from ..errors import DeployError
    from ..facts import parse_facts
    from ..hostcommands import lock_script
    from ..session import opened

    def take(project, target):
        owner = {**lock_owner(), "message": message or "locked by hand"}
        with opened(target) as session:
            facts = parse_facts(session.remote.run(["sh", "-c", lock_script(target, owner)]).stdout)
        if not facts.lock_acquired:
            raise DeployError(f"{target.name}: already locked by {describe_holder(facts.lock_holder)}")
        print(f"{target.name}: locked ({owner['message']})")
    on_each_host(c, host, take)


@task(help={"host": HOSTS})
@reports_errors
def status(c, host=None):
    """Who holds the host's deploy lock, since when and why."""
    from ..deploy import describe_holder
    from ..facts import parse_facts
    from ..hostcommands import lock_status_script
    from ..session import opened

    def show(project, target):
        with opened(target) as session:
            facts = parse_facts(session.remote.run(["sh", "-c", lock_status_script(target)]).stdout)
        print(f"{target.name}: " + (f"locked by {describe_holder(facts.lock_holder)}" if facts.lock_holder is not None
                                    else "not locked"))
    on_each_host(c, host, show)


@task(help={"host": HOSTS})
@reports_errors
def release(c, host=None):
    """Release the host's deploy lock, whoever took it (say who that was)."""
    from ..deploy import describe_holder
    from ..facts import parse_facts
    from ..hostcommands import lock_status_script, unlock_script
    from ..session import opened

    def free(project, target):
        with opened(target) as session:
            script = f"{lock_status_script(target)}\n{unlock_script(target)}"
            facts = parse_facts(session.remote.run(["sh", "-c", script]).stdout)
        print(f"{target.name}: " + (f"released the lock of {describe_holder(facts.lock_holder)}"
                                    if facts.lock_holder is not None else "was not locked"))
    on_each_host(c, host, free)

