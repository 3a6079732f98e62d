"""The secret chores, one command each: create, show, check, edit, rotate, and change who can
decrypt. Nothing decrypted touches the local disk; values are shown only when asked."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

from invoke import task

from .. import runtimes
from ..errors import DeployError, SecretsError
from ..secrets import REDACTED, SecretValues, decrypt_secrets, default_key_file
from ..sopsfile import (
    age_recipient,
    aws_profile_keys,
    check_sops,
    create_age_key,
    is_encrypted,
    new_master_key,
    new_salt_key,
    recipients_of,
    sops_config_recipients,
    sops_config_with,
    update_recipients,
    write_encrypted,
)
from .target import HOSTS, host_of, hosts_of, on_each_host, project_of, reports_errors

ROTATABLE = {"master": ("LITELLM_MASTER_KEY", new_master_key), "salt": ("LITELLM_SALT_KEY", new_salt_key)}


@task(help={"aws-profile": "take the AWS keys from this profile of ~/.aws/credentials",
            "no-aws": "no AWS keys: the hosts use an IAM instance role",
            "force": "replace an existing secrets.enc.yaml (and name only your key in .sops.yaml)"})
@reports_errors
def init(c, aws_profile=None, no_aws=False, force=False):
    """Create your age key if needed, .sops.yaml, and secrets.enc.yaml with fresh LiteLLM keys."""
    project = project_of(c)
    secrets_file, config_file = project.root / "secrets.enc.yaml", project.root / ".sops.yaml"
    if secrets_file.exists() and not force:
        raise SecretsError(f"{secrets_file}: exists; run with --force to replace it")
    check_sops()
    key_file = default_key_file()
    recipient = age_recipient(key_file)
    if recipient is None:
        recipient = create_age_key(key_file)
        print(f"created the age key {key_file} (0600); back it up: it is the only way to decrypt")
    values = {"LITELLM_MASTER_KEY": new_master_key(), "LITELLM_SALT_KEY": new_salt_key()}
    if aws_profile:
        values.update(aws_profile_keys(aws_profile))
    elif not no_aws:
        values.update(_aws_keys_from_environment_or_prompt())
    existing = config_file.read_text() if config_file.exists() else ""
    recipients = [recipient] if force or not existing else sops_config_recipients(existing) + [recipient]
    config_file.write_text(sops_config_with(existing, list(dict.fromkeys(recipients))))
    write_encrypted(secrets_file, values, list(dict.fromkeys(recipients)))
    print(f"wrote {secrets_file} ({', '.join(values)}) for {len(set(recipients))} recipient(s)")


def _aws_keys_from_environment_or_prompt() -> dict[str, str]:
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    if all(os.environ.get(name) for name in names):
        return {name: os.environ[name] for name in names}
    if not sys.stdin.isatty():
        raise SecretsError("no AWS keys: give --aws-profile NAME, set AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY, or --no-aws for IAM-role hosts")
    return {"AWS_ACCESS_KEY_ID": input("AWS access key ID: ").strip(),
            "AWS_SECRET_ACCESS_KEY": getpass.getpass("AWS secret access key (not echoed): ").strip()}


@task(help={"host": HOSTS + " (default: every host)", "reveal": "also print the values"})
@reports_errors
def show(c, host=None, reveal=False):
    """The secret names each host's files hold and which of them its templates use."""
    from ..session import host_secrets
    project = project_of(c)
    targets = hosts_of(c, project, host) if host else list(project.inventory.hosts.values())
    for target in targets:
        values = host_secrets(target)
        used = needed_secrets(project, target)
        print(f"{target.name}: {values.source}")
        for name in sorted(values):
            shown = values[name] if reveal else REDACTED
            print(f"  {name:<24} {'used' if name in used else 'unused'}  {shown}")
        for name in sorted(used - set(values)):
            print(f"  {name:<24} MISSING")


def needed_secrets(project, target) -> set[str]:
    """The secret names the templates read for this host, found by rendering with a recorder."""
    from ..render import render_host
    recorder = _Recorder({}, "recorder")
    render_host(project.templates, target, recorder, runtimes.of(target))
    return recorder.asked


class _Recorder(SecretValues):
    """Answers every name with a stand-in value and remembers which names were asked for."""

    def __init__(self, values, source) -> None:
        super().__init__(values, source)
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return "sk-stand-in-value"  # passes every check of a value, the master key's sk- prefix included

    def __contains__(self, name: object) -> bool:
        return True


@task(help={"host": HOSTS + " (default: every host)"})
@reports_errors
def check(c, host=None):
    """Each host's secrets are encrypted, decryptable here, and complete for its templates."""
    from ..render import render_host
    from ..session import host_file, host_secrets
    project = project_of(c)
    names = host or ",".join(project.inventory.hosts)

    def act(project, target):
        for path in {Path(target.secrets_file), host_file(target)}:
            if path.exists() and not is_encrypted(path):
                raise SecretsError(f"{path}: is not sops-encrypted: encrypt it or remove it")
        render_host(project.templates, target, host_secrets(target), runtimes.of(target))
        print(f"{target.name}: ok")
    on_each_host(c, names, act)


@task(help={"host": "edit this host's file (its secrets.<host>.enc.yaml if it has one)"})
@reports_errors
def edit(c, host=None):
    """Open a secrets file in sops' editor ($EDITOR); sops re-encrypts it on save."""
    from ..session import host_file
    project = project_of(c)
    env = dict(os.environ)
    if not host:
        path = project.root / "secrets.enc.yaml"
    else:
        target = host_of(c, project, host)
        path = host_file(target) if host_file(target).exists() else Path(target.secrets_file)
        if target.age_key_file:
            env["SOPS_AGE_KEY_FILE"] = target.age_key_file
    subprocess.run([check_sops(), str(path)], env=env, check=False)


@task(help={"host": "inventory name of the host", "key": "which key: master or salt"})
@reports_errors
def rotate(c, host=None, key="master"):
    """Give a host a new master (or salt) key, deploy it, and prove the old key is refused."""
    from ..deploy import deploy as run_deploy
    from ..session import host_file, host_secrets, opened
    if key not in ROTATABLE:
        raise SecretsError(f"--key must be one of {', '.join(ROTATABLE)}")
    project = project_of(c)
    target = host_of(c, project, host)
    name, make = ROTATABLE[key]
    if key == "salt" and target.vars.get("database"):
        raise SecretsError(f"{target.name}: refusing to rotate LITELLM_SALT_KEY: the database holds credentials "
                           "encrypted with it, which a new salt key could no longer decrypt")
    old = host_secrets(target)[name]
    own = host_file(target)
    previous = own.read_bytes() if own.exists() else None
    current = dict(decrypt_secrets(str(own), target.age_key_file)) if previous is not None else {}
    write_encrypted(own, {**current, name: make()}, recipients_of(Path(target.secrets_file)))
    try:
        result = run_deploy(project, target)
    except DeployError:
        _put_back(own, previous)
        raise
    with opened(target) as session:
        status = session.gateway.request("GET", "/v1/models", key=old).status
    if status == 200:
        raise SecretsError(f"{target.name}: the old {name} is still accepted after the deploy")
    changed = ", ".join(change.name for change in result.plan.changes) or "nothing"
    print(f"{target.name}: {name} rotated in {own.name}; deployed (changed {changed}); "
          f"the new key answers, the old one is refused ({status})")


def _put_back(path: Path, previous: bytes | None) -> None:
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(previous)


@task(help={"add": "an age recipient (age1...) who may decrypt from now on",
            "remove": "an age recipient who may no longer decrypt (the data key is rotated too)"})
@reports_errors
def recipients(c, add=None, remove=None):
    """Change who can decrypt the production secrets (.sops.yaml and every secrets*.enc.yaml)."""
    project = project_of(c)
    config_file = project.root / ".sops.yaml"
    now = sops_config_recipients(config_file.read_text()) if config_file.exists() else []
    if not add and not remove:
        print("\n".join(now) or "no recipients")
        return
    wanted = [r for r in now if r != remove] + ([add] if add and add not in now else [])
    if not wanted:
        raise SecretsError(f"{config_file}: refusing to remove the last recipient: nobody could decrypt")
    config_file.write_text(sops_config_with(config_file.read_text() if config_file.exists() else "", wanted))
    files = sorted(project.root.glob("secrets*.enc.yaml"))
    for path in files:
        update_recipients(path, project.root)
    print(f"recipients now {', '.join(wanted)}; re-encrypted {', '.join(p.name for p in files)}")
