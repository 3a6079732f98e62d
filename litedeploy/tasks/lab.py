"""The local target `lab`: this machine as deploy hosts shaped like production ones."""

from pathlib import Path

from invoke import task

from .. import lab as local_lab
from ..errors import DeployError
from .target import project_of, reports_errors, whole_number

LAB_HOST = "lab"


def _lab(c) -> local_lab.Lab:
    project = project_of(c)
    return local_lab.Lab(Path(project.root) / ".lab", project.inventory.host(LAB_HOST))


@task(help={"hosts": "also start N hosts in network namespaces (lab1..labN at 10.213.N.2), each with "
                     "its own sshd and Docker engine"})
@reports_errors
def up(c, hosts="0"):
    """Install and start what the lab needs (sshds per host profile, dockerd, the local LiteLLM image,
    compose v2); idempotent."""
    count = whole_number("hosts", hosts)
    if count > 200:
        raise DeployError(f"lab.up: --hosts must be at most 200 (one 10.213.N.0/24 each), not {count}")
    local_lab.up(_lab(c), print, hosts=count)
    print("lab: up")


@task
@reports_errors
def down(c):
    """Stop the lab's container, the namespace hosts, and the sshds and dockerd that `lab.up` started."""
    local_lab.down(_lab(c), print)
    print("lab: down")
