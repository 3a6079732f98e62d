"""The local target `lab`: this machine as a deploy host on 127.0.0.1."""

from pathlib import Path

from invoke import task

from .. import lab as local_lab
from .target import project_of, reports_errors

LAB_HOST = "lab"


def _lab(c) -> local_lab.Lab:
    project = project_of(c)
    return local_lab.Lab(Path(project.root) / ".lab", project.inventory.host(LAB_HOST))


@task
@reports_errors
def up(c):
    """Install and start what the lab needs (sshd, dockerd, the local LiteLLM image); idempotent."""
    local_lab.up(_lab(c), print)
    print("lab: up")


@task
@reports_errors
def down(c):
    """Stop the lab's container, and the sshd and dockerd that `lab.up` started."""
    local_lab.down(_lab(c), print)
    print("lab: down")
