"""Commands as data (Kamal's `commands/`): builders that return argv lists, or shell scripts made of
lines built from argv, for one executor (`remote`) to run. Nothing in this package talks to a host,
so tests read and run what a deploy would send without one.

Every word that comes from outside (a path, a name, an image) goes through `line` (or `argv`), which
quotes it; shell syntax the script means (`$var`, `"$(...)"`, `>>`, `||`) is marked `Raw`.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from typing import ClassVar, Protocol


class Raw(str):
    """Shell syntax, passed through as it is: `line` quotes every other word."""


Word = str | int | Raw


def line(*words: Word) -> str:
    """One command line: words quoted, Raw kept."""
    return " ".join(word if isinstance(word, Raw) else shlex.quote(str(word)) for word in words)


def argv(command: Sequence[Word]) -> str:
    """An argv list as one command line."""
    return line(*command)


def script(*lines: str | Iterable[str] | None) -> str:
    """Lines (or lists of lines) of one script; empty parts are left out."""
    flat: list[str] = []
    for part in lines:
        if isinstance(part, str):
            flat.append(part)
        elif part:
            flat.extend(item for item in part if item)
    return "\n".join(item for item in flat if item)


# A command as `remote` runs it: an argv list, or a shell script.
Command = list[str] | str


def detached(command: Command) -> str:
    """COMMAND started in a session of its own, its output dropped: the task goes on at once, and
    the command runs to its end even once the task's shell is gone."""
    text = command if isinstance(command, str) else argv(command)
    return f"setsid nohup sh -c {shlex.quote(text)} >/dev/null 2>&1 </dev/null &"


def once_port_free(port: int, timeout: float, command: Command, held: str) -> str:
    """A script: waits until nothing listens on PORT and no running container publishes it, then
    runs COMMAND, again every 0.1 s until it succeeds (Docker may still hold a port it frees);
    fails after TIMEOUT seconds in all, saying HELD (what held the port) or, once the port is free,
    COMMAND's own last error."""
    port, tries = int(port), int(timeout * 20)
    give_up = f"{{ echo {shlex.quote(f'port {port} was still held {timeout:.0f} s after {held}')} >&2; exit 1; }}"
    return script(
        f"tries={tries}",
        # A listener, or a running container that publishes the port (Docker without its userland
        # proxy holds a published port with no listener of its own).
        f"while {{ ss -Hltn 'sport = :{port}'; docker ps -q --filter publish={port}; }} 2>/dev/null | grep -q .; do",
        f'  tries=$((tries - 1)); [ "$tries" -gt 0 ] || {give_up}; sleep 0.05',
        "done",
        f"until failed=$({command if isinstance(command, str) else argv(command)} 2>&1); do",
        '  tries=$((tries - 2)); [ "$tries" -gt 0 ] || { printf \'%s\\n\' "$failed" >&2; exit 1; }; sleep 0.1',
        "done",
    )


class ServiceCommands(Protocol):
    """The one set of verbs for a gateway (the gateway itself, an instance, the front door's proxy),
    whichever the runtime: each an argv list or a shell script."""

    validated: ClassVar[str]  # what `accepts` checks: "compose file", "unit"

    def up(self) -> Command: ...
    def restart(self) -> Command: ...
    def bringing_up(self, verb: str) -> Command: ...
    def stop(self) -> Command: ...
    def start(self) -> Command: ...
    def pull(self) -> Command: ...
    def ps(self) -> Command: ...
    def remove(self) -> Command: ...
    def restored(self) -> Command | None: ...
    def accepts(self, candidate: str, log: str) -> str: ...
