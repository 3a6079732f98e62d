"""The top-level `deploy` task."""

from invoke import task

from ..deploy import deploy as run_deploy
from .target import host_of, project_of, reports_errors


@task(help={"host": "inventory name of the host to deploy to"})
@reports_errors
def deploy(c, host=None):
    """Render, upload what changed, restart only if needed, and verify the gateway answers."""
    project = project_of(c)
    result = run_deploy(project, host_of(c, project, host))
    changed = f"changed {', '.join(result.changed)}" if result.changed else "nothing changed"
    restarted = f"; {'recreated' if result.restart == 'up' else 'restarted'} litellm" if result.restart else ""
    print(f"{result.host}: ok, {changed}{restarted}; answering after {result.health_seconds:.1f} s; "
          f"{len(result.models)} models listed")
