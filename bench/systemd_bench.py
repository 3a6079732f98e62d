"""Benchmark of the systemd runtime on the lab's systemd host (`labsd`: systemd as PID 1, no package
index, the wheel folder uploaded): the upload alone, a first deploy (user, venv, unit), no-op
deploys, a config change (restart) and a unit change (daemon-reload + restart), then the venv's
size on disk and the service's memory.

    python bench/systemd_bench.py [--runs 5]

Needs `inv lab.up --hosts 1`. The host is wiped before and left deployed after.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import systemd_host  # noqa: E402
from lab.netns import NamespaceHost  # noqa: E402
from litedeploy.deploy import deploy  # noqa: E402
from litedeploy.project import load_project  # noqa: E402
from litedeploy.session import opened  # noqa: E402

WIPE = ("systemctl disable --now litellm 2>/dev/null; rm -rf /etc/systemd/system/litellm.service /etc/litellm "
        "/opt/litellm; userdel litellm 2>/dev/null; systemctl daemon-reload; true")


def on_host(command: str) -> str:
    engine = NamespaceHost(1, REPO / ".lab")
    return subprocess.run([*engine.docker, "exec", systemd_host.CONTAINER, "sh", "-c", command],
                          capture_output=True, text=True, check=True).stdout


def timed(action) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    project = load_project(REPO, "hosts.yaml", "templates")
    host = project.inventory.host("labsd")
    if not host.systemd.wheels:
        raise SystemExit("hosts.yaml: labsd names no wheels folder; the bench installs from it")
    wheels = sorted(Path(host.systemd.wheels).glob("*.whl"))
    size = sum(wheel.stat().st_size for wheel in wheels) / 1e6
    on_host(WIPE)

    def upload() -> None:
        with opened(host) as session:
            stage = session.remote.upload([wheel.read_bytes() for wheel in wheels], [wheel.name for wheel in wheels])
            session.remote.run(["rm", "-rf", stage])
    print(f"upload of {len(wheels)} wheels ({size:.0f} MB) through the task's shell: {timed(upload):.1f} s")
    print(f"first deploy (user, venv from the wheels, unit, start, smoke): "
          f"{timed(lambda: deploy(project, host, io.StringIO())):.1f} s")
    noops = [timed(lambda: deploy(project, host, io.StringIO())) for _ in range(runs)]
    print(f"no-op deploy: median {statistics.median(noops):.2f} s, min {min(noops):.2f} s of {runs}")
    changed = replace(host, vars={**host.vars, "router_settings": {"num_retries": 1}})
    print(f"config change (restart): {timed(lambda: deploy(project, changed, io.StringIO())):.1f} s")
    unit_changed = replace(changed, vars={**changed.vars, "workers": 2})
    print(f"unit change (daemon-reload + restart, 2 workers): "
          f"{timed(lambda: deploy(project, unit_changed, io.StringIO())):.1f} s")
    deploy(project, host, io.StringIO())
    pid = on_host("systemctl show -p MainPID --value litellm").strip()
    rss = on_host(f"ps -o rss= -p {pid}").strip()
    print(f"venv on disk: {on_host('du -sh /opt/litellm').split()[0]}; service RSS: {int(rss) / 1024:.0f} MB")


if __name__ == "__main__":
    main()
