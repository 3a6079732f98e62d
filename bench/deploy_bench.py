"""Deploy benchmark on the lab: N hosts on 127.0.0.1 (own sshd entries, paths, containers, ports).

    python bench/deploy_bench.py [--sizes 1,5,20]

Prints, per N: the wall time of a first, a no-op and a config-change deploy of all N hosts at once,
SSH connections and sessions (exec channels) per host from the lab sshd's log, and how long
`inv --list` takes. N = 1 runs the real LiteLLM image; N > 1 runs the same image with a stand-in
gateway (bench/standin_gateway.py) so 20 of them fit in memory. Everything stays on 127.0.0.1 and
is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from litedeploy import lab as local_lab  # noqa: E402
from litedeploy.inventory import LOCAL_PATHS, load_inventory  # noqa: E402

STANDIN = REPO / "bench" / "standin_gateway.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def standin_templates(folder: Path) -> Path:
    """The repo's templates, with the service running the stand-in instead of LiteLLM."""
    shutil.copytree(REPO / "templates", folder)
    block = folder / "compose-service.yml.j2"
    block.write_text(block.read_text().replace(
        "    volumes:\n",
        f'    entrypoint: ["/opt/venv/bin/python3", "/standin/{STANDIN.name}"]\n'
        f"    volumes:\n      - {STANDIN.parent}:/standin:ro\n"))
    return folder


def inventory(folder: Path, size: int) -> tuple[Path, list[str]]:
    data = yaml.safe_load((REPO / "hosts.yaml").read_text())
    lab = data["hosts"]["lab"]
    for key in LOCAL_PATHS:
        if key in lab:
            lab[key] = str(REPO / lab[key])
    hosts = {}
    for index in range(size):
        root = folder / f"host{index}"
        root.mkdir()
        hosts[f"bench{index}"] = {**lab, "compose_file": str(root / "compose.yml"),
                                  "config_dir": str(root / "litellm"), "container_name": f"litedeploy-bench{index}",
                                  "port": free_port()}
    data["hosts"] = hosts
    data["groups"] = {"bench": list(hosts)}
    path = folder / "hosts.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, list(hosts)


def sshd_counts(lab: local_lab.Lab) -> tuple[int, int]:
    log = (lab.state / "sshd.log").read_text()
    return log.count("Accepted publickey"), log.count("Starting session")


def timed_deploy(env: dict, lab: local_lab.Lab, size: int) -> tuple[float, float, float]:
    connections, sessions = sshd_counts(lab)
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "invoke", "deploy", "--host", "bench", "--parallel", "20"],
                         cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    if run.returncode != 0:
        raise SystemExit(f"deploy failed:\n{run.stdout}\n{run.stderr}")
    after_connections, after_sessions = sshd_counts(lab)
    return wall, (after_connections - connections) / size, (after_sessions - sessions) / size


def inv_list_seconds() -> float:
    runs = []
    for _ in range(5):
        start = time.monotonic()
        subprocess.run(["inv", "--list"], cwd=REPO, capture_output=True, check=True)
        runs.append(time.monotonic() - start)
    return statistics.median(runs)


def bench(size: int, lab: local_lab.Lab) -> list[str]:
    folder = Path(tempfile.mkdtemp(prefix=f"litedeploy-bench{size}-"))
    path, names = inventory(folder, size)
    env = {**os.environ, "INVOKE_LITELLM_INVENTORY": str(path)}
    image = "LiteLLM 1.106.2 (lab image)"
    if size > 1:
        env["INVOKE_LITELLM_TEMPLATES"] = str(standin_templates(folder / "templates"))
        image = "stand-in gateway (lab image, bench/standin_gateway.py)"
    rows = []
    try:
        for label in ("first", "no-op"):
            wall, connections, sessions = timed_deploy(env, lab, size)
            rows.append(f"{size:>3}  {label:<14} {wall:7.2f} s  {connections:5.1f}  {sessions:5.1f}  {image}")
        data = yaml.safe_load(path.read_text())
        data["hosts"] = {name: {**entry, "vars": {**entry["vars"], "mock_response": "changed by the bench"}}
                         for name, entry in data["hosts"].items()}
        path.write_text(yaml.safe_dump(data))
        wall, connections, sessions = timed_deploy(env, lab, size)
        rows.append(f"{size:>3}  {'config-change':<14} {wall:7.2f} s  {connections:5.1f}  {sessions:5.1f}  {image}")
    finally:
        for index in range(size):
            subprocess.run(["docker", "rm", "-f", f"litedeploy-bench{index}"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,5,20")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    lab = local_lab.Lab(REPO / ".lab", load_inventory(REPO / "hosts.yaml").host("lab"))
    started = local_lab.up(lab, print)
    try:
        print("  N  deploy            wall   conn/host  sessions/host  image")
        for size in sizes:
            for row in bench(size, lab):
                print(row, flush=True)
        print(f"inv --list: {inv_list_seconds():.2f} s (median of 5)")
    finally:
        local_lab.stop_daemons(lab, print, started)


if __name__ == "__main__":
    main()
