"""A host opened for one task: its secrets decrypted into memory and one SSH connection."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from .inventory import Host
from .remote import Remote
from .secrets import Redactor, SecretValues, decrypt_secrets
from .verify import Gateway


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
        return Gateway(self.remote, self.secrets["LITELLM_MASTER_KEY"])


def host_secrets(host: Host) -> SecretValues:
    return decrypt_secrets(host.secrets_file, host.age_key_file)


@contextmanager
def opened(host: Host, secrets: SecretValues | None = None) -> Iterator[Session]:
    secrets = secrets if secrets is not None else host_secrets(host)
    with Remote(host, Redactor.of(secrets)) as remote:
        yield Session(host, secrets, remote)
