"""The env file (NAME=value lines) that carries the gateway's secrets and settings: the one writer
every value goes through, its reader, and its masked form for diffs (pure).

Three programs read the file litedeploy writes: compose v1 (python-dotenv), compose v2 (compose-go)
and systemd (EnvironmentFile=). A value reaches all three as written, or it is refused: the rules
below were measured with each of them (tests/test_lab_envfile.py checks them against v1 and v2 with
generated values).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

# Written bare: characters every reader takes literally outside quotes.
_PLAIN = re.compile(r"[!%&()*+,\-./0-9:;<=>?@A-Z\[\]^_a-z{|}~]*")
# Inside double quotes v2 expands $VAR and both decode backslash escapes: written so only without them.
_DOUBLE_QUOTABLE = re.compile(r'[^"$\\]*')
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Where a line may end for some reader: python-dotenv and Python's str.splitlines split on all of
# these, compose-go on \n and \r. A value holding one arrives cut short, or adds a variable.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# The {{ expression }} slots of a rendered env template (see `fill`): a NUL, the slot's index, a NUL.
_SLOT = re.compile("\x00([0-9]+)\x00")
REDACTED = "********"


def refusal(value: str) -> str | None:
    """Why VALUE cannot reach the service byte for byte under compose v1, v2 and systemd, or None."""
    if _LINE_BREAKS.search(value):
        return "a line break (\\n, \\r or a Unicode line separator)"
    if re.search(r"[\x00-\x1f\x7f]", value):
        return "a control character"
    if re.search(r"[\ud800-\udfff]", value):
        return "a lone surrogate, which is not UTF-8"
    if "${" in value:
        return "'${' (compose v1 expands it even in quotes)"
    if "\\\\" in value or value.endswith("\\"):
        return "a doubled or trailing backslash (v1 and v2 read it differently)"
    if "'" in value and not _DOUBLE_QUOTABLE.fullmatch(value):
        return "a single quote together with $, \\ or \" (no quoting passes both through)"
    return None


def quote(value: str) -> str:
    """VALUE as written after `NAME=`: bare when every reader takes it literally, else in single
    quotes, else (it holds a single quote) in double quotes. Raises ValueError with `refusal`'s reason."""
    reason = refusal(value)
    if reason:
        raise ValueError(reason)
    if _PLAIN.fullmatch(value):
        return value
    return f"'{value}'" if "'" not in value else f'"{value}"'


class Slots(list):
    """What a template's {{ expressions }} produced, in order: Jinja's `finalize` hands each value
    here and writes a slot marker instead, so `fill` sees every value whole, a newline included."""

    def mark(self, value: object) -> str:
        self.append(str(value))  # str() of a missing variable raises Jinja's UndefinedError here
        return f"\x00{len(self) - 1}\x00"


def fill(rendered: str, slots: Slots, origin: Callable[[str], str], where: str) -> str:
    """The env file from a template rendered with slot markers: on each `NAME=value` line the value
    (template text and slots together) is written by `quote`; comment and blank lines take their
    slots as they are. ORIGIN(name) says where a variable's value comes from; WHERE names the template.

    Raises ValueError naming the value's origin (or the template's line) and what is wrong."""
    lines = []
    for number, line in enumerate(rendered.split("\n"), 1):
        text = _SLOT.sub(lambda match: slots[int(match.group(1))], line)
        if not line.strip() or line.lstrip().startswith("#"):
            if _LINE_BREAKS.search(text):
                raise ValueError(f"{where}:{number}: a comment would take a value with a line break")
            lines.append(text)
            continue
        name, equals, value = text.partition("=")
        if not equals or not ENV_NAME.fullmatch(name):
            raise ValueError(f"{where}:{number}: the line is neither NAME=value (NAME of [A-Za-z_][A-Za-z0-9_]*) "
                             "nor a comment")
        try:
            lines.append(f"{name}={quote(value)}")
        except ValueError as reason:
            raise ValueError(f"{origin(name)} holds {reason}, which compose v1, v2 and systemd would not all "
                             "pass on as written; choose another value") from None
    return "\n".join(lines)


def _unquoted(value: str) -> str:
    quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
    return value[1:-1] if quoted and value[0] not in value[1:-1] else value


def _assignments(text: str) -> Iterator[tuple[str, str]]:
    # Lines end at \n only: a value never holds a line break (`refusal`), and splitlines() would
    # also split at characters a foreign file may hold inside a value.
    for line in text.split("\n"):
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            yield name, value


def env_pairs(text: str) -> dict[str, str]:
    """NAME -> value of an env file's assignments (comments skipped), quotes taken off as compose does."""
    return {name: _unquoted(value) for name, value in _assignments(text)}


def env_names(text: str) -> list[str]:
    """The names an env file assigns, in order, repeats kept."""
    return [name for name, _ in _assignments(text)]


def masked_env(text: str, compared_with: str | None = None, side: str = "") -> str:
    """The env file with every value masked. Against another version of it, a line whose value
    differs is marked with `side`, so a diff shows which keys change without saying to what."""
    others = env_pairs(compared_with) if compared_with is not None else None
    lines = []
    for line in text.split("\n"):
        if "=" not in line or line.startswith("#"):
            lines.append(line)
            continue
        key, value = line.split("=", 1)
        mark = f"  ({side} value)" if others is not None and others.get(key) != _unquoted(value) else ""
        lines.append(f"{key}={REDACTED}{mark}")
    return "\n".join(lines)
