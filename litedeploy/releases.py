"""Releases: what each successful deploy left on the host (its compose file, config.yaml and env
file, kept in the host's backup folder under the deploy's id), and the choices made from them
(pure): which release a rollback goes back to, what it puts back, and the deploy history.

A rollback restores our service block, config and env of a release; the rest of the compose file
stays as it is now, since the admin's other services may have changed since.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .envfile import env_pairs
from .errors import DeployError
from .facts import HostFacts
from .host import Host
from .plan import DesiredFiles
from .secrets import fingerprint

if TYPE_CHECKING:
    from .runtimes.base import Runtime

# The files of a release folder besides the service file (`ServiceFile.release_file`), by the fact
# that carries each one's text.
KEPT_FILES = {"config_file": "config.yaml", "env_file": "litellm.env"}


def release_names(runtime: Runtime, written: Mapping[str, str]) -> dict[str, str]:
    """Each of the WRITTEN paths (by fact) that a release keeps -> its name in the release folder; not
    the front door's configuration: which instance is live is the host's state, not a release's."""
    names = {"service_file": runtime.service.release_file, **KEPT_FILES}
    return {path: names[fact] for fact, path in written.items() if fact in names}


@dataclass(frozen=True)
class Release:
    id: str
    files: Mapping[str, str]  # the file's name in the release folder (`release_names`) -> its text

    def desired(self, host: Host, secret_names: frozenset[str], runtime: Runtime) -> DesiredFiles:
        release_file = runtime.service.release_file
        source = f"{host.name}:{host.backup_dir}/releases/{self.id}/{release_file}"
        missing = [name for name in (release_file, *KEPT_FILES.values()) if name not in self.files]
        service = runtime.service.part(host, self.files.get(release_file, ""), source)
        if missing or service is None:
            raise DeployError(f"{source}: release {self.id} is incomplete "
                              f"({', '.join(missing) or 'no litellm block'}); choose another with --to")
        env = self.files["litellm.env"]
        return DesiredFiles(config=self.files["config.yaml"], env=env, service=service,
                            secret_names=tuple(name for name in env_pairs(env) if name in secret_names))

    def runs(self, host: Host, runtime: Runtime) -> str | None:
        """What the release runs (`ServiceFile.served`: an image, a venv)."""
        return runtime.service.served(host, self.files.get(runtime.service.release_file))


def parse_releases(output: str) -> list[Release]:
    """`release ID NAME BASE64` lines -> releases, oldest first (ids start with their UTC time)."""
    files: dict[str, dict[str, str]] = {}
    for line in output.splitlines():
        word, _, rest = line.partition(" ")
        if word != "release":
            continue
        release_id, name, encoded = (rest.split(" ") + ["", ""])[:3]
        files.setdefault(release_id, {})[name] = base64.b64decode(encoded).decode("utf-8", errors="replace")
    return [Release(release_id, files[release_id]) for release_id in sorted(files)]


def choose_release(host: Host, releases: list[Release], facts: HostFacts, to: str | None, runtime: Runtime) -> Release:
    """The release asked for, else the newest whose files differ from what the host holds now
    (a rollback undoes the last change)."""
    where = f"{host.name}:{host.backup_dir}/releases"
    if to:
        found = [release for release in releases if release.id == to]
        if not found:
            known = ", ".join(release.id for release in releases) or "none"
            raise DeployError(f"{where}: no release {to!r} (kept: {known}); see inv ops.history --host {host.name}")
        return found[0]
    now = (facts.files.config_text, facts.files.env_text, runtime.service.served(host, facts.files.service_text))
    for release in reversed(releases):
        if (release.files.get("config.yaml"), release.files.get("litellm.env"), release.runs(host, runtime)) != now:
            return release
    raise DeployError(f"{where}: no earlier release differs from what the host runs; nothing to roll back to")


def migration_refusal(host: Host, runtime: Runtime, deployed: str | None, wanted: str, upgrade: bool) -> str | None:
    """Why a change of image needs --yes: LiteLLM migrates its database schema when it starts, and
    no rollback (automatic or on demand) undoes a migration."""
    if not host.vars.get("database") or not deployed or runtime.release.same_release(deployed, wanted, upgrade):
        return None
    return (f"{host.name}: {runtime.what_runs} changes from {deployed} to {wanted} and vars.database is set: LiteLLM "
            "migrates the database schema when it starts, and a rollback does not undo a migration; "
            "back up the database, then run again with --yes")


SALT_KEY = "LITELLM_SALT_KEY"


def salt_key_refusal(host: Host, held_env: str | None, salt: str | None) -> str | None:
    """Why a new LITELLM_SALT_KEY needs --yes: with a database, LiteLLM encrypts the credentials it
    stores there (model and provider keys added through the UI or API) with it, and a new one cannot
    decrypt them (https://docs.litellm.ai/docs/proxy/prod, "LITELLM_SALT_KEY ... do not change it").
    Values are compared on the host's env file and shown only as fingerprints."""
    held = env_pairs(held_env or "").get(SALT_KEY)
    if not host.vars.get("database") or held is None or salt is None or held == salt:
        return None
    return (f"{host.name}: {SALT_KEY} would change from {fingerprint(held)} (in {host.env_path}) to "
            f"{fingerprint(salt)} and vars.database is set: the credentials LiteLLM stored in the database are encrypted with the old "
            "one and could no longer be decrypted; put the old value back in the secrets file, or run again "
            "with --yes to change it on purpose")


@dataclass(frozen=True)
class HistoryEntry:
    id: str
    time: str
    action: str
    result: str
    user: str
    image: str
    changed: tuple[str, ...]
    kept: bool  # its release is kept: `rollback --to ID` can go back to it
    detail: str


def history(audit_lines: list[str], kept_ids: set[str]) -> list[HistoryEntry]:
    """The host's audit log as entries, newest last; lines that are not our JSON are skipped."""
    entries = []
    for line in audit_lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or "id" not in record:
            continue
        detail = record.get("error") or (f"back to {record['rollback_to']}" if record.get("rollback_to") else "")
        entries.append(HistoryEntry(
            id=str(record["id"]), time=str(record.get("time", "")), action=str(record.get("action", "")),
            result=str(record.get("result", "")), user=f"{record.get('user', '?')}@{record.get('from', '?')}",
            image=str(record.get("image") or ""), changed=tuple(record.get("changed") or ()),
            kept=record["id"] in kept_ids, detail=str(detail)))
    return entries
