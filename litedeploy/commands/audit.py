"""The host's audit log (`<config_dir>/deploys.log`, one JSON line per task that changed or tried to
change the host, no secrets): append a line, read the last ones, and the deploy history."""

from __future__ import annotations

import json

from ..host import Host
from . import line


def log_path(host: Host) -> str:
    return f"{host.config_dir}/deploys.log"


def append(host: Host, record: dict) -> str:
    """Appends one JSON line, where the host already has our config folder."""
    log = line(log_path(host))
    return (f"if [ -d {line(host.config_dir)} ]; then [ -f {log} ] || install -m 0640 -o root -g root /dev/null {log};"
            f" printf '%s\\n' {line(json.dumps(record, sort_keys=True))} >> {log}; fi")


def last(host: Host, lines: int) -> str:
    """The log's last LINES lines."""
    log = line(log_path(host))
    return f"[ ! -f {log} ] || tail -n {int(lines)} {log}"


def history(host: Host, lines: int, releases_dir: str) -> str:
    """The log's last LINES lines, then `releases ID ...`: the kept releases."""
    return f"{last(host, lines)}; printf 'releases '; ls -1 {line(releases_dir)} 2>/dev/null | tr '\\n' ' '; echo"
