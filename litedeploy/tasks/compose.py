"""The litellm service in the host's compose file, and only that service."""

from invoke import task

from ..compose import compose_commands
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
