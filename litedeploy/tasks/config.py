"""LiteLLM's config: what the host holds, what the repo would render, and the difference — all
usable without deploying, all with secret values masked."""

from __future__ import annotations

from pathlib import Path

from invoke import task

from .target import HOSTS, PROFILE, on_each_host, reports_errors


@task(help={"host": HOSTS})
@reports_errors
def show(c, host=None):
    """Print the config.yaml the host holds now."""
    from ..session import opened

    def act(project, target):
        with opened(target) as session:
            facts = session.facts()
        if facts.files.config_text is None:
            print(f"# {target.name}:{target.config_path}: absent (not deployed)")
        else:
            print(f"# {target.name}:{target.config_path}\n{session.redact(facts.files.config_text)}", end="")
    on_each_host(c, host, act)


@task(help={"host": HOSTS, "profile": PROFILE})
@reports_errors
def diff(c, host=None, profile=None):
    """Unified diffs of the host's files against what the repo would render (env values masked)."""
    from .. import runtimes
    from ..plan import file_diff
    from ..render import render_host
    from ..session import host_secrets, opened

    def act(project, target):
        secrets = host_secrets(target)
        runtime = runtimes.of(target)
        render_host(project.templates, target, secrets, runtime)
        with opened(target, secrets) as session:
            facts = session.facts()
        changes = session.plan(render_host(project.templates, session.as_deployed(facts), secrets, runtime),
                               facts).changes
        for change in changes:
            print(file_diff(change, session.redact), end="")
        if not changes:
            print(f"{target.name}: no difference")
    on_each_host(c, host, act, profile)


@task(help={"host": HOSTS, "output": "write the files into this folder (one subfolder per host) instead",
            "profile": PROFILE})
@reports_errors
def render(c, host=None, output=None, profile=None):
    """Render a host's config.yaml, env file (values masked) and compose service block (a systemd
    host: its unit) locally."""
    from .. import runtimes
    from ..envfile import masked_env
    from ..render import render_host
    from ..secrets import Redactor
    from ..session import host_secrets

    def act(project, target):
        secrets = host_secrets(target)
        runtime = runtimes.of(target)
        files = render_host(project.templates, target, secrets, runtime)
        rendered = {"config.yaml": Redactor.of(secrets)(files.config), "litellm.env": masked_env(files.env),
                    runtime.service.template.removesuffix(".j2"): files.service}
        if output:
            folder = Path(output) / target.name
            folder.mkdir(parents=True, exist_ok=True)
            for name, text in rendered.items():
                (folder / name).write_text(text)
            print(f"{target.name}: wrote {', '.join(rendered)} to {folder}")
        else:
            for name, text in rendered.items():
                print(f"# {target.name}: {name}\n{text}", end="" if text.endswith("\n") else "\n")
    on_each_host(c, host, act, profile)
