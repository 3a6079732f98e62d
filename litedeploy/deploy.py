"""The deploy pipeline: secrets, render, facts, plan, install, restart, verify — one connection."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from .compose import compose_commands
from .inventory import Host
from .plan import plan_deploy
from .project import Project
from .render import render_host
from .session import host_secrets, opened
from .verify import check_models, wait_until_live


@dataclass(frozen=True)
class DeployResult:
    host: str
    changed: tuple[str, ...]
    restart: str | None
    health_seconds: float
    models: tuple[str, ...]


def deploy(project: Project, host: Host, out: TextIO = sys.stderr) -> DeployResult:
    secrets = host_secrets(host)
    desired = render_host(project.templates, host, secrets)
    with opened(host, secrets) as session:
        facts = session.remote.gather_facts()
        plan = plan_deploy(host, desired, facts)
        if plan.changes:
            session.remote.install(plan.changes)
        if plan.restart:
            commands = compose_commands(host, facts)
            session.remote.run(commands.up() if plan.restart == "up" else commands.restart())
        health = wait_until_live(session.gateway, host.health_timeout, out)
        models = check_models(session.gateway, host)
    return DeployResult(host.name, tuple(change.name for change in plan.changes), plan.restart,
                        health, tuple(models))
