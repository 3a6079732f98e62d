"""A host opened for one task: its secrets decrypted into memory and one SSH connection."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from .inventory import Host
from .remote import Remote
from .secrets import Redactor, SecretValues, decrypt_secrets
from .verify import Gateway, tunnel_gateway

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
        return tunnel_gateway(self.remote, self.secrets["LITELLM_MASTER_KEY"])


def host_secrets(host: Host) -> SecretValues:
    return decrypt_secrets(host.secrets_file, host.age_key_file)


@contextmanager
def opened(host: Host, secrets: SecretValues | None = None) -> Iterator[Session]:
    """The sudo password, where the host needs one, comes from its secrets (SUDO_PASSWORD) or the
    environment (LITEDEPLOY_SUDO_PASSWORD); Fabric answers sudo's prompt with it on stdin."""
    secrets = secrets if secrets is not None else host_secrets(host)
    sudo_password = secrets.get(SUDO_PASSWORD) or os.environ.get(f"LITEDEPLOY_{SUDO_PASSWORD}")
    redact = Redactor.of({**secrets, SUDO_PASSWORD: sudo_password or ""})
    with Remote(host, redact, sudo_password if host.sudo else None) as remote:
        yield Session(host, secrets, remote)
