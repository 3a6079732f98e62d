"""Requests lost while the gateway changes, on the lab: 4 clients send chat requests over kept-alive
connections (as the OpenAI SDK does) to the host's port, through each change a team makes, with
and without `zero_downtime: true`, for both runtimes.

    python bench/zero_downtime_bench.py [--clients 4] [--runtimes docker,systemd]

Prints per runtime, setting and change: requests sent while the change ran, how many failed, their
p99 latency, and the change's wall time. The changes: a config-only change (vars.mock_response on
Docker, vars.env on systemd), an env change (vars.env), `upgrade --to` another release (Docker: the
systemd host's wheel folder holds one release), `rollback`, `compose.restart`. Docker runs on the
machine's own engine (network_mode host, the lab's image and HAProxy, loopback); systemd on the
lab's systemd host (`labsd`, Debian's HAProxy, its published port on lab1's address). Needs
`inv lab.up --hosts 1`; the systemd host is wiped before and after.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import systemd_host  # noqa: E402
from lab import target as local_lab  # noqa: E402
from lab.load import Load, summary  # noqa: E402
from lab.netns import NamespaceHost  # noqa: E402
from litedeploy.inventory import LOCAL_PATHS, load_inventory  # noqa: E402
from litedeploy.secrets import decrypt_secrets  # noqa: E402

NAME, CONTAINER, PORT, MODEL = "zdbench", "litedeploy-zdbench", 14700, "claude-sonnet-4"
# Each change as (its name, the vars it sets in hosts.yaml, the task and its arguments).
CHANGES: tuple[tuple[str, dict, tuple[str, ...]], ...] = (
    ("config", {"mock_response": "bench: a changed answer"}, ("deploy",)),
    ("env", {"env": {"LITEDEPLOY_BENCH": "1"}}, ("deploy",)),
    ("upgrade", {}, ("upgrade", "--to", "1.106.3")),
    ("rollback", {}, ("rollback",)),
    ("compose.restart", {}, ("compose.restart",)),
)
# The systemd host: its models answer from the Ollama stand-ins; no second release in its wheels.
SYSTEMD_CHANGES: tuple[tuple[str, dict, tuple[str, ...]], ...] = (
    ("config", {"litellm_settings": {"num_retries": 1}}, ("deploy",)),
    ("env", {"env": {"LITEDEPLOY_BENCH": "1"}}, ("deploy",)),
    ("rollback", {}, ("rollback",)),
    ("compose.restart", {}, ("compose.restart",)),
)
SYSTEMD_WIPE = ("systemctl stop 'litellm@*' 2>/dev/null; systemctl disable --now litellm litellm-proxy 2>/dev/null;"
                " rm -rf /etc/systemd/system/litellm* /etc/systemd/system/multi-user.target.wants/litellm*"
                " /etc/litellm /run/lock/litedeploy*; systemctl daemon-reload; true")


def write_inventory(path: Path, entry: dict, data: dict, **variables) -> None:
    host = {**entry, "vars": {**entry["vars"], **variables}}
    path.write_text(yaml.safe_dump({"defaults": data["defaults"], "hosts": {NAME: host}}))


def run(inventory: Path, *argv: str) -> None:
    done = subprocess.run([sys.executable, "-m", "invoke", *argv, "--host", NAME], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "INVOKE_LITELLM_INVENTORY": str(inventory)})
    if done.returncode != 0:
        raise SystemExit(f"inv {' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")


def remove() -> None:
    subprocess.run(["docker", "rm", "-f", CONTAINER, *(f"{CONTAINER}-{role}" for role in ("proxy", "blue", "green"))],
                   capture_output=True)


def measure(runtime: str, inventory: Path, entry: dict, data: dict, address: str, port: int, model: str,
            changes: tuple[tuple[str, dict, tuple[str, ...]], ...], key: str, clients: int) -> None:
    """The first deploy, then each change under load, a line each."""
    write_inventory(inventory, entry, data)
    run(inventory, "deploy")
    variables: dict = {}
    for change, sets, argv in changes:
        variables.update(sets)
        write_inventory(inventory, entry, data, **variables)
        load = Load(address, port, key, model, clients).start()
        time.sleep(2)
        begun = time.monotonic()
        run(inventory, *argv)
        ended = time.monotonic()
        time.sleep(2)
        sent, failed, p99 = summary(load.stop().during(begun, ended))
        setting = "zero_downtime" if entry["vars"]["zero_downtime"] else "restart in place"
        print(f"{runtime:<9}{setting:<18}{change:<17}{sent:>6}{failed:>8}{p99:>8.2f}{ended - begun:>8.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--runtimes", default="docker,systemd")
    arguments = parser.parse_args()
    lab = local_lab.Lab(REPO / ".lab", load_inventory(REPO / "hosts.yaml").host("lab"))
    started = local_lab.up(lab, print, hosts=1 if "systemd" in arguments.runtimes else 0)
    key = decrypt_secrets(str(REPO / "lab/secrets.lab.enc.yaml"), str(REPO / "lab/age-key.lab.txt"))["LITELLM_MASTER_KEY"]
    print(f"{'runtime':<9}{'setting':<18}{'change':<17}{'sent':>6}{'failed':>8}{'p99 s':>8}{'wall s':>8}")
    try:
        for zero_downtime in (False, True):
            for runtime in arguments.runtimes.split(","):
                with tempfile.TemporaryDirectory() as folder:
                    data, entry = local_lab.inventory_copy(REPO)
                    inventory = Path(folder) / "hosts.yaml"
                    if runtime == "docker":
                        entry.update(compose_file=f"{folder}/compose.yml", config_dir=f"{folder}/litellm",
                                     container_name=CONTAINER, port=PORT)
                        entry["vars"] = {**entry["vars"], "zero_downtime": zero_downtime}
                        remove()
                        measure(runtime, inventory, entry, data, "127.0.0.1", PORT, MODEL, CHANGES, key,
                                arguments.clients)
                        remove()
                    else:
                        entry = systemd_entry(data)
                        entry["vars"] = {**entry["vars"], "zero_downtime": zero_downtime}
                        on_systemd_host(SYSTEMD_WIPE)
                        measure(runtime, inventory, entry, data, entry["address"], entry["port"], "phi3-3.8b",
                                SYSTEMD_CHANGES, key, arguments.clients)
                        on_systemd_host(SYSTEMD_WIPE)
    finally:
        local_lab.stop_daemons(lab, print, started)


def systemd_entry(data: dict) -> dict:
    """hosts.yaml's labsd, its local paths made absolute, listening on the port the lab publishes."""
    entry = dict(data["hosts"]["labsd"])
    for key in LOCAL_PATHS:
        if key in entry:
            entry[key] = str(REPO / entry[key])
    return {**entry, "port": 4000}


def on_systemd_host(command: str) -> None:
    engine = NamespaceHost(1, REPO / ".lab")
    subprocess.run([*engine.docker, "exec", systemd_host.CONTAINER, "sh", "-c", command], capture_output=True,
                   check=True)


if __name__ == "__main__":
    main()
