"""The files a deploy manages on the host: read them (content, symlinks, non-files), install new
versions atomically with backups and compose validation, restore them, keep releases.

No script here ever carries a secret: secret files are staged through stdin and only their paths appear.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..facts import Fact, FileFacts, decode
from ..host import Host
from ..plan import FileChange
from . import Raw, ServiceCommands, line, script

BACKUPS_KEPT = 5
# Exit status of an install whose new compose file (or unit) the compose CLI (or systemd) rejected.
REJECTED = 3


def backup_stem(change: FileChange) -> str:
    """One name per full path, so two files called config.yaml never share backups, and only
    characters that need no quoting or glob escaping: `config.yaml.1a2b3c4d`."""
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", posixpath.basename(change.target))
    return f"{readable}.{hashlib.sha256(change.target.encode()).hexdigest()[:8]}"


def backup_path(host: Host, change: FileChange, deploy_id: str) -> str:
    return f"{host.backup_dir}/{backup_stem(change)}.{deploy_id}"


def temp_path(change: FileChange) -> str:
    """Beside the file written (a symlink's target), so the final rename is atomic and the compose
    CLI resolves relative paths of a file being validated exactly as it will for the real one."""
    return posixpath.join(posixpath.dirname(change.target), f".{posixpath.basename(change.target)}.litedeploy-new")


def _prune(host: Host, change: FileChange) -> str:
    """Keeps the newest BACKUPS_KEPT backups of one file; safe for any characters in the folder."""
    return (line("find", host.backup_dir, "-maxdepth", "1", "-type", "f", "-name", backup_stem(change) + ".*",
                 "-printf", "%T@ %p\\n")
            + f" | sort -rn | tail -n +{BACKUPS_KEPT + 1} | cut -d' ' -f2- | while IFS= read -r old; do"
            ' rm -f -- "$old"; done')


def _restore(host: Host, changes: Sequence[FileChange], deploy_id: str) -> list[str]:
    """Puts back what each target held before this deploy: its backup's bytes with the owner and mode
    the target has (backups themselves are 0600), or nothing if it was new."""
    lines = []
    for change in changes:
        backup, temp, target = line(backup_path(host, change, deploy_id)), line(temp_path(change)), line(change.target)
        lines.append(f"if [ -f {backup} ]; then cp {backup} {temp} && if [ -e {target} ]; then"
                     f" chown --reference={target} {temp} && chmod --reference={target} {temp}; fi"
                     f" && mv -f {temp} {target}; else rm -f {target}; fi")
    return lines


def _write_beside(change: FileChange, staged: str) -> list[str]:
    """The staged file installed beside its target, as root with the change's mode; a file taken over
    (the compose file) keeps the owner and mode it has."""
    target, temp = line(change.target), line(temp_path(change))
    if change.keep_owner:
        owner = (f"$(if [ -f {target} ]; then stat -c '-m %a -o %u -g %g' {target}; "
                 f"else echo '-m {change.mode} -o root -g root'; fi)")
        install = f"install {owner} {line(staged)} {temp}"
    else:
        install = line("install", "-m", change.mode, "-o", "root", "-g", change.group, staged, temp_path(change))
    return [line("mkdir", "-p", posixpath.dirname(change.target)), install]


def install(host: Host, changes: Sequence[FileChange], stage: str, deploy_id: str, commands: ServiceCommands) -> str:
    """Backs up, writes every new file beside its target (a full disk or a read-only path fails here,
    before any target is touched), moves our files in, validates the new compose file with the compose
    CLI (a unit with systemd) and only then moves it in; a rejected one puts our files back."""
    ours = [change for change in changes if not change.validated]
    guarded = [change for change in changes if change.validated]
    if len(guarded) > 1:
        raise ValueError(f"one validated file per install, not {', '.join(change.path for change in guarded)}")
    lines = [
        "set -e", "umask 077",
        f"cleanup() {{ {line('rm', '-rf', stage)}; {line('rm', '-f', *[temp_path(c) for c in changes])}; }}",
        "trap cleanup EXIT",
        f"[ -d {line(host.config_dir)} ] || " + line("install", "-d", "-m", "0755", "-o", "root", "-g", "root",
                                                   host.config_dir),
        f"[ -d {line(host.backup_dir)} ] || " + line("install", "-d", "-m", "0700", "-o", "root", "-g", "root",
                                                   host.backup_dir),
    ]
    for change in changes:
        # 0600 whatever the original's mode: a compose file taken over may hold secrets in plain text.
        target, backup = line(change.target), line(backup_path(host, change, deploy_id))
        lines.append(f"if [ -f {target} ]; then cp -p {target} {backup} && chmod 0600 {backup}; fi")
    for index, change in enumerate(changes):
        lines += _write_beside(change, f"{stage}/{index}")
    lines += [line("mv", "-f", temp_path(change), change.target) for change in ours]
    if guarded:
        log = f"{stage}/validate.log"
        what = commands.validated
        lines += [
            f"if ! {commands.accepts(temp_path(guarded[0]), log)}; then",
            *[f"  {undo}" for undo in _restore(host, ours, deploy_id)],
            f"  echo \"the new {what} was rejected: $(grep -v '^\\s*$' {line(log)} | tail -n 1)\" >&2",
            f"  exit {REJECTED}",
            "fi",
            line("mv", "-f", temp_path(guarded[0]), guarded[0].target),
        ]
    lines += [_prune(host, change) for change in changes]
    return script(lines)


def take_away(host: Host, path: str, deploy_id: str) -> str:
    """Moves a managed file among the backups (0600), as its install would have backed it up."""
    backup = line(backup_path(host, FileChange(path, None, "", "0644"), deploy_id))
    return script(line("install", "-d", "-m", "0700", host.backup_dir),
                  f"if [ -f {line(path)} ]; then mv -f {line(path)} {backup} && chmod 0600 {backup}; fi")


def place(staged: str, target: str, mode: str) -> str:
    """A staged file written over TARGET at once (a rename), root's with MODE: a file of state, not
    of configuration, so no backup (the door's HTTP-01 answers)."""
    return script(line("install", "-D", "-m", mode, "-o", "root", "-g", "root", staged, f"{target}.new"),
                  line("mv", "-f", f"{target}.new", target))


def restore(host: Host, changes: Sequence[FileChange], deploy_id: str) -> str:
    return script("set -e", "umask 077", _restore(host, changes, deploy_id))


RELEASES_KEPT = 5


def releases_dir(host: Host) -> str:
    return f"{host.backup_dir}/releases"


def keep_release(host: Host, deploy_id: str, prune: str | None, kept: Mapping[str, str]) -> str:
    """Keeps the files a successful deploy left (0600: the env file holds secrets) as release
    DEPLOY_ID, keeps the newest RELEASES_KEPT releases, then runs PRUNE (where what runs changed:
    removing the images or venvs no kept release runs). KEPT: each managed path -> its name in
    the release folder."""
    folder = releases_dir(host)
    this = f"{folder}/{deploy_id}"
    return script(
        line("install", "-d", "-m", "0700", host.backup_dir, folder, this),
        [line("cp", path, f"{this}/{name}", Raw("2>/dev/null || true")) for path, name in kept.items()],
        f"chmod 0600 {line(this)}/*",
        f"ls -1 {line(folder)} | sort | head -n -{RELEASES_KEPT} | while IFS= read -r old; do"
        f" rm -rf -- {line(folder)}/\"$old\"; done",
        prune,
    )


def releases(host: Host) -> str:
    """Prints `release ID NAME BASE64` for every file of every kept release."""
    folder = line(releases_dir(host))
    return (f"[ -d {folder} ] || exit 0; cd {folder} && for f in */*; do [ -f \"$f\" ] || continue;"
            " printf 'release %s %s ' \"${f%%/*}\" \"${f#*/}\"; base64 -w0 < \"$f\"; echo; done")


def contents(host: Host, managed: Mapping[str, str]) -> str:
    """Prints, per managed file (MANAGED: fact name -> path, one of FILE_FACTS): its content
    (base64), where a symlink leads (base64), and whether the path is no regular file; then
    config.yaml's modification time."""
    return script(
        "f() { if [ -f \"$2\" ]; then printf '%s ' \"$1\"; base64 -w0 < \"$2\"; echo; fi;"
        " if [ -L \"$2\" ]; then printf 'real_%s ' \"$1\"; readlink -f -- \"$2\" | tr -d '\\n' | base64 -w0; echo; fi;"
        " if [ -e \"$2\" ] && [ ! -f \"$2\" ]; then echo \"notfile_$1 1\"; fi; }",
        [line("f", name, path) for name, path in managed.items()],
        f"[ -f {line(host.config_path)} ] && echo \"config_mtime $(stat -c %Y {line(host.config_path)})\"",
    )


# The managed files by fact name: the one that says what runs the gateway (a compose file, a unit), LiteLLM's
# config, the env file; each fact's value is the file's text.
FILE_FACTS = {"service_file": "service_text", "config_file": "config_text", "env_file": "env_text",
              "proxy_file": "proxy_text", "proxy_service_file": "proxy_service_text",
              "certificate_file": "certificate_text", "challenges_file": "challenges_text",
              "pending_certificate_file": "pending_certificate_text"}


def _text(name: str) -> Fact:
    """A file's content, or (bytes that are not UTF-8) its path among not_text."""
    def parse(value: str, paths: Mapping[str, str]) -> dict[str, Any]:
        try:
            return {FILE_FACTS[name]: decode(value)}
        except UnicodeDecodeError:
            return {"not_text": (paths[name],)} if name in paths else {}
    return Fact(name, FileFacts, parse)


def _real(name: str) -> Fact:
    return Fact(f"real_{name}", FileFacts,
                lambda value, paths: {"real_paths": {paths[name]: decode(value)}} if name in paths else {})


def _not_file(name: str) -> Fact:
    return Fact(f"notfile_{name}", FileFacts,
                lambda value, paths: {"not_files": (paths[name],)} if name in paths else {})


FACTS = (*[fact for name in FILE_FACTS for fact in (_text(name), _real(name), _not_file(name))],
         Fact("config_mtime", FileFacts, lambda value, paths: {"config_mtime": float(value)}))
