"""The shell scripts a deploy runs on the host, built as text so tests can read them without a host
(Kamal's commands-as-data): install with backups and compose validation, restore, lock, audit.

No script ever carries a secret: secret files are staged over SFTP and only their paths appear here.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shlex
from typing import Sequence

from .compose import ComposeCommands
from .facts import managed_files
from .inventory import Host
from .plan import FileChange
from .releases import RELEASE_FILES

BACKUPS_KEPT = 5
# Exit status of an install whose new compose file the compose CLI rejected.
COMPOSE_REJECTED = 3
q = shlex.quote


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
    return (f"find {q(host.backup_dir)} -maxdepth 1 -type f -name {q(backup_stem(change) + '.*')} -printf '%T@ %p\\n'"
            f" | sort -rn | tail -n +{BACKUPS_KEPT + 1} | cut -d' ' -f2- | while IFS= read -r old; do"
            ' rm -f -- "$old"; done')


def _restore(host: Host, changes: Sequence[FileChange], deploy_id: str) -> list[str]:
    """Puts back what each target held before this deploy: its backup's bytes with the owner and mode
    the target has (backups themselves are 0600), or nothing if it was new."""
    lines = []
    for change in changes:
        backup, temp, target = q(backup_path(host, change, deploy_id)), q(temp_path(change)), q(change.target)
        lines.append(f"if [ -f {backup} ]; then cp {backup} {temp} && if [ -e {target} ]; then"
                     f" chown --reference={target} {temp} && chmod --reference={target} {temp}; fi"
                     f" && mv -f {temp} {target}; else rm -f {target}; fi")
    return lines


def install_script(host: Host, changes: Sequence[FileChange], stage: str, deploy_id: str,
                   commands: ComposeCommands) -> str:
    """Backs up, writes every new file beside its target (a full disk or a read-only path fails here,
    before any target is touched), moves our files in, validates the new compose file with the compose
    CLI and only then moves it in; a rejected compose file puts our files back."""
    temps = " ".join(q(temp_path(change)) for change in changes)
    ours = [change for change in changes if change.path != host.compose_file]
    compose = [change for change in changes if change.path == host.compose_file]
    lines = [
        "set -e", "umask 077",
        f"cleanup() {{ rm -rf {q(stage)}; rm -f {temps}; }}", "trap cleanup EXIT",
        f"[ -d {q(host.config_dir)} ] || install -d -m 0755 -o root -g root {q(host.config_dir)}",
        f"[ -d {q(host.backup_dir)} ] || install -d -m 0700 -o root -g root {q(host.backup_dir)}",
    ]
    for change in changes:
        target = q(change.target)
        # 0600 whatever the original's mode: a compose file taken over may hold secrets in plain text.
        backup = q(backup_path(host, change, deploy_id))
        lines.append(f"if [ -f {target} ]; then cp -p {target} {backup} && chmod 0600 {backup}; fi")
    for index, change in enumerate(changes):
        target, temp = q(change.target), q(temp_path(change))
        lines.append(f"mkdir -p {q(posixpath.dirname(change.target))}")
        owner = "-o root -g root"
        if change.keep_owner:
            owner = (f"$(if [ -f {target} ]; then stat -c '-m %a -o %u -g %g' {target}; "
                     f"else echo '-m {change.mode} -o root -g root'; fi)")
            lines.append(f"install {owner} {q(f'{stage}/{index}')} {temp}")
        else:
            lines.append(f"install -m {change.mode} {owner} {q(f'{stage}/{index}')} {temp}")
    lines += [f"mv -f {q(temp_path(change))} {q(change.target)}" for change in ours]
    if compose:
        temp = q(temp_path(compose[0]))
        log = q(f"{stage}/validate.log")
        lines += [
            f"if ! {shlex.join(commands.validate(temp_path(compose[0])))} >{log} 2>&1; then",
            *[f"  {line}" for line in _restore(host, ours, deploy_id)],
            f"  echo \"the new compose file was rejected: $(grep -v '^\\s*$' {log} | tail -n 1)\" >&2",
            f"  exit {COMPOSE_REJECTED}",
            "fi",
            f"mv -f {temp} {q(compose[0].target)}",
        ]
    lines += [_prune(host, change) for change in changes]
    return "\n".join(lines)


def restore_script(host: Host, changes: Sequence[FileChange], deploy_id: str) -> str:
    return "\n".join(["set -e", "umask 077", *_restore(host, changes, deploy_id)])


def lock_path(host: Host) -> str:
    """In /run/lock, which a reboot empties: after a reboot no deploy can still be running."""
    return f"/run/lock/litedeploy{host.config_dir.replace('/', '_')}"


# The pid of the sshd process serving this SSH connection (sshd-session since OpenSSH 9.8): it lives
# exactly as long as the deploy that took the lock stays connected.
_CONNECTION_PID = ("c=$$; while [ \"$c\" -gt 1 ]; do case $(cat /proc/$c/comm 2>/dev/null) in"
                   " sshd|sshd-session) break;; esac; c=$(cut -d' ' -f4 /proc/$c/stat 2>/dev/null || echo 1); done")


def lock_script(host: Host, owner: dict) -> str:
    """Takes the lock atomically (mkdir) and says so, or prints who holds it; the holder's SSH
    connection is recorded, so a lock is known to be live while that connection is."""
    lock = q(lock_path(host))
    return "\n".join([
        f"if mkdir {lock} 2>/dev/null; then printf '%s\\n' {q(json.dumps(owner))} > {lock}/owner;",
        f"  {_CONNECTION_PID}; echo \"$c\" > {lock}/connection; echo 'lock acquired';",
        f"else {lock_status_script(host)}; fi",
    ])


def lock_status_script(host: Host) -> str:
    """Prints `lock held BASE64-OWNER` when the host is locked, nothing otherwise."""
    lock = q(lock_path(host))
    return f"if [ -d {lock} ]; then printf 'lock held '; base64 -w0 < {lock}/owner 2>/dev/null; echo; fi"


def unlock_script(host: Host) -> str:
    return f"rm -rf {q(lock_path(host))}"


def break_stale_lock_script(host: Host) -> str:
    """Removes the lock unless the connection of the deploy holding it is still open."""
    lock = q(lock_path(host))
    return (f"c=$(cat {lock}/connection 2>/dev/null); case $(cat /proc/${{c:-0}}/comm 2>/dev/null) in"
            f" sshd|sshd-session) echo \"lock_live $c\";; *) rm -rf {lock};; esac")


def audit_script(host: Host, record: dict) -> str:
    """Appends one JSON line to the deploy log, where the host already has our config folder."""
    log = q(f"{host.config_dir}/deploys.log")
    return (f"if [ -d {q(host.config_dir)} ]; then [ -f {log} ] || install -m 0640 -o root -g root /dev/null {log};"
            f" printf '%s\\n' {q(json.dumps(record, sort_keys=True))} >> {log}; fi")


# Printed (on stdout and stderr) where a command's own output starts: a login shell may print text
# of its own first (a motd in root's .bashrc), which is not the command's.
OUTPUT_STARTS = "litedeploy-output-starts"


def marked(line: str) -> str:
    """The command line run by sh after the output-start mark; inside sudo's command when sudo
    prefixes it, so the whole line still runs as root."""
    return shlex.join(["sh", "-c", f"echo {OUTPUT_STARTS}; echo {OUTPUT_STARTS} >&2; {line}"])


def after_output_start(text: str) -> str:
    """The text after the first output-start mark (all of it when there is none)."""
    head, mark, rest = text.partition(f"{OUTPUT_STARTS}\n")
    return rest if mark else text


def relay_command(address: str, port: int) -> str:
    """Joins the exec channel to ADDRESS:PORT on the host with bash's /dev/tcp (no nc, socat or
    Python needed): socket to stdout in the background, stdin to the socket in the foreground."""
    script = f"exec 3<>{q(f'/dev/tcp/{address}/{int(port)}')} || exit 1; echo {OUTPUT_STARTS}; cat <&3 & cat >&3; wait"
    return shlex.join(["bash", "-c", script])


RELEASES_KEPT = 5


def releases_dir(host: Host) -> str:
    return f"{host.backup_dir}/releases"


def release_script(host: Host, deploy_id: str, prune_images_of: str | None) -> str:
    """Keeps the files a successful deploy left (0600: the env file holds secrets) as release
    DEPLOY_ID, keeps the newest RELEASES_KEPT releases, and where the image changed removes the
    repository's images that no kept release runs (Docker refuses to remove one a container uses)."""
    folder = releases_dir(host)
    this = f"{folder}/{deploy_id}"
    lines = [f"install -d -m 0700 {q(host.backup_dir)} {q(folder)} {q(this)}"]
    lines += [f"cp {q(path)} {q(this + '/' + RELEASE_FILES[name])} 2>/dev/null || true"
              for name, path in managed_files(host).items()]
    lines += [f"chmod 0600 {q(this)}/*",
              f"ls -1 {q(folder)} | sort | head -n -{RELEASES_KEPT} | while IFS= read -r old; do"
              f" rm -rf -- {q(folder)}/\"$old\"; done"]
    if prune_images_of:
        lines += [
            f"keep=\" $(cat {q(folder)}/*/compose.yml 2>/dev/null | grep -o 'sha256:[0-9a-f]\\{{64\\}}' | sort -u"
            " | tr '\\n' ' ') \"",
            f"docker images --no-trunc --format '{{{{.ID}}}}' {q(prune_images_of)} | sort -u | while read -r id; do",
            "  digests=$(docker image inspect --format '{{range .RepoDigests}}{{.}} {{end}}' \"$id\")",
            "  [ -n \"$digests\" ] || continue  # a local build: no registry to get it back from",
            "  used=no; for d in $digests; do case \"$keep\" in *\" ${d#*@} \"*) used=yes;; esac; done",
            "  [ $used = yes ] || docker rmi $(docker image inspect --format"
            " '{{range .RepoTags}}{{.}} {{end}}{{range .RepoDigests}}{{.}} {{end}}' \"$id\") >/dev/null 2>&1 || true",
            "done",
        ]
    return "\n".join(lines)


def releases_script(host: Host) -> str:
    """Prints `release ID NAME BASE64` for every file of every kept release."""
    folder = q(releases_dir(host))
    return (f"[ -d {folder} ] || exit 0; cd {folder} && for f in */*; do [ -f \"$f\" ] || continue;"
            " printf 'release %s %s ' \"${f%%/*}\" \"${f#*/}\"; base64 -w0 < \"$f\"; echo; done")


def audit_log_script(host: Host, lines: int) -> str:
    """The audit log's last LINES lines (JSON, no secrets)."""
    log = q(f"{host.config_dir}/deploys.log")
    return f"[ ! -f {log} ] || tail -n {int(lines)} {log}"


def history_script(host: Host, lines: int) -> str:
    """The audit log's last LINES lines, then `releases ID ...`."""
    return (f"{audit_log_script(host, lines)}; printf 'releases '; "
            f"ls -1 {q(releases_dir(host))} 2>/dev/null | tr '\\n' ' '; echo")
