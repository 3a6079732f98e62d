"""A host opened for one task: its secrets decrypted into memory and one SSH connection."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from dataclasses import dataclass
from typing import Iterator, Sequence, TextIO

from .errors import VerifyError
from .facts import ContainerState
from .inventory import Host
from .remote import Remote
from .secrets import Redactor, SecretValues, decrypt_secrets
from .verify import Gateway, container_failure, tunnel_gateway, wait_until_live

SUDO_PASSWORD = "SUDO_PASSWORD"


@dataclass(frozen=True)
class Session:
    host: Host
    secrets: SecretValues
    remote: Remote

    @property
    def redact(self) -> Redactor:
        return self.remote.redact

    @property
    def gateway(self) -> Gateway:
        return tunnel_gateway(self.remote, self.host.port, self.secrets["LITELLM_MASTER_KEY"])

    def start_and_wait(self, command: Sequence[str], out: TextIO = sys.stderr) -> float:
        """Runs a compose verb that (re)starts the container and waits until it answers; a crash loop
        ends the wait early."""
        baseline = self.remote.run_and_inspect(command)
        seconds = wait_until_live(self.gateway, self.host.health_timeout, out,
                                  watch=lambda: container_failure(self.remote.container_state(), baseline))
        self.check_answering_is_ours(baseline)
        return seconds

    def check_answering_is_ours(self, baseline: ContainerState | None) -> None:
        """An answer on the port may come from someone else (an old container under another name, a
        second gateway) while ours crash-loops: ours must run, unrestarted, and hold the port."""
        now = self.remote.container_and_port(self.host.port)
        failure = container_failure(now.container, baseline)
        if failure:
            raise VerifyError(f"{self.host.name}: {failure}")
        other = now.held_by_other(self.host.container_name)
        if other:
            raise VerifyError(f"{self.host.name}: port {self.host.port} answers, but from {other}, "
                              f"not the {self.host.container_name} container")


def host_file(host: Host) -> Path:
    """secrets.<host>.enc.yaml beside the shared file: values there override the shared ones."""
    return Path(host.secrets_file).with_name(f"secrets.{host.name}.enc.yaml")


def host_secrets(host: Host) -> SecretValues:
    shared = decrypt_secrets(host.secrets_file, host.age_key_file)
    own = host_file(host)
    if own == Path(host.secrets_file) or not own.exists():
        return shared
    overrides = decrypt_secrets(str(own), host.age_key_file)
    return SecretValues({**shared, **overrides}, f"{host.secrets_file} + {own}")


@contextmanager
def opened(host: Host, secrets: SecretValues | None = None) -> Iterator[Session]:
    """The sudo password, where the host needs one, comes from its secrets (SUDO_PASSWORD) or the
    environment (LITEDEPLOY_SUDO_PASSWORD); Fabric answers sudo's prompt with it on stdin."""
    secrets = secrets if secrets is not None else host_secrets(host)
    sudo_password = secrets.get(SUDO_PASSWORD) or os.environ.get(f"LITEDEPLOY_{SUDO_PASSWORD}")
    redact = Redactor.of({**secrets, SUDO_PASSWORD: sudo_password or ""})
    with Remote(host, redact, sudo_password if host.sudo else None) as remote:
        yield Session(host, secrets, remote)
