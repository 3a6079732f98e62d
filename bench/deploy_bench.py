"""Deploy benchmark on the lab: N separate hosts (the lab's namespace hosts lab1..labN, each with
its own address, hardened sshd and Docker engine with bridge networking); the no-op of one host is
bench/noop_bench.py's.

    python bench/deploy_bench.py [--sizes 1,5,20]

Prints per N: the wall time of a first, a no-op and a config-change deploy of all N hosts at once,
SSH connections and sessions (exec channels) per host from the hosts' sshd logs, and how long
`inv --list` takes. N = 1 runs the real LiteLLM image; N > 1 runs the same image with a stand-in
gateway (bench/standin_gateway.py) so 20 of them fit in memory. Traffic stays on the links the lab
made; the namespace hosts this run started are removed at the end (each loads the lab image once,
about 20 s, kept in .lab/labN/ for the next run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import target as local_lab  # noqa: E402
from litedeploy.inventory import load_inventory  # noqa: E402

STANDIN = REPO / "bench" / "standin_gateway.py"


def standin_templates(folder: Path) -> Path:
    """The repo's templates, with the service running the stand-in instead of LiteLLM."""
    shutil.copytree(REPO / "templates", folder)
    block = folder / "compose-service.yml.j2"
    block.write_text(block.read_text().replace(
        "    volumes:\n",
        f'    entrypoint: ["/opt/venv/bin/python3", "/standin/{STANDIN.name}"]\n'
        f"    volumes:\n      - {STANDIN.parent}:/standin:ro\n"))
    return folder


def log_counts(log: Path) -> tuple[int, int]:
    text = log.read_text()
    return text.count("Accepted publickey"), text.count("Starting session")


def inventory(folder: Path, size: int, lab: local_lab.Lab) -> tuple[Path, list[str]]:
    data, entry = local_lab.inventory_copy(REPO)
    hosts = {}
    for index in range(1, size + 1):
        root = folder / f"host{index}"
        root.mkdir()
        hosts[f"bench{index}"] = {**entry, "address": lab.namespace_host(index).address, "ssh_port": 22,
                                  "network_mode": "bridge", "bind": "0.0.0.0", "port": 14100,
                                  "compose_file": str(root / "compose.yml"), "config_dir": str(root / "litellm"),
                                  "container_name": "litedeploy-bench"}
    data["hosts"] = hosts
    data["groups"] = {"bench": list(hosts)}
    path = folder / "hosts.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, list(hosts)


def sshd_counts(lab: local_lab.Lab, size: int) -> tuple[int, int]:
    counts = [log_counts(lab.namespace_host(index).folder / "sshd.log") for index in range(1, size + 1)]
    return sum(count[0] for count in counts), sum(count[1] for count in counts)


def timed_deploy(env: dict, lab: local_lab.Lab, size: int) -> tuple[float, float, float]:
    connections, sessions = sshd_counts(lab, size)
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "invoke", "deploy", "--host", "bench", "--parallel", "20"],
                         cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    if run.returncode != 0:
        raise SystemExit(f"deploy failed:\n{run.stdout}\n{run.stderr}")
    after_connections, after_sessions = sshd_counts(lab, size)
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
    path, names = inventory(folder, size, lab)
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
        for index in range(1, size + 1):
            subprocess.run([*lab.namespace_host(index).docker, "rm", "-f", "litedeploy-bench"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,5,20")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    lab = local_lab.Lab(REPO / ".lab", load_inventory(REPO / "hosts.yaml").host("lab"))
    started = local_lab.up(lab, print, hosts=max(sizes))
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
