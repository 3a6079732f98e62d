"""LiteLLM's config as the repo renders it, without deploying."""

from invoke import task

from ..render import render_host
from ..secrets import REDACTED
from ..session import host_secrets
from .target import host_of, project_of, reports_errors


@task(help={"host": "inventory name of the host"})
@reports_errors
def render(c, host=None):
    """Print config.yaml and the compose service block for a host; the env file shows names only."""
    project = project_of(c)
    target = host_of(c, project, host)
    files = render_host(project.templates, target, host_secrets(target))
    env_names = [line.split("=", 1)[0] + "=" + REDACTED for line in files.env.splitlines()
                 if "=" in line and not line.startswith("#")]
    print(f"# {target.config_path}\n{files.config}")
    print(f"# {target.env_path}\n" + "\n".join(env_names) + "\n")
    print(f"# {target.compose_file} (the managed block)\n{files.block}", end="")
