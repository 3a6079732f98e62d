"""The litellm service in the host's compose file, and only that service."""

from invoke import task

from ..compose import compose_commands
from ..deploy import remove as remove_service
from ..session import opened
from ..verify import wait_until_live
from .target import host_of, project_of, reports_errors


@task(help={"host": "inventory name of the host"})
@reports_errors
def restart(c, host=None):
    """Restart the litellm container and wait until it answers again."""
    target = host_of(c, project_of(c), host)
    with opened(target) as session:
        commands = compose_commands(target, session.remote.gather_facts())
        session.remote.run(commands.restart())
        seconds = wait_until_live(session.gateway, target.health_timeout)
    print(f"{target.name}: restarted litellm; answering after {seconds:.1f} s")


@task(help={"host": "inventory name of the host",
            "break-lock": "remove a stale deploy lock left by a deploy that died"})
@reports_errors
def remove(c, host=None, break_lock=False):
    """Stop and remove the litellm container and take its block out of the compose file (the rest of
    the file, config.yaml and the env file stay; backups are kept)."""
    project = project_of(c)
    target = host_of(c, project, host)
    done = remove_service(project, target, break_lock=break_lock)
    print(f"{target.name}: " + ("; ".join(done) if done else "nothing to remove"))
