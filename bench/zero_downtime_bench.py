"""Requests lost while the gateway changes, on the lab: 4 clients send chat requests over kept-alive
connections (as the OpenAI SDK does) to the host's port on loopback, through each change a team
makes, with and without `zero_downtime: true`.

    python bench/zero_downtime_bench.py [--clients 4]

Prints per setting and change: requests sent while the change ran, how many failed, their p99
latency, and the change's wall time. The changes: a config-only change (vars.mock_response), an env
change (vars.env), `upgrade --to` another release, `rollback`, `compose.restart`. Runs on a host of
the machine's own engine (network_mode host, the lab's image and HAProxy); the Docker runtime only:
the systemd runtime has no zero_downtime yet.
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

from lab import target as local_lab  # noqa: E402
from lab.load import Load, summary  # noqa: E402
from litedeploy.inventory import load_inventory  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    clients = parser.parse_args().clients
    lab = local_lab.Lab(REPO / ".lab", load_inventory(REPO / "hosts.yaml").host("lab"))
    started = local_lab.up(lab, print)
    key = decrypt_secrets(str(REPO / "lab/secrets.lab.enc.yaml"), str(REPO / "lab/age-key.lab.txt"))["LITELLM_MASTER_KEY"]
    print(f"{'setting':<18}{'change':<17}{'sent':>6}{'failed':>8}{'p99 s':>8}{'wall s':>8}")
    try:
        for zero_downtime in (False, True):
            with tempfile.TemporaryDirectory() as folder:
                data, entry = local_lab.inventory_copy(REPO)
                entry.update(compose_file=f"{folder}/compose.yml", config_dir=f"{folder}/litellm",
                             container_name=CONTAINER, port=PORT)
                entry["vars"] = {**entry["vars"], "zero_downtime": zero_downtime}
                inventory = Path(folder) / "hosts.yaml"
                remove()
                write_inventory(inventory, entry, data)
                run(inventory, "deploy")
                variables: dict = {}
                for change, sets, argv in CHANGES:
                    variables.update(sets)
                    write_inventory(inventory, entry, data, **variables)
                    load = Load("127.0.0.1", PORT, key, MODEL, clients).start()
                    time.sleep(2)
                    begun = time.monotonic()
                    run(inventory, *argv)
                    ended = time.monotonic()
                    time.sleep(2)
                    sent, failed, p99 = summary(load.stop().during(begun, ended))
                    setting = "zero_downtime" if zero_downtime else "restart in place"
                    print(f"{setting:<18}{change:<17}{sent:>6}{failed:>8}{p99:>8.2f}{ended - begun:>8.1f}", flush=True)
                remove()
    finally:
        local_lab.stop_daemons(lab, print, started)


if __name__ == "__main__":
    main()
