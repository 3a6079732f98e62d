"""No-op benchmark: `inv deploy --host lab` beside the source design's Ansible role, and the floor.

    python bench/noop_bench.py [--runs 10]

Both reach the lab's quiet-rc sshd on 127.0.0.1 (root's login shell reads no rc file, as on most
hosts) as root, after a first run each that is not measured; then RUNS rounds, each running one
no-op `inv deploy` and one no-op `ansible-playbook` (interleaved, so a busy moment costs both). The
role is seeds/000's, in bench/ansible_role/ (file, template, blockinfile, a restart handler; its
secrets in an ansible-vault file), writing beside the lab, never to /etc/compose.yml; it runs with
Ansible's defaults (facts gathered, OpenSSH with ControlPersist). A no-op deploy does more than the
role: it decrypts the secrets with sops, takes the host's lock, reads its facts, checks liveliness and
/v1/models and appends the audit line.

The floor, what any deploy of this shape pays: the interpreter's start (`python -c pass`), the
sops decrypt of the lab's secrets (`sops -d`, a subprocess), and one SSH handshake with a command
(paramiko, as the deploy connects). Prints medians and the ratio no-op / role.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import target as local_lab  # noqa: E402
from litedeploy.deploy import deploy  # noqa: E402
from litedeploy.inventory import load_inventory  # noqa: E402
from litedeploy.project import load_project  # noqa: E402
from litedeploy.remote import Remote  # noqa: E402
from litedeploy.secrets import decrypt_secrets  # noqa: E402

ROLE = REPO / "bench" / "ansible_role"
PROFILE = "quiet-rc"


def timed(run: Callable[[], object]) -> float:
    start = time.monotonic()
    run()
    return time.monotonic() - start


def checked(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done


class Role:
    """seeds/000's role against the lab host, with its vault written from the lab's secrets."""

    def __init__(self, lab: local_lab.Lab, entry: dict, folder: Path) -> None:
        secrets = decrypt_secrets(entry["secrets_file"], entry["age_key_file"])
        target = folder / "target"  # the host's side: this machine, beside the lab
        target.mkdir()
        (target / "compose.yml").write_text("services:\n")
        password = folder / "vault-password"
        password.write_text(os.urandom(16).hex())
        vault = folder / "group_vars" / "gateway" / "vault.yml"
        vault.parent.mkdir(parents=True)
        vault.write_text(yaml.safe_dump({"vault_litellm": {
            "aws": {"access_key": secrets["AWS_ACCESS_KEY_ID"], "secret_access_key": secrets["AWS_SECRET_ACCESS_KEY"]},
            "master_key": secrets["LITELLM_MASTER_KEY"], "salt_key": secrets["LITELLM_SALT_KEY"]}}))
        checked(["ansible-vault", "encrypt", "--vault-password-file", str(password), str(vault)])
        (folder / "inventory.yml").write_text(yaml.safe_dump({"gateway": {"hosts": {"lab": {
            "ansible_host": "127.0.0.1", "ansible_port": lab.port(PROFILE), "ansible_user": "root",
            "ansible_ssh_private_key_file": str(lab.client_key),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={lab.known_hosts}",
            "litellm_dir": str(target / "litellm"), "compose_file": str(target / "compose.yml")}}}}))
        shutil.copytree(ROLE, folder / "role")
        self.argv = ["ansible-playbook", "-i", str(folder / "inventory.yml"), "--vault-password-file", str(password),
                     str(folder / "role" / "site.yml")]
        self.env = {**os.environ, "ANSIBLE_ROLES_PATH": str(folder / "role" / "roles"), "ANSIBLE_NOCOLOR": "1"}

    def run(self) -> str:
        return checked(self.argv, env=self.env).stdout

    def noop(self) -> None:
        recap = self.run().rsplit("PLAY RECAP", 1)[-1]
        if "changed=0" not in recap:
            raise SystemExit(f"the role's second run changed something:\n{recap}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    lab = local_lab.Lab(REPO / ".lab", load_inventory(REPO / "hosts.yaml").host("lab"))
    started = local_lab.up(lab, print)
    folder = Path(tempfile.mkdtemp(prefix="litedeploy-bench-noop-"))
    try:
        data, entry = local_lab.inventory_copy(REPO)
        entry["ssh_port"] = lab.port(PROFILE)
        inventory = folder / "hosts.yaml"
        inventory.write_text(yaml.safe_dump(data))
        project = load_project(REPO, str(inventory), "templates")
        host = project.inventory.host("lab")
        deploy(project, host, io.StringIO())  # whatever it changes: not measured
        role = Role(lab, entry, folder)
        role.run()
        env = {**os.environ, "INVOKE_LITELLM_INVENTORY": str(inventory)}
        inv_deploy = [sys.executable, "-m", "invoke", "deploy", "--host", "lab"]
        ours, theirs = [], []
        for _ in range(runs):
            ours.append(timed(lambda: checked(inv_deploy, cwd=REPO, env=env)))
            theirs.append(timed(role.noop))
        in_process = [timed(lambda: deploy(project, host, io.StringIO())) for _ in range(runs)]
        interpreter = [timed(lambda: checked([sys.executable, "-c", "pass"])) for _ in range(runs)]
        sops = [timed(lambda: checked(["sops", "-d", entry["secrets_file"]],
                                      env={**os.environ, "SOPS_AGE_KEY_FILE": entry["age_key_file"]}))
                for _ in range(runs)]

        def handshake() -> None:
            with Remote(host) as remote:
                remote.run("true")

        ssh = [timed(handshake) for _ in range(runs)]
    finally:
        local_lab.stop_daemons(lab, print, started)
        shutil.rmtree(folder, ignore_errors=True)
    median = statistics.median
    print(f"no-op `inv deploy --host lab`: {median(ours):.3f} s (median of {runs}; "
          f"{median(in_process):.3f} s of it in-process)")
    print(f"no-op ansible-playbook of the source role: {median(theirs):.3f} s (median of {runs})")
    print(f"ratio: {median(ours) / median(theirs):.2f} (goal 0.15 or less)")
    print(f"floor: interpreter {median(interpreter):.3f} s, sops -d {median(sops):.3f} s, "
          f"SSH handshake and a command {median(ssh):.3f} s; "
          f"sum {median(interpreter) + median(sops) + median(ssh):.3f} s")


if __name__ == "__main__":
    main()
