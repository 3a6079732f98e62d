"""Requests lost while the gateway changes, on the lab, under a team's load: 16 clients sending chat
requests over kept-alive connections (as the OpenAI SDK does), 4 clients each holding a 15 s stream
open (so every change has streams in flight), and 4 kept-alive connections left idle across the
change and used after it; through each change a team makes, without the front door (restart in
place), with it (`zero_downtime: true`), and with it serving HTTPS (`tls`, a team CA made with
openssl), for both runtimes (HTTPS: Docker only, as litedeploy builds it).

    python bench/zero_downtime_bench.py [--clients 16] [--streams 4] [--idle 4] [--runtimes docker,systemd]

Prints per runtime, setting and change: requests sent while the change ran, how many failed, their
p99 latency, the streams in flight and how many were cut, the idle connections that failed their
next request, and the change's wall time; then what a TLS handshake costs a new connection. The
changes: a config-only change (vars.mock_response on Docker, vars.env on systemd), an env change
(vars.env), `upgrade --to` another release (Docker: the systemd host's wheel folder holds one
release), `rollback`, `compose.restart`; behind the door also a change of the proxy's own service
(its grace period), a renewed certificate (HTTPS), and turning the door off and on again. Docker
runs on the machine's own engine (network_mode host, the lab's image and HAProxy, loopback);
systemd on the lab's systemd host (`labsd`, Debian's HAProxy, its published port on lab1's
address; its models are Ollama stand-ins, which hold no stream open: no streams there). Needs
`inv lab.up --hosts 1`; the systemd host is wiped before and after.
"""

from __future__ import annotations

import argparse
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import systemd_host, team_ca  # noqa: E402
from lab import target as local_lab  # noqa: E402
from lab.load import Load, handshake_cost, summary  # noqa: E402
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
# Behind the door: the proxy's own service (its grace period recreates it), then the door off and on.
DOOR_CHANGES: tuple[tuple[str, dict, tuple[str, ...]], ...] = (
    ("proxy settings", {"stop_grace_period": "50s"}, ("deploy",)),
    ("door off", {"zero_downtime": False}, ("deploy",)),
    ("door on", {"zero_downtime": True}, ("deploy",)),
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
# The certificate's key in the secrets file, the HTTPS host's vars, and what a renewal re-signs.
TLS_SECRETS = ("TLS_CERTIFICATE_PEM", "TLS_PRIVATE_KEY_PEM")
SETTINGS = ("restart in place", "zero_downtime", "zero_downtime+tls")
ROW = "{:<9}{:<20}{:<17}{:>6}{:>8}{:>8}{:>9}{:>7}{:>6}{:>8}"


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


def measure(runtime: str, setting: str, inventory: Path, entry: dict, data: dict, address: str, port: int,
            model: str, changes: tuple[tuple[str, dict, tuple[str, ...]], ...], key: str, load: dict,
            tls: ssl.SSLContext | None = None, renew: Path | None = None, only: frozenset[str] = frozenset()) -> None:
    """The first deploy, then each change under LOAD (Load's counts), a line each. RENEW: the team
    CA's folder, whose certificate is renewed (re-signed and put in the secrets file) as a change.
    ONLY: the changes measured (all when empty); the others are made unmeasured, as what follows
    builds on them."""
    write_inventory(inventory, entry, data)
    run(inventory, "deploy")
    variables: dict = {}
    for change, sets, argv in changes:
        variables.update(sets)
        write_inventory(inventory, entry, data, **variables)
        if only and change not in only:
            if sets:
                run(inventory, *argv)
            continue
        if change == "certificate" and renew:
            renewed(renew, Path(entry["secrets_file"]))
        running = Load(address, port, key, model, tls=tls, **load).start()
        time.sleep(2)
        begun = time.monotonic()
        run(inventory, *argv)
        ended = time.monotonic()
        time.sleep(2)
        idle_failed = sum(1 for error in running.check_idle() if error)
        running.stop()
        sent, failed, p99 = summary(running.during(begun, ended))
        streams, cut, _ = summary(running.during(begun, ended, streams=True))
        print(ROW.format(runtime, setting, change, sent, failed, f"{p99:.2f}", streams, cut, idle_failed,
                         f"{ended - begun:.1f}"), flush=True)


def renewed(folder: Path, secrets_file: Path) -> None:
    """A new certificate for the same key, signed now, in the secrets file."""
    team_ca.issue(folder, ("127.0.0.1",), days=28)
    values = decrypt_secrets(str(secrets_file), str(REPO / "lab/age-key.lab.txt"))
    team_ca.encrypt_for_lab({**values, TLS_SECRETS[0]: (folder / "gw.crt").read_text()}, secrets_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--idle", type=int, default=4)
    parser.add_argument("--runtimes", default="docker,systemd")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="of " + ", ".join(SETTINGS))
    parser.add_argument("--changes", default="", help="only these changes (comma-separated names; default: all)")
    arguments = parser.parse_args()
    only = frozenset(arguments.changes.split(",")) - {""}
    load = {"clients": arguments.clients, "streams": arguments.streams, "idle": arguments.idle}
    lab = local_lab.Lab(REPO / ".lab", load_inventory(REPO / "hosts.yaml").host("lab"))
    started = local_lab.up(lab, print, hosts=1 if "systemd" in arguments.runtimes else 0)
    secrets = decrypt_secrets(str(REPO / "lab/secrets.lab.enc.yaml"), str(REPO / "lab/age-key.lab.txt"))
    key = secrets["LITELLM_MASTER_KEY"]
    print(f"load: {arguments.clients} clients, {arguments.streams} streams of 15 s, {arguments.idle} idle "
          "connections; requests and streams counted while the change ran")
    print(ROW.format("runtime", "setting", "change", "sent", "failed", "p99 s", "streams", "cut", "idle",
                     "wall s"))
    first_answer: dict[str, float] = {}  # by setting: ms to a new connection's first answer
    try:
        for setting in arguments.settings.split(","):
            for runtime in arguments.runtimes.split(","):
                if runtime == "systemd" and setting.endswith("tls"):
                    continue
                with tempfile.TemporaryDirectory() as folder:
                    data, entry = local_lab.inventory_copy(REPO)
                    inventory = Path(folder) / "hosts.yaml"
                    zero_downtime = setting != "restart in place"
                    if runtime == "systemd":
                        entry = systemd_entry(data)
                        entry["vars"] = {**entry["vars"], "zero_downtime": zero_downtime}
                        on_systemd_host(SYSTEMD_WIPE)
                        measure(runtime, setting, inventory, entry, data, entry["address"], entry["port"],
                                "phi3-3.8b", SYSTEMD_CHANGES, key, {**load, "streams": 0}, only=only)
                        on_systemd_host(SYSTEMD_WIPE)
                        continue
                    entry.update(compose_file=f"{folder}/compose.yml", config_dir=f"{folder}/litellm",
                                 container_name=CONTAINER, port=PORT)
                    entry["vars"] = {**entry["vars"], "zero_downtime": zero_downtime, "allow_mock_testing": True}
                    changes, tls, renew = CHANGES + (DOOR_CHANGES if zero_downtime else ()), None, None
                    if setting.endswith("tls"):
                        renew = Path(folder)
                        team_ca.issue(renew, ("127.0.0.1",))
                        entry["secrets_file"] = str(team_ca.encrypt_for_lab(
                            {**secrets, TLS_SECRETS[0]: (renew / "gw.crt").read_text(),
                             TLS_SECRETS[1]: (renew / "gw.key").read_text()}, Path(folder) / "secrets.enc.yaml"))
                        entry["vars"].update(server_names=["127.0.0.1"], tls={
                            "certificate_pem": TLS_SECRETS[0], "private_key_pem": TLS_SECRETS[1],
                            "ca_file": str(renew / "ca.pem")})
                        tls = ssl.create_default_context(cafile=str(renew / "ca.pem"))
                        # HTTPS keeps the door: turning zero_downtime off leaves it on.
                        changes = CHANGES + DOOR_CHANGES[:1] + (("certificate", {}, ("deploy",)),)
                    remove()
                    measure(runtime, setting, inventory, entry, data, "127.0.0.1", PORT, MODEL, changes, key, load,
                            tls, renew, only)
                    if zero_downtime:
                        run(inventory, "deploy")  # the door on again where the last change turned it off
                        first_answer[setting] = handshake_cost("127.0.0.1", PORT, tls)
                    remove()
        if len(first_answer) == 2:
            plain, secure = first_answer["zero_downtime"], first_answer["zero_downtime+tls"]
            print(f"a new connection's first answer through the door (mean of 100): {plain:.1f} ms in plain HTTP, "
                  f"{secure:.1f} ms over HTTPS: the TLS handshake costs {secure - plain:.1f} ms", flush=True)
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
