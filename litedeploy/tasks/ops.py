"""Operating a deployed gateway: prove it answers, read its logs."""

from invoke import task
from invoke.exceptions import Exit

from ..compose import container_logs
from ..session import opened
from ..verify import smoke as run_smoke
from .target import host_of, project_of, reports_errors


@task(help={"host": "inventory name of the host"})
@reports_errors
def smoke(c, host=None):
    """Liveliness, readiness, every configured model listed, one chat answer (never the billed /health)."""
    target = host_of(c, project_of(c), host)
    with opened(target) as session:
        checks = run_smoke(session.gateway, target)
    for check in checks:
        print(f"{target.name}  {'ok  ' if check.ok else 'FAIL'}  {check.name:<28} {check.seconds:6.2f}s  "
              f"{session.redact(check.detail)}")
    failed = [check.name for check in checks if not check.ok]
    if failed:
        raise Exit(f"error: {target.name}: smoke failed: {', '.join(failed)}", code=1)


@task(help={"host": "inventory name of the host", "tail": "how many recent lines (default 100)"})
@reports_errors
def logs(c, host=None, tail=100):
    """The litellm container's recent log lines, with every secret value masked."""
    target = host_of(c, project_of(c), host)
    with opened(target) as session:
        result = session.remote.run(container_logs(target, int(tail)))
    # docker logs writes the container's stdout and stderr to ours separately; both are log lines.
    print(session.redact(result.stdout + result.stderr), end="")
