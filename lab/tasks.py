"""The local target `lab`: this machine as deploy hosts shaped like production ones. The lab's
modules load inside each task, so `inv --list` and the deploy tasks pay nothing for them."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from invoke import task

from litedeploy.errors import DeployError
from litedeploy.tasks.target import project_of, reports_errors, whole_number

if TYPE_CHECKING:
    from .target import Lab

LAB_HOST = "lab"


def _lab(c) -> Lab:
    from .target import Lab

    project = project_of(c)
    return Lab(Path(project.root) / ".lab", project.inventory.host(LAB_HOST))


@task(help={"hosts": "also start N hosts in network namespaces (lab1..labN at 10.213.N.2), each with "
                     "its own sshd and Docker engine"})
@reports_errors
def up(c, hosts="0"):
    """Install and start what the lab needs (sshds per host profile, dockerd, the local LiteLLM image,
    compose v2); idempotent."""
    count = whole_number("hosts", hosts)
    if count > 200:
        raise DeployError(f"lab.up: --hosts must be at most 200 (one 10.213.N.0/24 each), not {count}")
    from .target import up as bring_up

    bring_up(_lab(c), print, hosts=count)
    print("lab: up")


@task
@reports_errors
def down(c):
    """Stop the lab's container, the namespace hosts, and the sshds and dockerd that `lab.up` started."""
    from .target import down as take_down

    take_down(_lab(c), print)
    print("lab: down")


@task(help={"upgrade": "let uv move every pin to the newest release the inputs allow (default: keep the "
                       "pins and only add or drop what the inputs changed)"})
@reports_errors
def lock(c, upgrade=False):
    """Write the lock files in locks/ (the lab's LiteLLM, Docker Compose v2, the test environment)
    with uv, from locks/*.in and pyproject.toml: the only way the lab's pins change."""
    from . import locks

    try:
        from uv import find_uv_bin
    except ImportError:
        raise DeployError("lab.lock needs uv: pip install --require-hashes -r locks/test.txt") from None
    for one in locks.ALL:
        c.run(" ".join(shlex.quote(word) for word in one.compile_argv(find_uv_bin(), upgrade)), echo=True)


@task
@reports_errors
def advisories(c):
    """Refresh litellm.yaml's advisories from GitHub's advisory database (entries it lacks stay);
    review `git diff litellm.yaml` and commit it: the only way the advisories change."""
    from .advisory_feed import refresh
    facts = Path(project_of(c).root) / "litellm.yaml"
    print(f"{facts}: {refresh(facts)} advisories; review with: git diff {facts.name}")
